"""Navigation lists, and paging through the catalogue by its own links, in both representations.

Acquisition feeds are walked with ``limit=7`` from the first page to the last by following ``next``:
every offered book appears exactly once, in an order consistent with the sort (checked against the
library's own ``metadata.db``), ``previous`` is exactly the URL whose ``next`` led to a page, ``first``
is the first page, and the counts (``opensearch:*``, OPDS 2 ``numberOfItems``/``itemsPerPage``/
``currentPage``) are right. Navigation lists are paged and grouped on a second server started with
``OPDS_PAGE_SIZE=5`` and ``OPDS_GROUP_THRESHOLD=8``; the fixture library's tag hierarchy, ratings and
languages are checked on the shared one.

The readers of ``tests.server.reading`` parse Atom with lxml XPath and OPDS 2 with ``msgspec``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import LiveServer, copy_fixture_library, start_server, stop_server
from tests.server.reading import (
    LIMIT,
    VISIBLE,
    Flavour,
    assert_paged_consistently,
    book_ids,
    nav_item,
    nav_items,
    page_one,
    params_of,
    prefix,
    walk,
)

SMALL_PAGE, GROUP_THRESHOLD = 5, 8


# --- acquisition feeds ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BookRow:
    timestamp: str
    sort: str
    author_sort: str
    pubdate: str
    rating: int


SORT_KEYS: dict[str, tuple[Callable[[BookRow], tuple[str | int, ...]], bool]] = {  # key, descending
    "new": (lambda b: (b.timestamp,), True),
    "title": (lambda b: (b.sort.casefold(),), False),
    "author": (lambda b: (b.author_sort.casefold(), b.sort.casefold()), False),
    "published": (lambda b: (b.pubdate,), True),  # calibre's undefined date, year 101, comes last
    "rating": (lambda b: (b.rating, b.timestamp), True),
}
FILTERS = {  # the books a filter keeps, by SQL on metadata.db
    "": "SELECT id FROM books",
    "language=eng": "SELECT book FROM books_languages_link l JOIN languages g ON g.id = l.lang_code"
    " WHERE g.lang_code = 'eng'",
    "tag=Fiction": "SELECT book FROM books_tags_link l JOIN tags t ON t.id = l.tag"
    " WHERE t.name = 'Fiction' OR t.name LIKE 'Fiction.%'",
}
WALKS = [*((sort, "") for sort in SORT_KEYS), ("title", "language=eng"), ("author", "tag=Fiction")]


@dataclass(frozen=True)
class Facts:
    """What metadata.db says: each book's sort keys, and which offered books each filter keeps."""

    rows: dict[int, BookRow]
    kept: dict[str, set[int]]


@pytest.fixture(scope="module")
def facts(live_server: LiveServer) -> Facts:
    db = sqlite3.connect(f"{(live_server.library / 'metadata.db').as_uri()}?mode=ro", uri=True)
    found = db.execute(
        "SELECT b.id, b.timestamp, b.sort, b.author_sort, b.pubdate, IFNULL(r.rating, 0) FROM books b"
        " LEFT JOIN books_ratings_link l ON l.book = b.id LEFT JOIN ratings r ON r.id = l.rating"
    )
    rows = {row[0]: BookRow(*row[1:]) for row in found}
    kept = {where: {row[0] for row in db.execute(sql)} & VISIBLE for where, sql in FILTERS.items()}
    db.close()
    return Facts(rows, kept)


@pytest.mark.parametrize(("sort", "where"), WALKS, ids=[f"{s}-{w}" if w else s for s, w in WALKS])
def test_walking_next_links_shows_every_book_once_in_sort_order(
    client: httpx.Client, facts: Facts, flavour: Flavour, sort: str, where: str
) -> None:
    params = {"limit": str(LIMIT), "sort": sort, **params_of(where)}
    pages = walk(client, flavour, page_one(client, flavour, "/books", params))
    assert_paged_consistently(pages, flavour, per_page=LIMIT, total=len(facts.kept[where]))
    order = [book for page in pages for book in page.books]
    assert sorted(order) == sorted(facts.kept[where])
    key, descending = SORT_KEYS[sort]
    keys = [key(facts.rows[book]) for book in order]
    assert keys == sorted(keys, reverse=descending)
    assert book_ids(client, flavour, page_one(client, flavour, "/books", {**params, "limit": "200"})) == order


def test_both_representations_page_the_same_38_books_in_the_same_order(client: httpx.Client) -> None:
    orders = [
        [book for page in walk(client, f, page_one(client, f, "/books", {"limit": str(LIMIT)})) for book in page.books]
        for f in ("atom", "json")
    ]
    assert orders[0] == orders[1]
    assert len(orders[0]) == len(VISIBLE) == 38


# --- navigation lists of the fixture library ------------------------------------------------------------------


def test_tags_nest_by_dots_and_are_browsed_by_parent(client: httpx.Client, flavour: Flavour) -> None:
    tags = f"{prefix(flavour)}/tags"
    top = {item.title: item for item in nav_items(client, flavour, tags)}
    assert (top["Fiction"].count, top["Non-Fiction"].count, top["Ficción"].count) == (22, 8, 1)
    fiction = [item.title for item in nav_items(client, flavour, top["Fiction"].href) if item.count]
    # A node's list starts with all of its books, children's included, then its children.
    assert fiction == [
        "All books in Fiction",
        "Classics",
        "Fantasy",
        "Historical",
        "Literary",
        "Mystery",
        "Science Fiction",
    ]
    history = nav_item(client, flavour, top["Non-Fiction"].href, "History")
    maritime = nav_item(client, flavour, history.href, "Maritime")
    assert (history.count, maritime.count) == (3, 3)
    assert set(book_ids(client, flavour, maritime.href)) == {14, 25, 26}


