"""Reading whole books from ``metadata.db`` in batches: one query per table for a page of ids.

Calibre stores dates as text (``2013-02-10 09:30:00+00:00``), an undefined date as year 101,
ratings on a 0-10 scale and files as ``<book folder>/<data.name>.<format lower>``. A ``data`` row
whose file is missing on disk is dropped here, so no feed ever advertises it.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

import msgspec

from opds_server.calibre.comments import plain_text
from opds_server.calibre.database import CalibreDatabase, Row
from opds_server.calibre.model import (
    AuthorId,
    AuthorRef,
    Book,
    BookFile,
    BookId,
    CustomValue,
    PublisherId,
    PublisherRef,
    SeriesId,
    SeriesRef,
)
from opds_server.storage.files import LibraryFiles

UNDEFINED_YEAR = 101
# A date-only value entered at local midnight east of UTC is stored the evening before (book 8
# of the fixture: 1862-04-03 +02:00 is stored as 1862-04-02 22:00 UTC), so a stored time from
# 21:00 UTC on belongs to the next day: that covers midnight from UTC+1 to UTC+3 (Europe, Africa,
# the Middle East). Noon UTC, calibredb's storage for date-only input, stays on its day, and so
# does local noon from UTC-8 to UTC+12.
_NEXT_DAY_FROM_HOUR = 21


class CustomColumn(msgspec.Struct, frozen=True, kw_only=True):
    """A custom column's definition from ``custom_columns``."""

    id: int
    label: str
    name: str
    datatype: str
    is_multiple: bool
    is_normalized: bool


_SKIPPED_DATATYPES = {"composite"}


