"""Account administration shared by the CLI (and the API's admin calls): users and app passwords.

Every change bumps the credential epoch, so running servers drop cached credentials at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets

from opds_server.auth.epoch import Epoch, FileEpoch, StoreEpoch
from opds_server.auth.passwords import Passwords
from opds_server.auth.principal import APP_PASSWORD_SCOPES, Scope
from opds_server.cache.store import RedisStore
from opds_server.config import Settings
from opds_server.db.engine import database_url, make_engine, migrate
from opds_server.db.users import AppPasswordRecord, UserRecord, UserStore


class UnknownUserError(LookupError):
    """No user of that name."""


def app_password_text(password_id: int, token: str) -> str:
    """``opds_<id>_<token>``: the id lets the server check one hash instead of all of them."""
    return f"opds_{password_id}_{token}"


class Accounts:
    """Users and app passwords, with the epoch bump that makes changes take effect everywhere."""

    def __init__(self, users: UserStore, passwords: Passwords) -> None:
        self.users = users
        self.passwords = passwords

    @staticmethod
    def now() -> dt.datetime:
        return dt.datetime.now(tz=dt.UTC)

    def user(self, name: str) -> UserRecord:
        found = self.users.find_user(name)
        if found is None:
            raise UnknownUserError(f"no user named {name!r}")
        return found

    def add_user(self, name: str, password: str, *, is_admin: bool) -> UserRecord:
        user = self.users.create_user(name, self.passwords.hash(password), is_admin=is_admin, now=self.now())
        self.users.set_kosync_hash(user.id, self.passwords.kosync_hash(password))
        return user

    def set_password(self, name: str, password: str) -> None:
        self.users.set_password_hash(
            self.user(name).id,
            self.passwords.hash(password),
            now=self.now(),
            kosync_hash=self.passwords.kosync_hash(password),
        )

    def delete_user(self, name: str) -> None:
        self.users.delete_user(self.user(name).id)

    def set_disabled(self, name: str, *, is_disabled: bool) -> None:
        self.users.set_disabled(self.user(name).id, is_disabled=is_disabled, now=self.now())

    def create_app_password(
        self, name: str, label: str, scopes: tuple[Scope, ...] = APP_PASSWORD_SCOPES
    ) -> tuple[AppPasswordRecord, str]:
        """A new app password; the secret is returned once and only its hash is kept."""
        user = self.user(name)
        record = self.users.create_app_password(user.id, label, "", tuple(scopes), now=self.now())
        token = secrets.token_urlsafe(24)
        text = app_password_text(record.id, token)
        self.users.set_app_password_hash(
            record.id, self.passwords.hash(token), kosync_hash=self.passwords.kosync_hash(text)
        )
        return record, text

    def revoke_app_password(self, name: str, password_id: int) -> bool:
        return self.users.revoke_app_password(self.user(name).id, password_id, now=self.now())


def open_accounts(settings: Settings) -> tuple[Accounts, Epoch]:
    """Accounts on the configured database (migrated), and the epoch running servers watch."""
    engine = make_engine(database_url(settings.database_url, settings.data_dir))
    migrate(engine)
    epoch: Epoch = (
        StoreEpoch(RedisStore(settings.redis_url, prefix=settings.redis_prefix))
        if settings.redis_url
        else FileEpoch(settings.data_dir / "auth-epoch")
    )
    return Accounts(UserStore(engine), Passwords()), epoch


def bump(epoch: Epoch) -> None:
    """Tell every running server that credentials changed (synchronously, for the CLI)."""

    async def run() -> None:
        await epoch.bump()
        if isinstance(epoch, StoreEpoch):
            await epoch.store.close()

    asyncio.run(run())
