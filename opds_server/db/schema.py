"""The tables, as SQLAlchemy 2 declarative models named after their rows."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in and out; SQLite keeps none of the zone, so it is put back on reading."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            msg = "naive datetimes are not stored; pass an aware one"
            raise ValueError(msg)
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    name_key: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    kosync_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    """argon2 of md5(password): what KOReader's sync plugin sends (spec A.10); never a bare md5."""
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class CredentialEpoch(Base):
    """One row counting credential changes: bumped in the transaction of every change that must end
    cached logins (password, disabled or deleted user, revoked app password, token family or Kobo
    device), so a cache stamped with it can never outlive the change, wherever the cache lives."""

    __tablename__ = "credential_epoch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class AppPassword(Base):
    __tablename__ = "app_passwords"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(255))
    kosync_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    scopes: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Favourite(Base):
    __tablename__ = "favourites"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    book_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Shelf(Base):
    __tablename__ = "shelves"
    __table_args__ = (UniqueConstraint("user_id", "name_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    name_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ShelfBook(Base):
    __tablename__ = "shelf_books"
    __table_args__ = (Index("ix_shelf_books_order", "shelf_id", "position", "book_id"),)

    shelf_id: Mapped[int] = mapped_column(ForeignKey("shelves.id", ondelete="CASCADE"), primary_key=True)
    book_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ReadingProgress(Base):
    __tablename__ = "reading_progress"
    __table_args__ = (Index("ix_reading_progress_user_updated", "user_id", "updated_at"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    book_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    percentage: Mapped[float] = mapped_column(Float)
    locator: Mapped[str | None] = mapped_column(Text, nullable=True)
    is_finished: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class KoboDevice(Base):
    """A Kobo registered to a user; the token in its URL is its only credential (kept hashed)."""

    __tablename__ = "kobo_devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    sync_key: Mapped[str] = mapped_column(String(64))
    access_token: Mapped[str] = mapped_column(String(64), index=True)
    shelves_only: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class KoboDeviceShelf(Base):
    """A shelf chosen to sync to a device in "only these shelves" mode."""

    __tablename__ = "kobo_device_shelves"

    device_id: Mapped[int] = mapped_column(ForeignKey("kobo_devices.id", ondelete="CASCADE"), primary_key=True)
    shelf_id: Mapped[int] = mapped_column(ForeignKey("shelves.id", ondelete="CASCADE"), primary_key=True)


class KoboSnapshot(Base):
    """What a device should have at the start of a sync session (``sync.kobo.snapshot``)."""

    __tablename__ = "kobo_snapshots"
    __table_args__ = (Index("ix_kobo_snapshots_device", "device_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("kobo_devices.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    stamp: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)


class KoboTombstone(Base):
    """A book the device deleted itself; not sent again while its version stays the same."""

    __tablename__ = "kobo_tombstones"

    device_id: Mapped[int] = mapped_column(ForeignKey("kobo_devices.id", ondelete="CASCADE"), primary_key=True)
    book_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    removed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class KoboReadingState(Base):
    """A reader's Kobo reading state of a book, parts kept as the device's JSON (spec 8.1)."""

    __tablename__ = "kobo_reading_states"
    __table_args__ = (Index("ix_kobo_reading_states_received", "user_id", "received_at"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    book_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_modified: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    bookmark: Mapped[str | None] = mapped_column(Text, nullable=True)
    statistics: Mapped[str | None] = mapped_column(Text, nullable=True)
    status_info: Mapped[str | None] = mapped_column(Text, nullable=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    origin_device: Mapped[int] = mapped_column(Integer)


class DocumentKey(Base):
    """A KOReader document key of a byte stream we serve for a book (shared/specs/koreader-sync.md C.1).

    ``variant`` says which stream: ``file`` the library's own file of ``format``, ``kepub`` the
    KEPUB we made of its EPUB, ``filename`` the MD5 of the name KOReader's OPDS browser gives a
    download (``file_size`` and ``file_mtime_ns`` then describe the library file it names).
    """

    __tablename__ = "document_keys"
    __table_args__ = (Index("ix_document_keys_book", "book_id"),)

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    book_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    format: Mapped[str] = mapped_column(String(16), primary_key=True)
    variant: Mapped[str] = mapped_column(String(16), primary_key=True)
    file_size: Mapped[int] = mapped_column(BigInteger)
    file_mtime_ns: Mapped[int] = mapped_column(BigInteger)
    indexed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class KosyncProgress(Base):
    """A KOReader position as the sync plugin pushed it, per reader and document key (spec A.11).

    Kept for documents we cannot match too (KOReader to KOReader sync of sideloaded books);
    ``book_id`` links it to the library once a key or the metadata matches.
    """

    __tablename__ = "kosync_progress"
    __table_args__ = (Index("ix_kosync_progress_book", "user_id", "book_id"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    document: Mapped[str] = mapped_column(String(128), primary_key=True)
    progress: Mapped[str] = mapped_column(Text)
    percentage: Mapped[float] = mapped_column(Float)
    device: Mapped[str] = mapped_column(Text)
    device_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    book_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metadata_json: Mapped[str | None] = mapped_column(Text, nullable=True)