def parse_timestamp(raw: object) -> dt.datetime | None:
    """Calibre's stored text timestamp as an aware UTC datetime; ``None`` when unset."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def parse_pubdate(raw: object) -> dt.date | None:
    """The publication *day* Calibre meant; ``None`` for UNDEFINED_DATE."""
    moment = parse_timestamp(raw)
    if moment is None or moment.year <= UNDEFINED_YEAR:
        return None
    day = moment.date()
    if moment.hour >= _NEXT_DAY_FROM_HOUR and day < dt.date.max:
        day += dt.timedelta(days=1)
    return day


def read_custom_columns(db: CalibreDatabase) -> tuple[CustomColumn, ...]:
    """Definitions of the custom columns Calibre has not marked for deletion."""
    rows = db.fetch(
        "SELECT id, label, name, datatype, is_multiple, normalized FROM custom_columns"
        " WHERE mark_for_delete = 0 ORDER BY id"
    )
    return tuple(
        CustomColumn(
            id=int(str(r[0])),
            label=str(r[1]),
            name=str(r[2]),
            datatype=str(r[3]),
            is_multiple=bool(r[4]),
            is_normalized=bool(r[5]),
        )
        for r in rows
        if str(r[3]) not in _SKIPPED_DATATYPES
    )


def stars(rating: int) -> str:
    """Calibre's 0-10 rating as stars: 7 -> ``★★★½``."""
    return "★" * (rating // 2) + ("½" if rating % 2 else "")


def _date_text(value: object) -> str | None:
    day = parse_pubdate(value)
    return day.isoformat() if day else None


_FORMATTERS: dict[str, Callable[[object], str | None]] = {
    "bool": lambda value: "Yes" if value else "No",
    "rating": lambda value: stars(int(str(value))),
    "datetime": _date_text,
    "comments": lambda value: plain_text(str(value)) or None,
    "float": lambda value: f"{float(str(value)):g}",
}


def _display_custom(column: CustomColumn, values: Sequence[object]) -> str | None:
    present = [v for v in values if v is not None and v != ""]
    if not present:
        return None
    formatter = _FORMATTERS.get(column.datatype)
    if formatter is not None:
        return formatter(present[0])
    return ", ".join(str(v) for v in present)


def _in(ids: Sequence[int]) -> str:
    return ",".join("?" for _ in ids)


class _Rows:
    """The per-table rows of one batch, grouped by book id."""

    def __init__(self, db: CalibreDatabase, ids: Sequence[int]) -> None:
        self.db = db
        self.ids = ids
        self.marks = _in(ids)

    def grouped(self, sql: str) -> dict[int, list[Row]]:
        groups: dict[int, list[Row]] = defaultdict(list)
        for row in self.db.fetch(sql.format(ids=self.marks), self.ids):
            groups[int(str(row[0]))].append(row[1:])
        return groups


def _custom_values(rows: _Rows, columns: Iterable[CustomColumn]) -> dict[int, list[CustomValue]]:
    values: dict[int, list[CustomValue]] = defaultdict(list)
    for column in columns:
        table = f"custom_column_{column.id}"
        if column.is_normalized:
            sql = (
                f"SELECT l.book, v.value FROM books_{table}_link l JOIN {table} v ON v.id = l.value"
                " WHERE l.book IN ({ids}) ORDER BY l.id"
            )
        else:
            sql = f"SELECT book, value FROM {table} WHERE book IN ({{ids}})"
        for book_id, book_rows in rows.grouped(sql).items():
            display = _display_custom(column, [r[0] for r in book_rows])
            if display is not None:
                values[book_id].append(CustomValue(label=column.label, name=column.name, display=display))
    return values


def book_file_name(name: object, book_format: object) -> str:
    """A format's file name in its book folder, as Calibre writes it: ``data.name`` + ``.epub``."""
    return f"{name}.{str(book_format).lower()}"


def _files(files: LibraryFiles, path: str, rows: Iterable[Row]) -> tuple[BookFile, ...]:
    found = []
    for fmt, _recorded_size, name in rows:
        file_name = book_file_name(name, fmt)
        stored = files.stat(f"{path}/{file_name}")
        if stored is None:
            continue  # listed in data but gone from disk: never advertised
        found.append(BookFile(format=str(fmt).upper(), size=stored.size, file_name=file_name))
    return tuple(found)


def _authors(rows: Sequence[Row], author_sort: str) -> tuple[AuthorRef, ...]:
    """Authors in Calibre's order; sort names from the book's own ``author_sort`` when it names each
    author (``Cervantes Saavedra, Miguel de`` was set by hand), else from the authors table."""
    per_book = [part.strip() for part in author_sort.split(" & ")] if author_sort else []
    use_book = len(per_book) == len(rows) and all(per_book)
    return tuple(
        AuthorRef(
            id=AuthorId(int(str(row[0]))),
            name=str(row[1]),
            sort=per_book[index] if use_book else str(row[2] or row[1]),
        )
        for index, row in enumerate(rows)
    )


def read_books(db: CalibreDatabase, ids: Sequence[int], columns: Sequence[CustomColumn]) -> dict[int, Book]:
    """Every field of the given books, in a handful of queries; unknown ids are absent."""
    if not ids:
        return {}
    rows = _Rows(db, ids)
    base = rows.grouped(
        "SELECT id, uuid, title, sort, author_sort, timestamp, pubdate, series_index, path, has_cover,"
        " last_modified FROM books WHERE id IN ({ids})"
    )
    authors = rows.grouped(
        "SELECT l.book, a.id, a.name, a.sort FROM books_authors_link l JOIN authors a ON a.id = l.author"
        " WHERE l.book IN ({ids}) ORDER BY l.id"
    )
    series = rows.grouped(
        "SELECT l.book, s.id, s.name FROM books_series_link l JOIN series s ON s.id = l.series WHERE l.book IN ({ids})"
    )
    tags = rows.grouped(
        "SELECT l.book, t.name FROM books_tags_link l JOIN tags t ON t.id = l.tag"
        " WHERE l.book IN ({ids}) ORDER BY t.name COLLATE NOCASE"
    )
    languages = rows.grouped(
        "SELECT l.book, g.lang_code FROM books_languages_link l JOIN languages g ON g.id = l.lang_code"
        " WHERE l.book IN ({ids}) ORDER BY l.item_order"
    )
    publishers = rows.grouped(
        "SELECT l.book, p.id, p.name FROM books_publishers_link l JOIN publishers p ON p.id = l.publisher"
        " WHERE l.book IN ({ids})"
    )
    ratings = rows.grouped(
        "SELECT l.book, r.rating FROM books_ratings_link l JOIN ratings r ON r.id = l.rating WHERE l.book IN ({ids})"
    )
    identifiers = rows.grouped("SELECT book, type, val FROM identifiers WHERE book IN ({ids}) ORDER BY id")
    comments = rows.grouped("SELECT book, text FROM comments WHERE book IN ({ids})")
    data = rows.grouped("SELECT book, format, uncompressed_size, name FROM data WHERE book IN ({ids}) ORDER BY id")
    custom = _custom_values(rows, columns)

    books: dict[int, Book] = {}
    for book_id, (row,) in base.items():
        uuid, title, sort, author_sort, timestamp, pubdate, series_index, path, has_cover, modified = row
        added = parse_timestamp(timestamp) or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        series_row = series.get(book_id, [None])[0]
        publisher_row = publishers.get(book_id, [None])[0]
        rating = ratings.get(book_id, [(None,)])[0][0]
        books[book_id] = Book(
            id=BookId(book_id),
            uuid=str(uuid),
            title=str(title),
            sort=str(sort or title),
            author_sort=str(author_sort or ""),
            authors=_authors(authors.get(book_id, []), str(author_sort or "")),
            series=SeriesRef(
                id=SeriesId(int(str(series_row[0]))),
                name=str(series_row[1]),
                index=float(str(series_index or 1.0)),
            )
            if series_row
            else None,
            tags=tuple(str(t[0]) for t in tags.get(book_id, [])),
            languages=tuple(str(g[0]) for g in languages.get(book_id, [])),
            publisher=PublisherRef(id=PublisherId(int(str(publisher_row[0]))), name=str(publisher_row[1]))
            if publisher_row
            else None,
            pubdate=parse_pubdate(pubdate),
            timestamp=added,
            last_modified=parse_timestamp(modified) or added,
            rating=int(str(rating)) if rating else None,
            identifiers=tuple((str(i[0]).lower(), str(i[1])) for i in identifiers.get(book_id, [])),
            comments=str(comments[book_id][0][0]) if book_id in comments else None,
            formats=_files(db.files, str(path), data.get(book_id, [])),
            has_cover=bool(has_cover),
            path=str(path),
            custom=tuple(custom.get(book_id, [])),
        )
    return books
