"""Acquisition feeds: one keyset page of books under a query, with facets and page links.

``previous`` is computed, not remembered: walking the order backwards from the page's first book
finds the book the previous page started after, so its URL is exactly the one whose ``next`` led
here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import msgspec

from feeds import vocab
from feeds.model import Facet, Feed, FeedKind, Link, Page, Publication
from opds_server.calibre.books import read_books, stars
from opds_server.calibre.database import CalibreDatabase, Row
from opds_server.calibre.model import Category
from opds_server.calibre.query import BookQuery, KeyValue, SortOrder, key_count, page_sql
from opds_server.calibre.snapshot import LibrarySnapshot
from opds_server.catalog.common import feed_links, stable_id, when_empty
from opds_server.catalog.cursor import cursor_scope, decode_cursor, encode_cursor
from opds_server.catalog.hrefs import Hrefs, ParamValue
from opds_server.catalog.publications import PageCounter, build_publication
from opds_server.errors import InvalidCursorError, NotFoundError

NO_MATCH = "No book matches: browse the new books"
SORT_TITLES: dict[SortOrder, str] = {
    SortOrder.NEW: "Newest first",
    SortOrder.TITLE: "Title",
    SortOrder.AUTHOR: "Author",
    SortOrder.PUBLISHED: "Publication date",
    SortOrder.RATING: "Rating",
    SortOrder.SERIES: "Series order",
    SortOrder.RELEVANCE: "Relevance",
}


def _row_keys(row: Row) -> tuple[KeyValue, ...]:
    """A result row is (id, keys...); a cursor holds (keys..., id)."""
    return cast("tuple[KeyValue, ...]", (*row[1:], row[0]))  # SQLite gives str, int, float or None


def describe(snapshot: LibrarySnapshot, query: BookQuery, search: str | None) -> str:
    """The feed title for a query; unknown authors, series... are a 404.

    Raises:
        NotFoundError: a filter names something the library does not have.
    """
    parts: list[str] = []
    lookups = (
        ("authors", query.author, "author", "Books by {}"),
        ("series", query.series, "series", "{}"),
        ("publishers", query.publisher, "publisher", "Published by {}"),
        ("languages", query.language, "language", "In {}"),
        ("formats", query.format, "format", "{}"),
    )
    for category, value, param, template in lookups:
        if value is None:
            continue
        found = snapshot.find(category, str(value))
        if found is None:
            raise NotFoundError(f"{param}={value!r}: the library has no such {param} (with a book file)")
        parts.append(template.format(found.name))
    if query.tag is not None:
        if not any(query.tag == t.key for items in snapshot.tag_children.values() for t in items):
            raise NotFoundError(f"tag={query.tag!r}: no book in the library has this tag")
        parts.append(f"Tagged {query.tag.replace('.', ' › ')}")
    if query.rating is not None:
        parts.append(f"Rated {stars(query.rating)}")
    if query.initial is not None:
        parts.append(f"Titles: {query.initial}")
    if search is not None:
        parts.append(f"Search: {search}")
    if not parts:
        return "New books" if query.sort is SortOrder.NEW else f"All books by {SORT_TITLES[query.sort].lower()}"
    return " · ".join(parts)


def _facets(
    db: CalibreDatabase,
    snapshot: LibrarySnapshot,
    hrefs: Hrefs,
    query: BookQuery,
    params: Mapping[str, ParamValue],
) -> list[Facet]:
    feed_type = hrefs.feed_type("acquisition")
    base = {k: v for k, v in params.items() if k != "after"}
    orders = [
        o
        for o in SortOrder
        if (o is not SortOrder.SERIES or query.series is not None) and (o is not SortOrder.RELEVANCE or query.terms)
    ]
    facets = [
        Facet(
            group="Sort by",
            title=SORT_TITLES[order],
            href=hrefs.feed("/books", {**base, "sort": order.value}),
            type=feed_type,
            is_active=order is query.sort,
        )
        for order in orders
    ]
    if query.terms:
        # Each filter option would cost a count over the matches of a search nobody may repeat:
        # search results are re-sortable, and narrowed by adding words.
        return facets
    for group, field, items, label in (
        ("Format", "format", snapshot.category("formats"), "All formats"),
        ("Language", "language", snapshot.category("languages"), "All languages"),
    ):
        facets.extend(
            _filter_group(db, snapshot, hrefs, query, base, group=group, field=field, items=items, label=label)
        )
    return facets


def _filter_group(
    db: CalibreDatabase,
    snapshot: LibrarySnapshot,
    hrefs: Hrefs,
    query: BookQuery,
    base: Mapping[str, ParamValue],
    *,
    group: str,
    field: str,
    items: Sequence[Category],
    label: str,
) -> list[Facet]:
    """A filter facet group, offered only where choosing in it would narrow the feed."""
    feed_type = hrefs.feed_type("acquisition")
    chosen = getattr(query, field)
    unfiltered = msgspec.structs.replace(query, **{field: None})
    total = snapshot.count(db, unfiltered)
    counted = [(item, snapshot.count(db, msgspec.structs.replace(query, **{field: item.key}))) for item in items]
    options = [(item, count) for item, count in counted if count or item.key == chosen]
    if chosen is None and sum(1 for _, count in options if 0 < count < total) == 0:
        return []
    facets = [
        Facet(
            group=group,
            title=label,
            href=hrefs.feed("/books", {**base, field: None}),
            type=feed_type,
            is_active=chosen is None,
            count=total,
        )
    ]
    facets.extend(
        Facet(
            group=group,
            title=item.name,
            href=hrefs.feed("/books", {**base, field: item.key}),
            type=feed_type,
            is_active=item.key == chosen,
            count=count,
        )
        for item, count in options
    )
    return facets


def _previous_after(
    db: CalibreDatabase, snapshot: LibrarySnapshot, query: BookQuery, first: Row, *, page: int, limit: int
) -> str | None:
    """The cursor of the page before the one starting at ``first``; ``None`` for the first page."""
    sql, parameters = page_sql(query, after=_row_keys(first), limit=limit + 1, backwards=True)
    before = db.fetch(sql, parameters)
    if len(before) <= limit or page <= 2:
        return None
    return encode_cursor(page - 1, cursor_scope(query), _row_keys(before[limit]))


def read_publications(
    db: CalibreDatabase,
    snapshot: LibrarySnapshot,
    hrefs: Hrefs,
    book_ids: Sequence[int],
    *,
    count_pages: PageCounter,
) -> list[Publication]:
    """Partial entries of these books, in this order; ids Calibre does not have are skipped."""
    books = read_books(db, book_ids, snapshot.custom_columns)
    return [
        build_publication(books[book_id], hrefs, is_complete=False, count_pages=count_pages)
        for book_id in book_ids
        if book_id in books
    ]


def build_page_links(
    hrefs: Hrefs,
    *,
    path: str,
    params: Mapping[str, ParamValue],
    kind: FeedKind,
    page: int,
    previous_after: str | None,
    next_after: str | None,
) -> list[Link]:
    """first and previous links past the first page, and next when another page follows.

    ``params`` excludes ``after``; ``previous_after`` is ``None`` when the previous page is the
    first, whose URL has no cursor (so that its ``next`` and this ``previous`` agree).
    """
    feed_type = hrefs.feed_type(kind)
    links: list[Link] = []
    if page > 1:
        links.append(Link(href=hrefs.feed(path, params), rel=vocab.REL_FIRST, type=feed_type))
        links.append(
            Link(href=hrefs.feed(path, {**params, "after": previous_after}), rel=vocab.REL_PREVIOUS, type=feed_type)
        )
    if next_after is not None:
        links.append(Link(href=hrefs.feed(path, {**params, "after": next_after}), rel=vocab.REL_NEXT, type=feed_type))
    return links


def build_books_feed(
    db: CalibreDatabase,
    snapshot: LibrarySnapshot,
    hrefs: Hrefs,
    query: BookQuery,
    *,
    params: Mapping[str, ParamValue],
    title: str,
    after: str | None,
    limit: int,
    count_pages: PageCounter,
) -> Feed:
    """One page of books matching ``query``.

    Args:
        params: the request's canonical query parameters, ``after`` excluded; links keep them.

    Raises:
        InvalidCursorError: ``after`` is not a cursor of this order.
    """
    keys: Sequence[KeyValue] | None = None
    page = 1
    scope = cursor_scope(query)
    if after is not None:
        cursor = decode_cursor(after, scope=scope, key_count=key_count(query.sort))
        if not isinstance(cursor.keys[-1], int):
            raise InvalidCursorError(f"after={after[:40]!r} is a cursor of another feed, not of this one")
        keys, page = cursor.keys, cursor.page
    sql, parameters = page_sql(query, after=keys, limit=limit + 1)
    rows = db.fetch(sql, parameters)
    has_next, rows = len(rows) > limit, rows[:limit]
    publications = read_publications(db, snapshot, hrefs, [int(str(row[0])) for row in rows], count_pages=count_pages)
    links = feed_links(
        hrefs,
        path="/books",
        params={**params, "after": after},
        kind="acquisition",
        up=(hrefs.feed(), "navigation"),
    )
    previous = None
    if page > 1 and rows:
        previous = _previous_after(db, snapshot, query, rows[0], page=page, limit=limit)
    links += build_page_links(
        hrefs,
        path="/books",
        params=params,
        kind="acquisition",
        page=page,
        previous_after=previous,
        next_after=encode_cursor(page + 1, scope, _row_keys(rows[-1])) if has_next else None,
    )
    return Feed(
        id=stable_id(snapshot, "books", sorted((k, str(v)) for k, v in params.items() if v is not None)),
        title=title,
        updated=snapshot.updated,
        kind="acquisition",
        author_name=title,
        links=tuple(links),
        publications=tuple(publications),
        navigation=() if publications else when_empty(snapshot, hrefs, "books", title=NO_MATCH),
        facets=tuple(_facets(db, snapshot, hrefs, query, params)),
        page=Page(
            number_of_items=snapshot.count(db, query),
            items_per_page=limit,
            current_page=page,
            start_index=(page - 1) * limit + 1,
        ),
    )
