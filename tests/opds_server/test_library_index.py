"""The library index against private copies of the fixture library, changed by the real calibredb.

Every change goes through ``calibredb`` (or, for the lock tests, a plain SQLite connection, as
Calibre's own writes are); what the index holds is checked against ``metadata.db`` and the files on
disk, read here without the code under test. The fixture's books are described in
``shared/fixtures/README.md``: book 16 has no file at all, book 17's file was deleted.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from opds_server.calibre.database import CalibreDatabase
from opds_server.calibre.index import IndexState, IndexWriter
from opds_server.calibre.query import BookQuery, KeyValue, SortOrder, count_sql, page_sql
from opds_server.calibre.snapshot import BUSY_RETRY_SECONDS, Library, LibrarySnapshot
from opds_server.errors import LibraryBusyError, LibraryUnavailableError
from tests.benchmark.library import run_calibre
from tests.conftest import copy_fixture_library

BOOKS = 40
MISSING_FILE = 17
NO_FILES = 16
DON_QUIXOTE = 7
LES_MISERABLES = 8
ROCKET = 12
PLAIN_WORDS = 29
MURDER_AT_GULL_POINT = 34
DEATH_BY_LAMPLIGHT = 35
LANTERN_KEEPER = 1  # "lamplighter" in its comments only


@dataclass(frozen=True)
class Indexed:
    """A private library folder, its index file and a ``Library`` that already loaded a snapshot."""

    folder: Path
    index: Path
    library: Library
    first: IndexState
    """What the very first refresh of the index returned."""


def writable_copy(target: Path) -> Path:
    folder = copy_fixture_library(target)
    for path in (folder, *folder.rglob("*")):  # the fixture is read-only; calibredb must write the copy
        path.chmod(path.stat().st_mode | 0o200)
    return folder


def prepare(workdir: Path) -> Indexed:
    folder = writable_copy(workdir / "library")
    index = workdir / "data" / "index.sqlite3"
    first = IndexWriter(CalibreDatabase(folder), index).refresh()
    library = Library(CalibreDatabase(folder), index)
    library.snapshot()
    library.fill_search()  # a rebuild leaves the search index to a background thread
    assert library.search_ready()
    return Indexed(folder=folder, index=index, library=library, first=first)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Indexed]:
    """The unchanged fixture, indexed once for the tests that only read."""
    indexed = prepare(tmp_path_factory.mktemp("index"))
    yield indexed
    indexed.library.close()


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Indexed]:
    """A copy of its own for a test that changes the library."""
    indexed = prepare(tmp_path)
    yield indexed
    indexed.library.close()


def calibredb(library: Path, command: str, *arguments: str) -> str:
    """The real calibredb on ``library`` (headless, throwaway config, its own network namespace)."""
    return run_calibre("calibredb", command, "--library-path", str(library), *arguments)


def add_book(folder: Path, title: str) -> int:
    """``calibredb add`` a copy of one of the fixture's EPUBs (it has a cover: nothing is rendered)."""
    source = folder / "Ada Quill" / "The Painted Sail (32)" / "The Painted Sail - Ada Quill.epub"
    epub = folder.parent / "new-book.epub"
    shutil.copyfile(source, epub)
    found = re.search(r"Added book ids: (\d+)", calibredb(folder, "add", "--title", title, str(epub)))
    assert found is not None
    return int(found.group(1))


def offered_on_disk(folder: Path) -> set[int]:
    """Books with at least one of their files on disk, from metadata.db and the file system."""
    with closing(sqlite3.connect(f"file:{folder / 'metadata.db'}?mode=ro", uri=True)) as connection:
        rows = connection.execute("SELECT d.book, b.path, d.name, d.format FROM data d JOIN books b ON b.id = d.book")
        return {book for book, path, name, fmt in rows if (folder / path / f"{name}.{fmt.lower()}").is_file()}


def books_in_metadata(folder: Path) -> int:
    with closing(sqlite3.connect(f"file:{folder / 'metadata.db'}?mode=ro", uri=True)) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM books").fetchone()[0])


