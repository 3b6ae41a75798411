"""The library as a Kobo sees it: which books a device may have, and each one's Kobo metadata.

Only books with an EPUB or KEPUB file that is really on disk are offered (a Kobo reads nothing
else: spec 6.3). Each offered book gets one version number for the snapshot diff, made from what
the device would see change: Calibre's ``last_modified``, the file to be sent (format, size,
mtime) and the cover's mtime. Reading it all costs one query over our index and two ``stat``
calls per book, done once per sync session that found something changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import uuid
from collections.abc import Iterable, Sequence

import msgspec

from opds_server.calibre.books import book_file_name, read_books
from opds_server.calibre.comments import sanitise_html
from opds_server.calibre.model import Book
from opds_server.calibre.snapshot import Library, language_tag
from opds_server.koreader.spine import read_spine
from opds_server.storage.files import LibraryFiles, StoredFile
from sync.kobo.model import (
    ActivePeriod,
    BookEntitlement,
    BookMetadata,
    ContributorRole,
    DownloadUrl,
    Publisher,
    Series,
)
from sync.kobo.snapshot import BookEntry
from sync.kobo.state import OtherProgress
from sync.kobo.timestamps import format_timestamp
from sync.koreader.progress import chapter_of

KOBO_FORMATS = ("KEPUB", "EPUB")
_SERIES_NAMESPACE = uuid.UUID("6f1d3c57-2a4e-4a8b-9a55-1b6f0f6f4c11")


def _version(*parts: object) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1  # fits a signed 64-bit column


class KoboFile(msgspec.Struct, frozen=True, kw_only=True):
    """The file a Kobo is sent for a book: its KEPUB if Calibre has one, else its EPUB."""

    format: str
    stored: StoredFile
    file_name: str
    size: int


def kobo_file(files: LibraryFiles, book: Book) -> KoboFile | None:
    """The book's KEPUB, else its EPUB, as the storage has it now; ``None`` when it has neither."""
    for wanted in KOBO_FORMATS:
        for found in book.formats:
            if found.format == wanted:
                stored = files.stat(f"{book.path}/{found.file_name}")
                if stored is not None:
                    return KoboFile(format=wanted, stored=stored, file_name=found.file_name, size=stored.size)
    return None


def cover_image_id(book: Book, files: LibraryFiles) -> str:
    """``<uuid>-<cover version>``: changes with the cover (a hash of its mtime in nanoseconds and its
    size), so the device fetches it again (spec 1; calibre-web-automated#1050). Books without a
    cover get the one we draw, versioned by the text drawn on it."""
    if book.has_cover:
        stored = files.stat(f"{book.path}/cover.jpg")
        if stored is not None:
            version = hashlib.blake2s(f"{stored.mtime_ns}:{stored.size}".encode(), digest_size=4).hexdigest()
            return f"{book.uuid}-{version}"
    drawn = hashlib.blake2s(
        "\x1f".join([book.title, *(a.name for a in book.authors)]).encode(), digest_size=4
    ).hexdigest()
    return f"{book.uuid}-d{drawn}"


def book_uuid_of(image_id: str) -> str:
    """The book uuid in an image id (``<uuid>-<version>``)."""
    return image_id[:36]


