"""The credential epoch and the authenticator when Redis or the database is away: the database's
counter is the authority, Redis only makes changes quick, and logins survive either outage."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import Engine

from opds_server.accounts import Accounts
from opds_server.auth.epoch import CredentialEpoch, FileEpoch, StoreEpoch
from opds_server.auth.service import AuthenticationError, Authenticator
from opds_server.auth.tokens import Tokens
from opds_server.cache.store import RedisStore, Store
from opds_server.db.engine import make_engine
from opds_server.db.users import UserStore, read_credential_epoch
from tests.conftest import free_port
from tests.opds_server.test_authenticator import FAST, NOW, SECRET, accounts, basic

__all__ = ["accounts"]  # the fixture, shared with the authenticator's tests

pytestmark = pytest.mark.anyio
READ_EVERY = 0.2


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def unreachable_redis() -> RedisStore:
    """Nothing listens on this port: every call fails at once, as with Redis killed."""
    return RedisStore(f"redis://127.0.0.1:{free_port()}/0")


def authenticator(engine: Engine, store: Store, tmp_path: Path) -> Authenticator:
    fast = StoreEpoch(store) if isinstance(store, RedisStore) else FileEpoch(tmp_path / "epoch")
    return Authenticator(
        users=UserStore(engine),
        passwords=FAST,
        tokens=Tokens(SECRET),
        store=store,
        epoch=CredentialEpoch(fast, lambda: read_credential_epoch(engine), read_every=READ_EVERY),
        secret=SECRET,
        clock=lambda: NOW,
    )


def test_every_credential_change_counts_in_the_database(accounts: Accounts, engine: Engine) -> None:
    seen = [read_credential_epoch(engine)]

    def changed() -> bool:
        seen.append(read_credential_epoch(engine))
        return seen[-1] > seen[-2]

    accounts.set_password("ada", "battery staple")
    assert changed()
    _, _text = accounts.create_app_password("ada", "kobo")
    record = accounts.users.list_app_passwords(accounts.user("ada").id)[0]
    accounts.revoke_app_password("ada", record.id)
    assert changed()
    accounts.set_disabled("ada", is_disabled=True)
    assert changed()
    accounts.users.revoke_family("some-family", now=NOW)
    assert changed()
    accounts.users.end_session("a-session", accounts.user("ada").id, expires_at=NOW, now=NOW)
    assert changed()
    assert accounts.users.is_family_revoked("a-session")
    assert not accounts.users.is_family_revoked("another-session")
    accounts.delete_user("ada")
    assert changed()


async def test_with_redis_down_logins_work_and_are_cached_in_the_process(
    accounts: Accounts, engine: Engine, tmp_path: Path
) -> None:
    store = unreachable_redis()
    auth = authenticator(engine, store, tmp_path)
    for _ in range(5):
        assert (await auth.basic(basic("ada", "correct horse"), "10.0.0.1")).name == "ada"
    assert auth.argon2_checks == 1  # the in-process tier answered the four others
    with pytest.raises(AuthenticationError):
        await auth.basic(basic("ada", "wrong"), "10.0.0.1")
    await store.close()


async def test_with_redis_down_a_change_made_elsewhere_reaches_this_instance_within_a_read(
    accounts: Accounts, engine: Engine, tmp_path: Path
) -> None:
    store = unreachable_redis()
    here = authenticator(engine, store, tmp_path)
    await here.basic(basic("ada", "correct horse"), "10.0.0.1")
    # Another instance changes the password; its news through Redis is lost, the database counted it.
    accounts.set_password("ada", "battery staple")
    await asyncio.sleep(READ_EVERY * 1.5)
    with pytest.raises(AuthenticationError):
        await here.basic(basic("ada", "correct horse"), "10.0.0.1")
    assert (await here.basic(basic("ada", "battery staple"), "10.0.0.1")).name == "ada"
    await store.close()


async def test_a_change_made_while_redis_was_down_is_not_undone_by_its_stale_cache(
    accounts: Accounts, engine: Engine, store: Store, tmp_path: Path
) -> None:
    """Redis keeps its entries through an outage (a network cut): a change made meanwhile, whose
    bump never reached it, must still end the logins cached there before."""
    auth = authenticator(engine, store, tmp_path)
    await auth.basic(basic("ada", "correct horse"), "10.0.0.1")  # cached in the store, epoch e
    accounts.set_password("ada", "battery staple")  # no bump of the fast part: as if Redis were cut off
    await asyncio.sleep(READ_EVERY * 1.5)
    with pytest.raises(AuthenticationError):
        await auth.basic(basic("ada", "correct horse"), "10.0.0.1")


async def test_with_the_database_down_the_last_counter_stands_and_cached_logins_work(
    accounts: Accounts, engine: Engine, store: Store, tmp_path: Path
) -> None:
    dead = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres")
    reads = {"engine": engine}
    fast = StoreEpoch(store) if isinstance(store, RedisStore) else FileEpoch(tmp_path / "epoch")
    epoch = CredentialEpoch(fast, lambda: read_credential_epoch(reads["engine"]), read_every=0.0)
    auth = Authenticator(
        users=UserStore(engine),
        passwords=FAST,
        tokens=Tokens(SECRET),
        store=store,
        epoch=epoch,
        secret=SECRET,
        clock=lambda: NOW,
    )
    before = await epoch.current()
    await auth.basic(basic("ada", "correct horse"), "10.0.0.1")
    reads["engine"] = dead  # the database goes away
    assert await epoch.current() == before
    assert (await auth.basic(basic("ada", "correct horse"), "10.0.0.1")).name == "ada"
    assert auth.argon2_checks == 1
    dead.dispose()


async def test_a_logged_out_session_stays_out_when_redis_loses_everything(
    accounts: Accounts, engine: Engine, tmp_path: Path
) -> None:
    user = accounts.user("ada")
    tokens = Tokens(SECRET)
    token, _claims = tokens.issue_session(user.id, user.token_version, now=NOW)
    with_redis = RedisStore("redis://127.0.0.1:6379/15", prefix=f"opds-test:{free_port()}:")
    auth = authenticator(engine, with_redis, tmp_path)
    assert (await auth.session(token)).name == "ada"
    await auth.end_session(token)
    with pytest.raises(AuthenticationError):
        await auth.session(token)
    await with_redis.close()
    # Redis is gone: what it remembered too. The database still knows the session ended.
    without = unreachable_redis()
    with pytest.raises(AuthenticationError):
        await authenticator(engine, without, tmp_path).session(token)
    await without.close()
