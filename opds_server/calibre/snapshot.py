"""One generation of the library: what every feed needs beyond a page of books.

A ``LibrarySnapshot`` is immutable and describes ``metadata.db`` as it was at one fingerprint
(inode, mtime, size): category lists with counts, which books have no file on disk, the custom
column definitions and the newest modification time. ``Library`` hands out the current snapshot
and loads a new one when the fingerprint changes, so a request made after Calibre's write has
returned sees the write. While a load fails (Calibre holds its lock past the busy timeout) the last
good snapshot keeps serving.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import pycountry

from opds_server.calibre.books import CustomColumn, parse_timestamp, read_custom_columns, stars
from opds_server.calibre.database import CalibreDatabase, Row, initial_of
from opds_server.calibre.index import IndexState, IndexWriter, pending_search
from opds_server.calibre.model import Category
from opds_server.calibre.query import BookQuery, count_sql
from opds_server.errors import LibraryBusyError

log = logging.getLogger(__name__)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
Fingerprint = tuple[int, int, int]
BUSY_RETRY_SECONDS = 1.0
"""After a refresh met Calibre's write lock, how long the last good snapshot is served without trying
again (one request a second then waits out the busy timeout; the others do not wait)."""


def language_name(code: str) -> str:
    """English name of an ISO 639 code (``fra`` -> ``French``); the code itself when unknown."""
    found = pycountry.languages.get(alpha_3=code) or pycountry.languages.get(alpha_2=code)
    return str(found.name) if found else code


def language_tag(code: str) -> str:
    """BCP 47 tag for Calibre's ISO 639-2 code: the two-letter code where one exists (``eng`` -> ``en``)."""
    found = pycountry.languages.get(alpha_3=code)
    alpha_2 = getattr(found, "alpha_2", None) if found else None
    return str(alpha_2) if alpha_2 else code


def _sort_key(text: str) -> str:
    return text.casefold()


def _categories(rows: Iterable[Row], *, name: Callable[[Row], str] | None = None) -> tuple[Category, ...]:
    """Rows of (key, name, sort, count) as Categories in sort order."""
    items = []
    for row in rows:
        key, raw_name, sort, count = row
        display = name(row) if name else str(raw_name)
        sort_text = str(sort or raw_name)
        items.append(
            Category(
                key=str(key),
                name=display,
                sort=sort_text,
                count=int(str(count)),
                initial=initial_of(sort_text),
            )
        )
    return tuple(sorted(items, key=lambda c: (_sort_key(c.sort), c.key)))


def _tag_tree(rows: Iterable[Row]) -> dict[str, tuple[Category, ...]]:
    """Hierarchical tags (``Fiction.Fantasy``): children of each node, keyed by the parent's path.

    Rows are (path, books under it) for every level, from the index's ``opds_tag_paths``.
    """
    counts = {str(path): int(str(count)) for path, count in rows}
    parents = {path.rpartition(".")[0] for path in counts}
    children: dict[str, list[Category]] = defaultdict(list)
    for path, count in counts.items():
        parent, _, leaf = path.rpartition(".")
        children[parent].append(
            Category(
                key=path, name=leaf, sort=leaf, count=count, initial=initial_of(leaf), has_children=path in parents
            )
        )
    return {
        parent: tuple(sorted(items, key=lambda c: (_sort_key(c.sort), c.key))) for parent, items in children.items()
    }


