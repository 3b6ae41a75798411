"""The library index: a SQLite file we own, derived from ``metadata.db`` and refreshed incrementally.

``metadata.db`` has no index on the columns feeds sort by, and we may not add one; scanning it
costs tens of milliseconds per page at 100,000 books and blocks behind every Calibre write. So the
feeds read this index instead, never ``metadata.db`` itself:

- a **mirror** of the Calibre tables the catalogue reads (``books``, the link tables, ``data``,
  ``comments``...), created from Calibre's own ``CREATE TABLE`` statements, so the code that reads
  books runs unchanged against either file;
- ``opds_books``: one row per book the catalogue offers (at least one of its files is on disk),
  with a presorted key per feed order and an index on each, so any page at any depth is an index
  range scan (keyset, no OFFSET);
- ``opds_tag_paths``: every book under every level of a hierarchical tag (``Fiction.Fantasy`` also
  counts under ``Fiction``), so a tag filter is an equality;
- ``opds_search``: an FTS5 table over title, authors, series, tags, publisher, identifiers and
  comments, diacritics folded (``e`` finds ``é``), with prefix indexes, ranked by BM25.

A refresh attaches ``metadata.db`` read-only (``mode=ro``: nothing here can write the library) and
copies what changed inside one write transaction of the index, reading Calibre's file in one read
transaction, so the index always holds one consistent state of the library. What changed is found
by comparing, in SQL, ``(id, last_modified)`` of ``books`` (Calibre bumps it on every metadata
change) and the rows of ``data`` and of each link table, plus every row of the small name tables
(a renamed author changes the text searched for each of their books). Only those books are copied
and re-derived: adding ten books to a 100,000-book library touches ten books. A change of Calibre's
schema (a custom column added) or of ours (``INDEX_VERSION``) rebuilds everything.

Readers use WAL, so they keep reading the previous state while a refresh writes; several worker
processes share the file (and the OS page cache) and take turns refreshing under a file lock. The
index records the ``metadata.db`` fingerprint it reflects, taken *before* reading, so a write that
lands during a refresh is never mistaken for one already seen.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import re
import sqlite3
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import msgspec

from opds_server.calibre.books import book_file_name
from opds_server.calibre.database import BUSY_TIMEOUT_SECONDS, CalibreDatabase, Fingerprint, fold_text, initial_of
from opds_server.errors import LibraryBusyError, LibraryUnavailableError
from opds_server.storage.files import LOCAL_GENERATION, LibraryFiles

log = logging.getLogger(__name__)

INDEX_VERSION = 6
"""Bump when the derived tables change: an index of another version is rebuilt from scratch."""

# Calibre tables keyed by book: a changed book's rows are deleted and copied again.
_BOOK_TABLES = (
    "books_authors_link",
    "books_series_link",
    "books_tags_link",
    "books_publishers_link",
    "books_languages_link",
    "books_ratings_link",
    "data",
    "comments",
    "identifiers",
)
# Small tables of names, copied row by row where a row differs.
_NAME_TABLES = ("authors", "series", "tags", "publishers", "languages", "ratings")
_WHOLE_TABLES = ("custom_columns", "library_id")
# Which name table each link table points into, through which column.
_LINKS = {
    "books_authors_link": ("author", "authors"),
    "books_series_link": ("series", "series"),
    "books_tags_link": ("tag", "tags"),
    "books_publishers_link": ("publisher", "publishers"),
    "books_languages_link": ("lang_code", "languages"),
    "books_ratings_link": ("rating", "ratings"),
}
_CUSTOM_VALUES = re.compile(r"custom_column_\d+")
_CUSTOM_LINK = re.compile(r"books_custom_column_\d+_link")

_DERIVED_SCHEMA = """
CREATE TABLE opds_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE opds_books (
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    title_key TEXT NOT NULL COLLATE NOCASE,
    author_key TEXT NOT NULL COLLATE NOCASE,
    pub_key TEXT NOT NULL,
    rating INTEGER NOT NULL,
    series_index REAL NOT NULL,
    initial TEXT NOT NULL
);
CREATE TABLE opds_tag_paths (path TEXT NOT NULL, book INTEGER NOT NULL, PRIMARY KEY (path, book)) WITHOUT ROWID;
CREATE TABLE opds_changed (id INTEGER PRIMARY KEY);
CREATE TABLE opds_search_pending (id INTEGER PRIMARY KEY);
CREATE TABLE opds_counts (category TEXT NOT NULL, key NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (category, key))
    WITHOUT ROWID;
