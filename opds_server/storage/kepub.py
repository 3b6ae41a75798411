"""KEPUBs made from the library's EPUBs and kept in the data dir, one file per version of a book's EPUB.

A file's name carries the book id and the EPUB's mtime and size (``12-<mtime_ns>-<size>.kepub.epub``),
so a changed EPUB gets a new file and the old one is removed. Files are written under a temporary
name and renamed, so two threads converting the same book both leave a whole file behind.

The conversion itself is ``sync.kobo.kepub``'s; this module only decides when it runs and keeps its
result. Books a Kobo should get as EPUB (fixed layout, already a KEPUB) and books that cannot be
converted are remembered in a small marker file (``.as-is``, ``.failed``) holding the reason, so
the same version of the EPUB is not opened and converted again on every download
(``shared/specs/kobo-sync.md`` section 13: on failure, send the EPUB).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from opds_server.storage.derived import write_atomically
from opds_server.storage.files import LibraryFiles, LocalFiles, StoredFile, local_stored
from sync.kobo.kepub import KepubError, convert_to_kepub, read_layout

logger = logging.getLogger(__name__)

KEPUB_SUFFIX = ".kepub.epub"
AS_IS_SUFFIX = ".as-is"
FAILED_SUFFIX = ".failed"


class KepubStore:
    """KEPUBs of the library's EPUBs under ``folder`` (e.g. ``data_dir / "kepub"``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def read_kepub(self, book_id: int, epub: Path) -> Path | None:
        """``read_stored`` for an EPUB on local disk.

        Raises:
            OSError: as ``read_stored`` (``FileNotFoundError`` when the EPUB is missing).
        """
        return self.read_stored(book_id, local_stored(epub), LocalFiles(epub.parent))

    def read_stored(self, book_id: int, epub: StoredFile, files: LibraryFiles) -> Path | None:
        """The KEPUB of this version of a book's EPUB, converted now if it does not exist yet.

        Args:
            book_id: the Calibre book the EPUB belongs to.
            epub: the book's EPUB in the storage (a Drive EPUB is downloaded to a temporary file).
            files: the storage.

        Returns:
            The KEPUB's path; None when the Kobo should get the EPUB as it is: a fixed-layout
            book, a book that already is a KEPUB, or one that cannot be converted (logged once
            per version of the file).

        Raises:
            OSError: the EPUB cannot be read, or the KEPUB cannot be written.
            StorageError: the storage could not give the EPUB's bytes now.
        """
        stem = f"{book_id}-{epub.version}"
        target = self.folder / f"{stem}{KEPUB_SUFFIX}"
        if target.is_file():
            return target
        if (self.folder / f"{stem}{AS_IS_SUFFIX}").is_file() or (self.folder / f"{stem}{FAILED_SUFFIX}").is_file():
            return None
        local = files.local_copy(epub, keep=False)
        try:
            with local.open("rb") as source:
                layout = read_layout(source)
                if layout != "reflowable":
                    self._keep(book_id, stem, AS_IS_SUFFIX, f"{layout}\n")
                    return None
                source.seek(0)
                self._convert(source, target)
        except KepubError as exc:
            logger.warning(
                "book %d: %s cannot be converted to KEPUB, the EPUB is sent instead: %s", book_id, epub.relative, exc
            )
            self._keep(book_id, stem, FAILED_SUFFIX, f"{exc}\n")
            return None
        finally:
            if epub.local_path is None:  # a downloaded copy: ours to remove
                local.unlink(missing_ok=True)
        self._remove_older(book_id, stem)
        return target

    def prepare(self, book_id: int, epub: Path) -> None:
        """Convert ahead of the download (from a background thread); does what ``read_kepub`` does.

        Raises:
            OSError: as ``read_kepub``.
        """
        self.read_kepub(book_id, epub)

    def _convert(self, source: BinaryIO, target: Path) -> None:
        """Convert into a temporary file beside ``target``, then rename it: never a half-written KEPUB."""
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                convert_to_kepub(source, out)
            Path(temporary).replace(target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _keep(self, book_id: int, stem: str, suffix: str, reason: str) -> None:
        """Remember why this version of the EPUB is sent as it is."""
        write_atomically(self.folder / f"{stem}{suffix}", reason.encode())
        self._remove_older(book_id, stem)

    def _remove_older(self, book_id: int, stem: str) -> None:
        """Remove the files of the book's older EPUBs, never those of a newer one converted meanwhile."""
        mtime_ns = int(stem.split("-")[1])
        for path in self.folder.glob(f"{book_id}-*"):
            other = path.name.partition(".")[0]
            parts = other.split("-")
            if other != stem and len(parts) == 3 and parts[1].isdigit() and int(parts[1]) <= mtime_ns:
                path.unlink(missing_ok=True)
