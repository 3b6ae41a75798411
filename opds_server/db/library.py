"""Each reader's own library: favourites, shelves and reading progress.

Book ids are Calibre's; the caller checks that a book exists before adding it, and lists skip
books Calibre has since removed. Concurrent changes to one shelf lose nothing: adding is one
``INSERT`` whose position comes from the same statement, and conflicts are ignored rather than
overwritten.
"""

from __future__ import annotations

import datetime as dt
import unicodedata

import msgspec
from sqlalchemy import Engine, and_, case, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opds_server.db.schema import Favourite, ReadingProgress, Shelf, ShelfBook

MAX_SHELF_NAME = 200
MAX_LOCATOR = 64 * 1024


class ShelfNameError(ValueError):
    """A shelf name that is empty, too long, or already used by this user."""


class ShelfRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    book_count: int
    created_at: dt.datetime
    updated_at: dt.datetime


class ProgressRecord(msgspec.Struct, frozen=True, kw_only=True):
    book_id: int
    device_kind: str
    percentage: float
    locator: str | None
    is_finished: bool
    updated_at: dt.datetime


def _shelf_name(name: str) -> tuple[str, str]:
    cleaned = unicodedata.normalize("NFC", name.strip())
    if not cleaned or len(cleaned) > MAX_SHELF_NAME or any(unicodedata.category(c).startswith("C") for c in cleaned):
        raise ShelfNameError(f"a shelf name has 1 to {MAX_SHELF_NAME} printable characters")
    return cleaned, cleaned.casefold()