class LibrarySnapshot:
    """The library at one fingerprint. Read-only once built, except for its count memo."""

    def __init__(
        self,
        *,
        state: IndexState,
        library_uuid: uuid.UUID,
        updated: dt.datetime,
        book_count: int,
        custom_columns: tuple[CustomColumn, ...],
        categories: dict[str, tuple[Category, ...]],
        tag_children: dict[str, tuple[Category, ...]],
    ) -> None:
        self.state = state
        self.fingerprint = state.fingerprint
        # Named by what metadata.db was, not by this process's history: every instance that reads
        # the same file agrees on it, so they share rendered bytes in Redis.
        self.generation = hashlib.blake2s(
            repr((state.fingerprint, state.revision, state.files)).encode(), digest_size=8
        ).hexdigest()
        self.library_uuid = library_uuid
        self.updated = updated
        self.book_count = book_count
        self.custom_columns = custom_columns
        self.categories = categories
        self.tag_children = tag_children
        self._counts: dict[BookQuery, int] = {}
        self._index: dict[str, dict[str, Category]] = {}

    @classmethod
    def settle(cls, previous: LibrarySnapshot, state: IndexState) -> LibrarySnapshot:
        """The same generation, now known to be settled (nothing changed since it was loaded)."""
        settled = cls.__new__(cls)
        settled.__dict__.update(previous.__dict__)
        settled.state = state
        return settled

    def category(self, name: str) -> tuple[Category, ...]:
        return self.categories.get(name, ())

    def find(self, name: str, key: str) -> Category | None:
        """The item of a category list with this key (an author id, a language code...)."""
        index = self._index.get(name)
        if index is None:
            index = {item.key: item for item in self.category(name)}
            self._index[name] = index
        return index.get(key)

    def count(self, db: CalibreDatabase, query: BookQuery) -> int:
        """Books matching the query's filters, memoised for this generation."""
        key = query.without_sort()
        if key not in self._counts:
            sql, parameters = count_sql(key)
            self._counts[key] = int(str(db.fetch(sql, parameters)[0][0]))
        return self._counts[key]


def load_snapshot(db: CalibreDatabase, state: IndexState) -> LibrarySnapshot:
    """Category lists from the counts the index keeps up to date: no scan of the books."""

    def counted(
        category: str, sql: str = "SELECT key, key, key, count FROM opds_counts c WHERE category = ?"
    ) -> list[Row]:
        return db.fetch(sql, (category,))

    def named(table: str) -> str:
        return (
            f"SELECT n.id, n.name, n.sort, c.count FROM opds_counts c JOIN {table} n ON n.id = c.key"
            " WHERE c.category = ?"
        )

    library_rows = db.fetch("SELECT uuid FROM library_id LIMIT 1")
    library_uuid = uuid.UUID(str(library_rows[0][0])) if library_rows else uuid.UUID(int=0)
    updated_rows = db.fetch("SELECT value FROM opds_meta WHERE key = 'last_modified'")
    categories = {
        "authors": _categories(counted("authors", named("authors"))),
        "series": _categories(counted("series", named("series"))),
        "publishers": _categories(counted("publishers", named("publishers"))),
        "languages": _categories(counted("languages"), name=lambda row: language_name(str(row[0]))),
        "ratings": _categories(
            counted("ratings", "SELECT key, key, printf('%02d', 10 - key), count FROM opds_counts WHERE category = ?"),
            name=lambda row: f"{stars(int(str(row[0])))} ({int(str(row[0])) / 2:g} stars)",
        ),
        "formats": _categories(counted("formats")),
        "titles": _categories(counted("titles")),
    }
    tag_children = _tag_tree(counted("tags", "SELECT key, count FROM opds_counts WHERE category = ?"))
    book_count = sum(category.count for category in categories["titles"])  # one initial per book
    fingerprint = state.fingerprint
    return LibrarySnapshot(
        state=state,
        library_uuid=library_uuid,
        # metadata.db's own mtime moves on every write, removals included, which MAX(last_modified)
        # does not: KOReader caches a feed by URL and Last-Modified, so it must change.
        updated=max(
            parse_timestamp(updated_rows[0][0] if updated_rows else None) or _EPOCH,
            dt.datetime.fromtimestamp(fingerprint[1] / 1e9, tz=dt.UTC).replace(microsecond=0),
        ),
        book_count=book_count,
        custom_columns=read_custom_columns(db),
        categories=categories,
        tag_children=tag_children,
    )


