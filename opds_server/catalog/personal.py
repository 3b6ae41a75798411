"""Each reader's own feeds: Favourites, Shelves and each shelf, Currently reading, Finished.

A personal list is an ordered tuple of Calibre book ids read from the user database
(``PersonalLibrary``). The books Calibre still offers (present, with a file on disk) are kept in
that order and paged by slicing, with the same opaque cursors as ``/books``: a cursor holds the
position and id of the last book shown, and its scope names the user and the list, so a cursor
carried to another list or another user's feed is refused. The feeds themselves are assembled
from the catalogue's builders (``read_publications``, ``feed_links``, ``build_page_links``).

These feeds depend on who asks: ``BookList.state`` digests what they show beyond the library, for
the route to fold into a per-user ETag. Nothing here may be cached under a key without the user.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from enum import StrEnum

import msgspec

from feeds.model import Feed, FeedKind, NavigationEntry, Page
from opds_server.calibre.database import CalibreDatabase
from opds_server.calibre.snapshot import Library, LibrarySnapshot
from opds_server.catalog.acquisition import build_page_links, read_publications
from opds_server.catalog.common import feed_links, stable_id, when_empty
from opds_server.catalog.cursor import cursor_scope, decode_cursor, encode_cursor
from opds_server.catalog.hrefs import Hrefs, ParamValue
from opds_server.catalog.publications import PageCounter
from opds_server.db.library import PersonalLibrary, ShelfRecord
from opds_server.errors import InvalidCursorError, NotFoundError

NOTHING_YET = "Nothing here yet: browse the new books"

SHELVES_PATH = "/shelves"


class ListKind(StrEnum):
    """The personal lists every user has (shelves are the user's own making)."""

    FAVOURITES = "favourites"
    READING = "reading"
    FINISHED = "finished"


class PersonalSection(msgspec.Struct, frozen=True, kw_only=True):
    """A personal entry of the root feed."""

    path: str
    title: str
    summary: str
    kind: FeedKind


SECTIONS = (
    PersonalSection(
        path="/favourites",
        title="Favourites",
        summary="Books you marked as favourite, newest first",
        kind="acquisition",
    ),
    PersonalSection(path=SHELVES_PATH, title="Shelves", summary="Your shelves", kind="navigation"),
    PersonalSection(
        path="/reading",
        title="Currently reading",
        summary="Books you have begun and not finished, most recently read first",
        kind="acquisition",
    ),
    PersonalSection(
        path="/finished", title="Finished", summary="Books you have finished, most recently first", kind="acquisition"
    ),
)


class BookList(msgspec.Struct, frozen=True, kw_only=True):
    """A user's ordered book ids, as the user database holds them (books Calibre lost included)."""

    user_id: int
    path: str
    """Relative to the representation's root: ``/favourites``, ``/shelves/3``."""
    title: str
    book_ids: tuple[int, ...]
    updated: dt.datetime | None = None
    up: str = ""
    """The path of the navigation feed above this one (``""``: the root)."""

    @property
    def state(self) -> str:
        """A digest of everything the list's feeds show beyond the library: for the ETag."""
        return hashlib.blake2s(msgspec.json.encode(self), digest_size=12).hexdigest()


def build_personal_entries(snapshot: LibrarySnapshot, hrefs: Hrefs, user_id: int) -> list[NavigationEntry]:
    """The root's entries leading to a logged-in user's own feeds.

    They carry no counts, so the root depends on who asks only through the user id.
    """
    return [
        NavigationEntry(
            id=stable_id(snapshot, "user", user_id, section.path),
            title=section.title,
            href=hrefs.feed(section.path),
            type=hrefs.feed_type(section.kind),
            updated=snapshot.updated,
            summary=section.summary,
        )
        for section in SECTIONS
    ]


def read_offered(db: CalibreDatabase, book_ids: Sequence[int]) -> list[int]:
    """The ids Calibre still offers (the book exists and a file of it is on disk), in the given order."""
    if not book_ids:
        return []
    # One JSON parameter rather than one per id: a long list stays under SQLite's variable limit.
    rows = db.fetch(
        "SELECT id FROM opds_books WHERE id IN (SELECT value FROM json_each(?))",
        (msgspec.json.encode(list(book_ids)).decode(),),
    )
    present = {int(str(row[0])) for row in rows}
    return [book_id for book_id in book_ids if book_id in present]


def _start_after(book_ids: Sequence[int], position: int, book_id: int) -> int:
    """Where the page after the book ``book_id``, last seen at ``position``, starts.

    The list may have changed since the cursor was made: the book is looked up by id first. When
    it has left the list, what followed it moved up by one, so the next page starts at its old
    position.
    """
    if 0 <= position < len(book_ids) and book_ids[position] == book_id:
        return position + 1
    if book_id in book_ids:
        return book_ids.index(book_id) + 1
    return min(max(position, 0), len(book_ids))


def build_list_feed(
    db: CalibreDatabase,
    snapshot: LibrarySnapshot,
    hrefs: Hrefs,
    books: BookList,
    *,
    after: str | None,
    limit: int | None,
    page_size: int,
    count_pages: PageCounter,
) -> Feed:
    """One page of a personal list; ``limit`` as the request gave it, ``page_size`` the default.

    Raises:
        InvalidCursorError: ``after`` is not a cursor of this list of this user.
    """
    size = limit or page_size
    offered = read_offered(db, books.book_ids)
    scope = cursor_scope("user", books.user_id, books.path)
    start, page = 0, 1
    if after is not None:
        cursor = decode_cursor(after, scope=scope, key_count=2)
        position, book_id = cursor.keys
        if not isinstance(position, int) or not isinstance(book_id, int):
            raise InvalidCursorError(f"after={after[:40]!r} is a cursor of another feed, not of this list")
        start, page = _start_after(offered, position, book_id), cursor.page
    previous_after = None
    if page > 2 and (previous_start := start - size) > 0:
        previous_after = encode_cursor(page - 1, scope, (previous_start - 1, offered[previous_start - 1]))
    next_after = None
    if start + size < len(offered):
        next_after = encode_cursor(page + 1, scope, (start + size - 1, offered[start + size - 1]))
    params: dict[str, ParamValue] = {"limit": limit}
    publications = read_publications(db, snapshot, hrefs, offered[start : start + size], count_pages=count_pages)
    return Feed(
        id=stable_id(snapshot, "user", books.user_id, books.path, limit or ""),
        title=books.title,
        updated=max(snapshot.updated, books.updated or snapshot.updated),
        kind="acquisition",
        author_name=books.title,
        links=(
            *feed_links(
                hrefs,
                path=books.path,
                params={**params, "after": after},
                kind="acquisition",
                up=(hrefs.feed(books.up), "navigation"),
            ),
            *build_page_links(
                hrefs,
                path=books.path,
                params=params,
                kind="acquisition",
                page=page,
                previous_after=previous_after,
                next_after=next_after,
            ),
        ),
        publications=tuple(publications),
        navigation=()
        if publications
        else when_empty(snapshot, hrefs, "user", books.user_id, books.path, title=NOTHING_YET),
        page=Page(number_of_items=len(offered), items_per_page=size, current_page=page, start_index=start + 1),
    )


def build_shelves_feed(
    db: CalibreDatabase, snapshot: LibrarySnapshot, hrefs: Hrefs, user_id: int, shelves: Sequence[BookList]
) -> Feed:
    """The user's shelves as a navigation feed, each with the number of books it offers."""
    offered = set(read_offered(db, sorted({b for shelf in shelves for b in shelf.book_ids})))
    updated = max([snapshot.updated, *(shelf.updated for shelf in shelves if shelf.updated is not None)])
    entries = []
    for shelf in shelves:
        count = sum(1 for book_id in shelf.book_ids if book_id in offered)
        entries.append(
            NavigationEntry(
                id=stable_id(snapshot, "user", user_id, shelf.path),
                title=shelf.title,
                href=hrefs.feed(shelf.path),
                type=hrefs.feed_type("acquisition"),
                updated=max(snapshot.updated, shelf.updated or snapshot.updated),
                summary=f"{count} book" if count == 1 else f"{count} books",
                count=count,
            )
        )
    return Feed(
        id=stable_id(snapshot, "user", user_id, SHELVES_PATH),
        title="Shelves",
        updated=updated,
        kind="navigation",
        author_name="Shelves",
        links=tuple(
            feed_links(hrefs, path=SHELVES_PATH, params={}, kind="navigation", up=(hrefs.feed(), "navigation"))
        ),
        navigation=tuple(entries) or when_empty(snapshot, hrefs, "user", user_id, SHELVES_PATH, title=NOTHING_YET),
    )


class PersonalCatalog:
    """A user's lists read from the user database, and their feeds over the served library.

    Everything here blocks (user database and SQLite reads); routes call it from a worker thread.
    """

    def __init__(
        self, library: Library, personal: PersonalLibrary, *, count_pages: PageCounter, page_size: int
    ) -> None:
        self.library = library
        self.personal = personal
        self.count_pages = count_pages
        self.page_size = page_size

    def read_list(self, user_id: int, kind: ListKind) -> BookList:
        """The list's book ids in feed order."""
        read = {
            ListKind.FAVOURITES: self.personal.favourites,
            ListKind.READING: self.personal.reading,
            ListKind.FINISHED: self.personal.finished,
        }[kind]
        path = f"/{kind.value}"
        title = next(section.title for section in SECTIONS if section.path == path)
        return BookList(user_id=user_id, path=path, title=title, book_ids=tuple(read(user_id)))

    def read_shelf(self, user_id: int, shelf_id: int) -> BookList:
        """A shelf's book ids in shelf order.

        Raises:
            NotFoundError: the user has no such shelf (another user's shelf included).
        """
        shelf = self.personal.shelf(user_id, shelf_id)
        if shelf is None:
            raise NotFoundError(f"you have no shelf {shelf_id}")
        return self._shelf(user_id, shelf)

    def read_shelves(self, user_id: int) -> list[BookList]:
        """Every shelf of the user, by name, with its book ids."""
        return [self._shelf(user_id, shelf) for shelf in self.personal.shelves(user_id)]

    def _shelf(self, user_id: int, shelf: ShelfRecord) -> BookList:
        return BookList(
            user_id=user_id,
            path=f"{SHELVES_PATH}/{shelf.id}",
            title=shelf.name,
            # None only if the shelf was deleted since it was listed: it is then empty.
            book_ids=tuple(self.personal.shelf_books(user_id, shelf.id) or ()),
            updated=shelf.updated_at,
            up=SHELVES_PATH,
        )

    def list_feed(self, hrefs: Hrefs, books: BookList, *, after: str | None, limit: int | None) -> Feed:
        snapshot = self.library.snapshot()
        return build_list_feed(
            self.library.db,
            snapshot,
            hrefs,
            books,
            after=after,
            limit=limit,
            page_size=self.page_size,
            count_pages=self.count_pages,
        )

    def shelves_feed(self, hrefs: Hrefs, user_id: int, shelves: Sequence[BookList]) -> Feed:
        return build_shelves_feed(self.library.db, self.library.snapshot(), hrefs, user_id, shelves)
