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
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pycountry

from opds_server.calibre.books import CustomColumn, book_file_name, parse_timestamp, read_custom_columns, stars
from opds_server.calibre.database import CalibreDatabase, Row, initial_of
from opds_server.calibre.model import Category
from opds_server.calibre.query import BookQuery, count_sql
from opds_server.errors import LibraryUnavailableError

log = logging.getLogger(__name__)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
Fingerprint = tuple[int, int, int]


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


def _tag_tree(pairs: Iterable[Row]) -> dict[str, tuple[Category, ...]]:
    """Hierarchical tags (``Fiction.Fantasy``): children of each node, keyed by the parent's path."""
    books: dict[str, set[int]] = defaultdict(set)
    for name, book in pairs:
        parts = [p for p in str(name).split(".") if p] or [str(name)]
        for depth in range(1, len(parts) + 1):
            books[".".join(parts[:depth])].add(int(str(book)))
    children: dict[str, list[Category]] = defaultdict(list)
    for path, members in books.items():
        parent, _, leaf = path.rpartition(".")
        children[parent].append(
            Category(
                key=path,
                name=leaf,
                sort=leaf,
                count=len(members),
                initial=initial_of(leaf),
                has_children=any(other.startswith(path + ".") for other in books),
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
        fingerprint: Fingerprint,
        library_uuid: uuid.UUID,
        updated: dt.datetime,
        hidden: tuple[int, ...],
        book_count: int,
        custom_columns: tuple[CustomColumn, ...],
        categories: dict[str, tuple[Category, ...]],
        tag_children: dict[str, tuple[Category, ...]],
    ) -> None:
        self.fingerprint = fingerprint
        self.generation = hashlib.blake2s(repr(fingerprint).encode(), digest_size=8).hexdigest()
        self.library_uuid = library_uuid
        self.updated = updated
        self.hidden = hidden
        self.book_count = book_count
        self.custom_columns = custom_columns
        self.categories = categories
        self.tag_children = tag_children
        self._counts: dict[BookQuery, int] = {}
        self._index: dict[str, dict[str, Category]] = {}

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
            sql, parameters = count_sql(key, self.hidden)
            self._counts[key] = int(str(db.fetch(sql, parameters)[0][0]))
        return self._counts[key]


def _hidden_books(library: Path, rows: Sequence[Row]) -> tuple[int, ...]:
    """Books that list formats but have none of their files on disk (book 17 of the fixture)."""
    present: set[int] = set()
    listed: set[int] = set()
    for book, path, name, fmt in rows:
        book_id = int(str(book))
        listed.add(book_id)
        if book_id not in present and (library / str(path) / book_file_name(name, fmt)).is_file():
            present.add(book_id)
    return tuple(sorted(listed - present))


def load_snapshot(db: CalibreDatabase, fingerprint: Fingerprint) -> LibrarySnapshot:
    """Read everything but the books themselves; a few grouped queries and one stat per file."""
    hidden = _hidden_books(
        db.library,
        db.fetch("SELECT d.book, b.path, d.name, d.format FROM data d JOIN books b ON b.id = d.book"),
    )
    visible = "(SELECT book FROM data)" + (f" AND {{col}} NOT IN ({','.join(map(str, hidden))})" if hidden else "")

    def where(column: str) -> str:
        return f"{column} IN {visible.format(col=column)}"

    library_rows = db.fetch("SELECT uuid FROM library_id LIMIT 1")
    library_uuid = uuid.UUID(str(library_rows[0][0])) if library_rows else uuid.UUID(int=0)
    updated_rows = db.fetch("SELECT MAX(last_modified) FROM books")
    categories = {
        "authors": _categories(
            db.fetch(
                "SELECT a.id, a.name, a.sort, COUNT(*) FROM authors a JOIN books_authors_link l ON l.author = a.id"
                f" WHERE {where('l.book')} GROUP BY a.id"
            )
        ),
        "series": _categories(
            db.fetch(
                "SELECT s.id, s.name, s.sort, COUNT(*) FROM series s JOIN books_series_link l ON l.series = s.id"
                f" WHERE {where('l.book')} GROUP BY s.id"
            )
        ),
        "publishers": _categories(
            db.fetch(
                "SELECT p.id, p.name, p.sort, COUNT(*) FROM publishers p"
                " JOIN books_publishers_link l ON l.publisher = p.id"
                f" WHERE {where('l.book')} GROUP BY p.id"
            )
        ),
        "languages": _categories(
            db.fetch(
                "SELECT g.lang_code, g.lang_code, NULL, COUNT(*) FROM languages g"
                " JOIN books_languages_link l ON l.lang_code = g.id"
                f" WHERE {where('l.book')} GROUP BY g.id"
            ),
            name=lambda row: language_name(str(row[0])),
        ),
        "ratings": _categories(
            db.fetch(
                "SELECT r.rating, r.rating, printf('%02d', 10 - r.rating), COUNT(*) FROM ratings r"
                " JOIN books_ratings_link l ON l.rating = r.id"
                f" WHERE r.rating > 0 AND {where('l.book')} GROUP BY r.id"
            ),
            name=lambda row: f"{stars(int(str(row[0])))} ({int(str(row[0])) / 2:g} stars)",
        ),
        "formats": _categories(
            db.fetch(
                f"SELECT format, format, format, COUNT(DISTINCT book) FROM data WHERE {where('book')} GROUP BY format"
            )
        ),
        "titles": _categories(
            db.fetch(
                "SELECT opds_initial(IFNULL(sort, title)), opds_initial(IFNULL(sort, title)),"
                " opds_initial(IFNULL(sort, title)), COUNT(*)"
                f" FROM books WHERE {where('id')} GROUP BY 1"
            )
        ),
    }
    tag_children = _tag_tree(
        db.fetch(f"SELECT t.name, l.book FROM tags t JOIN books_tags_link l ON l.tag = t.id WHERE {where('l.book')}")
    )
    book_count = int(str(db.fetch(f"SELECT COUNT(*) FROM books WHERE {where('id')}")[0][0]))
    return LibrarySnapshot(
        fingerprint=fingerprint,
        library_uuid=library_uuid,
        # metadata.db's own mtime moves on every write, removals included, which MAX(last_modified)
        # does not: KOReader caches a feed by URL and Last-Modified, so it must change.
        updated=max(
            parse_timestamp(updated_rows[0][0]) or _EPOCH,
            dt.datetime.fromtimestamp(fingerprint[1] / 1e9, tz=dt.UTC).replace(microsecond=0),
        ),
        hidden=hidden,
        book_count=book_count,
        custom_columns=read_custom_columns(db),
        categories=categories,
        tag_children=tag_children,
    )


class Library:
    """The Calibre library being served: its database and its current snapshot."""

    def __init__(self, db: CalibreDatabase) -> None:
        self.db = db
        self._snapshot: LibrarySnapshot | None = None
        self._lock = threading.Lock()

    def current(self) -> LibrarySnapshot | None:
        """The loaded snapshot if metadata.db has not changed since (one ``stat``, never blocks
        longer); ``None`` when ``snapshot()`` must load a new one.

        Raises:
            LibraryUnavailableError: metadata.db is missing or unreadable.
        """
        current = self._snapshot
        if current is not None and current.fingerprint == self.db.fingerprint():
            return current
        return None

    def snapshot(self) -> LibrarySnapshot:
        """The snapshot for metadata.db as it is now; loads a new one after a write (blocking).

        Raises:
            LibraryUnavailableError: metadata.db is missing or unreadable and nothing was loaded yet.
        """
        current = self._snapshot
        fingerprint = self.db.fingerprint()
        if current is not None and current.fingerprint == fingerprint:
            return current
        with self._lock:
            current = self._snapshot
            if current is not None and current.fingerprint == fingerprint:
                return current
            try:
                fresh = load_snapshot(self.db, fingerprint)
            except LibraryUnavailableError:
                if current is None:
                    raise
                log.warning("metadata.db changed but could not be read; serving the previous generation")
                return current
            self._snapshot = fresh
            log.info("library generation %s: %d books", fresh.generation, fresh.book_count)
            return fresh