def ids(library: Library, sql: str, parameters: list[object]) -> list[int]:
    return [cast("int", row[0]) for row in library.db.fetch(sql, parameters)]


def indexed_ids(library: Library) -> set[int]:
    return set(ids(library, "SELECT id FROM opds_books", []))


def search(library: Library, *terms: str, sort: SortOrder = SortOrder.RELEVANCE) -> list[int]:
    sql, parameters = page_sql(BookQuery(terms=terms, sort=sort), after=None, limit=100)
    return ids(library, sql, parameters)


def author_count(snapshot: LibrarySnapshot, name: str) -> int:
    return sum(item.count for item in snapshot.category("authors") if item.name == name)


# --- building and refreshing ---------------------------------------------------------------------


def test_first_refresh_indexes_every_book_and_offers_those_on_disk(shared: Indexed) -> None:
    assert shared.first.changed == books_in_metadata(shared.folder) == BOOKS
    again = IndexWriter(CalibreDatabase(shared.folder), shared.index).refresh()
    assert (again.changed, again.fingerprint, again.revision) == (0, shared.first.fingerprint, shared.first.revision)
    offered = offered_on_disk(shared.folder)
    assert MISSING_FILE not in offered
    assert NO_FILES not in offered
    assert len(offered) == BOOKS - 2
    assert indexed_ids(shared.library) == offered


def test_added_book_is_newest_and_found_after_an_incremental_refresh(private: Indexed) -> None:
    book = add_book(private.folder, "Quimbly Frobnication Almanac")
    snapshot = private.library.snapshot()
    assert 1 <= snapshot.state.changed <= 3
    sql, parameters = page_sql(BookQuery(), after=None, limit=1)
    assert ids(private.library, sql, parameters) == [book]
    assert search(private.library, "Quimb") == [book]
    assert search(private.library, "frobnic", sort=SortOrder.NEW) == [book]
    assert snapshot.book_count == BOOKS - 1


def test_new_title_replaces_the_old_one_in_search(private: Indexed) -> None:
    assert search(private.library, "Plain") == [PLAIN_WORDS]
    calibredb(private.folder, "set_metadata", str(PLAIN_WORDS), "--field", "title:Zephyrine Quodlibet")
    snapshot = private.library.snapshot()
    assert 1 <= snapshot.state.changed <= 2
    assert search(private.library, "Plain") == []
    assert search(private.library, "zephyrine") == [PLAIN_WORDS]
    assert PLAIN_WORDS in indexed_ids(private.library)  # calibredb moved its file to a new folder


def test_removed_book_leaves_books_search_and_category_counts(private: Indexed) -> None:
    before = private.library.snapshot()
    assert search(private.library, "murder") == [MURDER_AT_GULL_POINT]
    assert author_count(before, "Harriet Vane-Moss") == 2
    calibredb(private.folder, "remove", str(MURDER_AT_GULL_POINT))
    after = private.library.snapshot()
    assert 1 <= after.state.changed <= 2
    assert MURDER_AT_GULL_POINT not in indexed_ids(private.library)
    assert search(private.library, "murder") == []
    assert author_count(after, "Harriet Vane-Moss") == 1
    assert [item.count for item in after.category("series") if item.name == "Gull Point Mysteries"] == [1]
    assert after.book_count == before.book_count - 1


def test_custom_column_added_rebuilds_the_whole_index(private: Indexed) -> None:
    output = calibredb(private.folder, "add_custom_column", "mycol", "My column", "text")
    column = re.search(r"created with id: (\d+)", output)
    assert column is not None
    snapshot = private.library.snapshot()
    assert snapshot.state.changed == BOOKS
    assert snapshot.state.revision == 0
    assert "mycol" in [item.label for item in snapshot.custom_columns]
    assert private.library.db.fetch(f"SELECT COUNT(*) FROM custom_column_{column.group(1)}") == [(0,)]
    assert indexed_ids(private.library) == offered_on_disk(private.folder)
    private.library.fill_search()
    assert search(private.library, "miserables") == [LES_MISERABLES]


