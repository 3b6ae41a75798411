"""Which books a feed shows, in which order: filters, sort orders and keyset SQL.

A ``BookQuery`` is pure data; ``page_sql`` and ``count_sql`` turn it into SQL against Calibre's
schema. Pages are keyset-paged on (sort keys..., id): no OFFSET and no scan past the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import msgspec

from opds_server.calibre.database import fold_text

MAX_QUERY_TERMS = 12


class SortOrder(StrEnum):
    NEW = "new"
    TITLE = "title"
    AUTHOR = "author"
    PUBLISHED = "published"
    RATING = "rating"
    SERIES = "series"


# (SQL expression, Python type of its value) per key; the id is always the last key.
_RATING_SQL = (
    "IFNULL((SELECT r.rating FROM books_ratings_link rl JOIN ratings r ON r.id = rl.rating"
    " WHERE rl.book = books.id), 0)"
)
_SORT_KEYS: dict[SortOrder, tuple[tuple[str, ...], bool]] = {
    SortOrder.NEW: (("books.timestamp",), True),
    SortOrder.TITLE: (("IFNULL(books.sort, books.title) COLLATE NOCASE",), False),
    SortOrder.AUTHOR: (
        ("IFNULL(books.author_sort, '') COLLATE NOCASE", "IFNULL(books.sort, books.title) COLLATE NOCASE"),
        False,
    ),
    SortOrder.PUBLISHED: (("IFNULL(books.pubdate, '')",), True),
    SortOrder.RATING: ((_RATING_SQL, "books.timestamp"), True),
    SortOrder.SERIES: (("books.series_index",), False),
}

KeyValue = str | int | float | None


class BookQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Filters that combine with AND, and a sort order."""

    sort: SortOrder = SortOrder.NEW
    author: int | None = None
    series: int | None = None
    publisher: int | None = None
    tag: str | None = None
    language: str | None = None
    rating: int | None = None
    format: str | None = None
    initial: str | None = None
    terms: tuple[str, ...] = ()

    def without_sort(self) -> BookQuery:
        """The same filters under the default order; counts depend only on filters."""
        return msgspec.structs.replace(self, sort=SortOrder.NEW)


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _term_clause(term: str) -> tuple[str, list[object]]:
    # Case and accents are folded on both sides (opds_fold), so "editions" finds "Éditions".
    pattern = _like(fold_text(term))
    sql = (
        "(opds_fold(books.title) LIKE ? ESCAPE '\\'"
        " OR books.id IN (SELECT l.book FROM books_authors_link l JOIN authors a ON a.id = l.author"
        "   WHERE opds_fold(a.name) LIKE ? ESCAPE '\\')"
        " OR books.id IN (SELECT l.book FROM books_series_link l JOIN series s ON s.id = l.series"
        "   WHERE opds_fold(s.name) LIKE ? ESCAPE '\\')"
        " OR books.id IN (SELECT l.book FROM books_tags_link l JOIN tags t ON t.id = l.tag"
        "   WHERE opds_fold(t.name) LIKE ? ESCAPE '\\')"
        " OR books.id IN (SELECT l.book FROM books_publishers_link l JOIN publishers p ON p.id = l.publisher"
        "   WHERE opds_fold(p.name) LIKE ? ESCAPE '\\')"
        " OR books.id IN (SELECT book FROM identifiers WHERE val = ?))"
    )
    return sql, [pattern, pattern, pattern, pattern, pattern, term]


def _filters(query: BookQuery, hidden: Sequence[int]) -> tuple[list[str], list[object]]:
    clauses = ["EXISTS (SELECT 1 FROM data WHERE data.book = books.id)"]
    parameters: list[object] = []
    if hidden:
        # Ids of books whose every file is missing on disk; integers, so inlining is safe.
        clauses.append(f"books.id NOT IN ({','.join(str(int(i)) for i in hidden)})")
    simple = (
        (query.author, "books.id IN (SELECT book FROM books_authors_link WHERE author = ?)"),
        (query.series, "books.id IN (SELECT book FROM books_series_link WHERE series = ?)"),
        (query.publisher, "books.id IN (SELECT book FROM books_publishers_link WHERE publisher = ?)"),
        (
            query.rating,
            (
                "books.id IN (SELECT rl.book FROM books_ratings_link rl JOIN ratings r ON r.id = rl.rating"
                " WHERE r.rating = ?)"
            ),
        ),
        (query.format, "EXISTS (SELECT 1 FROM data WHERE data.book = books.id AND data.format = ?)"),
        (
            query.language,
            (
                "books.id IN (SELECT bl.book FROM books_languages_link bl JOIN languages l ON l.id = bl.lang_code"
                " WHERE l.lang_code = ?)"
            ),
        ),
        (query.initial, "opds_initial(IFNULL(books.sort, books.title)) = ?"),
    )
    for value, clause in simple:
        if value is not None:
            clauses.append(clause)
            parameters.append(value)
    if query.tag is not None:
        clauses.append(
            "books.id IN (SELECT bt.book FROM books_tags_link bt JOIN tags t ON t.id = bt.tag"
            " WHERE t.name = ? OR t.name LIKE ? ESCAPE '\\')"
        )
        parameters.extend([query.tag, _like(query.tag + ".").removeprefix("%")])
    for term in query.terms:
        clause, values = _term_clause(term)
        clauses.append(clause)
        parameters.extend(values)
    return clauses, parameters


def key_count(sort: SortOrder) -> int:
    """How many values a cursor for this order holds (sort keys plus the id)."""
    return len(_SORT_KEYS[sort][0]) + 1


def page_sql(
    query: BookQuery,
    hidden: Sequence[int],
    *,
    after: Sequence[KeyValue] | None,
    limit: int,
    backwards: bool = False,
) -> tuple[str, list[object]]:
    """SQL for up to ``limit`` rows ``(id, keys...)`` strictly after (or before) a keyset position.

    Args:
        query: filters and order.
        hidden: ids never shown (every file missing on disk).
        after: the keys and id of the row to start after; ``None`` for the first page.
        limit: rows to fetch.
        backwards: walk the order in reverse from ``after`` (for ``previous`` links).
    """
    expressions, descending = _SORT_KEYS[query.sort]
    keys = [*expressions, "books.id"]
    clauses, parameters = _filters(query, hidden)
    forward_desc = descending != backwards
    if after is not None:
        placeholders = ", ".join("?" for _ in keys)
        operator = "<" if forward_desc else ">"
        clauses.append(f"({', '.join(keys)}) {operator} ({placeholders})")
        parameters.extend(after)
    direction = "DESC" if forward_desc else "ASC"
    order = ", ".join(f"{key} {direction}" for key in keys)
    where = " AND ".join(clauses)
    sql = f"SELECT books.id, {', '.join(expressions)} FROM books WHERE {where} ORDER BY {order} LIMIT ?"
    parameters.append(limit)
    return sql, parameters


def count_sql(query: BookQuery, hidden: Sequence[int]) -> tuple[str, list[object]]:
    """SQL counting the books a query matches."""
    clauses, parameters = _filters(query, hidden)
    return f"SELECT COUNT(*) FROM books WHERE {' AND '.join(clauses)}", parameters
