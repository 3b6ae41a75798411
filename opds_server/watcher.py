"""Watches a Calibre library folder and calls back, debounced, when ``metadata.db`` is written.

The watcher only makes refreshes *early*. Correctness does not depend on it: every request also
compares ``metadata.db``'s (inode, mtime, size) with the snapshot it serves
(``CalibreDatabase.fingerprint``), so a missed event, an overflowing inotify queue, a network share
that sends no events, or a watcher that could not start at all only means that the first request
after a change pays for the refresh. This module must never be the only thing that notices a change.

What counts as a write:
    Calibre keeps SQLite's rollback journal: a commit creates ``metadata.db-journal``, writes it,
    writes ``metadata.db`` and deletes the journal. A library switched to WAL appends to
    ``metadata.db-wal`` instead. A restore or an atomic replace moves a new ``metadata.db`` into
    place. So a created, modified, deleted or moved file whose source or destination is named
    ``metadata.db``, ``metadata.db-journal`` or ``metadata.db-wal`` counts. Nothing else in the
    folder does (book folders, covers, ``.calibre`` temp files, ``metadata_db_prefs_backup.json``),
    and the folder is watched non-recursively, so book folders cost no inotify watches.

    ``metadata.db-shm`` is ignored on purpose. It holds the WAL index, never data, and a read-only
    connection that is the first to open a WAL database rewrites it: one modify event per open,
    measured with SQLite 3 and watchdog 7. Counting it would let our own refresh, which opens the
    database, set off the next refresh, for ever. Every WAL commit writes ``-wal`` as well, so nothing
    is lost. Open and close events are not even asked of the kernel: our own reads make them.

Debounce:
    One calibredb import of 1,000 books makes thousands of events. ``on_change`` runs once after
    ``debounce`` seconds without a relevant event, but never later than ``max_delay`` seconds after
    the first event of a burst, so a long import still refreshes at least every ``max_delay``
    seconds. One worker thread waits on a ``threading.Condition``; no timer is made per event.
    ``on_change`` runs on that worker, never on watchdog's observer thread, so a slow refresh
    delays the next refresh but never the reading of events. An exception from ``on_change`` is
    logged and the watcher carries on.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from watchdog.events import (
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

logger = logging.getLogger(__name__)

WATCHED_NAMES = frozenset({"metadata.db", "metadata.db-journal", "metadata.db-wal"})
"""Files in the library folder whose changes can change the catalogue (see the module docstring)."""

# Moves within the folder arrive as FileMovedEvent; a move in from elsewhere arrives as a creation and
# a move out as a deletion. Listing the kinds also keeps open/close/attrib out of the inotify mask.
_EVENT_KINDS: list[type[FileSystemEvent]] = [FileCreatedEvent, FileModifiedEvent, FileDeletedEvent, FileMovedEvent]


def is_database_write(event: FileSystemEvent) -> bool:
    """Whether a watchdog event is a created, modified, deleted or moved file in ``WATCHED_NAMES``."""
    if event.is_directory or not isinstance(event, tuple(_EVENT_KINDS)):
        return False
    paths = (event.src_path, event.dest_path)
    return any(Path(os.fsdecode(path)).name in WATCHED_NAMES for path in paths if path)


class _DatabaseEventHandler(FileSystemEventHandler):
    """Runs on watchdog's observer thread: filters events and notes the relevant ones, nothing more."""

    def __init__(self, note_event: Callable[[], None]) -> None:
        super().__init__()
        self._note_event = note_event

    def on_any_event(self, event: FileSystemEvent) -> None:
        if is_database_write(event):
            self._note_event()


