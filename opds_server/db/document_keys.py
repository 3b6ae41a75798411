"""The index of KOReader document keys: which book each served byte stream's key belongs to.

KOReader names a document by a key computed on the device (``sync.koreader.keys``); a progress
PUT or GET carries only that key. The indexer (``opds_server.koreader.keys``) computes the key of
every stream we serve ahead of time and keeps it here, so resolving a key is one lookup on the
primary key's first column (shared/specs/koreader-sync.md C.1, C.2). Each row also records the size
and mtime of the file it was computed from, so a refresh rehashes only files that changed.

The table is derived data: it can be dropped and rebuilt from the library at any time. Several
workers may refresh it at once: a book's rows are replaced in one transaction, and inserting a row
that is already there is not an error, so they never fail each other.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Literal

import msgspec
from sqlalchemy import Engine, Table, delete, func, select
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from opds_server.db.schema import DocumentKey

Variant = Literal["file", "kepub", "filename"]
"""Which stream a key describes: the library's own file, the KEPUB we made of its EPUB, or the
predicted name of a KOReader OPDS download (a "Filename" matching key)."""

VARIANTS: tuple[Variant, ...] = ("file", "kepub", "filename")

FileSlot = tuple[int, str, str]
"""(book id, format, variant): one stream of a book."""

StoredKey = tuple[str, int, int]
"""(key, file size, file mtime in ns) of one stored stream."""

_TABLE: Table = DocumentKey.__table__  # type: ignore[assignment]  # a declarative model's table is a Table
_BATCH = 500
"""Books per ``DELETE``, rows per ``INSERT``: statements stay far below SQLite's 32,766 parameters."""


class DocumentKeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One document key of one stream of a book."""

    key: str
    book_id: int
    format: str
    variant: Variant
    file_size: int
    """Size in bytes of the file the key was computed from (for ``filename``: the file it names)."""
    file_mtime_ns: int
    """That file's modification time, in nanoseconds since the epoch."""


