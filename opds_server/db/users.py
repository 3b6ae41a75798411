"""Accounts and credentials: users, app passwords and refresh tokens.

Password hashes never leave this module except to the one caller that verifies them
(``read_password_hash``, ``read_app_password``). Every change to a credential bumps the user's
``token_version``, which access tokens carry, so old tokens die with the old password.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from enum import StrEnum

import msgspec
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opds_server.db.schema import AppPassword, CredentialEpoch, RefreshToken, User

MAX_NAME_LENGTH = 64


class InvalidNameError(ValueError):
    """A user or label name we cannot accept."""


class UserExistsError(ValueError):
    """A user with that name exists already (names compare without case)."""


class UserRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    is_admin: bool
    is_disabled: bool
    token_version: int
    created_at: dt.datetime


class AppPasswordRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    user_id: int
    label: str
    scopes: tuple[str, ...]
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    has_kosync_hash: bool = False


class RefreshOutcome(StrEnum):
    USED = "used"
    REUSED = "reused"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


class RefreshUse(msgspec.Struct, frozen=True, kw_only=True):
    outcome: RefreshOutcome
    user_id: int | None = None
    family: str | None = None


def check_name(name: str) -> str:
    """A user name as stored: trimmed; 1-64 characters, no colon (HTTP Basic splits on it), no controls.

    Raises:
        InvalidNameError: the name breaks one of those rules; the message says which.
    """
    cleaned = unicodedata.normalize("NFC", name.strip())
    if not cleaned:
        raise InvalidNameError("a user name cannot be empty")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"a user name has at most {MAX_NAME_LENGTH} characters; {cleaned[:20]!r}... has {len(cleaned)}"
        )
    if ":" in cleaned or any(unicodedata.category(c).startswith("C") for c in cleaned):
        raise InvalidNameError(f"{cleaned!r}: a user name cannot hold ':' or control characters")
    return cleaned


def name_key(name: str) -> str:
    return unicodedata.normalize("NFC", name.strip()).casefold()


def bump_credential_epoch(session: Session) -> None:
    """Count a credential change, in the caller's transaction (see ``CredentialEpoch``)."""
    bumped = session.execute(
        update(CredentialEpoch).where(CredentialEpoch.id == 1).values(value=CredentialEpoch.value + 1)
    )
    if not bumped.rowcount:  # type: ignore[attr-defined]  # the row was deleted by hand: start again
        session.add(CredentialEpoch(id=1, value=1))


def read_credential_epoch(engine: Engine) -> int:
    """How many credential changes the database has seen."""
    with Session(engine) as session:
        return int(session.scalar(select(CredentialEpoch.value).where(CredentialEpoch.id == 1)) or 0)


def _user(row: User) -> UserRecord:
    return UserRecord(
        id=row.id,
        name=row.name,
        is_admin=row.is_admin,
        is_disabled=row.is_disabled,
        token_version=row.token_version,
        created_at=row.created_at,
    )


def _app_password(row: AppPassword) -> AppPasswordRecord:
    return AppPasswordRecord(
        id=row.id,
        user_id=row.user_id,
        label=row.label,
        scopes=tuple(s for s in row.scopes.split(",") if s),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        has_kosync_hash=row.kosync_hash is not None,
    )