CREATE VIRTUAL TABLE opds_search USING fts5(
    title, authors, series, tags, publisher, identifiers, comments,
    tokenize = "unicode61 remove_diacritics 2", prefix = '2 3'
);
INSERT INTO opds_search (opds_search, rank) VALUES ('rank', 'bm25(10.0, 8.0, 6.0, 3.0, 2.0, 4.0, 1.0)');
INSERT INTO opds_search (opds_search, rank) VALUES ('automerge', 0);
"""

_SYMBOL = re.compile(r"[^\w\s\x00-\x7f]")
# Created after a rebuild's bulk insert: building an index once is far cheaper than growing it.
_DERIVED_INDEXES = """
CREATE INDEX opds_books_new ON opds_books (ts, id);
CREATE INDEX opds_books_title ON opds_books (title_key, id);
CREATE INDEX opds_books_author ON opds_books (author_key, title_key, id);
CREATE INDEX opds_books_published ON opds_books (pub_key, id);
CREATE INDEX opds_books_rating ON opds_books (rating, ts, id);
CREATE INDEX opds_books_initial ON opds_books (initial, title_key, id);
CREATE INDEX opds_tag_paths_book ON opds_tag_paths (book);
CREATE INDEX opds_books_uuid ON books (uuid)
"""
MERGE_PAGES = 256
"""Pages of search-index segments merged after each background refresh."""
SEARCH_CHUNK = 5_000
"""Books added to the search index per transaction while a rebuild's search index is filled."""
_TAG = re.compile(r"<[^>]*>")


# What each offered book in ``opds_changed`` counts for: (category, key, books).
_CONTRIBUTIONS = """
WITH c AS (SELECT k.id, k.rating, k.initial FROM opds_books k WHERE k.id IN (SELECT id FROM opds_changed))
SELECT 'authors' AS category, l.author AS key, COUNT(*) AS n FROM books_authors_link l JOIN c ON c.id = l.book
    GROUP BY l.author
UNION ALL SELECT 'series', l.series, COUNT(*) FROM books_series_link l JOIN c ON c.id = l.book GROUP BY l.series
UNION ALL SELECT 'publishers', l.publisher, COUNT(*) FROM books_publishers_link l JOIN c ON c.id = l.book
    GROUP BY l.publisher
UNION ALL SELECT 'languages', g.lang_code, COUNT(*) FROM books_languages_link l JOIN c ON c.id = l.book
    JOIN languages g ON g.id = l.lang_code GROUP BY g.lang_code
UNION ALL SELECT 'ratings', c.rating, COUNT(*) FROM c WHERE c.rating > 0 GROUP BY c.rating
UNION ALL SELECT 'formats', d.format, COUNT(*) FROM data d JOIN c ON c.id = d.book GROUP BY d.format
UNION ALL SELECT 'titles', c.initial, COUNT(*) FROM c GROUP BY c.initial
UNION ALL SELECT 'tags', t.path, COUNT(*) FROM opds_tag_paths t JOIN c ON c.id = t.book GROUP BY t.path
"""


def _names(link: str, table: str, column: str) -> str:
    return (
        f"opds_folded((SELECT group_concat(n.name, ' ; ') FROM {link} l JOIN {table} n ON n.id = l.{column}"
        " WHERE l.book = b.id))"
    )