class Library:
    """The Calibre library being served: its ``metadata.db``, the index derived from it, and the
    current snapshot.

    ``db`` reads the index, which every feed query goes to; ``source`` is ``metadata.db`` itself,
    read only by refreshes.
    """

    def __init__(self, source: CalibreDatabase, index: Path) -> None:
        self.source = source
        self.writer = IndexWriter(source, index)
        self.db = CalibreDatabase(source.library, path=index, files=source.files)
        self._snapshot: LibrarySnapshot | None = None
        self._lock = threading.Lock()
        self._search_ready = False
        self._busy_until = 0.0
        self.on_new_generation: Callable[[LibrarySnapshot], None] | None = None
        """Called (in the refreshing thread) after a new generation was loaded."""

    def current(self) -> LibrarySnapshot | None:
        """The loaded snapshot if metadata.db has not changed since (one ``stat``, never blocks
        longer); ``None`` when ``snapshot()`` must refresh.

        Raises:
            LibraryUnavailableError: metadata.db is missing or unreadable.
        """
        current = self._snapshot
        if (
            current is not None
            and current.state.settled
            and current.state.files == self.source.files.generation
            and current.fingerprint == self.source.fingerprint()
        ):
            return current
        return None

    def snapshot(self) -> LibrarySnapshot:
        """The snapshot for metadata.db as it is now; refreshes the index after a write (blocking).

        Raises:
            LibraryUnavailableError: metadata.db is missing or unreadable and nothing was indexed yet.
        """
        current = self.current()
        if current is not None:
            return current
        if (busy := self._while_busy()) is not None:
            return busy
        with self._lock:
            current = self.current()
            if current is not None:
                return current
            if (busy := self._while_busy()) is not None:
                return busy  # another thread just met Calibre's lock: do not queue behind it again
            current = self._snapshot
            try:
                state = self.writer.refresh()
            except LibraryBusyError as exc:
                # Calibre holds its lock past the busy timeout: the index keeps the last good
                # state, and so does this process. (Gone or damaged is a 503 until it is back.)
                fallback = current or self._indexed()
                if fallback is None:
                    raise
                log.warning("metadata.db could not be read (%s); serving the last indexed state", exc)
                self._snapshot = fallback
                self._busy_until = time.monotonic() + BUSY_RETRY_SECONDS
                return fallback
            if (
                current is not None
                and current.state.fingerprint == state.fingerprint
                and current.state.revision == state.revision
                and current.state.files == state.files
            ):
                fresh = LibrarySnapshot.settle(current, state)
            else:
                fresh = load_snapshot(self.db, state)
                self._search_ready = False
                log.info("library generation %s: %d books", fresh.generation, fresh.book_count)
                if self.on_new_generation is not None:
                    self.on_new_generation(fresh)
            self._snapshot = fresh
            return fresh

    def _while_busy(self) -> LibrarySnapshot | None:
        """The last good snapshot, while a refresh that met Calibre's lock is recent: requests get it
        at once instead of each waiting out the busy timeout in turn."""
        if self._snapshot is not None and time.monotonic() < self._busy_until:
            return self._snapshot
        return None

    def search_ready(self) -> bool:
        """Whether every offered book is in the search index (after a rebuild of a large library
        it is filled in the background; see ``IndexWriter.fill_search``)."""
        if self._search_ready:
            return True
        self._search_ready = pending_search(self.writer.path) == 0
        return self._search_ready

    def fill_search(self) -> None:
        """Fill the search index of a rebuilt index, chunk by chunk (a background thread's job)."""
        self.writer.fill_search()
        self._search_ready = pending_search(self.writer.path) == 0

    def _indexed(self) -> LibrarySnapshot | None:
        """The index as a previous run left it, when metadata.db cannot be read now."""
        state = self.writer.state()
        return load_snapshot(self.db, state) if state is not None else None

    def close(self) -> None:
        self.db.close()
        self.source.close()
