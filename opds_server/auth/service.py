"""The authenticator: credentials in, a ``Principal`` out, argon2 once per credential.

After a successful check, an HMAC of the credential (keyed with the server secret) maps to the
principal in the store for five minutes, stamped with the credential epoch; a later request with
the same credential costs one store lookup. Failed attempts are counted per account and per client
address; past the limit both unknown names and wrong passwords get the same 429.

The database is the authority for everything here (users, app passwords, ended token families and
sessions); the store only remembers answers, each stamped with the epoch, so losing it loses nothing.
While Redis is down, the same answers are kept in this process's own bounded store instead, and
logins keep working (an uncached credential costs one argon2 check, as on first use).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from functools import partial
from typing import Generic, TypeVar

import anyio.to_thread
import msgspec

from opds_server.auth.epoch import Epoch
from opds_server.auth.passwords import MAX_PASSWORD_LENGTH, Passwords
from opds_server.auth.principal import ALL_SCOPES, Principal, Scope
from opds_server.auth.tokens import InvalidTokenError, TokenKind, Tokens
from opds_server.cache.store import MemoryStore, Store, StoreUnavailableError
from opds_server.db.users import MAX_NAME_LENGTH, UserRecord, UserStore, name_key
from opds_server.observability import LOGIN_FAILURES

log = logging.getLogger(__name__)
T = TypeVar("T")

CACHE_TTL = 300.0
FAILURE_WINDOW = 900.0
ACCOUNT_FAILURE_LIMIT = 10
ADDRESS_FAILURE_LIMIT = 50
APP_PASSWORD = re.compile(r"^opds_(\d{1,12})_([A-Za-z0-9_-]{20,86})$")
MAX_HEADER_LENGTH = 4096


class AuthenticationError(Exception):
    """The credential is missing, malformed or wrong; the message is safe to show."""


class RateLimitedError(Exception):
    """Too many failed attempts for this account or address."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after} seconds")
        self.retry_after = retry_after


class _Cached(msgspec.Struct, frozen=True):
    epoch: str
    principal: Principal


class _Stamped(msgspec.Struct, Generic[T], frozen=True):
    """A database answer kept in the store, good while the credential epoch holds."""

    epoch: str
    value: T


def parse_basic(header: str) -> tuple[str, str]:
    """User name and password of a ``Basic`` Authorization value.

    Raises:
        AuthenticationError: not Basic, not base64, not UTF-8, no colon, or absurdly long.
    """
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise AuthenticationError("expected HTTP Basic credentials")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise AuthenticationError("the Basic credentials are not base64 of UTF-8 text") from exc
    name, colon, password = decoded.partition(":")
    if not colon or not name:
        raise AuthenticationError("the Basic credentials need 'name:password'")
    if len(name) > MAX_NAME_LENGTH or len(password) > MAX_PASSWORD_LENGTH:
        raise AuthenticationError("the Basic credentials are too long")
    return name, password


