"""When the document-key index is refreshed: at start-up, then after library changes, at most once
per ``MIN_INTERVAL`` (an unchanged refresh still stats every file: ~6 s at 100,000 books, too much
to repeat for each of the many writes of a Calibre import). A change inside the interval is
picked up by one refresh when it ends, so no change waits for the next one to be indexed."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

MIN_INTERVAL = 30.0


class ThrottledRefresh:
    def __init__(self, refresh: Callable[[], object], *, min_interval: float = MIN_INTERVAL) -> None:
        self._refresh = refresh
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._timer: threading.Timer | None = None

    def request(self) -> None:
        """Refresh now if the last one is old enough, else once when it is."""
        with self._lock:
            wait = self._last + self.min_interval - time.monotonic()
            if wait > 0:
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._run)
                    self._timer.daemon = True
                    self._timer.start()
                return
            self._last = time.monotonic()
        self._call()

    def _run(self) -> None:
        with self._lock:
            self._timer = None
            self._last = time.monotonic()
        self._call()

    def _call(self) -> None:
        try:
            self._refresh()
        except Exception:  # a background thread's boundary: log it, the next change retries
            log.exception("document key refresh failed")

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