def _batches(items: Sequence[int], size: int = _BATCH) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class DocumentKeyStore:
    """The ``document_keys`` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def replace_book(
        self,
        book_id: int,
        keys: Sequence[DocumentKeyRecord],
        *,
        variants: Collection[Variant] | None = None,
        now: dt.datetime | None = None,
    ) -> None:
        """Replace a book's keys of some variants, in one transaction.

        Args:
            book_id: the book.
            keys: its new keys; every one must belong to ``book_id``.
            variants: the variants replaced: the book's rows of these are deleted before ``keys``
                are inserted. Default: the variants among ``keys`` (so an empty ``keys`` changes
                nothing; pass ``variants`` to remove a variant's last key).
            now: when the keys were computed; default the current time.

        Raises:
            ValueError: a key belongs to another book.
        """
        self.replace_books({book_id: keys}, variants=variants, now=now)

    def replace_books(
        self,
        keys_by_book: Mapping[int, Sequence[DocumentKeyRecord]],
        *,
        variants: Collection[Variant] | None = None,
        now: dt.datetime | None = None,
    ) -> None:
        """``replace_book`` for many books in one transaction (what a refresh of many books uses).

        Raises:
            ValueError: a key is listed under another book than its own.
        """
        for book_id, keys in keys_by_book.items():
            strangers = sorted({key.book_id for key in keys} - {book_id})
            if strangers:
                raise ValueError(f"keys of books {strangers} were given as book {book_id}'s")
        replaced = set(variants) if variants is not None else {k.variant for ks in keys_by_book.values() for k in ks}
        if not replaced:
            return
        when = now or dt.datetime.now(dt.UTC)
        # One row per primary key: a file listed twice must not make the insert fail.
        rows = {
            (key.key, key.book_id, key.format, key.variant): {
                "key": key.key,
                "book_id": key.book_id,
                "format": key.format,
                "variant": key.variant,
                "file_size": key.file_size,
                "file_mtime_ns": key.file_mtime_ns,
                "indexed_at": when,
            }
            for keys in keys_by_book.values()
            for key in keys
        }
        insert = postgres_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        book_ids = sorted(keys_by_book)
        values = list(rows.values())
        with self.engine.begin() as connection:
            for batch in _batches(book_ids):
                connection.execute(
                    delete(_TABLE).where(_TABLE.c.book_id.in_(batch), _TABLE.c.variant.in_(sorted(replaced)))
                )
            for start in range(0, len(values), _BATCH):
                # A worker refreshing at the same time may have inserted the same row meanwhile.
                connection.execute(insert(_TABLE).on_conflict_do_nothing(), values[start : start + _BATCH])

    def remove_books(self, book_ids: Collection[int]) -> int:
        """Forget every key of these books (gone from the library); returns the rows removed."""
        removed = 0
        with self.engine.begin() as connection:
            for batch in _batches(sorted(book_ids)):
                removed += connection.execute(delete(_TABLE).where(_TABLE.c.book_id.in_(batch))).rowcount
        return removed

    def books_for(self, key: str, *, limit: int | None = None) -> list[int]:
        """The books with a stream whose key this is, in id order: usually one, several when the
        same file was added to the library twice, none for a stream we never served. ``limit=2``
        is enough to tell one from several, at the same cost however many share the key."""
        query = select(_TABLE.c.book_id).where(_TABLE.c.key == key).distinct().order_by(_TABLE.c.book_id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return [int(book_id) for book_id in connection.scalars(query)]

    def keys_of(self, book_id: int) -> list[DocumentKeyRecord]:
        """A book's keys, by format, variant and key."""
        return self.records_between(book_id, book_id + 1)

    def records_between(self, first_book_id: int, stop_book_id: int) -> list[DocumentKeyRecord]:
        """The keys of the books with ids from ``first_book_id`` up to, not including,
        ``stop_book_id``, by book, format, variant and key: a refresh reads the table one range of
        books at a time (an index range scan), so its memory does not grow with the library."""
        query = (
            select(
                _TABLE.c.key,
                _TABLE.c.book_id,
                _TABLE.c.format,
                _TABLE.c.variant,
                _TABLE.c.file_size,
                _TABLE.c.file_mtime_ns,
            )
            .where(_TABLE.c.book_id >= first_book_id, _TABLE.c.book_id < stop_book_id)
            .order_by(_TABLE.c.book_id, _TABLE.c.format, _TABLE.c.variant, _TABLE.c.key)
        )
        with self.engine.connect() as connection:
            return [
                DocumentKeyRecord(
                    key=key,
                    book_id=book_id,
                    format=book_format,
                    variant=variant,
                    file_size=size,
                    file_mtime_ns=mtime_ns,
                )
                for key, book_id, book_format, variant, size, mtime_ns in connection.execute(query)
            ]

    def known_between(self, first_book_id: int, stop_book_id: int) -> dict[int, dict[tuple[str, str], StoredKey]]:
        """What ``records_between`` returns, as book id -> (format, variant) -> (key, size, mtime in
        ns): the shape a refresh compares with, without a Struct per row (a refresh that changes
        nothing reads every row of the table)."""
        query = select(
            _TABLE.c.book_id,
            _TABLE.c.format,
            _TABLE.c.variant,
            _TABLE.c.key,
            _TABLE.c.file_size,
            _TABLE.c.file_mtime_ns,
        ).where(_TABLE.c.book_id >= first_book_id, _TABLE.c.book_id < stop_book_id)
        known: dict[int, dict[tuple[str, str], StoredKey]] = {}
        with self.engine.connect() as connection:
            for book_id, book_format, variant, key, size, mtime_ns in connection.execute(query).all():
                known.setdefault(book_id, {})[book_format, variant] = (key, size, mtime_ns)
        return known

    def last_book_id(self) -> int | None:
        """The highest book id with a key; ``None`` when the table is empty."""
        with self.engine.connect() as connection:
            found = connection.execute(select(func.max(_TABLE.c.book_id))).scalar()
            return int(found) if found is not None else None

    def known_files(self) -> dict[FileSlot, tuple[int, int]]:
        """(size, mtime in ns) of the file behind every stored stream, the whole table at once."""
        query = select(_TABLE.c.book_id, _TABLE.c.format, _TABLE.c.variant, _TABLE.c.file_size, _TABLE.c.file_mtime_ns)
        with self.engine.connect() as connection:
            return {
                (int(book), str(fmt), str(variant)): (int(size), int(mtime))
                for book, fmt, variant, size, mtime in connection.execute(query)
            }
