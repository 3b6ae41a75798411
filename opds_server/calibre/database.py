"""Read-only access to Calibre's ``metadata.db``.

Connections are opened ``mode=ro`` through a ``file:`` URI, one per worker thread, with a busy
timeout. We never write, never change the journal mode, and never hold a read transaction between
calls: every query is fetched completely before the connection is handed back, because a reader
that lingers makes calibredb's commit wait while every other reader gets ``SQLITE_BUSY`` (see the
fixture README, "How calibredb writes").
"""

from __future__ import annotations

import sqlite3
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from opds_server.errors import LibraryUnavailableError
from opds_server.storage.files import LibraryFiles, LocalFiles

BUSY_TIMEOUT_SECONDS = 2.0
Row = tuple[object, ...]
Fingerprint = tuple[int, int, int]


def initial_of(text: str | None) -> str:
    """The letter a name is grouped under: first letter, accents folded, upper-cased; ``#`` otherwise."""
    for char in unicodedata.normalize("NFKD", text or ""):
        if unicodedata.combining(char):
            continue
        if char.isalpha():
            return char.upper()
        if not char.isspace():
            return "#"
    return "#"


def fold_text(text: str | None) -> str:
    """Text compared without case or accents: ``Éditions`` and ``editions`` fold alike."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    return "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()


class CalibreDatabase:
    """A Calibre library's ``metadata.db``, opened read-only per thread; ``files`` reads the
    library's book files and covers (local disk unless told otherwise)."""

    def __init__(
        self,
        library: Path,
        *,
        path: Path | None = None,
        busy_timeout: float = BUSY_TIMEOUT_SECONDS,
        files: LibraryFiles | None = None,
    ) -> None:
        self.library = library
        self.path = path or library / "metadata.db"
        self.files: LibraryFiles = files or LocalFiles(library)
        self._busy_timeout = busy_timeout
        self._local = threading.local()

    def fingerprint(self) -> Fingerprint:
        """(inode, mtime in ns, size) of ``metadata.db``; changes on every Calibre write.

        Raises:
            LibraryUnavailableError: the file is missing or unreadable.
        """
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise LibraryUnavailableError(f"the Calibre library's metadata.db is not readable: {exc.strerror}") from exc
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _connect(self, inode: int) -> sqlite3.Connection:
        uri = f"file:{quote(str(self.path))}?mode=ro"
        connection = sqlite3.connect(
            uri, uri=True, timeout=self._busy_timeout, isolation_level=None, check_same_thread=True
        )
        connection.create_function("opds_initial", 1, initial_of, deterministic=True)
        connection.create_function("opds_fold", 1, fold_text, deterministic=True)
        connection.execute("PRAGMA query_only = 1")
        self._local.connection = connection
        self._local.inode = inode
        return connection

    def _connection(self) -> sqlite3.Connection:
        inode = self.fingerprint()[0]
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None and self._local.inode == inode:
            return connection
        if connection is not None:
            # metadata.db was replaced (a restore, a move): the old handle reads the old file.
            connection.close()
        return self._connect(inode)

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for a few complete queries; SQLite errors become 503s.

        Raises:
            LibraryUnavailableError: the database is missing, corrupt or locked past the timeout.
        """
        try:
            yield self._connection()
        except sqlite3.OperationalError as exc:
            self.close()
            raise LibraryUnavailableError(f"the Calibre library is busy or unreadable: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            self.close()
            raise LibraryUnavailableError(
                f"the Calibre library's metadata.db is damaged: {exc}", retry_after=30
            ) from exc

    def fetch(self, sql: str, parameters: Sequence[object] = ()) -> list[Row]:
        """Run one query and fetch every row, so no read lock outlives the call."""
        with self.reading() as connection:
            return connection.execute(sql, parameters).fetchall()

    def close(self) -> None:
        """Close this thread's connection, if any."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