class LibraryWatcher:
    """Calls ``on_change`` on its own thread, debounced, after writes to a library's ``metadata.db``.

    A watcher starts once and stops once. Changes seen but not yet reported when it stops are
    dropped: the per-request fingerprint check picks them up.
    """

    def __init__(
        self, library: Path, on_change: Callable[[], None], *, debounce: float = 0.2, max_delay: float = 1.0
    ) -> None:
        if not (0 <= debounce <= max_delay and max_delay > 0):
            raise ValueError(
                f"debounce={debounce} and max_delay={max_delay}: expected 0 <= debounce <= max_delay and max_delay > 0"
            )
        self.library = library
        self._on_change = on_change
        self._debounce = debounce
        self._max_delay = max_delay
        # Guards the burst state and the counters; the worker waits on it.
        self._condition = threading.Condition()
        self._burst_start: float | None = None
        self._last_event = 0.0
        self._events = 0
        self._fired = 0
        self._is_stopping = False
        # Guards start/stop; never held while joining a thread.
        self._lifecycle = threading.Lock()
        self._state: Literal["new", "running", "stopped"] = "new"
        self._observer: BaseObserver | None = None
        self._worker: threading.Thread | None = None

    @property
    def events(self) -> int:
        """How many relevant filesystem events were seen."""
        with self._condition:
            return self._events

    @property
    def fired(self) -> int:
        """How many times ``on_change`` was called (raising or not)."""
        with self._condition:
            return self._fired

    def start(self) -> None:
        """Start watching: a watchdog observer on the folder (not recursive) and the worker thread.

        If inotify refuses (its watch or instance limit is reached), this logs one warning and returns
        without watching; the server still notices changes through its per-request check.

        Raises:
            FileNotFoundError: the library folder does not exist.
            NotADirectoryError: the library path is not a folder.
            RuntimeError: the watcher was started or stopped before.
        """
        with self._lifecycle:
            if self._state != "new":
                raise RuntimeError(f"a LibraryWatcher starts once; this one is {self._state}")
            folder = _resolve_folder(self.library)
            self._state = "running"
            self._observer = self._start_observer(folder)
            if self._observer is None:
                return
            self._worker = threading.Thread(target=self._run, name=f"library-watcher {folder}", daemon=True)
            self._worker.start()

    def stop(self) -> None:
        """Stop the observer and the worker and wait for both; safe to call again, or before ``start``.

        If ``on_change`` is running, this waits for it to return, unless ``on_change`` itself called
        ``stop``.
        """
        with self._lifecycle:
            self._state = "stopped"
            observer, self._observer = self._observer, None
            worker, self._worker = self._worker, None
        if observer is not None:
            observer.stop()
            observer.join()
        with self._condition:
            self._is_stopping = True
            self._condition.notify_all()
        if worker is not None and worker is not threading.current_thread():
            worker.join()

    def _start_observer(self, folder: Path) -> BaseObserver | None:
        handler = _DatabaseEventHandler(self._note_event)
        try:
            # On Linux the constructor already opens an inotify instance and starts its reader thread.
            observer = Observer()
        except OSError as exc:
            _warn_not_watching(folder, exc)
            return None
        try:
            observer.schedule(handler, str(folder), recursive=False, event_filter=_EVENT_KINDS)
            observer.start()
        except OSError as exc:
            # Never started, so nothing to join; stop() still closes the inotify instance and its thread.
            observer.stop()
            _warn_not_watching(folder, exc)
            return None
        return observer

    def _note_event(self) -> None:
        """Called on the observer thread for each relevant event."""
        now = time.monotonic()
        with self._condition:
            self._events += 1
            self._last_event = now
            if self._burst_start is None:
                self._burst_start = now
                # Later events only move the deadline later, and the worker rechecks it when it
                # wakes, so only the first event of a burst needs to wake it.
                self._condition.notify()

    def _run(self) -> None:
        while self._wait_for_burst():
            try:
                self._on_change()
            except Exception:
                logger.exception("refreshing after a change to %s failed; the next change will try again", self.library)

    def _wait_for_burst(self) -> bool:
        """Block until a burst is due (and count it as fired); False once stopping."""
        with self._condition:
            while not self._is_stopping:
                if self._burst_start is None:
                    self._condition.wait()
                    continue
                due = min(self._last_event + self._debounce, self._burst_start + self._max_delay)
                remaining = due - time.monotonic()
                if remaining <= 0:
                    # Events from here on start a new burst, so a write made while on_change is
                    # reading the database gets a refresh of its own.
                    self._burst_start = None
                    self._fired += 1
                    return True
                self._condition.wait(remaining)
            return False


def _resolve_folder(library: Path) -> Path:
    # Resolved because watchdog adds its inotify watch with IN_DONT_FOLLOW: a symlinked library folder
    # (common with Docker volumes) would otherwise be watched as a link, and report nothing.
    folder = library.resolve()
    if not folder.exists():
        raise FileNotFoundError(errno.ENOENT, "the Calibre library folder does not exist", str(library))
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "the Calibre library path is not a folder", str(library))
    return folder


def _warn_not_watching(folder: Path, exc: OSError) -> None:
    logger.warning(
        "not watching %s for changes (%s); each request still checks metadata.db, so changes show up on the "
        "next request instead of straight away (raise fs.inotify.max_user_watches or max_user_instances to fix)",
        folder,
        exc,
    )
