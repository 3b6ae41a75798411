"""The catalogue as the routes see it: typed requests in, ``feeds.model`` Structs out.

Everything here blocks (SQLite reads, file stats); routes call it from a worker thread.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import msgspec

from feeds import vocab
from feeds.model import Feed, Publication, SearchDescription
from opds_server.calibre.books import book_file_name, read_books
from opds_server.calibre.model import Book
from opds_server.calibre.query import MAX_QUERY_TERMS, BookQuery, SortOrder, page_sql
from opds_server.calibre.snapshot import Library, LibrarySnapshot
from opds_server.catalog.acquisition import build_books_feed, describe
from opds_server.catalog.hrefs import Hrefs, ParamValue
from opds_server.catalog.navigation import CATEGORIES, build_category_feed, build_root
from opds_server.catalog.personal import build_personal_entries
from opds_server.catalog.publications import build_publication
from opds_server.config import Settings
from opds_server.errors import (
    BookNotFoundError,
    CoverNotFoundError,
    FileMissingError,
    FormatNotFoundError,
    InvalidQueryError,
    SearchIndexingError,
)
from opds_server.storage.comics import read_page_names
from opds_server.storage.derived import PlaceholderStore
from opds_server.storage.files import LibraryFiles, StoredFile

ROOT_GROUP_SIZE = 8
MAX_SEARCH_LENGTH = 256


class BooksRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The parameters of ``/books``, as the route parsed them."""

    sort: SortOrder | None = None
    author: int | None = None
    series: int | None = None
    publisher: int | None = None
    tag: str | None = None
    language: str | None = None
    rating: int | None = None
    format: str | None = None
    initial: str | None = None
    query: str | None = None
    limit: int | None = None

    def params(self) -> dict[str, ParamValue]:
        """Canonical query parameters: what every link to this feed repeats."""
        values = msgspec.structs.asdict(self)
        return {k: (v.value if isinstance(v, StrEnum) else v) for k, v in values.items() if v is not None}


def _terms(search: str) -> tuple[str, ...]:
    if len(search) > MAX_SEARCH_LENGTH:
        raise InvalidQueryError(f"query is {len(search)} characters long; at most {MAX_SEARCH_LENGTH} are accepted")
    if "\ufffd" in search or any(ord(c) < 32 for c in search):
        raise InvalidQueryError("query must be UTF-8 text without control characters")
    terms = tuple(dict.fromkeys(search.split()))
    if not terms:
        raise InvalidQueryError("query is empty; give at least one word to search for")
    if len(terms) > MAX_QUERY_TERMS:
        raise InvalidQueryError(f"query has {len(terms)} words; at most {MAX_QUERY_TERMS} are accepted")
    return terms