class UserStore:
    """Users and their credentials, on SQLite or Postgres."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_user(self, name: str, password_hash: str, *, is_admin: bool, now: dt.datetime) -> UserRecord:
        """Raises: InvalidNameError, UserExistsError."""
        cleaned = check_name(name)
        row = User(
            name=cleaned,
            name_key=name_key(cleaned),
            password_hash=password_hash,
            is_admin=is_admin,
            is_disabled=False,
            token_version=0,
            created_at=now,
            updated_at=now,
        )
        try:
            with Session(self.engine) as session, session.begin():
                session.add(row)
                session.flush()
                bump_credential_epoch(session)  # the first user switches logins on
                return _user(row)
        except IntegrityError as exc:
            raise UserExistsError(f"a user named {cleaned!r} exists already") from exc

    def find_user(self, name: str) -> UserRecord | None:
        with Session(self.engine) as session:
            row = session.scalar(select(User).where(User.name_key == name_key(name)))
            return _user(row) if row else None

    def get_user(self, user_id: int) -> UserRecord | None:
        with Session(self.engine) as session:
            row = session.get(User, user_id)
            return _user(row) if row else None

    def list_users(self) -> list[UserRecord]:
        with Session(self.engine) as session:
            return [_user(row) for row in session.scalars(select(User).order_by(User.name_key))]

    def count_users(self) -> int:
        with Session(self.engine) as session:
            return int(session.scalar(select(func.count()).select_from(User)) or 0)

    def read_password_hash(self, user_id: int) -> str | None:
        with Session(self.engine) as session:
            return session.scalar(select(User.password_hash).where(User.id == user_id))

    def _bump(self, user_id: int, now: dt.datetime, *, revoke_tokens: bool, **values: object) -> bool:
        """Change the user's row and their token version, and with ``revoke_tokens`` end their
        refresh tokens, in one transaction: a crash leaves all of it done or none."""
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                update(User)
                .where(User.id == user_id)
                .values(token_version=User.token_version + 1, updated_at=now, **values)
            )
            if revoke_tokens:
                _revoke_user_tokens(session, user_id, now)
            bump_credential_epoch(session)
            return bool(result.rowcount)  # type: ignore[attr-defined]  # CursorResult of an UPDATE

    def set_password_hash(
        self, user_id: int, password_hash: str, *, now: dt.datetime, kosync_hash: str | None = None
    ) -> bool:
        """New password: its hash (and its KOReader hash), and every token issued before it stops working."""
        return self._bump(user_id, now, revoke_tokens=True, password_hash=password_hash, kosync_hash=kosync_hash)

    def read_kosync_hash(self, user_id: int) -> str | None:
        with Session(self.engine) as session:
            return session.scalar(select(User.kosync_hash).where(User.id == user_id))

    def set_kosync_hash(self, user_id: int, kosync_hash: str) -> None:
        """The KOReader hash of the current password (no token is revoked: the password is the same)."""
        with Session(self.engine) as session, session.begin():
            session.execute(update(User).where(User.id == user_id).values(kosync_hash=kosync_hash))

    def rehash_password(self, user_id: int, old_hash: str, new_hash: str) -> None:
        """Store a stronger hash of the same password (argon2 parameters changed); tokens stay valid."""
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(User).where(User.id == user_id, User.password_hash == old_hash).values(password_hash=new_hash)
            )

    def set_disabled(self, user_id: int, *, is_disabled: bool, now: dt.datetime) -> bool:
        return self._bump(user_id, now, revoke_tokens=is_disabled, is_disabled=is_disabled)

    def delete_user(self, user_id: int) -> bool:
        with Session(self.engine) as session, session.begin():
            result = session.execute(delete(User).where(User.id == user_id))
            bump_credential_epoch(session)
            return bool(result.rowcount)  # type: ignore[attr-defined]

    # App passwords

    def create_app_password(
        self, user_id: int, label: str, secret_hash: str, scopes: tuple[str, ...], *, now: dt.datetime
    ) -> AppPasswordRecord:
        cleaned = label.strip()
        if not cleaned or len(cleaned) > 100 or any(unicodedata.category(c).startswith("C") for c in cleaned):
            raise InvalidNameError("an app password's label has 1 to 100 printable characters")
        row = AppPassword(
            user_id=user_id, label=cleaned, secret_hash=secret_hash, scopes=",".join(scopes), created_at=now
        )
        with Session(self.engine) as session, session.begin():
            session.add(row)
            session.flush()
            return _app_password(row)

    def set_app_password_hash(self, password_id: int, secret_hash: str, *, kosync_hash: str | None = None) -> None:
        values = {"secret_hash": secret_hash} | ({"kosync_hash": kosync_hash} if kosync_hash else {})
        with Session(self.engine) as session, session.begin():
            session.execute(update(AppPassword).where(AppPassword.id == password_id).values(**values))

    def set_app_password_kosync_hash(self, password_id: int, kosync_hash: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(update(AppPassword).where(AppPassword.id == password_id).values(kosync_hash=kosync_hash))

    def app_password_kosync_hashes(self, user_id: int) -> list[tuple[AppPasswordRecord, str]]:
        """The user's live app passwords that have a KOReader hash, newest first."""
        with Session(self.engine) as session:
            rows = session.scalars(
                select(AppPassword)
                .where(
                    AppPassword.user_id == user_id,
                    AppPassword.revoked_at.is_(None),
                    AppPassword.kosync_hash.is_not(None),
                )
                .order_by(AppPassword.id.desc())
            )
            return [(_app_password(row), str(row.kosync_hash)) for row in rows]

    def read_app_password(self, password_id: int) -> tuple[AppPasswordRecord, str] | None:
        with Session(self.engine) as session:
            row = session.get(AppPassword, password_id)
            return (_app_password(row), row.secret_hash) if row else None

    def list_app_passwords(self, user_id: int) -> list[AppPasswordRecord]:
        with Session(self.engine) as session:
            rows = session.scalars(select(AppPassword).where(AppPassword.user_id == user_id).order_by(AppPassword.id))
            return [_app_password(row) for row in rows]

    def revoke_app_password(self, user_id: int, password_id: int, *, now: dt.datetime) -> bool:
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                update(AppPassword)
                .where(AppPassword.id == password_id, AppPassword.user_id == user_id, AppPassword.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            bump_credential_epoch(session)
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def touch_app_password(self, password_id: int, *, now: dt.datetime) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(update(AppPassword).where(AppPassword.id == password_id).values(last_used_at=now))

    # Refresh tokens

    def add_refresh_token(
        self, token_id: str, user_id: int, family: str, *, now: dt.datetime, expires_at: dt.datetime
    ) -> None:
        with Session(self.engine) as session, session.begin():
            session.add(
                RefreshToken(id=token_id, user_id=user_id, family=family, created_at=now, expires_at=expires_at)
            )

    def use_refresh_token(self, token_id: str, *, now: dt.datetime) -> RefreshUse:
        """Spend a refresh token once. A second use is reported as reuse (the caller revokes the family)."""
        with Session(self.engine) as session, session.begin():
            spent = session.execute(
                update(RefreshToken)
                .where(
                    RefreshToken.id == token_id,
                    RefreshToken.used_at.is_(None),
                    RefreshToken.revoked_at.is_(None),
                    RefreshToken.expires_at > now,
                )
                .values(used_at=now)
            )
            row = session.get(RefreshToken, token_id)
            if row is None:
                return RefreshUse(outcome=RefreshOutcome.UNKNOWN)
            if spent.rowcount == 1:  # type: ignore[attr-defined]
                return RefreshUse(outcome=RefreshOutcome.USED, user_id=row.user_id, family=row.family)
            expired = row.expires_at <= now
            outcome = RefreshOutcome.EXPIRED if expired and row.used_at is None else RefreshOutcome.REUSED
            return RefreshUse(outcome=outcome, user_id=row.user_id, family=row.family)

    def revoke_family(self, family: str, *, now: dt.datetime) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(RefreshToken)
                .where(RefreshToken.family == family, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            bump_credential_epoch(session)

    def end_session(self, family: str, user_id: int, *, expires_at: dt.datetime, now: dt.datetime) -> None:
        """A browser session's logout, kept as an ended token family (sessions have no refresh token)."""
        with Session(self.engine) as session, session.begin():
            token_id = f"session:{family}"
            if session.get(RefreshToken, token_id) is None:
                session.add(
                    RefreshToken(
                        id=token_id,
                        user_id=user_id,
                        family=family,
                        created_at=now,
                        expires_at=expires_at,
                        used_at=now,
                        revoked_at=now,
                    )
                )
            bump_credential_epoch(session)

    def is_family_revoked(self, family: str) -> bool:
        """Whether a login's token family (or a browser session) was ended."""
        with Session(self.engine) as session:
            found = session.scalar(
                select(RefreshToken.id)
                .where(RefreshToken.family == family, RefreshToken.revoked_at.is_not(None))
                .limit(1)
            )
            return found is not None

    def revoke_user_tokens(self, user_id: int, *, now: dt.datetime) -> None:
        with Session(self.engine) as session, session.begin():
            _revoke_user_tokens(session, user_id, now)
            bump_credential_epoch(session)


def _revoke_user_tokens(session: Session, user_id: int, now: dt.datetime) -> None:
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