RATINGS = {10: [3, 7, 22], 9: [8], 7: [2], 4: [12]}  # stored 0-10: "rating:4.5" became 9, book 2's 3.5 stars is 7


@pytest.mark.parametrize("rating", sorted(RATINGS))
def test_ratings_list_keeps_half_stars(client: httpx.Client, flavour: Flavour, rating: int) -> None:
    ratings = nav_items(client, flavour, f"{prefix(flavour)}/ratings")
    (item,) = [i for i in ratings if httpx.URL(i.href).params.get("rating") == str(rating)]
    assert item.title.startswith("★" * (rating // 2) + "½" * (rating % 2) + " ")
    assert item.count == len(RATINGS[rating])
    assert sorted(book_ids(client, flavour, item.href)) == RATINGS[rating]


LANGUAGES = {"Arabic": ("ara", [11]), "English": ("eng", None), "French": ("fra", [8, 9, 15, 27])}
LANGUAGES |= {"Japanese": ("jpn", [10]), "Spanish": ("spa", [7])}


def test_languages_list_names_each_language(client: httpx.Client, flavour: Flavour) -> None:
    items = nav_items(client, flavour, f"{prefix(flavour)}/languages")
    assert [item.title for item in items] == sorted(LANGUAGES)
    for item in items:
        code, books = LANGUAGES[item.title]
        assert httpx.URL(item.href).params["language"] == code
        found = sorted(book_ids(client, flavour, f"{item.href}&limit=200"))
        assert found == (books or sorted(VISIBLE - {7, 8, 9, 10, 11, 21, 27})), item.title
        assert item.count == len(found)


# --- navigation lists on a server with small pages -------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A client of a second server on its own library copy, with five entries a page and letter groups past eight."""
    root = tmp_path_factory.mktemp("small-pages")
    library = copy_fixture_library(root / "library")
    env = {"OPDS_PAGE_SIZE": str(SMALL_PAGE), "OPDS_GROUP_THRESHOLD": str(GROUP_THRESHOLD)}
    server = start_server(library, root / "data", root / "server.log", env=env)
    try:
        with server.client() as http:
            yield http
    finally:
        stop_server(server)


PAGED_LISTS = {
    "/series": [
        *("Captain Comet", 'Cats & Dogs "Collected" <Set>', "Gull Point Mysteries", "Harbor Tales"),
        *("The Lantern Chronicles", "Voyages extraordinaires"),
    ],
    "/ratings": [
        *("★★★★★ (5 stars)", "★★★★½ (4.5 stars)", "★★★★ (4 stars)"),
        *("★★★½ (3.5 stars)", "★★★ (3 stars)", "★★ (2 stars)"),
    ],
    "/tags?parent=Fiction": [
        *("All books in Fiction", "Classics", "Fantasy", "Historical", "Literary", "Mystery", "Science Fiction"),
    ],
}


@pytest.mark.parametrize("path", sorted(PAGED_LISTS))
def test_short_category_lists_page_by_the_configured_size(small: httpx.Client, flavour: Flavour, path: str) -> None:
    list_path, _, query = path.partition("?")
    pages = walk(small, flavour, page_one(small, flavour, list_path, params_of(query)))
    assert_paged_consistently(pages, flavour, per_page=SMALL_PAGE, total=len(PAGED_LISTS[path]))
    assert [item.title for page in pages for item in page.items if item.count is not None] == PAGED_LISTS[path]


GROUPED_LISTS = {"/authors": 20, "/tags": 33, "/publishers": 9}


@pytest.mark.parametrize("path", sorted(GROUPED_LISTS))
def test_long_category_lists_are_grouped_by_initial_letter(small: httpx.Client, flavour: Flavour, path: str) -> None:
    letters = nav_items(small, flavour, page_one(small, flavour, path, {}))
    assert sum(letter.count or 0 for letter in letters) == GROUPED_LISTS[path]
    names: list[str] = []
    for letter in letters:
        assert len(letter.title) == 1
        assert letter.href == page_one(small, flavour, path, {"initial": letter.title})
        assert letter.count is not None
        pages = walk(small, flavour, letter.href)  # a letter with more than five names takes pages
        assert_paged_consistently(pages, flavour, per_page=SMALL_PAGE, total=letter.count)
        names.extend(item.href for page in pages for item in page.items)
    assert len(names) == len(set(names)) == GROUPED_LISTS[path]


def test_letter_groups_count_their_names_in_good_english(small: httpx.Client) -> None:
    for letter in nav_items(small, "atom", "/opds/authors"):
        assert letter.summary == f"{letter.count} author" + ("s" if letter.count != 1 else ""), letter.title


def test_title_letters_lead_straight_to_their_books(small: httpx.Client, flavour: Flavour) -> None:
    letters = nav_items(small, flavour, page_one(small, flavour, "/titles", {}))
    for letter in letters:
        assert len(book_ids(small, flavour, letter.href)) == letter.count, f"{letter.title}: {letter.href}"
    assert sum(letter.count or 0 for letter in letters) == len(VISIBLE)


def test_books_default_to_the_configured_page_size(small: httpx.Client, flavour: Flavour) -> None:
    pages = walk(small, flavour, page_one(small, flavour, "/books", {}))
    assert_paged_consistently(pages, flavour, per_page=SMALL_PAGE, total=len(VISIBLE))
    assert sorted(book for page in pages for book in page.books) == sorted(VISIBLE)