class Catalog:
    """The served library's feeds."""

    def __init__(self, library: Library, settings: Settings) -> None:
        self.library = library
        self.settings = settings

    @property
    def root_path(self) -> Path:
        return self.library.db.library

    @property
    def files(self) -> LibraryFiles:
        return self.library.db.files

    def snapshot(self) -> LibrarySnapshot:
        return self.library.snapshot()

    def count_pages(self, book: Book) -> int | None:
        """Pages of a book's CBZ file, for OPDS-PSE."""
        for book_file in book.formats:
            if book_file.format == "CBZ":
                stored = self.files.stat(f"{book.path}/{book_file.file_name}")
                return (len(read_page_names(self.files, stored)) or None) if stored is not None else None
        return None

    def _publication(self, book: Book, hrefs: Hrefs, *, is_complete: bool) -> Publication:
        return build_publication(book, hrefs, is_complete=is_complete, count_pages=self.count_pages)

    def root(self, hrefs: Hrefs, *, user_id: int | None = None) -> Feed:
        """The root feed; a logged-in user's (``user_id``) also leads to their own feeds."""
        snapshot = self.snapshot()
        sql, parameters = page_sql(BookQuery(), after=None, limit=ROOT_GROUP_SIZE)
        rows = self.library.db.fetch(sql, parameters)
        books = read_books(self.library.db, [int(str(r[0])) for r in rows], snapshot.custom_columns)
        ordered = [books[b] for row in rows if (b := int(str(row[0]))) in books]
        newest = [self._publication(book, hrefs, is_complete=False) for book in ordered]
        return build_root(
            snapshot,
            hrefs,
            title=self.settings.library_name,
            threshold=self.settings.group_threshold,
            new_books=newest,
            personal=build_personal_entries(snapshot, hrefs, user_id) if user_id is not None else (),
        )

    def category(self, hrefs: Hrefs, name: str, *, initial: str | None, parent: str | None, after: str | None) -> Feed:
        return build_category_feed(
            self.snapshot(),
            hrefs,
            CATEGORIES[name],
            initial=initial,
            parent=parent,
            after=after,
            page_size=self.settings.page_size,
            threshold=self.settings.group_threshold,
        )

    def books(self, hrefs: Hrefs, request: BooksRequest, *, after: str | None) -> Feed:
        snapshot = self.snapshot()
        terms = _terms(request.query) if request.query is not None else ()
        if terms and not self.library.search_ready():
            raise SearchIndexingError(
                "the search index of this library is still being built (it is, once, after the first start);"
                " browsing works meanwhile",
                retry_after=15,
            )
        default_sort = SortOrder.NEW
        if terms:
            default_sort = SortOrder.RELEVANCE
        elif request.series is not None:
            default_sort = SortOrder.SERIES
        elif request.initial is not None:
            default_sort = SortOrder.TITLE
        if request.sort is SortOrder.RELEVANCE and not terms:
            raise InvalidQueryError("sort=relevance needs a query: relevance ranks the books a search finds")
        query = BookQuery(
            sort=request.sort or default_sort,
            author=request.author,
            series=request.series,
            publisher=request.publisher,
            tag=request.tag,
            language=request.language,
            rating=request.rating,
            format=request.format.upper() if request.format else None,
            initial=request.initial,
            terms=terms,
        )
        return build_books_feed(
            self.library.db,
            snapshot,
            hrefs,
            query,
            params=request.params(),
            title=describe(snapshot, query, request.query),
            after=after,
            limit=request.limit or self.settings.page_size,
            count_pages=self.count_pages,
        )

    def book(self, book_id: int) -> Book:
        """A book that has at least one file on disk.

        Raises:
            BookNotFoundError: no such id, or the book has no file to offer.
        """
        snapshot = self.snapshot()
        book = read_books(self.library.db, [book_id], snapshot.custom_columns).get(book_id)
        if book is None:
            raise BookNotFoundError(f"book {book_id} is not in the library")
        return book

    def publication(self, hrefs: Hrefs, book_id: int) -> Publication:
        book = self.book(book_id)
        if not book.formats:
            raise BookNotFoundError(f"book {book_id} has no file on disk, so the catalogue does not offer it")
        return self._publication(book, hrefs, is_complete=True)

    def search_description(self, hrefs: Hrefs) -> SearchDescription:
        return SearchDescription(
            short_name=self.settings.library_name,
            description=f"Search {self.settings.library_name} by title, author, series, tag or publisher",
            template=hrefs.search_template(),
            type=vocab.ACQUISITION_TYPE,
        )


class BookFileLocation(msgspec.Struct, frozen=True, kw_only=True):
    """Where a format of a book is in the storage, and what to call it in a download."""

    stored: StoredFile
    file_name: str
    format: str


class CoverImage(msgspec.Struct, frozen=True, kw_only=True):
    """A book's cover, found but not read: its own (in the storage), or the one drawn for a book
    without one. ``cover_file`` gives its bytes as a local file."""

    book_id: int
    key: str
    """Names whose cover this is: ``12``, or ``12-placeholder`` for the drawn one."""
    version: str
    """Changes whenever the image does; the same on every instance."""
    mtime_ns: int
    """When the image last changed (the cover file's; the book's, for a drawn one)."""
    stored: StoredFile | None = None
    drawn: tuple[str, tuple[str, ...], str | None] | None = None
    """Title, authors and series drawn on a placeholder."""


def _inside(root: Path, candidate: str) -> bool:
    return Path(candidate).resolve().is_relative_to(root.resolve())


