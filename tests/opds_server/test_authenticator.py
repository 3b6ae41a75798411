"""The authenticator on every database and store: argon2 once per credential, changes at once,
app passwords, tokens, rate limits and malformed headers."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine

from opds_server.accounts import Accounts
from opds_server.auth.epoch import FileEpoch, StoreEpoch
from opds_server.auth.passwords import Passwords
from opds_server.auth.principal import Scope
from opds_server.auth.service import (
    ACCOUNT_FAILURE_LIMIT,
    AuthenticationError,
    Authenticator,
    RateLimitedError,
)
from opds_server.auth.tokens import Tokens
from opds_server.cache.store import MemoryStore, Store
from opds_server.db.users import UserStore

pytestmark = pytest.mark.anyio
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
SECRET = b"a test secret of at least thirty-two bytes"
FAST = Passwords(PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


def make_authenticator(engine: Engine, store: Store, tmp_path: Path) -> Authenticator:
    epoch = FileEpoch(tmp_path / "epoch") if isinstance(store, MemoryStore) else StoreEpoch(store)
    return Authenticator(
        users=UserStore(engine),
        passwords=FAST,
        tokens=Tokens(SECRET),
        store=store,
        epoch=epoch,
        secret=SECRET,
        clock=lambda: NOW,
    )


@pytest.fixture
def accounts(engine: Engine) -> Accounts:
    made = Accounts(UserStore(engine), FAST)
    made.add_user("ada", "correct horse", is_admin=False)
    return made


async def test_argon2_runs_once_per_credential(
    accounts: Accounts, engine: Engine, store: Store, tmp_path: Path
) -> None:
    auth = make_authenticator(engine, store, tmp_path)
    for _ in range(5):
        principal = await auth.basic(basic("ada", "correct horse"), "10.0.0.1")
        assert principal.name == "ada"
    await auth.basic(basic("ADA", "correct horse"), "10.0.0.2")  # names compare without case: same credential
    assert auth.argon2_checks == 1
    await make_authenticator(engine, store, tmp_path).basic(basic("ada", "correct horse"), "10.0.0.1")
    assert auth.argon2_checks == 1  # another instance sharing the store (and epoch) pays nothing either


async def test_a_password_change_locks_the_old_one_out_at_once(
    accounts: Accounts, engine: Engine, store: Store, tmp_path: Path
) -> None:
    auth = make_authenticator(engine, store, tmp_path)
    await auth.basic(basic("ada", "correct horse"), "10.0.0.1")
    accounts.set_password("ada", "battery staple")
    await auth.changed()
    with pytest.raises(AuthenticationError):
        await auth.basic(basic("ada", "correct horse"), "10.0.0.1")
    assert (await auth.basic(basic("ada", "battery staple"), "10.0.0.1")).name == "ada"


async def test_unknown_user_and_wrong_password_fail_alike(
    accounts: Accounts, engine: Engine, store: Store, tmp_path: Path
) -> None:
    auth = make_authenticator(engine, store, tmp_path)
    messages = []
    for name, password in (("nobody", "x"), ("ada", "wrong")):
        with pytest.raises(AuthenticationError) as caught:
            await auth.basic(basic(name, password), "10.0.0.2")
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert auth.argon2_checks == 2  # the unknown user costs one verification too


async def test_failures_are_rate_limited_per_account_for_known_and_unknown_names(
    accounts: Accounts, engine: Engine, store: Store, tmp_path: Path
) -> None:
    auth = make_authenticator(engine, store, tmp_path)
    for name in ("ada", "nobody"):
        for attempt in range(ACCOUNT_FAILURE_LIMIT):
            with pytest.raises(AuthenticationError):
                await auth.basic(basic(name, f"wrong {attempt}"), f"10.1.0.{attempt}")
        with pytest.raises(RateLimitedError):
            await auth.basic(basic(name, "correct horse"), "10.2.0.1")


async def test_app_passwords_are_scoped_and_revocable(
    accounts: Accounts, engine: Engine, store: Store, tmp_path: Path
) -> None:
    auth = make_authenticator(engine, store, tmp_path)
    record, secret = accounts.create_app_password("ada", "KOReader", (Scope.CATALOG,))
    principal = await auth.basic(basic("ada", secret), "10.0.0.1")
    assert (principal.scopes, principal.app_password_id) == (frozenset({Scope.CATALOG}), record.id)
    assert accounts.revoke_app_password("ada", record.id)
    await auth.changed()
    with pytest.raises(AuthenticationError):
        await auth.basic(basic("ada", secret), "10.0.0.1")


async def test_an_app_password_works_only_with_its_own_user(
    accounts: Accounts, engine: Engine, store: Store, tmp_path: Path
) -> None:
    accounts.add_user("bob", "bobs password", is_admin=False)
    _, secret = accounts.create_app_password("ada", "Kobo browser")
    with pytest.raises(AuthenticationError):
        await make_authenticator(engine, store, tmp_path).basic(basic("bob", secret), "10.0.0.1")


async def test_disabled_users_cannot_log_in(accounts: Accounts, engine: Engine, store: Store, tmp_path: Path) -> None:
    auth = make_authenticator(engine, store, tmp_path)
    await auth.basic(basic("ada", "correct horse"), "10.0.0.1")
    accounts.set_disabled("ada", is_disabled=True)
    await auth.changed()
    with pytest.raises(AuthenticationError):
        await auth.basic(basic("ada", "correct horse"), "10.0.0.1")


async def test_access_tokens_die_with_a_password_change(
    accounts: Accounts, engine: Engine, store: Store, tmp_path: Path
) -> None:
    auth = make_authenticator(engine, store, tmp_path)
    ada = accounts.user("ada")
    pair, _ = auth.tokens.issue(ada.id, ada.token_version, now=NOW)
    assert (await auth.bearer(f"Bearer {pair.access_token}")).name == "ada"
    accounts.set_password("ada", "battery staple")
    await auth.changed()
    with pytest.raises(AuthenticationError, match="revoked"):
        await auth.bearer(f"Bearer {pair.access_token}")


@pytest.mark.parametrize(
    "header",
    [
        "Basic",
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"x" * 100 + b":pw").decode(),
        "Digest username=ada",
        "Bearer ",
        "Bearer not.a.jwt",
        "Bearer " + "a" * 5000,
        "Basic " + "A" * 10_000,
    ],
)
async def test_malformed_headers_are_authentication_errors(
    accounts: Accounts, engine: Engine, store: Store, tmp_path: Path, header: str
) -> None:
    with pytest.raises(AuthenticationError):
        await make_authenticator(engine, store, tmp_path).authenticate(header, "10.0.0.1")


async def test_login_is_required_only_once_a_user_exists(engine: Engine, store: Store, tmp_path: Path) -> None:
    auth = make_authenticator(engine, store, tmp_path)
    assert not await auth.is_required()
    Accounts(UserStore(engine), FAST).add_user("ada", "correct horse", is_admin=False)
    await auth.changed()
    assert await auth.is_required()


async def test_a_hash_made_with_weaker_parameters_is_replaced_on_login(
    engine: Engine, store: Store, tmp_path: Path
) -> None:
    weak = Passwords(PasswordHasher(time_cost=1, memory_cost=32, parallelism=1))
    users = UserStore(engine)
    ada = Accounts(users, weak).add_user("ada", "correct horse", is_admin=False)
    old_hash = users.read_password_hash(ada.id)
    await make_authenticator(engine, store, tmp_path).basic(basic("ada", "correct horse"), "10.0.0.1")
    new_hash = users.read_password_hash(ada.id)
    assert new_hash != old_hash
    assert new_hash is not None
    assert not FAST.needs_rehash(new_hash)
