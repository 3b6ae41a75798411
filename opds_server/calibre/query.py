"""Which books a feed shows, in which order: filters, sort orders and keyset SQL.

A ``BookQuery`` is pure data; ``page_sql`` and ``count_sql`` turn it into SQL against the library
index (``opds_server.calibre.index``): ``opds_books`` holds one presorted key per order with an
index each, so pages are keyset-paged on (sort keys..., id), an index range scan at any depth: no
OFFSET and no scan past the page. Search terms go through the FTS5 table ``opds_search``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import msgspec

from opds_server.calibre.index import fts_query

MAX_QUERY_TERMS = 12


class SortOrder(StrEnum):
    NEW = "new"
    TITLE = "title"
    AUTHOR = "author"
    PUBLISHED = "published"
    RATING = "rating"
    SERIES = "series"
    RELEVANCE = "relevance"


# Sort keys per order, columns of the index's ``opds_books`` (each order has an index ending in
# the id); the id is always the last key. Relevance is FTS5's BM25 rank (lower is better).
_SORT_KEYS: dict[SortOrder, tuple[tuple[str, ...], bool]] = {
    SortOrder.NEW: (("k.ts",), True),
    SortOrder.TITLE: (("k.title_key",), False),
    SortOrder.AUTHOR: (("k.author_key", "k.title_key"), False),
    SortOrder.PUBLISHED: (("k.pub_key",), True),
    SortOrder.RATING: (("k.rating", "k.ts"), True),
    SortOrder.SERIES: (("k.series_index",), False),
    SortOrder.RELEVANCE: (("s.rank",), False),
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


def _filters(query: BookQuery) -> tuple[list[str], list[object]]:
    """WHERE clauses over ``opds_books k`` (which holds only books the catalogue offers)."""
    clauses: list[str] = []
    parameters: list[object] = []
    simple = (
        (query.author, "k.id IN (SELECT book FROM books_authors_link WHERE author = ?)"),
        (query.series, "k.id IN (SELECT book FROM books_series_link WHERE series = ?)"),
        (query.publisher, "k.id IN (SELECT book FROM books_publishers_link WHERE publisher = ?)"),
        (query.rating, "k.rating = ?"),
        (query.format, "k.id IN (SELECT book FROM data WHERE format = ?)"),
        (
            query.language,
            (
                "k.id IN (SELECT bl.book FROM books_languages_link bl JOIN languages l ON l.id = bl.lang_code"
                " WHERE l.lang_code = ?)"
            ),
        ),
        (query.initial, "k.initial = ?"),
        (query.tag, "k.id IN (SELECT book FROM opds_tag_paths WHERE path = ?)"),
    )
    for value, clause in simple:
        if value is not None:
            clauses.append(clause)
            parameters.append(value)
    if query.terms:
        match = fts_query(query.terms)
        if match is None:
            clauses.append("0")  # nothing searchable in the terms (only punctuation): no book matches
        elif query.sort is SortOrder.RELEVANCE:
            clauses.append("opds_search MATCH ?")  # the joined search table ``s``
            parameters.append(match)
        else:
            clauses.append("k.id IN (SELECT rowid FROM opds_search WHERE opds_search MATCH ?)")
            parameters.append(match)
    return clauses, parameters


def _source(query: BookQuery) -> str:
    if query.terms and query.sort is SortOrder.RELEVANCE:
        return "opds_search s JOIN opds_books k ON k.id = s.rowid"
    return "opds_books k"


def key_count(sort: SortOrder) -> int:
    """How many values a cursor for this order holds (sort keys plus the id)."""
    return len(_SORT_KEYS[sort][0]) + 1


def page_sql(
    query: BookQuery,
    *,
    after: Sequence[KeyValue] | None,
    limit: int,
    backwards: bool = False,
) -> tuple[str, list[object]]:
    """SQL for up to ``limit`` rows ``(id, keys...)`` strictly after (or before) a keyset position.

    Args:
        query: filters and order.
        after: the keys and id of the row to start after; ``None`` for the first page.
        limit: rows to fetch.
        backwards: walk the order in reverse from ``after`` (for ``previous`` links).
    """
    expressions, descending = _SORT_KEYS[query.sort]
    keys = [*expressions, "k.id"]
    clauses, parameters = _filters(query)
    forward_desc = descending != backwards
    if after is not None:
        placeholders = ", ".join("?" for _ in keys)
        operator = "<" if forward_desc else ">"
        clauses.append(f"({', '.join(keys)}) {operator} ({placeholders})")
        parameters.extend(after)
    direction = "DESC" if forward_desc else "ASC"
    order = ", ".join(f"{key} {direction}" for key in keys)
    where = " AND ".join(clauses) or "1"
    sql = f"SELECT k.id, {', '.join(expressions)} FROM {_source(query)} WHERE {where} ORDER BY {order} LIMIT ?"
    parameters.append(limit)
    return sql, parameters


def count_sql(query: BookQuery) -> tuple[str, list[object]]:
    """SQL counting the books a query matches."""
    clauses, parameters = _filters(query)
    return f"SELECT COUNT(*) FROM {_source(query)} WHERE {' AND '.join(clauses) or '1'}", parameters
