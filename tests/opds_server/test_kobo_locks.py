"""One sync session per device at a time: across threads, processes (a file lock) and instances
(Redis), with real locks; two ``DeviceLocks`` stand for two processes or instances."""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

import pytest

from opds_server.kobo.locks import DeviceLocks
from tests.conftest import REDIS_TEST_URL, free_port


def _overlaps(first: DeviceLocks, second: DeviceLocks, *, device: int, other: int) -> list[tuple[str, str]]:
    """Hold ``device`` in ``first`` for a moment while ``second`` takes ``device`` then ``other``."""
    events: list[tuple[str, str]] = []
    held = threading.Event()

    def hold() -> None:
        with first.hold(device):
            events.append(("first", "in"))
            held.set()
            time.sleep(0.3)
            events.append(("first", "out"))

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    with second.hold(other):
        events.append(("other device", "in"))
    with second.hold(device):
        events.append(("second", "in"))
    thread.join()
    return events


@pytest.mark.parametrize("backend", ["file", "redis"])
def test_a_device_waits_for_its_other_session_and_other_devices_do_not(backend: str, tmp_path: Path) -> None:
    url = REDIS_TEST_URL if backend == "redis" else None
    prefix = f"test-{secrets.token_hex(4)}:"
    first = DeviceLocks(tmp_path, redis_url=url, prefix=prefix)
    second = DeviceLocks(tmp_path, redis_url=url, prefix=prefix)
    try:
        events = _overlaps(first, second, device=1, other=2)
    finally:
        first.close()
        second.close()
    assert events == [("first", "in"), ("other device", "in"), ("first", "out"), ("second", "in")]


def test_without_redis_the_lock_falls_back_to_this_machine(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Redis killed: a Kobo still syncs, and this machine's sessions of one device still take turns."""
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: as with Redis down
    first = DeviceLocks(tmp_path, redis_url=url)
    second = DeviceLocks(tmp_path, redis_url=url)
    try:
        events = _overlaps(first, second, device=1, other=2)
    finally:
        first.close()
        second.close()
    assert events == [("first", "in"), ("other device", "in"), ("first", "out"), ("second", "in")]
    assert "Redis did not answer" in caplog.text
