"""Which file a Kobo is offered for a book, and KEPUB conversion off the request path.

Spec 6.3, following Komga and calibre-web-automated: one download per book. A KEPUB Calibre has
goes as it is. An EPUB goes as a KEPUB we make (``sync.kobo.kepub``), because the Kobo keeps
reading positions, statistics and highlights only for KEPUBs; fixed-layout EPUBs go as
``EPUB3FL`` and EPUBs that cannot be converted as ``EPUB3``. Conversion runs on a background
thread as soon as a sync page offers a book (in sessions of up to 100 new or changed books: a
first sync of 100,000 books does not fill the disk with KEPUBs nobody downloads), once per
version of its EPUB; a download that arrives first waits for it (or converts itself), and a
failure sends the EPUB.

The size announced is the KEPUB's once it exists; before that, the EPUB's (as Komga does, which
devices accept). It is not part of the snapshot version, so a finished conversion does not make
the book "changed".
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from pathlib import Path
from typing import Literal

from opds_server.calibre.model import Book
from opds_server.kobo.library import kobo_file
from opds_server.kobo.urls import KoboUrls
from opds_server.storage.files import LibraryFiles, StorageError, StoredFile
from opds_server.storage.kepub import AS_IS_SUFFIX, FAILED_SUFFIX, KEPUB_SUFFIX, KepubStore
from sync.kobo.model import DownloadUrl

log = logging.getLogger(__name__)

MAX_QUEUED = 200
"""Conversions waiting at once; a first sync of a large library converts the rest on download."""
WAIT_SECONDS = 20.0

Status = Literal["ready", "fixed", "kepub", "failed", "pending"]
Offered = Literal["KEPUB", "EPUB3", "EPUB3FL"]


class KepubService:
    def __init__(self, store: KepubStore, files: LibraryFiles, *, is_enabled: bool) -> None:
        self.store = store
        self.files = files
        self.is_enabled = is_enabled
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kepub")
        self._pending: dict[str, Future[Path | None]] = {}
        self._lock = threading.Lock()

    def status(self, book_id: int, epub: StoredFile) -> tuple[Status, Path | None]:
        """What is known of this version of the EPUB's KEPUB, without converting anything."""
        stem = f"{book_id}-{epub.version}"
        folder = self.store.folder
        target = folder / f"{stem}{KEPUB_SUFFIX}"
        if target.is_file():
            return "ready", target
        as_is = folder / f"{stem}{AS_IS_SUFFIX}"
        if as_is.is_file():
            reason = as_is.read_text(encoding="utf-8", errors="replace").strip()
            return ("fixed" if reason == "fixed" else "kepub"), None
        if (folder / f"{stem}{FAILED_SUFFIX}").is_file():
            return "failed", None
        return "pending", None

    def _schedule(self, book_id: int, epub: StoredFile) -> Future[Path | None] | None:
        key = f"{book_id}:{epub.relative}:{epub.version}"
        with self._lock:
            found = self._pending.get(key)
            if found is not None:
                return found
            if len(self._pending) >= MAX_QUEUED:
                return None
            future = self._pool.submit(self._convert, book_id, epub)
            self._pending[key] = future
        future.add_done_callback(lambda _done: self._forget(key))
        return future

    def _forget(self, key: str) -> None:
        with self._lock:
            self._pending.pop(key, None)

    def _convert(self, book_id: int, epub: StoredFile) -> Path | None:
        try:
            return self.store.read_stored(book_id, epub, self.files)
        except (OSError, StorageError) as exc:
            log.warning("book %d: no KEPUB made from %s: %s", book_id, epub.relative, exc)
            return None

    def choose(self, book: Book, urls: KoboUrls, prepare: bool) -> DownloadUrl | None:  # noqa: FBT001  # a DownloadChooser
        """The one download a Kobo is offered for a book; ``None`` when it has no EPUB or KEPUB.

        ``prepare``: convert the EPUB in the background now, as the device will likely fetch it.
        """
        source = kobo_file(self.files, book)
        if source is None:
            return None
        if source.format == "KEPUB":
            return DownloadUrl(format="KEPUB", size=source.size, url=urls.download(book.uuid, "kepub"))
        offered: Offered = "KEPUB"
        size, fetched = source.size, "kepub"
        status, kepub = self.status(book.id, source.stored) if self.is_enabled else ("failed", None)
        if status == "ready" and kepub is not None:
            try:
                size = kepub.stat().st_size
            except OSError:
                size = source.size
        elif status == "fixed":
            offered, fetched = "EPUB3FL", "epub"
        elif status == "failed":
            offered, fetched = "EPUB3", "epub"
        elif status == "pending" and prepare:
            self._schedule(book.id, source.stored)
        return DownloadUrl(format=offered, size=size, url=urls.download(book.uuid, fetched))

    def wait_for(self, book_id: int, epub: StoredFile) -> Path | None:
        """The KEPUB to send for this EPUB now; ``None``: send the EPUB (fixed layout, already a
        KEPUB, conversion failed or took too long)."""
        if not self.is_enabled:
            return None
        status, kepub = self.status(book_id, epub)
        if status != "pending":
            return kepub
        future = self._schedule(book_id, epub)
        if future is None:
            return self._convert(book_id, epub)
        try:
            return future.result(timeout=WAIT_SECONDS)
        except FutureTimeoutError:
            log.warning("book %d: KEPUB conversion still running after %.0f s; sending the EPUB", book_id, WAIT_SECONDS)
            return None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