class PersonalLibrary:
    """Favourites, shelves and progress of every user."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _insert(self, table: type[object]) -> object:
        return (postgres_insert if self.engine.dialect.name == "postgresql" else sqlite_insert)(table)

    # Favourites

    def add_favourite(self, user_id: int, book_id: int, *, now: dt.datetime) -> None:
        statement = self._insert(Favourite).values(user_id=user_id, book_id=book_id, created_at=now)  # type: ignore[attr-defined]
        with Session(self.engine) as session, session.begin():
            session.execute(statement.on_conflict_do_nothing())

    def remove_favourite(self, user_id: int, book_id: int) -> bool:
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                delete(Favourite).where(Favourite.user_id == user_id, Favourite.book_id == book_id)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def favourites(self, user_id: int) -> list[int]:
        """Book ids, most recently added first."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(Favourite.book_id)
                .where(Favourite.user_id == user_id)
                .order_by(Favourite.created_at.desc(), Favourite.book_id.desc())
            )
            return [row[0] for row in rows]

    # Shelves

    def create_shelf(self, user_id: int, name: str, *, now: dt.datetime) -> ShelfRecord:
        """Raises: ShelfNameError for a bad or duplicate name."""
        cleaned, key = _shelf_name(name)
        row = Shelf(user_id=user_id, name=cleaned, name_key=key, created_at=now, updated_at=now)
        try:
            with Session(self.engine) as session, session.begin():
                session.add(row)
                session.flush()
                return ShelfRecord(id=row.id, name=row.name, book_count=0, created_at=now, updated_at=now)
        except IntegrityError as exc:
            raise ShelfNameError(f"you have a shelf named {cleaned!r} already") from exc

    def rename_shelf(self, user_id: int, shelf_id: int, name: str, *, now: dt.datetime) -> bool:
        cleaned, key = _shelf_name(name)
        try:
            with Session(self.engine) as session, session.begin():
                result = session.execute(
                    update(Shelf)
                    .where(Shelf.id == shelf_id, Shelf.user_id == user_id)
                    .values(name=cleaned, name_key=key, updated_at=now)
                )
                return bool(result.rowcount)  # type: ignore[attr-defined]
        except IntegrityError as exc:
            raise ShelfNameError(f"you have a shelf named {cleaned!r} already") from exc

    def delete_shelf(self, user_id: int, shelf_id: int) -> bool:
        with Session(self.engine) as session, session.begin():
            result = session.execute(delete(Shelf).where(Shelf.id == shelf_id, Shelf.user_id == user_id))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def shelves(self, user_id: int) -> list[ShelfRecord]:
        """The user's shelves by name, with their book counts."""
        with Session(self.engine) as session:
            counts = select(ShelfBook.shelf_id, func.count().label("n")).group_by(ShelfBook.shelf_id).subquery()
            rows = session.execute(
                select(Shelf, func.coalesce(counts.c.n, 0))
                .outerjoin(counts, counts.c.shelf_id == Shelf.id)
                .where(Shelf.user_id == user_id)
                .order_by(Shelf.name_key)
            )
            return [
                ShelfRecord(id=s.id, name=s.name, book_count=int(n), created_at=s.created_at, updated_at=s.updated_at)
                for s, n in rows
            ]

    def shelf(self, user_id: int, shelf_id: int) -> ShelfRecord | None:
        return next((s for s in self.shelves(user_id) if s.id == shelf_id), None)

    def add_to_shelf(self, user_id: int, shelf_id: int, book_id: int, *, now: dt.datetime) -> bool:
        """Append a book (no-op if it is there already); ``False`` when the shelf is not the user's."""
        with Session(self.engine) as session, session.begin():
            owned = session.scalar(select(Shelf.id).where(Shelf.id == shelf_id, Shelf.user_id == user_id))
            if owned is None:
                return False
            next_position = (
                select(func.coalesce(func.max(ShelfBook.position), 0) + 1)
                .where(ShelfBook.shelf_id == shelf_id)
                .scalar_subquery()
            )
            statement = self._insert(ShelfBook).values(  # type: ignore[attr-defined]
                shelf_id=shelf_id, book_id=book_id, position=next_position, added_at=now
            )
            session.execute(statement.on_conflict_do_nothing())
            session.execute(update(Shelf).where(Shelf.id == shelf_id).values(updated_at=now))
            return True

    def remove_from_shelf(self, user_id: int, shelf_id: int, book_id: int, *, now: dt.datetime) -> bool:
        with Session(self.engine) as session, session.begin():
            owned = session.scalar(select(Shelf.id).where(Shelf.id == shelf_id, Shelf.user_id == user_id))
            if owned is None:
                return False
            session.execute(delete(ShelfBook).where(ShelfBook.shelf_id == shelf_id, ShelfBook.book_id == book_id))
            session.execute(update(Shelf).where(Shelf.id == shelf_id).values(updated_at=now))
            return True

    def reorder_shelf(self, user_id: int, shelf_id: int, book_ids: list[int], *, now: dt.datetime) -> bool:
        """Put the listed books first, in that order; books not listed keep their order after them."""
        with Session(self.engine) as session, session.begin():
            owned = session.scalar(select(Shelf.id).where(Shelf.id == shelf_id, Shelf.user_id == user_id))
            if owned is None:
                return False
            current = [
                row[0]
                for row in session.execute(
                    select(ShelfBook.book_id)
                    .where(ShelfBook.shelf_id == shelf_id)
                    .order_by(ShelfBook.position, ShelfBook.book_id)
                )
            ]
            wanted = [b for b in dict.fromkeys(book_ids) if b in set(current)]
            order = wanted + [b for b in current if b not in set(wanted)]
            for position, book_id in enumerate(order, 1):
                session.execute(
                    update(ShelfBook)
                    .where(and_(ShelfBook.shelf_id == shelf_id, ShelfBook.book_id == book_id))
                    .values(position=position)
                )
            session.execute(update(Shelf).where(Shelf.id == shelf_id).values(updated_at=now))
            return True

    def shelf_books(self, user_id: int, shelf_id: int) -> list[int] | None:
        """Book ids in shelf order; ``None`` when the shelf is not the user's."""
        with Session(self.engine) as session:
            owned = session.scalar(select(Shelf.id).where(Shelf.id == shelf_id, Shelf.user_id == user_id))
            if owned is None:
                return None
            rows = session.execute(
                select(ShelfBook.book_id)
                .where(ShelfBook.shelf_id == shelf_id)
                .order_by(ShelfBook.position, ShelfBook.book_id)
            )
            return [row[0] for row in rows]

    # Progress

    def save_progress(
        self,
        user_id: int,
        book_id: int,
        *,
        device_kind: str,
        percentage: float,
        locator: str | None,
        is_finished: bool,
        now: dt.datetime,
    ) -> ProgressRecord:
        """Store a reader's position on one kind of device (newest write wins)."""
        values = {
            "percentage": percentage,
            "locator": locator,
            "is_finished": is_finished,
            "updated_at": now,
        }
        statement = self._insert(ReadingProgress).values(  # type: ignore[attr-defined]
            user_id=user_id, book_id=book_id, device_kind=device_kind, **values
        )
        statement = statement.on_conflict_do_update(index_elements=["user_id", "book_id", "device_kind"], set_=values)
        with Session(self.engine) as session, session.begin():
            session.execute(statement)
        return ProgressRecord(book_id=book_id, device_kind=device_kind, **values)  # type: ignore[arg-type]

    def progress(self, user_id: int, book_id: int | None = None) -> list[ProgressRecord]:
        """Positions, newest first; of one book, or of all."""
        with Session(self.engine) as session:
            query = select(ReadingProgress).where(ReadingProgress.user_id == user_id)
            if book_id is not None:
                query = query.where(ReadingProgress.book_id == book_id)
            rows = session.scalars(query.order_by(ReadingProgress.updated_at.desc(), ReadingProgress.device_kind))
            return [
                ProgressRecord(
                    book_id=r.book_id,
                    device_kind=r.device_kind,
                    percentage=r.percentage,
                    locator=r.locator,
                    is_finished=r.is_finished,
                    updated_at=r.updated_at,
                )
                for r in rows
            ]

    def reading(self, user_id: int) -> list[int]:
        """Books begun and not finished, most recently read first."""
        return self._by_state(user_id, is_finished=False)

    def finished(self, user_id: int) -> list[int]:
        """Books finished on any device, most recently finished first."""
        return self._by_state(user_id, is_finished=True)

    def _by_state(self, user_id: int, *, is_finished: bool) -> list[int]:
        with Session(self.engine) as session:
            latest = (
                select(
                    ReadingProgress.book_id,
                    func.max(ReadingProgress.updated_at).label("at"),
                    func.max(case((ReadingProgress.is_finished, 1), else_=0)).label("done"),
                )
                .where(ReadingProgress.user_id == user_id)
                .group_by(ReadingProgress.book_id)
                .subquery()
            )
            query = select(latest.c.book_id).where(latest.c.done == (1 if is_finished else 0))
            rows = session.execute(query.order_by(latest.c.at.desc(), latest.c.book_id.desc()))
            return [row[0] for row in rows]