class KoboLibrary:
    """The books a Kobo may be sent, read from the library index."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self._entries: tuple[str, list[BookEntry]] | None = None
        self._lock = threading.Lock()

    @property
    def files(self) -> LibraryFiles:
        return self.library.db.files

    def entries(self, *, only: Iterable[int] | None = None) -> list[BookEntry]:
        """Every offered book (or those of ``only``) with its version, by id.

        The whole list is kept for the library's generation: a device's next session after it
        saved reading states (the library unchanged) reuses it instead of reading and stat-ing
        every book again (4 s at 100,000 books).
        """
        generation = self.library.snapshot().generation
        if only is None:
            with self._lock:
                if self._entries is not None and self._entries[0] == generation:
                    return self._entries[1]
            found = self._read_entries(None)
            with self._lock:
                self._entries = (generation, found)
            return found
        return self._read_entries(set(only))

    def _read_entries(self, wanted: set[int] | None) -> list[BookEntry]:
        rows = self.library.db.fetch(
            "SELECT b.id, b.uuid, b.path, b.has_cover, b.last_modified, d.format, d.name"
            " FROM books b JOIN data d ON d.book = b.id WHERE d.format IN ('KEPUB', 'EPUB') ORDER BY b.id"
        )
        files: dict[int, dict[str, tuple[str, str, object, object, object]]] = {}
        for book_id, book_uuid, path, has_cover, modified, fmt, name in rows:
            key = int(str(book_id))
            if wanted is not None and key not in wanted:
                continue
            files.setdefault(key, {})[str(fmt)] = (str(book_uuid), str(path), has_cover, modified, name)
        storage = self.files
        entries = []
        for book_id, formats in files.items():
            for wanted_format in KOBO_FORMATS:
                found = formats.get(wanted_format)
                if found is None:
                    continue
                book_uuid, path, has_cover, modified, name = found
                stored = storage.stat(f"{path}/{book_file_name(name, wanted_format)}")
                if stored is None:
                    continue  # listed but not in the storage: try the other format
                cover = storage.stat(f"{path}/cover.jpg") if has_cover else None
                cover_mtime = cover.mtime_ns if cover is not None else None
                version = _version(modified, wanted_format, stored.size, stored.mtime_ns, cover_mtime)
                entries.append(BookEntry(id=book_id, uuid=book_uuid, version=version))
                break
        return entries

    def books(self, ids: Sequence[int]) -> dict[int, Book]:
        snapshot = self.library.snapshot()
        return read_books(self.library.db, list(ids), snapshot.custom_columns)

    def book_id(self, book_uuid: str) -> int | None:
        """The id of the book with this uuid, if the library has it."""
        self.library.snapshot()
        rows = self.library.db.fetch("SELECT id FROM books WHERE uuid = ?", (book_uuid,))
        return int(str(rows[0][0])) if rows else None


def _language(book: Book) -> str:
    return language_tag(book.languages[0]).split("-")[0] if book.languages else "en"


def _series_number(index: float) -> str:
    return f"{index:g}"


def _isbn(book: Book) -> str | msgspec.UnsetType:
    return next((value for kind, value in book.identifiers if kind == "isbn"), msgspec.UNSET)


def build_entitlement(
    book_uuid: str, *, created: dt.datetime, modified: dt.datetime, is_removed: bool = False
) -> BookEntitlement:
    """A book's ``BookEntitlement`` (spec 6.1); active since it entered the library, so a page sent
    again is the same bytes."""
    return BookEntitlement(
        active_period=ActivePeriod(from_=format_timestamp(created)),
        created=format_timestamp(created),
        cross_revision_id=book_uuid,
        id=book_uuid,
        is_removed=is_removed,
        last_modified=format_timestamp(modified),
        revision_id=book_uuid,
    )


def build_metadata(book: Book, *, files: LibraryFiles, download: DownloadUrl | None) -> BookMetadata:
    """A book's ``BookMetadata`` (spec 6.2)."""
    pubdate = (
        format_timestamp(dt.datetime.combine(book.pubdate, dt.time(), tzinfo=dt.UTC)) if book.pubdate else msgspec.UNSET
    )
    return BookMetadata(
        entitlement_id=book.uuid,
        revision_id=book.uuid,
        cross_revision_id=book.uuid,
        work_id=book.uuid,
        title=book.title,
        # An empty description makes the device keep the old one (Komga sends a space).
        description=sanitise_html(book.comments) if book.comments else " ",
        cover_image_id=cover_image_id(book, files),
        download_urls=[download] if download else [],
        contributors=[a.name for a in book.authors],
        contributor_roles=[ContributorRole(name=a.name) for a in book.authors],
        language=_language(book),
        publication_date=pubdate,
        publisher=Publisher(name=book.publisher.name) if book.publisher else msgspec.UNSET,
        series=Series(
            name=book.series.name,
            number=_series_number(book.series.index),
            number_float=book.series.index,
            id=str(uuid.uuid5(_SERIES_NAMESPACE, book.series.name)),
        )
        if book.series
        else msgspec.UNSET,
        isbn=_isbn(book),
    )


def removed_metadata(book_uuid: str) -> BookMetadata:
    """The skeleton sent with a removal when the book itself is gone (Komga's shape)."""
    return BookMetadata(
        entitlement_id=book_uuid,
        revision_id=book_uuid,
        cross_revision_id=book_uuid,
        work_id=book_uuid,
        title=book_uuid,
        description=" ",
        download_urls=[],
        contributors=[],
        contributor_roles=[],
    )


def locate(files: LibraryFiles, book: Book, other: OtherProgress | None) -> OtherProgress | None:
    """``other`` with the spine document its locator points into, when it is a KOReader XPointer
    (``DocFragment[N]``) into this book's EPUB: the Kobo then opens that chapter (spec C.3)."""
    if other is None or other.locator is None or other.source is not None:
        return other
    chapter = chapter_of(other.locator)
    source = kobo_file(files, book)
    spine = read_spine(files, source.stored) if chapter is not None and source is not None else None
    if spine is None or chapter is None or chapter > len(spine.hrefs):
        return other
    return msgspec.structs.replace(other, source=spine.hrefs[chapter - 1])
