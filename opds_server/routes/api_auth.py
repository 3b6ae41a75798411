"""``/api/auth``, ``/api/me`` and ``/api/app-passwords``: tokens, the account and its app passwords.

Logging in goes through ``Authenticator.basic`` on a synthesized Basic header, so the API shares
the feeds' rate limits, credential cache and constant-time answer for unknown names. Refresh
tokens rotate: each is spent once, and presenting a spent one again revokes its whole family (the
login it descends from), since only a thief or a confused client would do that. Anything that
changes a credential bumps the credential epoch, so every instance drops cached credentials at
once. Handlers never touch another account: the user always comes from the ``account`` dependency.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from functools import partial
from typing import Annotated, Any, Literal

import anyio.to_thread
import msgspec
from litestar import Request, Router, delete, get, post
from litestar.params import Parameter
from msgspec import Meta

from opds_server.accounts import Accounts, UnknownUserError
from opds_server.auth.passwords import MAX_PASSWORD_LENGTH, PasswordPolicyError
from opds_server.auth.principal import Principal, Scope
from opds_server.auth.service import AuthenticationError, RateLimitedError
from opds_server.auth.tokens import MAX_TOKEN_LENGTH, InvalidTokenError, TokenPair
from opds_server.db.users import MAX_NAME_LENGTH, AppPasswordRecord, InvalidNameError, RefreshOutcome
from opds_server.errors import (
    AppPasswordNotFoundError,
    AuthenticationFailedError,
    InvalidBodyError,
    TooManyAttemptsError,
)
from opds_server.routes.api import api_router, problems
from opds_server.routes.params import MAX_ID
from opds_server.state import Services, utc_now

log = logging.getLogger(__name__)

Password = Annotated[str, Meta(min_length=1, max_length=MAX_PASSWORD_LENGTH)]
RefreshToken = Annotated[str, Meta(min_length=1, max_length=MAX_TOKEN_LENGTH, description="a refresh token")]
AppPasswordScope = Literal["catalog", "sync"]


class Credentials(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    username: Annotated[str, Meta(min_length=1, max_length=MAX_NAME_LENGTH)]
    password: Password


class RefreshRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    refresh_token: RefreshToken


class PasswordChange(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    current_password: Password
    new_password: Password


class Account(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    is_admin: bool
    scopes: list[str]


class AppPasswordRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    label: Annotated[str, Meta(min_length=1, max_length=100, description="where the password is used")]
    scopes: Annotated[tuple[AppPasswordScope, ...], Meta(min_length=1)] = ("catalog", "sync")


class AppPassword(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    label: str
    scopes: list[str]
    created_at: dt.datetime
    last_used_at: dt.datetime | None


class NewAppPassword(AppPassword, frozen=True, kw_only=True):
    password: str
    """The secret, shown this once: only its hash is kept."""


def _client_address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"  # what the middleware counts failures by


async def _check_password(services: Services, request: Request[Any, Any, Any], name: str, password: str) -> Principal:
    """The account behind a name and its main password, through the Basic path (limits, cache, timing).

    Raises:
        AuthenticationError: wrong name or password, or an app password.
        TooManyAttemptsError: too many failures for this account or address.
    """
    header = "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode("ascii")
    try:
        principal = await services.authenticator.basic(header, _client_address(request))
    except RateLimitedError as exc:
        raise TooManyAttemptsError(str(exc), retry_after=exc.retry_after) from exc
    if principal.app_password_id is not None:
        raise AuthenticationError("an app password cannot log in to the API; use the account's password")
    return principal


def _issue(services: Services, user_id: int, version: int, family: str | None) -> TokenPair:
    """A new token pair whose refresh token is recorded, so it can be spent once (blocking)."""
    now = utc_now()
    pair, issued = services.tokens.issue(user_id, version, now=now, family=family)
    services.users.add_refresh_token(issued.token_id, user_id, issued.family, now=now, expires_at=issued.expires_at)
    return pair


@post(
    "/auth/token",
    status_code=200,
    summary="Log in: a token pair for a user name and password",
    responses=problems(400, 401, 413, 429),
)
async def issue_tokens(request: Request[Any, Any, Any], services: Services, data: Credentials) -> TokenPair:
    """The same 401 for an unknown name and a wrong password, after the same work; 429 past the limits."""
    try:
        principal = await _check_password(services, request, data.username, data.password)
    except AuthenticationError as exc:
        raise AuthenticationFailedError(str(exc)) from exc
    return await anyio.to_thread.run_sync(_issue, services, principal.user_id, principal.token_version, None)


async def _revoke_family(services: Services, family: str | None) -> None:
    if family is not None:
        await services.authenticator.revoke_family(family)


@post(
    "/auth/refresh",
    status_code=200,
    summary="Trade a refresh token for a new pair (the old one is spent)",
    responses=problems(400, 401, 413),
)
async def refresh_tokens(services: Services, data: RefreshRequest) -> TokenPair:
    """Rotation with reuse detection: a spent token presented again revokes its whole family."""
    now = utc_now()
    try:
        claims = services.tokens.decode(data.refresh_token, "refresh", now=now)
    except InvalidTokenError as exc:
        raise AuthenticationFailedError(f"refresh_token: {exc}") from exc
    use = await anyio.to_thread.run_sync(partial(services.users.use_refresh_token, claims.token_id, now=now))
    if use.outcome is RefreshOutcome.REUSED:
        await _revoke_family(services, use.family)
        log.warning("a spent refresh token of user %s was presented again; its family is revoked", use.user_id)
        raise AuthenticationFailedError(
            "refresh_token was used or revoked already; every token of this login is now revoked, so log in again"
        )
    if use.outcome is not RefreshOutcome.USED or use.user_id != claims.user_id:
        raise AuthenticationFailedError(f"refresh_token is {use.outcome.value}; log in again")
    user = await anyio.to_thread.run_sync(services.users.get_user, claims.user_id)
    if user is None or user.is_disabled or user.token_version != claims.version:
        await _revoke_family(services, use.family)
        raise AuthenticationFailedError("refresh_token was revoked (the password changed or the account is disabled)")
    return await anyio.to_thread.run_sync(_issue, services, user.id, user.token_version, claims.family)


@post(
    "/auth/logout",
    status_code=204,
    summary="Revoke every token of the login a refresh token belongs to",
    responses=problems(400, 401, 413),
)
async def logout(services: Services, account: Principal, data: RefreshRequest) -> None:
    try:
        claims = services.tokens.decode(data.refresh_token, "refresh", now=utc_now())
    except InvalidTokenError as exc:
        raise InvalidBodyError(f"body field 'refresh_token': {exc}") from exc
    if claims.user_id != account.user_id:
        raise InvalidBodyError("body field 'refresh_token': the token is not valid")  # never say whose it is
    await _revoke_family(services, claims.family)


@get("/me", summary="The logged-in account", responses=problems(401))
async def read_account(account: Principal) -> Account:
    return Account(
        id=account.user_id, name=account.name, is_admin=account.is_admin, scopes=sorted(s.value for s in account.scopes)
    )


@post(
    "/me/password",
    status_code=204,
    summary="Change the password; every token and session of the old one dies",
    responses=problems(400, 401, 413, 429),
)
async def change_password(
    request: Request[Any, Any, Any], services: Services, account: Principal, data: PasswordChange
) -> None:
    try:
        checked = await _check_password(services, request, account.name, data.current_password)
    except AuthenticationError as exc:
        raise InvalidBodyError("body field 'current_password': this is not the account's password") from exc
    if checked.user_id != account.user_id:
        raise InvalidBodyError("body field 'current_password': this is not the account's password")
    try:
        hashed = await anyio.to_thread.run_sync(services.passwords.hash, data.new_password)
    except PasswordPolicyError as exc:
        raise InvalidBodyError(f"body field 'new_password': {exc}") from exc
    kosync = await anyio.to_thread.run_sync(services.passwords.kosync_hash, data.new_password)
    changed = await anyio.to_thread.run_sync(
        partial(services.users.set_password_hash, account.user_id, hashed, now=utc_now(), kosync_hash=kosync)
    )
    await services.authenticator.changed()
    if not changed:
        raise AuthenticationFailedError("this account no longer exists")


def _app_password(record: AppPasswordRecord) -> AppPassword:
    return AppPassword(
        id=record.id,
        label=record.label,
        scopes=list(record.scopes),
        created_at=record.created_at,
        last_used_at=record.last_used_at,
    )


@get(
    "/app-passwords",
    sync_to_thread=True,
    summary="The account's app passwords (never their secrets)",
    responses=problems(401),
)
def list_app_passwords(services: Services, account: Principal) -> list[AppPassword]:
    records = services.users.list_app_passwords(account.user_id)
    return [_app_password(record) for record in records if record.revoked_at is None]


@post(
    "/app-passwords",
    status_code=201,
    summary="A new app password for a device; the secret is shown once",
    responses=problems(400, 401, 413),
)
async def create_app_password(services: Services, account: Principal, data: AppPasswordRequest) -> NewAppPassword:
    accounts = Accounts(services.users, services.passwords)
    scopes = tuple(Scope(scope) for scope in dict.fromkeys(data.scopes))
    try:
        record, secret = await anyio.to_thread.run_sync(accounts.create_app_password, account.name, data.label, scopes)
    except InvalidNameError as exc:
        raise InvalidBodyError(f"body field 'label' = {data.label[:40]!r}: {exc}") from exc
    except UnknownUserError as exc:
        raise AuthenticationFailedError("this account no longer exists") from exc
    await services.authenticator.changed()
    return NewAppPassword(**msgspec.structs.asdict(_app_password(record)), password=secret)


@delete("/app-passwords/{password_id:int}", summary="Revoke an app password", responses=problems(400, 401, 404))
async def revoke_app_password(
    services: Services,
    account: Principal,
    password_id: Annotated[int, Parameter(ge=1, le=MAX_ID, description="an id from GET /api/app-passwords")],
) -> None:
    accounts = Accounts(services.users, services.passwords)
    try:
        revoked = await anyio.to_thread.run_sync(accounts.revoke_app_password, account.name, password_id)
    except UnknownUserError as exc:
        raise AuthenticationFailedError("this account no longer exists") from exc
    if not revoked:
        raise AppPasswordNotFoundError(f"you have no app password {password_id}")
    await services.authenticator.changed()


def auth_routers() -> list[Router]:
    """The token endpoints (public: no login is needed to log in or to refresh) and the account's."""
    return [
        api_router([issue_tokens, refresh_tokens], tags=["authentication"], is_public=True),
        api_router(
            [logout, read_account, change_password, list_app_passwords, create_app_password, revoke_app_password],
            tags=["account"],
        ),
    ]