def locate_file(catalog: Catalog, book_id: int, book_format: str) -> BookFileLocation:
    """The file of one format of a book, checked to be in the storage (and, on disk, inside the library).

    Raises:
        BookNotFoundError: no such book.
        FormatNotFoundError: the book has no such format.
        FileMissingError: Calibre lists the format but its file is not in the storage.
    """
    wanted = book_format.upper()
    catalog.snapshot()  # the index is up to date with metadata.db (one stat when it is)
    rows = catalog.library.db.fetch(
        "SELECT b.path, d.name, d.format FROM books b LEFT JOIN data d ON d.book = b.id WHERE b.id = ?",
        (book_id,),
    )
    if not rows:
        raise BookNotFoundError(f"book {book_id} is not in the library")
    files = catalog.files
    for path, name, found_format in rows:
        if found_format is None or str(found_format).upper() != wanted:
            continue
        file_name = book_file_name(name, wanted)
        stored = files.stat(f"{path}/{file_name}")
        if stored is None:
            files.request_refresh()
        if stored is None or (stored.local_path is not None and not _inside(catalog.root_path, stored.local_path)):
            raise FileMissingError(f"book {book_id}'s {wanted} file is missing from the library folder")
        return BookFileLocation(stored=stored, file_name=file_name, format=wanted)
    formats = sorted(str(r[2]).upper() for r in rows if r[2] is not None)
    offered = ", ".join(formats) if formats else "none"
    raise FormatNotFoundError(f"book {book_id} has no {wanted} format (formats: {offered})")


def locate_cover(catalog: Catalog, book_id: int) -> StoredFile:
    """The cover image of a book, in the storage.

    Raises:
        BookNotFoundError: no such book.
        CoverNotFoundError: the book has no cover.
    """
    catalog.snapshot()
    rows = catalog.library.db.fetch("SELECT path, has_cover FROM books WHERE id = ?", (book_id,))
    if not rows:
        raise BookNotFoundError(f"book {book_id} is not in the library")
    path, has_cover = rows[0]
    stored = catalog.files.stat(f"{path}/cover.jpg") if has_cover else None
    if stored is None or (stored.local_path is not None and not _inside(catalog.root_path, stored.local_path)):
        raise CoverNotFoundError(f"book {book_id} has no cover")
    return stored


def find_cover(catalog: Catalog, placeholders: PlaceholderStore, book_id: int) -> CoverImage:
    """The book's cover, or the one drawn for it when it has none; nothing is read or drawn yet.

    Raises:
        BookNotFoundError: no such book.
    """
    try:
        stored = locate_cover(catalog, book_id)
    except CoverNotFoundError:
        book = catalog.book(book_id)
        series = f"{book.series.name} {book.series.index:g}" if book.series else None
        authors = tuple(a.name for a in book.authors)
        return CoverImage(
            book_id=book_id,
            key=f"{book_id}-placeholder",
            version=placeholders.version_of(book_id, book.title, authors, series),
            mtime_ns=int(book.last_modified.timestamp() * 1e9),
            drawn=(book.title, authors, series),
        )
    return CoverImage(
        book_id=book_id, key=str(book_id), version=stored.version, mtime_ns=stored.mtime_ns, stored=stored
    )


def cover_file(catalog: Catalog, placeholders: PlaceholderStore, cover: CoverImage) -> Path:
    """A local file with the cover's bytes: the library's (a kept copy of a Drive one), or the drawn one.

    Raises:
        StorageError: the cover's bytes cannot be had from the storage now.
    """
    if cover.stored is not None:
        return catalog.files.local_copy(cover.stored, keep=True)
    assert cover.drawn is not None
    title, authors, series = cover.drawn
    return placeholders.read_placeholder(cover.book_id, title, authors, series)


def cover_or_drawn(catalog: Catalog, placeholders: PlaceholderStore, book_id: int) -> tuple[CoverImage, Path]:
    """``find_cover`` and its ``cover_file``.

    Raises:
        BookNotFoundError: no such book.
        StorageError: as ``cover_file``.
    """
    cover = find_cover(catalog, placeholders, book_id)
    return cover, cover_file(catalog, placeholders, cover)
