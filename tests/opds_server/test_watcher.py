"""The library watcher against a real folder, real SQLite writes and a real watchdog observer.

Nothing waits a fixed time for an event. A test that expects a call polls for it up to a deadline. A
test that expects *no* call ends with one known event, an ``os.replace`` onto ``metadata.db``. The
observer hands events over in order, so once that event is counted every earlier one has been seen,
and ``events == 1`` shows that the earlier ones were ignored.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from opds_server.watcher import LibraryWatcher

DEADLINE_SECONDS = 3.0

MakeWatcher = Callable[..., LibraryWatcher]


class Calls:
    """An ``on_change`` that records when it was called, on which thread; it can raise once first."""

    def __init__(self, *, raise_first: bool = False) -> None:
        self.times: list[float] = []
        self.threads: list[threading.Thread] = []
        self._raise_next = raise_first

    def __call__(self) -> None:
        self.times.append(time.monotonic())
        self.threads.append(threading.current_thread())
        if self._raise_next:
            self._raise_next = False
            raise RuntimeError("the refresh failed")


def wait_for(condition: Callable[[], bool], timeout: float = DEADLINE_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def write_row(database: Path, value: object = "x") -> None:
    """One Calibre-style commit: default rollback journal, so the journal is created, written and deleted."""
    with closing(sqlite3.connect(database)) as connection:
        connection.execute("INSERT INTO books (title) VALUES (?)", (value,))
        connection.commit()


def replace_database(library: Path) -> None:
    """Move a copy of ``metadata.db`` over it with one rename(2): exactly one relevant event, a move."""
    copy = library / "metadata.db.restoring"
    shutil.copyfile(library / "metadata.db", copy)
    copy.replace(library / "metadata.db")


@pytest.fixture
def library(tmp_path: Path) -> Path:
    folder = tmp_path / "Calibre Library"
    folder.mkdir()
    with closing(sqlite3.connect(folder / "metadata.db")) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        connection.execute("CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT)")
        connection.commit()
    return folder


@pytest.fixture
def make_watcher() -> Iterator[MakeWatcher]:
    watchers: list[LibraryWatcher] = []

    def make(library: Path, on_change: Callable[[], None], **options: float) -> LibraryWatcher:
        watcher = LibraryWatcher(library, on_change, **options)
        watchers.append(watcher)
        watcher.start()
        return watcher

    yield make
    for watcher in watchers:
        watcher.stop()


def test_a_sqlite_commit_fires_within_a_second_on_the_worker_thread(library: Path, make_watcher: MakeWatcher) -> None:
    calls = Calls()
    watcher = make_watcher(library, calls)

    write_row(library / "metadata.db")
    committed = time.monotonic()

    assert wait_for(lambda: len(calls.times) == 1)
    assert calls.times[0] - committed < 1.0
    assert watcher.events >= 2  # at least the journal's creation and metadata.db's modification
    assert watcher.fired == 1
    assert calls.threads[0] is not threading.main_thread()
    assert calls.threads[0].name.startswith("library-watcher")


def test_a_burst_of_commits_fires_a_few_times_and_last_after_the_last_commit(
    library: Path, make_watcher: MakeWatcher
) -> None:
    calls = Calls()
    watcher = make_watcher(library, calls)
    database = library / "metadata.db"

    started = time.monotonic()
    for index in range(200):
        write_row(database, index)
        # Pace the commits over about half a second; a slow disk only makes the burst longer.
        time.sleep(max(0.0, started + (index + 1) * 0.0025 - time.monotonic()))
    last_commit = time.monotonic()

    assert wait_for(lambda: bool(calls.times) and calls.times[-1] > last_commit)
    assert watcher.events >= 200
    assert 1 <= watcher.fired <= 5
    assert len(calls.times) == watcher.fired


def test_a_continuous_stream_of_writes_still_fires_every_max_delay(library: Path, make_watcher: MakeWatcher) -> None:
    calls = Calls()
    make_watcher(library, calls, debounce=0.2, max_delay=1.0)
    database = library / "metadata.db"

    started = time.monotonic()
    index = 0
    while time.monotonic() - started < 2.5:
        write_row(database, index)
        index += 1
        time.sleep(max(0.0, started + index * 0.05 - time.monotonic()))
    stream_end = time.monotonic()

    # Writes 50 ms apart never leave 200 ms of quiet, so only max_delay can have fired these.
    assert len([at for at in calls.times if at < stream_end]) >= 2


def test_writes_to_other_files_in_the_folder_never_fire(library: Path, make_watcher: MakeWatcher) -> None:
    calls = Calls()
    watcher = make_watcher(library, calls)

    book = library / "Author" / "Book (1)"
    book.mkdir(parents=True)
    (book / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    (book / "metadata.opf").write_text("<package/>")
    notes = library / "notes.txt"
    notes.write_text("one")
    notes.write_text("two")
    notes.rename(library / "notes.old")
    (library / "notes.old").unlink()
    (library / "metadata_db_prefs_backup.json").write_text("{}")
    (library / ".calibre_temp").write_bytes(b"")
    (library / "metadata.db.bak").write_bytes(b"")
    with closing(sqlite3.connect(library / "other.db")) as connection:
        connection.execute("CREATE TABLE t (x)")
        connection.commit()
    replace_database(library)

    assert wait_for(lambda: watcher.fired == 1)
    assert watcher.events == 1
    assert len(calls.times) == 1


def test_replacing_metadata_db_with_os_replace_fires(library: Path, make_watcher: MakeWatcher) -> None:
    calls = Calls()
    watcher = make_watcher(library, calls)

    restored = library / "metadata.db.tmp"
    with closing(sqlite3.connect(restored)) as connection:
        connection.execute("CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT)")
        connection.execute("INSERT INTO books (title) VALUES ('restored')")
        connection.commit()
    restored.replace(library / "metadata.db")  # os.replace: one rename(2)

    assert wait_for(lambda: len(calls.times) == 1)
    assert watcher.events == 1


def test_an_on_change_that_raises_is_logged_and_the_next_write_still_fires(
    library: Path, make_watcher: MakeWatcher, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Calls(raise_first=True)
    watcher = make_watcher(library, calls)

    with caplog.at_level(logging.ERROR, logger="opds_server.watcher"):
        write_row(library / "metadata.db")
        assert wait_for(lambda: len(calls.times) == 1)
        assert wait_for(lambda: len(caplog.records) == 1)
    (record,) = caplog.records
    assert record.name == "opds_server.watcher"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert str(library) in record.getMessage()

    write_row(library / "metadata.db")
    assert wait_for(lambda: len(calls.times) == 2)
    assert watcher.fired == 2


def test_stop_is_idempotent_and_joins_every_thread(library: Path) -> None:
    before = set(threading.enumerate())
    count_before = threading.active_count()
    calls = Calls()
    watcher = LibraryWatcher(library, calls)
    watcher.start()
    assert threading.active_count() > count_before
    write_row(library / "metadata.db")
    assert wait_for(lambda: len(calls.times) == 1)

    watcher.stop()
    watcher.stop()

    assert threading.active_count() == count_before
    assert set(threading.enumerate()) == before
    with pytest.raises(RuntimeError, match="starts once"):
        watcher.start()


def test_stop_before_start_is_harmless(library: Path) -> None:
    watcher = LibraryWatcher(library, Calls())
    watcher.stop()
    watcher.stop()
    assert watcher.fired == 0


def test_a_missing_library_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no such library"
    watcher = LibraryWatcher(missing, Calls())
    with pytest.raises(FileNotFoundError, match="no such library"):
        watcher.start()
    watcher.stop()


def test_a_symlinked_library_folder_is_watched(library: Path, make_watcher: MakeWatcher) -> None:
    link = library.parent / "library link"
    link.symlink_to(library, target_is_directory=True)
    calls = Calls()
    make_watcher(link, calls)

    write_row(library / "metadata.db")

    assert wait_for(lambda: len(calls.times) == 1)


def test_our_own_read_only_reads_of_a_wal_library_never_fire(library: Path, make_watcher: MakeWatcher) -> None:
    database = library / "metadata.db"
    with closing(sqlite3.connect(database)) as connection:
        assert connection.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)

    def read_only() -> None:
        uri = f"file:{database}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True)) as connection:
            connection.execute("SELECT count(*) FROM books").fetchall()

    read_only()  # as the server's first read would, leaves metadata.db-wal and metadata.db-shm behind
    assert (library / "metadata.db-shm").exists()
    calls = Calls()
    watcher = make_watcher(library, calls)

    for _ in range(3):
        read_only()  # each rewrites metadata.db-shm, being the only connection
    replace_database(library)

    assert wait_for(lambda: watcher.fired == 1)
    assert watcher.events == 1


def test_a_commit_to_a_wal_library_fires(library: Path, make_watcher: MakeWatcher) -> None:
    database = library / "metadata.db"
    with closing(sqlite3.connect(database)) as connection:
        assert connection.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
    calls = Calls()
    make_watcher(library, calls)

    with closing(sqlite3.connect(database)) as connection:  # stays open, as calibre does while it runs
        connection.execute("INSERT INTO books (title) VALUES ('wal')")
        connection.commit()
        assert wait_for(lambda: len(calls.times) == 1)


@pytest.mark.parametrize(("debounce", "max_delay"), [(-0.1, 1.0), (0.5, 0.2), (0.0, 0.0)])
def test_impossible_timings_are_refused(library: Path, debounce: float, max_delay: float) -> None:
    with pytest.raises(ValueError, match="expected 0 <= debounce <= max_delay"):
        LibraryWatcher(library, Calls(), debounce=debounce, max_delay=max_delay)
