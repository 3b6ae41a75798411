"""Kobo devices, their sync snapshots and tombstones, and Kobo reading states.

Everything is keyed by device except reading states, which belong to the reader and are shared by
all their devices (spec 11). A device's token is kept only as a SHA-256 hash: it is 128 random
bits, so no slow hash is needed to make it unguessable, and a lookup is one indexed equality.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import msgspec
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from opds_server.db.schema import (
    KoboDevice,
    KoboDeviceShelf,
    KoboReadingState,
    KoboSnapshot,
    KoboTombstone,
    ReadingProgress,
    Shelf,
    ShelfBook,
    User,
)
from opds_server.db.users import bump_credential_epoch
from sync.kobo.model import Bookmark, Statistics, StatusInfo
from sync.kobo.state import OtherProgress, StoredState

KOBO_DEVICE_KIND = "kobo"
"""``reading_progress.device_kind`` of what Kobos report."""


class DeviceRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    user_id: int
    user_name: str
    label: str
    sync_key: str
    access_token: str
    shelves_only: bool
    created_at: dt.datetime
    last_seen_at: dt.datetime | None
    revoked_at: dt.datetime | None


class SnapshotRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    stamp: str
    body: bytes
    completed: bool


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _device(row: KoboDevice, user_name: str) -> DeviceRecord:
    return DeviceRecord(
        id=row.id,
        user_id=row.user_id,
        user_name=user_name,
        label=row.label,
        sync_key=row.sync_key,
        access_token=row.access_token,
        shelves_only=row.shelves_only,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        revoked_at=row.revoked_at,
    )


_BOOKMARK = msgspec.json.Decoder(Bookmark)
_STATISTICS = msgspec.json.Decoder(Statistics)
_STATUS = msgspec.json.Decoder(StatusInfo)


def _json(part: msgspec.Struct | None) -> str | None:
    return msgspec.json.encode(part).decode() if part is not None else None


def _state(row: KoboReadingState) -> StoredState:
    return StoredState(
        book_id=row.book_id,
        created=row.created_at,
        last_modified=row.last_modified,
        bookmark=_BOOKMARK.decode(row.bookmark) if row.bookmark else None,
        statistics=_STATISTICS.decode(row.statistics) if row.statistics else None,
        status_info=_STATUS.decode(row.status_info) if row.status_info else None,
        received_at=row.received_at,
        origin_device=row.origin_device,
    )


class KoboStore:
    """The Kobo tables."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _insert(self, table: type[object]) -> object:
        return (postgres_insert if self.engine.dialect.name == "postgresql" else sqlite_insert)(table)

    # Devices

    def add_device(
        self, user_id: int, label: str, *, token: str, sync_key: str, access_token: str, now: dt.datetime
    ) -> DeviceRecord:
        with Session(self.engine) as session, session.begin():
            row = KoboDevice(
                user_id=user_id,
                label=label,
                token_hash=token_hash(token),
                sync_key=sync_key,
                access_token=access_token,
                shelves_only=False,
                created_at=now,
            )
            session.add(row)
            session.flush()
            name = session.scalar(select(User.name).where(User.id == user_id)) or ""
            return _device(row, name)

    def devices(self, user_id: int) -> list[DeviceRecord]:
        """The user's devices, revoked ones too, oldest first."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(KoboDevice, User.name)
                .join(User, User.id == KoboDevice.user_id)
                .where(KoboDevice.user_id == user_id)
                .order_by(KoboDevice.id)
            )
            return [_device(device, name) for device, name in rows]

    def device(self, user_id: int, device_id: int) -> DeviceRecord | None:
        return next((d for d in self.devices(user_id) if d.id == device_id), None)

    def device_by_token(self, token: str) -> DeviceRecord | None:
        """The live device this token belongs to: ``None`` when unknown, revoked, or its user is
        disabled."""
        with Session(self.engine) as session:
            found = session.execute(
                select(KoboDevice, User.name)
                .join(User, User.id == KoboDevice.user_id)
                .where(
                    KoboDevice.token_hash == token_hash(token),
                    KoboDevice.revoked_at.is_(None),
                    User.is_disabled.is_(False),
                )
            ).first()
            return _device(found[0], found[1]) if found else None

    def device_by_access_token(self, access_token: str) -> DeviceRecord | None:
        with Session(self.engine) as session:
            found = session.execute(
                select(KoboDevice, User.name)
                .join(User, User.id == KoboDevice.user_id)
                .where(KoboDevice.access_token == access_token, KoboDevice.revoked_at.is_(None))
            ).first()
            return _device(found[0], found[1]) if found else None

    def revoke_device(self, user_id: int, device_id: int, *, now: dt.datetime) -> bool:
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                update(KoboDevice)
                .where(KoboDevice.id == device_id, KoboDevice.user_id == user_id, KoboDevice.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            session.execute(delete(KoboSnapshot).where(KoboSnapshot.device_id == device_id))
            bump_credential_epoch(session)
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def touch(self, device_id: int, *, now: dt.datetime) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(update(KoboDevice).where(KoboDevice.id == device_id).values(last_seen_at=now))

    def set_shelves(self, user_id: int, device_id: int, *, shelves_only: bool, shelf_ids: list[int]) -> bool:
        """Choose what a device syncs: the whole library, or only the given shelves of its user.

        Returns ``False`` when the device is not the user's; shelf ids not the user's are ignored.
        """
        with Session(self.engine) as session, session.begin():
            owned = session.scalar(
                select(KoboDevice.id).where(KoboDevice.id == device_id, KoboDevice.user_id == user_id)
            )
            if owned is None:
                return False
            session.execute(update(KoboDevice).where(KoboDevice.id == device_id).values(shelves_only=shelves_only))
            session.execute(delete(KoboDeviceShelf).where(KoboDeviceShelf.device_id == device_id))
            mine = session.scalars(select(Shelf.id).where(Shelf.user_id == user_id, Shelf.id.in_(shelf_ids))).all()
            session.add_all(KoboDeviceShelf(device_id=device_id, shelf_id=shelf) for shelf in sorted(set(mine)))
            return True

    def add_device_shelf(self, device_id: int, shelf_id: int) -> None:
        statement = self._insert(KoboDeviceShelf).values(device_id=device_id, shelf_id=shelf_id)  # type: ignore[attr-defined]
        with Session(self.engine) as session, session.begin():
            session.execute(statement.on_conflict_do_nothing())

    def device_shelves(self, device_id: int) -> list[int]:
        with Session(self.engine) as session:
            return list(
                session.scalars(
                    select(KoboDeviceShelf.shelf_id)
                    .where(KoboDeviceShelf.device_id == device_id)
                    .order_by(KoboDeviceShelf.shelf_id)
                )
            )

    def forget_sync(self, device_id: int) -> None:
        """Make the next sync a full one: snapshots and tombstones go."""
        with Session(self.engine) as session, session.begin():
            session.execute(delete(KoboSnapshot).where(KoboSnapshot.device_id == device_id))
            session.execute(delete(KoboTombstone).where(KoboTombstone.device_id == device_id))

    # Snapshots

    def save_snapshot(self, device_id: int, *, stamp: str, body: bytes, now: dt.datetime) -> int:
        with Session(self.engine) as session, session.begin():
            row = KoboSnapshot(device_id=device_id, created_at=now, stamp=stamp, body=body)
            session.add(row)
            session.flush()
            return row.id

    def snapshot(self, device_id: int, snapshot_id: int) -> SnapshotRecord | None:
        with Session(self.engine) as session:
            row = session.scalar(
                select(KoboSnapshot).where(KoboSnapshot.id == snapshot_id, KoboSnapshot.device_id == device_id)
            )
            if row is None:
                return None
            return SnapshotRecord(id=row.id, stamp=row.stamp, body=row.body, completed=row.completed_at is not None)

    def snapshot_stamp(self, device_id: int, snapshot_id: int) -> str | None:
        with Session(self.engine) as session:
            found: str | None = session.scalar(
                select(KoboSnapshot.stamp).where(KoboSnapshot.id == snapshot_id, KoboSnapshot.device_id == device_id)
            )
            return found

    def complete_snapshot(self, device_id: int, snapshot_id: int, *, previous: int | None, now: dt.datetime) -> None:
        """Mark a session's snapshot complete and drop older ones, except the one it started from
        (a device whose last response was lost sends that token again)."""
        keep = {snapshot_id} | ({previous} if previous is not None else set())
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(KoboSnapshot)
                .where(KoboSnapshot.id == snapshot_id, KoboSnapshot.completed_at.is_(None))
                .values(completed_at=now)
            )
            session.execute(
                delete(KoboSnapshot).where(
                    KoboSnapshot.device_id == device_id, KoboSnapshot.id < snapshot_id, KoboSnapshot.id.not_in(keep)
                )
            )

    # Tombstones

    def add_tombstone(self, device_id: int, book_id: int, *, version: int, now: dt.datetime) -> None:
        values = {"version": version, "removed_at": now}
        statement = self._insert(KoboTombstone).values(device_id=device_id, book_id=book_id, **values)  # type: ignore[attr-defined]
        with Session(self.engine) as session, session.begin():
            session.execute(statement.on_conflict_do_update(index_elements=["device_id", "book_id"], set_=values))

    def tombstones(self, device_id: int) -> dict[int, int]:
        """Book id -> the version the device deleted."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(KoboTombstone.book_id, KoboTombstone.version).where(KoboTombstone.device_id == device_id)
            )
            return {int(book): int(version) for book, version in rows}

    # Reading states

    def kobo_states(self, user_id: int, book_ids: list[int] | None = None) -> dict[int, StoredState]:
        with Session(self.engine) as session:
            query = select(KoboReadingState).where(KoboReadingState.user_id == user_id)
            if book_ids is not None:
                query = query.where(KoboReadingState.book_id.in_(book_ids))
            return {row.book_id: _state(row) for row in session.scalars(query)}

    def save_kobo_state(self, user_id: int, state: StoredState) -> None:
        values = {
            "created_at": state.created,
            "last_modified": state.last_modified,
            "bookmark": _json(state.bookmark),
            "statistics": _json(state.statistics),
            "status_info": _json(state.status_info),
            "received_at": state.received_at,
            "origin_device": state.origin_device,
        }
        statement = self._insert(KoboReadingState).values(user_id=user_id, book_id=state.book_id, **values)  # type: ignore[attr-defined]
        with Session(self.engine) as session, session.begin():
            session.execute(statement.on_conflict_do_update(index_elements=["user_id", "book_id"], set_=values))

    def other_progress(self, user_id: int, book_ids: list[int] | None = None) -> dict[int, OtherProgress]:
        """Each book's newest position recorded by anything but a Kobo."""
        with Session(self.engine) as session:
            query = select(ReadingProgress).where(
                ReadingProgress.user_id == user_id, ReadingProgress.device_kind != KOBO_DEVICE_KIND
            )
            if book_ids is not None:
                query = query.where(ReadingProgress.book_id.in_(book_ids))
            newest: dict[int, OtherProgress] = {}
            for row in session.scalars(query.order_by(ReadingProgress.updated_at)):
                newest[row.book_id] = OtherProgress(
                    percentage=row.percentage,
                    is_finished=row.is_finished,
                    updated_at=row.updated_at,
                    locator=row.locator,
                )
            return newest

    # What a sync depends on besides the library

    def personal_stamp(self, device: DeviceRecord) -> str:
        """Changes whenever anything a device's snapshot reads from the user database changes:
        reading states, progress, shelves and their books, the device's settings, its tombstones."""
        user_id = device.user_id
        with Session(self.engine) as session:
            parts = [
                session.execute(
                    select(func.count(), func.max(KoboReadingState.received_at)).where(
                        KoboReadingState.user_id == user_id
                    )
                ).one(),
                session.execute(
                    select(func.count(), func.max(ReadingProgress.updated_at)).where(ReadingProgress.user_id == user_id)
                ).one(),
                session.execute(
                    select(func.count(), func.max(Shelf.updated_at), func.sum(Shelf.id)).where(Shelf.user_id == user_id)
                ).one(),
                session.execute(
                    select(func.count(), func.max(ShelfBook.added_at))
                    .join(Shelf, Shelf.id == ShelfBook.shelf_id)
                    .where(Shelf.user_id == user_id)
                ).one(),
                session.execute(
                    select(func.count(), func.max(KoboTombstone.removed_at)).where(KoboTombstone.device_id == device.id)
                ).one(),
                session.execute(
                    select(func.count(), func.sum(KoboDeviceShelf.shelf_id)).where(
                        KoboDeviceShelf.device_id == device.id
                    )
                ).one(),
                (session.scalar(select(KoboDevice.shelves_only).where(KoboDevice.id == device.id)),),
            ]
        text = repr([tuple(str(v) for v in part) for part in parts])
        return hashlib.blake2s(text.encode(), digest_size=12).hexdigest()
