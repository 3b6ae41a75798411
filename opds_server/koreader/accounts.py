"""Users registered through KOReader's sync plugin (``POST /kosync/users/create``, when allowed).

The plugin sends only md5 of the password, so such a user has no password for Basic or the API
until they set one (``opds-server users passwd``); their KOReader key works at once.
"""

from __future__ import annotations

import datetime as dt
import secrets

from opds_server.auth.passwords import Passwords
from opds_server.db.users import UserStore


class KosyncAccounts:
    def __init__(self, users: UserStore, passwords: Passwords) -> None:
        self.users = users
        self.passwords = passwords

    def register(self, name: str, key: str) -> None:
        """Raises: UserExistsError, InvalidNameError (as ``UserStore.create_user``)."""
        unusable = self.passwords.hash(secrets.token_urlsafe(32))  # no Basic login until one is set
        user = self.users.create_user(name, unusable, is_admin=False, now=dt.datetime.now(tz=dt.UTC))
        self.users.set_kosync_hash(user.id, self.passwords.hash_kosync_key(key))
