"""The document-key index refreshes at once, then at most once an interval, and a change inside
the interval is picked up when it ends (never dropped)."""

from __future__ import annotations

import threading
import time

from opds_server.koreader.refresh import ThrottledRefresh


def test_requests_inside_the_interval_become_one_refresh_when_it_ends() -> None:
    runs: list[float] = []
    done = threading.Event()

    def refresh() -> None:
        runs.append(time.monotonic())
        if len(runs) == 2:
            done.set()

    throttled = ThrottledRefresh(refresh, min_interval=0.3)
    started = time.monotonic()
    throttled.request()
    for _ in range(5):
        throttled.request()
    assert len(runs) == 1
    assert done.wait(5)
    time.sleep(0.1)
    assert len(runs) == 2  # five requests, one deferred refresh
    assert runs[1] - started >= 0.3
    throttled.cancel()


def test_a_failing_refresh_is_logged_and_the_next_request_runs_again() -> None:
    calls: list[int] = []

    def refresh() -> None:
        calls.append(1)
        raise OSError("disk gone")

    throttled = ThrottledRefresh(refresh, min_interval=0.0)
    throttled.request()
    throttled.request()
    assert len(calls) == 2