# The search text of each book in ``opds_changed``: one FTS5 column per field, weighted by ``rank``.
_SEARCH_ROWS = (
    "INSERT INTO opds_search (rowid, title, authors, series, tags, publisher, identifiers, comments)"
    " SELECT b.id, opds_folded(b.title),"
    f" {_names('books_authors_link', 'authors', 'author')},"
    f" {_names('books_series_link', 'series', 'series')},"
    f" {_names('books_tags_link', 'tags', 'tag')},"
    f" {_names('books_publishers_link', 'publishers', 'publisher')},"
    " opds_folded((SELECT group_concat(i.type || ' ' || i.val, ' ; ') FROM identifiers i WHERE i.book = b.id)),"
    " (SELECT opds_plain(c.text) FROM comments c WHERE c.book = b.id)"
    " FROM books b WHERE b.id IN (SELECT id FROM opds_changed)"
)
_ENTITY = re.compile(r"&[#\w]+;")


def _symbol_word(match: re.Match[str]) -> str:
    char = match.group()
    return f" u{ord(char):x} " if unicodedata.category(char).startswith("S") else " "


def searchable(text: object) -> str:
    """Text as the search index stores it: symbols the tokenizer would drop (emoji, ``♥``) become
    words of their own (``u1f680``), so searching for ``🚀`` finds the book titled with it."""
    return _SYMBOL.sub(_symbol_word, str(text)) if text else ""


def folded(text: object) -> str:
    """Short fields as the search index stores them: folded like ``fold_text`` (``Straße`` ->
    ``strasse``, ``Война`` -> ``воина``), further than FTS5's own diacritic folding goes."""
    return searchable(fold_text(str(text))) if text else ""


def _plain(html: object) -> str:
    """Comments' text for the search index: tags and entities become spaces (cheap, not display-grade)."""
    return searchable(_ENTITY.sub(" ", _TAG.sub(" ", str(html)))) if html else ""


class IndexState(msgspec.Struct, frozen=True):
    """What one refresh left in the index: the ``metadata.db`` it reflects."""

    fingerprint: Fingerprint
    revision: int
    """Counts refreshes that found changes; with the fingerprint, names the generation."""
    settled: bool
    """The fingerprint was taken long enough after metadata.db's last write that a further write
    in the same clock tick (same mtime, same size) cannot hide behind it."""
    changed: int
    """Books copied by this refresh (all of them on a rebuild)."""
    files: str = LOCAL_GENERATION
    """The storage's file generation the index reflects (``LibraryFiles.generation``)."""


_SETTLE_NS = 50_000_000  # 50 ms: far above the file system's timestamp granularity


def index_path(data_dir: Path, library: Path) -> Path:
    """Where the index of a library lives: one file per library folder under the data dir."""
    digest = hashlib.blake2s(str(library.resolve()).encode(), digest_size=8).hexdigest()
    return data_dir / "index" / f"library-{digest}.sqlite3"


def open_reader(library: Path, path: Path) -> CalibreDatabase:
    """A read-only, per-thread reader of the index, with the interface of ``CalibreDatabase``."""
    return CalibreDatabase(library, path=path)


