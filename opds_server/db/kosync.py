"""KOReader's raw positions, one per reader and document key (spec A.11): last write wins.

Records of documents we cannot match are kept (KOReader to KOReader sync of sideloaded books) and
linked to a book later, when a key or the document's metadata matches one.
"""

from __future__ import annotations

import datetime as dt

import msgspec
from sqlalchemy import Engine, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from opds_server.db.schema import KosyncProgress


class KosyncRecord(msgspec.Struct, frozen=True, kw_only=True):
    document: str
    progress: str
    percentage: float
    device: str
    device_id: str | None
    updated_at: dt.datetime
    book_id: int | None


def _record(row: KosyncProgress) -> KosyncRecord:
    return KosyncRecord(
        document=row.document,
        progress=row.progress,
        percentage=row.percentage,
        device=row.device,
        device_id=row.device_id,
        updated_at=row.updated_at,
        book_id=row.book_id,
    )


class KosyncStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def save(self, user_id: int, record: KosyncRecord, *, metadata_json: str | None) -> None:
        values = {
            "progress": record.progress,
            "percentage": record.percentage,
            "device": record.device,
            "device_id": record.device_id,
            "updated_at": record.updated_at,
            "book_id": record.book_id,
            "metadata_json": metadata_json,
        }
        insert = postgres_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        statement = insert(KosyncProgress).values(user_id=user_id, document=record.document, **values)
        statement = statement.on_conflict_do_update(index_elements=["user_id", "document"], set_=values)
        with Session(self.engine) as session, session.begin():
            session.execute(statement)

    def find(self, user_id: int, document: str) -> KosyncRecord | None:
        with Session(self.engine) as session:
            row = session.get(KosyncProgress, (user_id, document))
            return _record(row) if row else None

    def link(self, user_id: int, document: str, book_id: int) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(KosyncProgress)
                .where(KosyncProgress.user_id == user_id, KosyncProgress.document == document)
                .values(book_id=book_id)
            )

    def newest_for_book(self, user_id: int, book_id: int) -> KosyncRecord | None:
        """The newest KOReader position of a book, whichever file of it KOReader read."""
        with Session(self.engine) as session:
            row = session.scalars(
                select(KosyncProgress)
                .where(KosyncProgress.user_id == user_id, KosyncProgress.book_id == book_id)
                .order_by(KosyncProgress.updated_at.desc())
                .limit(1)
            ).first()
            return _record(row) if row else None