class Authenticator:
    """Resolves Basic credentials and bearer tokens to principals."""

    def __init__(
        self,
        *,
        users: UserStore,
        passwords: Passwords,
        tokens: Tokens,
        store: Store,
        epoch: Epoch,
        secret: bytes,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.users = users
        self.passwords = passwords
        self.tokens = tokens
        self.store = store
        self.epoch = epoch
        self._secret = secret
        self._clock = clock
        self.local = MemoryStore(max_entries=20_000)
        """Where answers are kept while the shared store is down."""
        self._has_users: tuple[str, bool] | None = None
        self._store_down_logged = False
        self.argon2_checks = 0
        """Slow-path verifications in this process (the tests count them)."""

    def _key(self, *parts: str) -> str:
        digest = hmac.new(self._secret, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()
        return f"cred:{digest}"

    def _store_failed(self, exc: StoreUnavailableError) -> None:
        if not self._store_down_logged:
            log.warning("the cache store is unreachable (%s); caching credentials in this process meanwhile", exc)
            self._store_down_logged = True

    async def _get(self, key: str) -> bytes | None:
        try:
            value = await self.store.get(key)
        except StoreUnavailableError as exc:
            self._store_failed(exc)
            return await self.local.get(key)
        self._store_down_logged = False
        return value

    async def _set(self, key: str, value: bytes, *, ttl: float) -> None:
        try:
            await self.store.set(key, value, ttl=ttl)
        except StoreUnavailableError as exc:
            self._store_failed(exc)
            await self.local.set(key, value, ttl=ttl)

    async def _increment(self, key: str, *, ttl: float) -> int:
        try:
            return await self.store.increment(key, ttl=ttl)
        except StoreUnavailableError as exc:
            self._store_failed(exc)
            return await self.local.increment(key, ttl=ttl)

    async def current_epoch(self) -> str | None:
        """The epoch cached answers must carry; ``None`` (cache nothing) if it cannot be had."""
        try:
            return await self.epoch.current()
        except StoreUnavailableError as exc:
            self._store_failed(exc)
            return None

    async def changed(self) -> None:
        """Credentials or users changed (the database counted it): every cached credential stops
        counting, everywhere."""
        await self.epoch.bump()

    async def is_required(self) -> bool:
        """Whether a login is needed: only once at least one user exists."""
        epoch = await self.current_epoch()
        if epoch is not None and self._has_users is not None and self._has_users[0] == epoch:
            return self._has_users[1]
        has_users = await anyio.to_thread.run_sync(self.users.count_users) > 0
        if epoch is not None:
            self._has_users = (epoch, has_users)
        return has_users

    # Basic

    async def basic(self, header: str, address: str) -> Principal:
        """The principal behind a Basic Authorization header.

        Raises:
            AuthenticationError: malformed or wrong credentials.
            RateLimitedError: too many failures for this account or address.
        """
        name, password = parse_basic(header)
        key = self._key("basic", name_key(name), password)
        epoch = await self.current_epoch()
        if epoch is not None:
            cached = await self._read(key)
            if cached is not None and cached.epoch == epoch:
                return cached.principal
        await self._check_limits(name, address)
        principal = await anyio.to_thread.run_sync(self._verify_basic, name, password)
        if principal is None:
            await self._count_failure(name, address)
            raise AuthenticationError("wrong user name or password")
        if epoch is not None:
            await self._write(key, msgspec.msgpack.encode(_Cached(epoch, principal)))
        return principal

    async def _read(self, key: str) -> _Cached | None:
        raw = await self._get(key)
        if raw is None:
            return None
        try:
            return msgspec.msgpack.decode(raw, type=_Cached)
        except msgspec.DecodeError:
            return None

    async def _write(self, key: str, value: bytes) -> None:
        await self._set(key, value, ttl=CACHE_TTL)

    def _verify_basic(self, name: str, password: str) -> Principal | None:
        """The slow path (a worker thread): one argon2 verification, whatever the outcome."""
        self.argon2_checks += 1
        app_password = APP_PASSWORD.match(password)
        if app_password is not None:
            return self._verify_app_password(name, int(app_password[1]), app_password[2])
        user = self.users.find_user(name)
        stored = self.users.read_password_hash(user.id) if user else None
        if not self.passwords.verify(stored, password) or user is None or stored is None or user.is_disabled:
            return None
        if self.passwords.needs_rehash(stored):
            self.users.rehash_password(user.id, stored, self.passwords.hash(password))
        if self.users.read_kosync_hash(user.id) is None:  # set before KOReader sync existed: make it now
            self.users.set_kosync_hash(user.id, self.passwords.kosync_hash(password))
        return Principal(
            user_id=user.id, name=user.name, is_admin=user.is_admin, scopes=ALL_SCOPES, token_version=user.token_version
        )

    def _verify_app_password(self, name: str, password_id: int, secret: str) -> Principal | None:
        found = self.users.read_app_password(password_id)
        record, stored = found if found else (None, None)
        if not self.passwords.verify(stored, secret) or record is None or record.revoked_at is not None:
            return None
        user = self.users.get_user(record.user_id)
        if user is None or user.is_disabled or name_key(user.name) != name_key(name):
            return None
        self.users.touch_app_password(record.id, now=self._clock())
        if record.has_kosync_hash is False:
            self.users.set_app_password_kosync_hash(record.id, self.passwords.kosync_hash(f"opds_{record.id}_{secret}"))
        return Principal(
            user_id=user.id,
            name=user.name,
            is_admin=False,
            scopes=frozenset(Scope(s) for s in record.scopes if s in Scope.__members__.values()),
            token_version=user.token_version,
            app_password_id=record.id,
        )

    async def _check_limits(self, name: str, address: str) -> None:
        keys = [f"fail:name:{name_key(name)}", f"fail:addr:{address}"]
        try:
            account, client = await self.store.get_many(keys)
        except StoreUnavailableError as exc:
            self._store_failed(exc)
            account, client = await self.local.get_many(keys)
        if int(account or 0) >= ACCOUNT_FAILURE_LIMIT or int(client or 0) >= ADDRESS_FAILURE_LIMIT:
            raise RateLimitedError(int(FAILURE_WINDOW))

    async def _count_failure(self, name: str, address: str) -> None:
        LOGIN_FAILURES.labels(kind="password").inc()
        await self._increment(f"fail:name:{name_key(name)}", ttl=FAILURE_WINDOW)
        await self._increment(f"fail:addr:{address}", ttl=FAILURE_WINDOW)

    # KOReader's sync plugin: x-auth-user and x-auth-key = md5(password) (spec A.10)

    async def kosync(self, name: str, key: str, address: str) -> Principal:
        """The principal behind KOReader's ``x-auth-user`` / ``x-auth-key``: the account's password
        or one of its app passwords, as md5 hex; verified once with argon2, then cached like Basic.

        Raises:
            AuthenticationError: unknown user, wrong key, or a credential without the sync scope.
            RateLimitedError: too many failures for this account or address.
        """
        cache_key = self._key("kosync", name_key(name), key.lower())
        epoch = await self.current_epoch()
        if epoch is not None:
            cached = await self._read(cache_key)
            if cached is not None and cached.epoch == epoch:
                return cached.principal
        await self._check_limits(name, address)
        principal = await anyio.to_thread.run_sync(self._verify_kosync, name, key.lower())
        if principal is None or not principal.can(Scope.SYNC):
            await self._count_failure(name, address)
            raise AuthenticationError("wrong user name or key")
        if epoch is not None:
            await self._write(cache_key, msgspec.msgpack.encode(_Cached(epoch, principal)))
        return principal

    def _verify_kosync(self, name: str, key: str) -> Principal | None:
        self.argon2_checks += 1
        user = self.users.find_user(name)
        stored = self.users.read_kosync_hash(user.id) if user else None
        if user is None or user.is_disabled:
            self.passwords.verify(None, key)  # the same cost as a wrong key
            return None
        if stored is not None and self.passwords.verify(stored, key):
            return Principal(
                user_id=user.id,
                name=user.name,
                is_admin=user.is_admin,
                scopes=ALL_SCOPES,
                token_version=user.token_version,
            )
        for record, app_hash in self.users.app_password_kosync_hashes(user.id):
            if self.passwords.verify(app_hash, key):
                return Principal(
                    user_id=user.id,
                    name=user.name,
                    is_admin=False,
                    scopes=frozenset(Scope(s) for s in record.scopes if s in Scope.__members__.values()),
                    token_version=user.token_version,
                    app_password_id=record.id,
                )
        return None

    # Bearer

    async def bearer(self, header: str) -> Principal:
        """The principal behind ``Authorization: Bearer <access token>``.

        Raises:
            AuthenticationError: a malformed, forged, expired or outdated token.
        """
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("expected a Bearer token")
        return await self._token_principal(token, "access", ended="the token was revoked")

    async def session(self, token: str) -> Principal:
        """The principal behind a browser's session cookie (``Tokens.issue_session``).

        Raises:
            AuthenticationError: a malformed, forged, expired, logged-out or outdated session.
        """
        return await self._token_principal(token, "session", ended="the session was ended")

    async def _token_principal(self, token: str, kind: TokenKind, *, ended: str) -> Principal:
        """The user of a signed token of ours, if it is still theirs (version, family, account)."""
        try:
            claims = self.tokens.decode(token.strip(), kind, now=self._clock())
        except InvalidTokenError as exc:
            raise AuthenticationError(str(exc)) from exc
        user = await self.user(claims.user_id)
        if user is None or user.is_disabled or user.token_version != claims.version:
            raise AuthenticationError(ended)
        if await self._family_revoked(claims.family):
            raise AuthenticationError(ended)
        return Principal(
            user_id=user.id, name=user.name, is_admin=user.is_admin, scopes=ALL_SCOPES, token_version=user.token_version
        )

    async def end_session(self, token: str) -> None:
        """Log a browser out: its session is refused from now on, on every instance."""
        try:
            claims = self.tokens.decode(token.strip(), "session", now=self._clock())
        except InvalidTokenError:
            return  # nothing to end
        await anyio.to_thread.run_sync(
            partial(
                self.users.end_session, claims.family, claims.user_id, expires_at=claims.expires_at, now=self._clock()
            )
        )
        await self.changed()

    async def revoke_family(self, family: str) -> None:
        """End a login: its refresh tokens, and with them its access tokens, on every instance."""
        await anyio.to_thread.run_sync(partial(self.users.revoke_family, family, now=self._clock()))
        await self.changed()

    async def _family_revoked(self, family: str) -> bool:
        """Whether a login (token family) or browser session was ended (every ending bumps the epoch)."""
        return await self._for_epoch(f"family:{family}", _Stamped[bool], partial(self.users.is_family_revoked, family))

    async def user(self, user_id: int) -> UserRecord | None:
        """A user record through the store, valid for the current epoch."""
        return await self._for_epoch(
            f"user:{user_id}", _Stamped[UserRecord | None], partial(self.users.get_user, user_id)
        )

    async def _for_epoch(self, key: str, kind: type[_Stamped[T]], ask: Callable[[], T]) -> T:
        """The database's answer to ``ask`` (run in a worker thread), remembered in the store for the
        current epoch."""
        epoch = await self.current_epoch()
        if epoch is not None:
            raw = await self._get(key)
            try:
                cached = msgspec.msgpack.decode(raw, type=kind) if raw is not None else None
            except msgspec.DecodeError:
                cached = None
            if cached is not None and cached.epoch == epoch:
                return cached.value
        value = await anyio.to_thread.run_sync(ask)
        if epoch is not None:
            await self._write(key, msgspec.msgpack.encode(_Stamped(epoch, value)))
        return value

    async def authenticate(self, header: str, address: str) -> Principal:
        """Basic or Bearer, by the header's scheme."""
        if len(header) > MAX_HEADER_LENGTH:
            raise AuthenticationError("the Authorization header is too long")
        if header.strip().lower().startswith("bearer "):
            return await self.bearer(header)
        return await self.basic(header, address)