def test_two_writers_refreshing_at_once_leave_a_consistent_index(private: Indexed) -> None:
    calibredb(private.folder, "remove", "--permanent", str(DEATH_BY_LAMPLIGHT))
    start = threading.Barrier(2)

    def refresh() -> IndexState:
        writer = IndexWriter(CalibreDatabase(private.folder), private.index)
        start.wait(timeout=10)
        return writer.refresh()

    with ThreadPoolExecutor(max_workers=2) as pool:
        states = [future.result(timeout=30) for future in [pool.submit(refresh), pool.submit(refresh)]]
    fingerprint = CalibreDatabase(private.folder).fingerprint()
    assert [state.fingerprint for state in states] == [fingerprint, fingerprint]
    assert sorted(state.changed for state in states)[0] == 0  # the second found the work done
    offered = offered_on_disk(private.folder)
    assert DEATH_BY_LAMPLIGHT not in offered
    assert indexed_ids(private.library) == offered
    assert ids(private.library, "SELECT rowid FROM opds_search ORDER BY rowid", []) == sorted(offered)
    assert private.library.db.fetch("PRAGMA integrity_check") == [("ok",)]


# --- the library is only ever read ---------------------------------------------------------------


def library_state(folder: Path) -> tuple[str, dict[str, int]]:
    """metadata.db's digest and every file and folder under the library with its mtime."""
    digest = hashlib.sha256((folder / "metadata.db").read_bytes()).hexdigest()
    return digest, {str(path.relative_to(folder)): path.stat().st_mtime_ns for path in folder.rglob("*")}


def test_building_and_refreshing_the_index_never_writes_the_library(tmp_path: Path) -> None:
    folder = writable_copy(tmp_path / "library")
    untouched = library_state(folder)
    library = Library(CalibreDatabase(folder), tmp_path / "data" / "index.sqlite3")
    try:
        library.snapshot()
        assert library_state(folder) == untouched
        calibredb(folder, "set_metadata", str(PLAIN_WORDS), "--field", "tags:Essays,Unwritten")
        changed = library_state(folder)
        assert library.snapshot().state.changed == 1  # an incremental refresh ran
        IndexWriter(library.source, library.writer.path).refresh()
        assert library_state(folder) == changed
    finally:
        library.close()


# --- Calibre busy, metadata.db damaged or gone ---------------------------------------------------


def test_busy_library_serves_the_previous_snapshot_until_the_lock_is_released(private: Indexed) -> None:
    library = private.library
    library.writer = IndexWriter(library.source, private.index, busy_timeout=0.2)
    before = library.snapshot()
    database = private.folder / "metadata.db"
    with closing(sqlite3.connect(database, isolation_level=None)) as writer:
        writer.create_function("title_sort", 1, lambda title: title)  # Calibre's trigger calls it
        writer.execute("BEGIN EXCLUSIVE")
        writer.execute("UPDATE books SET title = 'Locked Away' WHERE id = ?", (LES_MISERABLES,))
        stat = database.stat()
        os.utime(database, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        started = time.monotonic()
        during = library.snapshot()
        assert time.monotonic() - started < 1.0
        assert during.generation == before.generation
        # The requests right after do not each wait out the busy timeout again (5 x 0.2 s).
        started = time.monotonic()
        assert {library.snapshot().generation for _ in range(5)} == {before.generation}
        assert time.monotonic() - started < 0.2
        writer.execute("ROLLBACK")
    time.sleep(BUSY_RETRY_SECONDS)
    after = library.snapshot()
    assert after.fingerprint == library.source.fingerprint() != before.fingerprint
    assert after.generation != before.generation
    assert search(library, "miserables") == [LES_MISERABLES]


@pytest.mark.parametrize("damage", ["garbage", "deleted"])
def test_damaged_or_missing_metadata_db_makes_the_library_unavailable(private: Indexed, damage: str) -> None:
    database = private.folder / "metadata.db"
    if damage == "garbage":
        database.write_bytes(b"this is not an SQLite database\n" * 64)
    else:
        database.unlink()
    with pytest.raises(LibraryUnavailableError) as raised:
        private.library.snapshot()
    assert not isinstance(raised.value, LibraryBusyError)


# --- search --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "terms",
    [("miserables",), ("Misérables",), ("MISÉRABLES",), ("miser",), ("MiSéR",), ("les", "misérables")],
)
def test_search_folds_diacritics_and_case_and_matches_prefixes(shared: Indexed, terms: tuple[str, ...]) -> None:
    assert search(shared.library, *terms) == [LES_MISERABLES]
    assert search(shared.library, *terms, sort=SortOrder.TITLE) == [LES_MISERABLES]


