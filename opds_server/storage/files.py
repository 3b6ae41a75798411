"""The library's files as a port: book files and covers, on local disk or in Google Drive.

Everything that reads a file of the Calibre library (downloads, covers, comic pages, KEPUB
conversion, KOReader's document keys, spines) goes through ``LibraryFiles``: ``stat`` says whether
a file is there and what version it is, ``read_chunks`` streams a byte range of it, ``open`` gives
a seekable reader (zip archives are read that way, member by member), ``local_copy`` a file on
local disk with the same bytes (for Pillow and the KEPUB converter).

Paths are Calibre's: relative to the library folder, with ``/`` (``books.path`` + ``/`` + file
name). A path that would leave the library (``..``, absolute) is never looked up.

``generation`` names the set of files as the storage knows it. Local disk says nothing beyond
``metadata.db`` (Calibre writes both), so its generation never changes; Drive's changes whenever a
file under the library folder appears, changes or goes, which makes the library index look at
which books have their files again.
"""

from __future__ import annotations

import datetime as dt
import os
import stat as stat_module
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, Protocol

import msgspec

CHUNK_SIZE = 256 * 1024
LOCAL_GENERATION = "disk"


class StoredFile(msgspec.Struct, frozen=True, kw_only=True):
    """One file of the library as the storage has it now."""

    relative: str
    """Its path in the library folder, ``/``-separated (``Author/Title (12)/Title - Author.epub``)."""
    size: int
    mtime_ns: int
    """When its bytes last changed: the file's mtime on disk, Drive's ``modifiedTime``."""
    local_path: str | None = None
    """Where it can be read directly, when it is on local disk."""
    remote_id: str | None = None
    """Its id in the remote storage (a Drive file id)."""

    @property
    def version(self) -> str:
        """Changes whenever the bytes do; the same on every instance serving the same library."""
        return f"{self.mtime_ns}-{self.size}"

    @property
    def modified(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.mtime_ns / 1e9, tz=dt.UTC)


class StorageError(Exception):
    """The storage could not give a file's bytes (Drive quota, outage, timeout): that file only."""

    def __init__(self, message: str, *, is_missing: bool = False) -> None:
        super().__init__(message)
        self.is_missing = is_missing
        """The storage says the file is not there (a Drive 404): not an outage."""


class LibraryFiles(Protocol):
    """Where the library's book files and covers are read from."""

    def __hash__(self) -> int:
        """Storages are hashable (by identity): caches of what was read from a file key on them."""
        ...

    @property
    def generation(self) -> str:
        """Changes when files change outside what ``metadata.db`` says (see the module docstring)."""
        ...

    def stat(self, relative: str) -> StoredFile | None:
        """The file now, or ``None`` when it is not there (or the path leaves the library). Cheap."""
        ...

    def read_chunks(self, stored: StoredFile, start: int, length: int) -> AbstractContextManager[Iterator[bytes]]:
        """``length`` bytes from ``start``, in chunks of at most ``CHUNK_SIZE``; blocking.

        Raises:
            StorageError: the bytes cannot be had (on entering, or while iterating).
        """
        ...

    def open(self, stored: StoredFile) -> BinaryIO:
        """A seekable reader of the file (the caller closes it); blocking.

        Raises:
            StorageError: as ``read_chunks`` (also from the reader's ``read``).
        """
        ...

    def local_copy(self, stored: StoredFile, *, keep: bool) -> Path:
        """A file on local disk with these bytes: the file itself on local storage; a downloaded copy
        otherwise, kept for the next call when ``keep`` (covers), else the caller's to delete.

        Raises:
            StorageError: as ``read_chunks``.
        """
        ...

    def request_refresh(self) -> None:
        """Something expected a file that is not there: look at the storage again soon."""
        ...

    def close(self) -> None: ...


def local_stored(path: Path, *, mtime_ns: int | None = None) -> StoredFile:
    """A file of ours on local disk (a thumbnail, a drawn cover, a KEPUB) described as a ``StoredFile``;
    ``mtime_ns`` stands in for its own when its bytes are a copy of a library file's version.

    Raises:
        FileNotFoundError: it is not there (OSError for other failures).
    """
    found = path.stat()
    return StoredFile(
        relative=path.name,
        size=found.st_size,
        mtime_ns=found.st_mtime_ns if mtime_ns is None else mtime_ns,
        local_path=str(path),
    )


def is_safe_relative(relative: str) -> bool:
    """Whether a Calibre path stays inside the library: relative, no ``..`` part, no NUL."""
    if not relative or relative.startswith(("/", "\\")) or "\x00" in relative or ":" in relative[:2]:
        return False
    return ".." not in relative.replace("\\", "/").split("/")


class LocalFiles:
    """The library's files on local disk, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._prefix = os.path.abspath(root) + os.sep  # noqa: PTH100  # strings: stat is called per book

    @property
    def generation(self) -> str:
        return LOCAL_GENERATION

    def stat(self, relative: str) -> StoredFile | None:
        if not is_safe_relative(relative):
            return None
        path = self._prefix + relative
        try:
            found = os.stat(path)  # noqa: PTH116  # a string path: building a Path costs more than the stat
        except (OSError, ValueError):
            return None
        if not stat_module.S_ISREG(found.st_mode):
            return None
        return StoredFile(relative=relative, size=found.st_size, mtime_ns=found.st_mtime_ns, local_path=path)

    def read_chunks(self, stored: StoredFile, start: int, length: int) -> AbstractContextManager[Iterator[bytes]]:
        return _LocalChunks(self._path(stored), start, length)

    def open(self, stored: StoredFile) -> BinaryIO:
        try:
            return self._path(stored).open("rb")
        except OSError as exc:
            raise StorageError(f"{stored.relative} cannot be read: {exc.strerror}", is_missing=True) from exc

    def local_copy(self, stored: StoredFile, *, keep: bool) -> Path:  # the file itself, kept or not
        return self._path(stored)

    def _path(self, stored: StoredFile) -> Path:
        return Path(stored.local_path or self._prefix + stored.relative)

    def request_refresh(self) -> None:
        """Local disk needs no refresh: a stat is always current."""

    def close(self) -> None:
        """Nothing to release."""


LOCAL_READER = LocalFiles(Path("/"))
"""Reads files of ours on local disk (``local_stored``), whatever the library's storage."""


class _LocalChunks(AbstractContextManager[Iterator[bytes]]):
    def __init__(self, path: Path, start: int, length: int) -> None:
        self.path = path
        self.start = start
        self.length = length
        self._handle: BinaryIO | None = None

    def __enter__(self) -> Iterator[bytes]:
        try:
            self._handle = self.path.open("rb")
        except OSError as exc:
            raise StorageError(f"{self.path.name} cannot be read: {exc.strerror}", is_missing=True) from exc
        self._handle.seek(self.start)
        return self._chunks(self._handle)

    def _chunks(self, handle: BinaryIO) -> Iterator[bytes]:
        remaining = self.length
        while remaining > 0:
            chunk = handle.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                return  # the file shrank meanwhile: the caller ends the body short
            remaining -= len(chunk)
            yield chunk

    def __exit__(self, *_exc: object) -> None:
        if self._handle is not None:
            self._handle.close()