class IndexWriter:
    """Brings the index up to date with ``metadata.db``; one writer at a time across processes."""

    def __init__(self, source: CalibreDatabase, path: Path, *, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
        self.source = source
        self.path = path
        self._busy_timeout = busy_timeout

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with (self.path.parent / (self.path.name + ".lock")).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            f"file:{quote(str(self.path))}", uri=True, timeout=self._busy_timeout, isolation_level=None
        )
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA temp_store = MEMORY")
        connection.execute("PRAGMA cache_size = -16384")
        connection.create_function("opds_initial", 1, initial_of, deterministic=True)
        connection.create_function("opds_plain", 1, _plain, deterministic=True)
        connection.create_function("opds_folded", 1, folded, deterministic=True)
        return connection

    def state(self) -> IndexState | None:
        """What the index reflects now, without refreshing; ``None`` if it was never built."""
        if not self.path.exists():
            return None
        connection = self._connect()
        try:
            return _read_state(connection, changed=0)
        finally:
            connection.close()

    def refresh(self) -> IndexState:
        """Copy what changed in ``metadata.db`` since the last refresh (everything the first time).

        Raises:
            LibraryUnavailableError: metadata.db is missing, corrupt, or locked past the busy timeout;
                the index keeps its last good state.
        """
        with self._exclusive():
            connection = self._connect()
            try:
                return self._refresh_until_stable(connection)
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise LibraryBusyError(f"Calibre is writing the library: {exc}") from exc
                raise LibraryUnavailableError(f"the Calibre library could not be read: {exc}") from exc
            except sqlite3.DatabaseError as exc:
                raise LibraryUnavailableError(
                    f"the Calibre library's metadata.db is damaged: {exc}", retry_after=30
                ) from exc
            finally:
                connection.close()

    def fill_search(self, *, chunks: int | None = None) -> int:
        """Add queued books to the search index, ``SEARCH_CHUNK`` per transaction, so refreshes and
        other workers get the lock between chunks; ``chunks`` bounds the work (``None``: all).

        Returns:
            How many books are still waiting.
        """
        done = 0
        left = pending_search(self.path)
        while left and (chunks is None or done < chunks):
            with self._exclusive():
                connection = self._connect()
                try:
                    connection.execute("BEGIN IMMEDIATE")
                    connection.execute("DELETE FROM opds_changed")
                    connection.execute(
                        "INSERT INTO opds_changed SELECT id FROM opds_search_pending ORDER BY id LIMIT ?",
                        (SEARCH_CHUNK,),
                    )
                    connection.execute("DELETE FROM opds_search WHERE rowid IN (SELECT id FROM opds_changed)")
                    connection.execute(_SEARCH_ROWS)
                    connection.execute("DELETE FROM opds_search_pending WHERE id IN (SELECT id FROM opds_changed)")
                    connection.execute("DELETE FROM opds_changed")
                    left = int(connection.execute("SELECT COUNT(*) FROM opds_search_pending").fetchone()[0])
                    connection.execute("COMMIT")
                except sqlite3.DatabaseError:
                    if connection.in_transaction:
                        connection.rollback()
                    raise
                finally:
                    connection.close()
            done += 1
        return left

    def merge_search(self, pages: int = MERGE_PAGES) -> None:
        """Merge some of the search index's segments, off the request path (the watcher's thread).

        FTS5 merges segments during inserts by default, and at 100,000 books one such merge can
        hold a refresh for seconds; the index turns that off (``automerge`` 0) and merges here, a
        bounded amount of work at a time.
        """
        with self._exclusive():
            connection = self._connect()
            try:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("INSERT INTO opds_search (opds_search, rank) VALUES ('merge', ?)", (pages,))
                connection.execute("COMMIT")
            except sqlite3.DatabaseError:
                if connection.in_transaction:
                    connection.rollback()
                raise
            finally:
                connection.close()

    def _refresh_until_stable(self, connection: sqlite3.Connection) -> IndexState:
        """Refresh; again if Calibre wrote meanwhile (a few times at most: the next request retries)."""
        state: IndexState | None = None
        for _ in range(3):
            before = self.source.fingerprint()
            current = _read_state(connection, changed=0)
            if (
                current is not None
                and current.fingerprint == before
                and current.settled
                and current.files == self.source.files.generation
            ):
                return current
            state = self._refresh_once(connection, before)
            if self.source.fingerprint() == before:
                break
        assert state is not None
        return state

    def _refresh_once(self, connection: sqlite3.Connection, before: Fingerprint) -> IndexState:
        settled = time.time_ns() - before[1] > _SETTLE_NS
        files_generation = self.source.files.generation
        started = time.perf_counter()
        metadata = f"file:{quote(str(self.source.path))}?mode=ro"
        connection.execute("ATTACH DATABASE ? AS cal", (metadata,))
        try:
            connection.execute("BEGIN IMMEDIATE")
            version = _meta(connection, "version")
            schema = str(connection.execute("PRAGMA cal.schema_version").fetchone()[0])
            tables = _calibre_tables(connection)
            if version != str(INDEX_VERSION) or _meta(connection, "calibre_schema") != schema:
                changed = self._rebuild(connection, tables)
                revision = 0
            else:
                changed = self._update(connection, tables, recheck_files=_meta(connection, "files") != files_generation)
                revision = int(_meta(connection, "revision") or 0) + (1 if changed else 0)
                changed = max(changed, 0)
            _set_meta(
                connection,
                version=str(INDEX_VERSION),
                calibre_schema=schema,
                fingerprint=msgspec.json.encode(before).decode(),
                settled="1" if settled else "0",
                revision=str(revision),
                files=files_generation,
            )
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.rollback()
            raise
        finally:
            connection.execute("DETACH DATABASE cal")
        if changed:
            log.info("library index: %d books refreshed in %.0f ms", changed, (time.perf_counter() - started) * 1000)
        return IndexState(
            fingerprint=before, revision=revision, settled=settled, changed=changed, files=files_generation
        )

    def _rebuild(self, connection: sqlite3.Connection, tables: dict[str, str]) -> int:
        """Drop everything and copy the whole library."""
        existing = [
            str(row[0])
            for row in connection.execute(
                "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for name in existing:
            connection.execute(f'DROP TABLE IF EXISTS main."{name}"')
        for name, sql in tables.items():
            connection.execute(sql)
            connection.execute(f'INSERT INTO main."{name}" SELECT * FROM cal."{name}"')
        for (sql,) in connection.execute(
            "SELECT sql FROM cal.sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN"
            f" ({','.join('?' for _ in tables)})",
            list(tables),
        ).fetchall():
            connection.execute(sql)
        for statement in _statements(_DERIVED_SCHEMA):
            connection.execute(statement)
        connection.execute("INSERT INTO opds_changed SELECT id FROM books")
        _set_meta(connection, last_modified="")
        count = self._derive(connection, search=False)
        for statement in _statements(_DERIVED_INDEXES):
            connection.execute(statement)
        connection.execute("ANALYZE main")
        return count

    def _update(self, connection: sqlite3.Connection, tables: dict[str, str], *, recheck_files: bool) -> int:
        """Copy the books whose ``last_modified`` moved (or that came or went); re-derive them.

        Calibre bumps ``books.last_modified`` for every book a change touches: metadata, formats
        added or removed, links, and renames of an author, series, tag or publisher (``Cache.
        mark_as_dirty``). So that one column, compared by primary key, finds every change.

        ``recheck_files``: the storage's files changed on their own (a book's file reached Google
        Drive after Calibre listed it): the books whose files came or went are re-derived too.
        """
        connection.execute("DELETE FROM opds_changed")
        connection.execute(
            "INSERT INTO opds_changed SELECT c.id FROM cal.books c LEFT JOIN main.books m ON m.id = c.id"
            " WHERE m.id IS NULL OR m.last_modified IS NOT c.last_modified"
        )
        # Books removed: only looked for when the counts say some are gone (counting is cheap).
        in_calibre, indexed, added = connection.execute(
            "SELECT (SELECT COUNT(*) FROM cal.books), (SELECT COUNT(*) FROM main.books),"
            " (SELECT COUNT(*) FROM opds_changed WHERE id NOT IN (SELECT id FROM main.books))"
        ).fetchone()
        if indexed + added != in_calibre:
            connection.execute(
                "INSERT OR IGNORE INTO opds_changed SELECT m.id FROM main.books m"
                " WHERE NOT EXISTS (SELECT 1 FROM cal.books c WHERE c.id = m.id)"
            )
        if recheck_files:
            self._recheck_files(connection)
        touched = self._copy_whole(connection, tables)
        if connection.execute("SELECT EXISTS (SELECT 1 FROM opds_changed)").fetchone()[0] == 0:
            return -1 if touched else 0
        self._count(connection, sign=-1)  # what the changed books counted for, before they change
        book_tables = _book_tables(tables)
        connection.execute("DELETE FROM main.books WHERE id IN (SELECT id FROM opds_changed)")
        connection.execute("INSERT INTO main.books SELECT * FROM cal.books WHERE id IN (SELECT id FROM opds_changed)")
        for table in book_tables:
            connection.execute(f'DELETE FROM main."{table}" WHERE book IN (SELECT id FROM opds_changed)')
            connection.execute(
                f'INSERT INTO main."{table}" SELECT * FROM cal."{table}" WHERE book IN (SELECT id FROM opds_changed)'
            )
        # The names the changed books link to, as Calibre has them now (a rename touches its books).
        for link, (column, target) in _links(tables).items():
            connection.execute(
                f'INSERT OR REPLACE INTO main."{target}" SELECT * FROM cal."{target}" WHERE id IN'
                f' (SELECT "{column}" FROM main."{link}" WHERE book IN (SELECT id FROM opds_changed))'
            )
        return self._derive(connection)

    def _recheck_files(self, connection: sqlite3.Connection) -> None:
        """Queue the books whose offered state (a file of theirs is in the storage) flipped."""
        files = connection.execute(
            "SELECT d.book, b.path, d.name, d.format FROM main.data d JOIN main.books b ON b.id = d.book"
        ).fetchall()
        offered = _books_on_disk(self.source.files, files)
        listed = {int(str(row[0])) for row in connection.execute("SELECT id FROM main.opds_books")}
        flipped = offered ^ listed
        if flipped:
            connection.executemany("INSERT OR IGNORE INTO opds_changed (id) VALUES (?)", [(b,) for b in flipped])
            log.info("library index: %d books whose files came or went in the storage", len(flipped))

    @staticmethod
    def _copy_whole(connection: sqlite3.Connection, tables: dict[str, str]) -> bool:
        """Tiny tables (custom column definitions, the library id), copied when they differ."""
        touched = False
        for table in _WHOLE_TABLES:
            if table not in tables:
                continue
            differs = connection.execute(
                f'SELECT EXISTS (SELECT * FROM cal."{table}" EXCEPT SELECT * FROM main."{table}")'
                f' OR EXISTS (SELECT * FROM main."{table}" EXCEPT SELECT * FROM cal."{table}")'
            ).fetchone()[0]
            if differs:
                connection.execute(f'DELETE FROM main."{table}"')
                connection.execute(f'INSERT INTO main."{table}" SELECT * FROM cal."{table}"')
                touched = True
        return touched

    @staticmethod
    def _count(connection: sqlite3.Connection, *, sign: int) -> None:
        """Add (or take away) what the offered books in ``opds_changed`` count for in each category."""
        connection.execute(
            f"INSERT INTO opds_counts (category, key, count) SELECT category, key, {int(sign)} * n"
            f" FROM ({_CONTRIBUTIONS}) WHERE true"
            " ON CONFLICT (category, key) DO UPDATE SET count = count + excluded.count"
        )
        connection.execute("DELETE FROM opds_counts WHERE count <= 0")

    def _derive(self, connection: sqlite3.Connection, *, search: bool = True) -> int:
        """Sort keys, tag paths, search text and category counts of the books in ``opds_changed``.

        Without ``search`` (a rebuild) the books are queued for the search index instead, which
        ``fill_search`` fills in short transactions: tokenising every comment of a large library
        takes tens of seconds, and browsing need not wait for it.
        """
        count = int(connection.execute("SELECT COUNT(*) FROM opds_changed").fetchone()[0])
        newest = connection.execute(
            "SELECT MAX(last_modified) FROM books WHERE id IN (SELECT id FROM opds_changed)"
        ).fetchone()[0]
        if newest is not None and str(newest) > (_meta(connection, "last_modified") or ""):
            _set_meta(connection, last_modified=str(newest))
        connection.execute("DELETE FROM opds_books WHERE id IN (SELECT id FROM opds_changed)")
        connection.execute("DELETE FROM opds_tag_paths WHERE book IN (SELECT id FROM opds_changed)")
        connection.execute("DELETE FROM opds_search WHERE rowid IN (SELECT id FROM opds_changed)")
        connection.execute("DELETE FROM opds_search_pending WHERE id IN (SELECT id FROM opds_changed)")
        files = connection.execute(
            "SELECT d.book, b.path, d.name, d.format FROM data d JOIN books b ON b.id = d.book"
            " WHERE d.book IN (SELECT id FROM opds_changed)"
        ).fetchall()
        offered = _books_on_disk(self.source.files, files)
        # Books whose every file is missing leave the changed set: they get no keys and no search row.
        connection.execute(
            "DELETE FROM opds_changed WHERE id NOT IN (SELECT value FROM json_each(?))",
            (msgspec.json.encode(sorted(offered)).decode(),),
        )
        connection.execute(
            "INSERT INTO opds_books (id, ts, title_key, author_key, pub_key, rating, series_index, initial)"
            " SELECT b.id, IFNULL(b.timestamp, ''), IFNULL(b.sort, b.title), IFNULL(b.author_sort, ''),"
            " IFNULL(b.pubdate, ''),"
            " IFNULL((SELECT MAX(r.rating) FROM books_ratings_link l JOIN ratings r ON r.id = l.rating"
            "   WHERE l.book = b.id), 0),"
            " b.series_index, opds_initial(IFNULL(b.sort, b.title))"
            " FROM books b WHERE b.id IN (SELECT id FROM opds_changed)"
        )
        connection.executemany(
            "INSERT OR IGNORE INTO opds_tag_paths (path, book) VALUES (?, ?)",
            sorted(  # in key order: appending to the b-tree rather than inserting all over it
                _tag_paths(
                    connection.execute(
                        "SELECT l.book, t.name FROM books_tags_link l JOIN tags t ON t.id = l.tag"
                        " WHERE l.book IN (SELECT id FROM opds_changed)"
                    )
                )
            ),
        )
        if search:
            connection.execute(_SEARCH_ROWS)
            connection.execute("DELETE FROM opds_search_pending WHERE id IN (SELECT id FROM opds_changed)")
        else:
            connection.execute("INSERT OR IGNORE INTO opds_search_pending SELECT id FROM opds_changed")
        self._count(connection, sign=1)
        connection.execute("DELETE FROM opds_changed")
        return count


def pending_search(path: Path) -> int:
    """Books of the index still waiting for the search index (after a rebuild)."""
    if not path.exists():
        return 0
    connection = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        return int(connection.execute("SELECT COUNT(*) FROM opds_search_pending").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # no index yet
    finally:
        connection.close()


def _statements(script: str) -> Iterable[str]:
    return (s.strip() for s in script.split(";\n") if s.strip())


def _meta(connection: sqlite3.Connection, key: str) -> str | None:
    try:
        row = connection.execute("SELECT value FROM main.opds_meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:
        return None  # a new index: no table yet
    return str(row[0]) if row else None


def _set_meta(connection: sqlite3.Connection, **values: str) -> None:
    connection.executemany("INSERT OR REPLACE INTO main.opds_meta (key, value) VALUES (?, ?)", values.items())


def _read_state(connection: sqlite3.Connection, *, changed: int) -> IndexState | None:
    if _meta(connection, "version") != str(INDEX_VERSION):
        return None
    raw = _meta(connection, "fingerprint")
    if raw is None:
        return None
    fingerprint = msgspec.json.decode(raw, type=tuple[int, int, int])
    return IndexState(
        fingerprint=fingerprint,
        revision=int(_meta(connection, "revision") or 0),
        settled=_meta(connection, "settled") == "1",
        changed=changed,
        files=_meta(connection, "files") or LOCAL_GENERATION,
    )


def _calibre_tables(connection: sqlite3.Connection) -> dict[str, str]:
    """The Calibre tables the catalogue reads, with the statements that create them."""
    wanted = {"books", *_BOOK_TABLES, *_NAME_TABLES, *_WHOLE_TABLES}
    tables: dict[str, str] = {}
    for name, sql in connection.execute("SELECT name, sql FROM cal.sqlite_master WHERE type = 'table'").fetchall():
        if name in wanted or _CUSTOM_VALUES.fullmatch(name) or _CUSTOM_LINK.fullmatch(name):
            tables[str(name)] = str(sql)
    missing = {"books", "data"} - set(tables)
    if missing:
        raise sqlite3.DatabaseError(f"metadata.db has no {', '.join(sorted(missing))} table: not a Calibre library")
    return tables


def _book_tables(tables: dict[str, str]) -> list[str]:
    """Tables with one or more rows per book, keyed by a ``book`` column."""
    return [t for t in tables if t in _BOOK_TABLES or _CUSTOM_LINK.fullmatch(t) or _is_book_keyed(tables, t)]


def _links(tables: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Each link table (custom columns' too) with its column and the table of names it points into."""
    links = {link: target for link, target in _LINKS.items() if link in tables}
    for table in tables:
        if _CUSTOM_LINK.fullmatch(table):
            links[table] = ("value", table.removeprefix("books_").removesuffix("_link"))
    return links


def _is_book_keyed(tables: dict[str, str], name: str) -> bool:
    """A non-normalised custom column's values table (one row per book, with a ``book`` column)."""
    return (
        bool(_CUSTOM_VALUES.fullmatch(name)) and re.search(r"\bbook\s+INTEG", tables[name], re.IGNORECASE) is not None
    )


def _books_on_disk(files: LibraryFiles, rows: Sequence[tuple[object, ...]]) -> set[int]:
    """Books with at least one listed file in the storage (book 17 of the fixture lists one that is not)."""
    present: set[int] = set()
    for book, path, name, fmt in rows:
        book_id = int(str(book))
        if book_id not in present and files.stat(f"{path}/{book_file_name(name, fmt)}") is not None:
            present.add(book_id)
    return present


def _tag_paths(rows: Iterable[tuple[object, ...]]) -> Iterator[tuple[str, int]]:
    """Every level of each hierarchical tag: ``Fiction.Fantasy`` gives ``Fiction`` and ``Fiction.Fantasy``."""
    for book, name in rows:
        parts = [p for p in str(name).split(".") if p] or [str(name)]
        for depth in range(1, len(parts) + 1):
            yield ".".join(parts[:depth]), int(str(book))


def fts_query(terms: Sequence[str]) -> str | None:
    """An FTS5 query matching every term, each as a prefix: ``O'Bri`` finds ``O'Brien``.

    Each term becomes a quoted phrase (FTS5 operators in it are text). Short fields are indexed
    folded (``folded``), comments as FTS5 folds them itself, so a term whose two foldings differ
    (``Straße``, ``Война``) asks for either. ``None`` when no term has a letter or digit in it.
    """
    phrases = []
    for term in terms:
        variants = dict.fromkeys(
            variant
            for variant in (searchable(fold_text(term)), searchable(unicodedata.normalize("NFC", term).lower()))
            if any(char.isalnum() for char in variant)
        )
        if not variants:
            continue
        quoted = ['"' + variant.replace('"', '""') + '"*' for variant in variants]
        phrases.append(quoted[0] if len(quoted) == 1 else "(" + " OR ".join(quoted) + ")")
    return " AND ".join(phrases) if phrases else None