@pytest.mark.parametrize("emoji", ["🚀", "✨"])
def test_search_finds_a_title_by_its_emoji(shared: Indexed, emoji: str) -> None:
    assert search(shared.library, emoji) == [ROCKET]


@pytest.mark.parametrize("terms", [("!!!",), ("...", "--"), ("&",), ("“”",)])
def test_punctuation_only_search_matches_nothing(shared: Indexed, terms: tuple[str, ...]) -> None:
    assert search(shared.library, *terms) == []
    sql, parameters = count_sql(BookQuery(terms=terms))
    assert shared.library.db.fetch(sql, parameters) == [(0,)]


@pytest.mark.parametrize("word", ["AND", "OR", "NOT", "NEAR"])
def test_fts5_operator_words_are_searched_as_text(shared: Indexed, word: str) -> None:
    assert search(shared.library, word) == search(shared.library, word.lower())
    assert DON_QUIXOTE not in search(shared.library, "miserables", word, "quixote")  # not an OR of the two


@pytest.mark.parametrize(
    ("term", "found"),
    [
        *((term, []) for term in ['"', "*", "(", ")", "-", ":", "^", "+", "{}"]),
        *((term, [LES_MISERABLES]) for term in ['"miser', 'miser"', "miser*", "-miser", "(miser)", "miser:", "^miser"]),
        ("NEAR(miser", []),  # the words "near" and "miser" in a row: no book has them
        ("title:miser", []),  # not a column filter
    ],
)
def test_fts5_operator_characters_are_searched_as_text(shared: Indexed, term: str, found: list[int]) -> None:
    for sort in (SortOrder.RELEVANCE, SortOrder.NEW):
        assert search(shared.library, term, sort=sort) == found


def test_title_match_ranks_above_a_comments_match(shared: Indexed) -> None:
    # "Death by Lamplight" has the word in its title; "The Lantern Keeper" has "lamplighter" in its comments.
    assert search(shared.library, "lamplight") == [DEATH_BY_LAMPLIGHT, LANTERN_KEEPER]


def test_search_finds_a_title_by_its_own_words_in_any_script(private: Indexed) -> None:
    calibredb(private.folder, "set_metadata", str(PLAIN_WORDS), "--field", "title:Война Οδυσσεύς Straße")
    private.library.snapshot()
    for word in ("Война", "Οδυσσεύς", "Straße", "strasse", "ВОЙНА", "οδυσσευς"):
        assert search(private.library, word) == [PLAIN_WORDS], word


# --- keyset paging -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "order", [order for order in SortOrder if order not in {SortOrder.RELEVANCE, SortOrder.SERIES}]
)
def test_keyset_paging_walks_every_offered_book_once_in_order(shared: Indexed, order: SortOrder) -> None:
    query = BookQuery(sort=order)
    sql, parameters = page_sql(query, after=None, limit=1000)
    whole = shared.library.db.fetch(sql, parameters)
    walked: list[int] = []
    after: tuple[KeyValue, ...] | None = None
    while True:
        sql, parameters = page_sql(query, after=after, limit=3)
        page = shared.library.db.fetch(sql, parameters)
        if not page:
            break
        walked.extend(cast("int", row[0]) for row in page)
        after = cast("tuple[KeyValue, ...]", (*page[-1][1:], page[-1][0]))
    assert walked == [cast("int", row[0]) for row in whole]
    assert len(walked) == len(set(walked))
    assert set(walked) == offered_on_disk(shared.folder)
