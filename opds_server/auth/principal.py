"""The authenticated caller, as handlers see it."""

from __future__ import annotations

from enum import StrEnum

import msgspec


class Scope(StrEnum):
    CATALOG = "catalog"
    """Browse feeds, download books and covers."""
    SYNC = "sync"
    """Kobo and KOReader progress sync."""
    ACCOUNT = "account"
    """Manage the account: favourites, shelves, progress, app passwords (main password or token)."""


ALL_SCOPES = frozenset(Scope)
APP_PASSWORD_SCOPES = (Scope.CATALOG, Scope.SYNC)


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """A logged-in user and what this credential lets them do."""

    user_id: int
    name: str
    is_admin: bool
    scopes: frozenset[Scope]
    token_version: int
    app_password_id: int | None = None

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes
