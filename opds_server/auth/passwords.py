"""argon2id password hashing, with rehashing when the parameters change.

Verification of an unknown user still spends one argon2 verification on a fixed dummy hash, so
the answer and its timing do not tell an unknown name from a wrong password.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MAX_PASSWORD_LENGTH = 1024


def kosync_key(password: str) -> str:
    """What KOReader sends for a password: its md5 as lowercase hex."""
    return hashlib.md5(password.encode(), usedforsecurity=False).hexdigest()


class PasswordPolicyError(ValueError):
    """A password we refuse to set."""


class Passwords:
    """Hash and verify passwords with one set of argon2id parameters."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        """Raises: PasswordPolicyError for an empty or absurdly long password."""
        if not password:
            raise PasswordPolicyError("a password cannot be empty")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise PasswordPolicyError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
        return self._hasher.hash(password)

    def hash_kosync_key(self, key: str) -> str:
        """The kept hash of a key KOReader sent (a registration through the plugin)."""
        return self._hasher.hash(key.lower())

    def kosync_hash(self, password: str) -> str:
        """The hash kept for KOReader's sync plugin, which sends md5(password) as ``x-auth-key``
        (spec A.10): argon2 of that md5, so what is stored is never a bare md5."""
        return self._hasher.hash(kosync_key(password))

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored``; ``None`` (no such user) costs the same and fails."""
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)
