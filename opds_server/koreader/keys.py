"""KOReader document keys of every byte stream we serve, computed ahead of time (shared/specs/koreader-sync.md C.1).

A progress PUT names its book only by a key the device computed over the bytes it downloaded
(``sync.koreader.keys.partial_md5``) or over the file's name. So every stream we can serve gets its
key stored before any device asks, whichever way the book reached the device:

* ``file``: each format's file in the library, as the OPDS and Kobo downloads send it (unchanged);
* ``kepub``: the KEPUB we made of a book's EPUB for Kobos (``opds_server.storage.kepub``), the
  newest in the KEPUB folder, as format ``KEPUB``;
* ``filename``: the MD5 of the name KOReader's OPDS browser gives a download of each format by
  default (a weak key: spec A.9.2), from the title and authors; recomputed whenever metadata.db
  changed since this indexer's last refresh, so a new title or author shows.

A refresh walks the library index in ranges of book ids: for each range, one query for the files
(and, when names are recomputed, one for the authors), one ``stat`` per file, and one indexed read
of the keys stored for the range. Only files whose (size, mtime) differ from what was stored are
hashed, at most 12 KiB each; only books whose keys differ are written, one transaction per range.
Books gone from the library, or left without a file on disk, lose their keys. Memory stays that of
one range whatever the size of the library. It blocks: run it in a worker thread or the CLI, never
on the event loop.

A device that downloaded a file before it changed keeps sending the old key (KOReader caches it in
the book's sidecar); that key is replaced here and no longer finds the book.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import stat
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from opds_server.calibre.books import book_file_name
from opds_server.calibre.snapshot import Library
from opds_server.db.document_keys import VARIANTS, DocumentKeyRecord, DocumentKeyStore, StoredKey, Variant
from opds_server.storage.files import LOCAL_READER, LibraryFiles, StorageError, StoredFile
from opds_server.storage.kepub import KEPUB_SUFFIX
from sync.koreader.keys import filename_key, koreader_file_name, partial_md5

log = logging.getLogger(__name__)

KEPUB_FORMAT = "KEPUB"
BOOKS_PER_RANGE = 2000
"""Book ids read, compared and written together."""

_LAST_BOOK = "SELECT MAX(id) FROM books"
_FILES = (
    "SELECT b.id, b.path, b.title, d.format, d.name FROM books b JOIN data d ON d.book = b.id"
    " WHERE b.id >= ? AND b.id < ?"
)
_AUTHORS = (
    "SELECT l.book, a.name FROM books_authors_link l JOIN authors a ON a.id = l.author"
    " WHERE l.book >= ? AND l.book < ? ORDER BY l.id"
)
_KEPUB_NAME = re.compile(rf"(?P<book>\d+)-(?P<mtime>\d+)-(?P<size>\d+){re.escape(KEPUB_SUFFIX)}")


class _Stream(NamedTuple):
    """One stream of a book as it is on disk now."""

    format: str
    variant: Variant
    stored: StoredFile
    """The file in the library's storage; a KEPUB's on local disk."""
    size: int
    mtime_ns: int
    key: str | None
    """Known without reading the file (``filename`` keys); ``None`` until hashed."""


_Slot = tuple[str, str]  # (format, variant) within one book


class DocumentKeyIndexer:
    """Keeps the store's keys in step with the library's files and the KEPUBs we made."""

    def __init__(self, library: Library, store: DocumentKeyStore, kepub_folder: Path) -> None:
        self.library = library
        self.store = store
        self.kepub_folder = kepub_folder
        self._generation: str | None = None
        """The library generation of the last completed refresh."""
        self._lock = threading.Lock()

    def refresh(self, *, now: dt.datetime | None = None) -> int:
        """Bring the stored keys up to date with the library as it is now.

        Args:
            now: when the keys were computed (stored as ``indexed_at``); default the current time.

        Returns:
            The number of files hashed: 0 when no file changed since the last refresh.

        Raises:
            LibraryUnavailableError: metadata.db is missing or unreadable and nothing was indexed yet.
        """
        with self._lock:  # one refresh at a time per indexer: a second caller waits, then finds little to do
            return self._refresh(now)

    def _refresh(self, now: dt.datetime | None) -> int:
        started = time.perf_counter()
        generation = self.library.snapshot().generation  # the index is up to date with metadata.db
        # Titles and authors live in metadata.db: while its generation stays the one this indexer
        # last refreshed, the stored file-name keys are still right and are not recomputed.
        names_are_current = generation == self._generation
        last_rows = self.library.db.fetch(_LAST_BOOK)
        last_book = max(int(str(last_rows[0][0] or 0)) if last_rows else 0, self.store.last_book_id() or 0)
        kepub_root = os.path.abspath(self.kepub_folder)  # noqa: PTH100  # strings: see _current_streams
        kepubs = self._kepubs(kepub_root)
        readers = {"file": self.library.db.files, "filename": self.library.db.files, "kepub": LOCAL_READER}
        hashed = changed = forgotten = 0
        for first in range(0, last_book + 1, BOOKS_PER_RANGE):
            stop = first + BOOKS_PER_RANGE
            stored = self.store.known_between(first, stop)
            current = self._current_streams(first, stop, kepubs, stored=stored if names_are_current else None)
            pending: dict[int, list[DocumentKeyRecord]] = {}
            for book_id, streams in current.items():
                before = stored.get(book_id, {})
                if _is_unchanged(streams, before):
                    continue
                records, hashed_now = _records(book_id, streams, before, readers)
                hashed += hashed_now
                if {(r.format, r.variant): (r.key, r.file_size, r.file_mtime_ns) for r in records} != before:
                    pending[book_id] = records
            if pending:
                self.store.replace_books(pending, variants=VARIANTS, now=now)
                changed += len(pending)
            gone = stored.keys() - current.keys()
            if gone:
                self.store.remove_books(gone)
                forgotten += len(gone)
        self._generation = generation
        log.info(
            "document keys: %d files hashed, %d books updated, %d without files forgotten, in %.2f s",
            hashed,
            changed,
            forgotten,
            time.perf_counter() - started,
        )
        return hashed

    def book_ids_for(self, key: str) -> list[int]:
        """The books with a stream whose key this is (see ``DocumentKeyStore.books_for``)."""
        return self.store.books_for(key)

    def _current_streams(
        self,
        first: int,
        stop: int,
        kepubs: dict[int, tuple[int, str]],
        *,
        stored: dict[int, dict[_Slot, StoredKey]] | None,
    ) -> dict[int, dict[_Slot, _Stream]]:
        """The streams we can serve now of the books with ids in [first, stop), by book.

        Args:
            first: the first book id.
            stop: the book id after the last.
            kepubs: the newest KEPUB of each book (``_kepubs``).
            stored: the stored keys of these books, whose file-name keys are taken as they are;
                ``None`` to compute every file-name key.
        """
        db = self.library.db
        files = db.files
        authors: defaultdict[int, list[str]] | None = None
        current: defaultdict[int, dict[_Slot, _Stream]] = defaultdict(dict)
        for book, folder, title, raw_format, name in db.fetch(_FILES, (first, stop)):
            book_id, book_format = int(str(book)), str(raw_format).upper()
            found = files.stat(f"{folder}/{book_file_name(name, book_format)}")
            if found is None:
                continue  # listed in data but gone from disk (fixture book 17): never served
            size, mtime_ns = found.size, found.mtime_ns
            streams = current[book_id]
            streams[book_format, "file"] = _Stream(book_format, "file", found, size, mtime_ns, None)
            known = stored.get(book_id, {}).get((book_format, "filename")) if stored is not None else None
            if known is not None:
                name_key = known[0]
            else:
                if authors is None:
                    authors = defaultdict(list)
                    for author_book, author in db.fetch(_AUTHORS, (first, stop)):
                        authors[int(str(author_book))].append(str(author))
                predicted = koreader_file_name(authors.get(book_id, ()), str(title or ""), book_format.lower())
                name_key = filename_key(predicted)
            streams[book_format, "filename"] = _Stream(book_format, "filename", found, size, mtime_ns, name_key)
        for book_id, streams in current.items():
            kepub = kepubs.get(book_id)
            kepub_stat = _stat(kepub[1]) if kepub is not None else None
            if kepub is not None and kepub_stat is not None:
                size, mtime_ns = kepub_stat
                local = StoredFile(relative=kepub[1], size=size, mtime_ns=mtime_ns, local_path=kepub[1])
                streams[KEPUB_FORMAT, "kepub"] = _Stream(KEPUB_FORMAT, "kepub", local, size, mtime_ns, None)
        return dict(current)

    @staticmethod
    def _kepubs(folder: str) -> dict[int, tuple[int, str]]:
        """Book id -> (the EPUB's mtime its name records, path) of the newest KEPUB we made of each
        book (an older one lingers until the new one replaces it)."""
        newest: dict[int, tuple[int, str]] = {}
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return {}  # nothing converted yet
        for entry in entries:
            match = _KEPUB_NAME.fullmatch(entry.name)
            if match is None:
                continue  # a marker (.as-is, .failed) or a conversion under way (.part)
            book_id, epub_mtime = int(match["book"]), int(match["mtime"])
            if book_id not in newest or epub_mtime > newest[book_id][0]:
                newest[book_id] = (epub_mtime, entry.path)
        return newest


def _is_unchanged(streams: dict[_Slot, _Stream], stored: dict[_Slot, StoredKey]) -> bool:
    """Whether a book's streams are the ones stored, each with the same (size, mtime) and, where it
    is known without reading the file, the same key: the common case, decided without allocating."""
    if len(streams) != len(stored):
        return False
    for slot, stream in streams.items():
        before = stored.get(slot)
        if before is None or before[1] != stream.size or before[2] != stream.mtime_ns:
            return False
        if stream.key is not None and stream.key != before[0]:
            return False
    return True


def _records(
    book_id: int, streams: dict[_Slot, _Stream], stored: dict[_Slot, StoredKey], readers: dict[str, LibraryFiles]
) -> tuple[list[DocumentKeyRecord], int]:
    """A book's keys as they should be stored, hashing only files whose (size, mtime) changed; and
    how many files were hashed."""
    records = []
    hashed = 0
    unserved: set[_Slot] = set()
    for slot, stream in streams.items():
        key = stream.key
        if key is None:
            before = stored.get(slot)
            if before is not None and before[1:] == (stream.size, stream.mtime_ns):
                key = before[0]
            else:
                key = _hash(readers[stream.variant], stream.stored)
                hashed += key is not None
        if key is None:
            unserved.add(slot)
            if stream.variant == "file":  # nor does the name of a download we cannot send
                unserved.add((stream.format, "filename"))
            continue
        records.append(
            DocumentKeyRecord(
                key=key,
                book_id=book_id,
                format=stream.format,
                variant=stream.variant,
                file_size=stream.size,
                file_mtime_ns=stream.mtime_ns,
            )
        )
    return [r for r in records if (r.format, r.variant) not in unserved], hashed


def _stat(path: str) -> tuple[int, int] | None:
    """(size, mtime in ns) of a regular file; ``None`` when it is missing or not a file."""
    try:
        found = os.stat(path)  # noqa: PTH116  # a string path, see _current_streams
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("document keys: %s cannot be read: %s", path, exc)
        return None
    return (found.st_size, found.st_mtime_ns) if stat.S_ISREG(found.st_mode) else None


def _hash(files: LibraryFiles, stored: StoredFile) -> str | None:
    """The partial MD5 of a file (a dozen small reads, ranges of a Drive file); ``None`` when it
    cannot be read. Paths that would leave the library never got here (``LibraryFiles.stat``)."""
    try:
        with files.open(stored) as source:
            return partial_md5(source)
    except (OSError, StorageError) as exc:
        log.warning("document keys: %s cannot be read: %s", stored.relative, exc)
        return None
