"""Library news between instances over a real Redis: heard by the others at once, not by the sender;
without Redis nobody blocks, and start-up waits for it a bounded time."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest
from redis import Redis

from opds_server.bus import LibraryBus
from opds_server.cache.store import wait_for_redis
from tests.conftest import REDIS_TEST_URL, free_port


class Refreshes:
    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()

    def __call__(self) -> None:
        with self.changed:
            self.count += 1
            self.changed.notify_all()

    def wait_for(self, count: int, seconds: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.count >= count, timeout=seconds)


def test_news_reaches_the_other_instances_within_a_second_and_not_the_sender() -> None:
    channel = f"opds-test:{uuid.uuid4().hex}:library"
    refreshes = [Refreshes() for _ in range(3)]
    buses = [LibraryBus(REDIS_TEST_URL, channel, on_news) for on_news in refreshes]
    for bus in buses:
        bus.start()
    try:
        deadline = time.monotonic() + 5
        while Redis.from_url(REDIS_TEST_URL).pubsub_numsub(channel)[0][1] < len(buses):
            assert time.monotonic() < deadline, "the listeners did not subscribe"
            time.sleep(0.02)
        started = time.monotonic()
        buses[0].announce()
        assert refreshes[1].wait_for(1, 1.0)
        assert refreshes[2].wait_for(1, 1.0)
        took = time.monotonic() - started
        time.sleep(0.3)
        assert refreshes[0].count == 0  # its own news
        assert (buses[1].received, buses[2].received) == (1, 1)
        assert took < 1.0
        # A malformed message on the channel is ignored, not a crash of the listener.
        Redis.from_url(REDIS_TEST_URL).publish(channel, b"not json")
        buses[2].announce()
        assert refreshes[1].wait_for(2, 1.0)
    finally:
        for bus in buses:
            bus.close()


def test_a_listener_without_redis_keeps_trying_and_the_sender_does_not_block() -> None:
    bus = LibraryBus(f"redis://127.0.0.1:{free_port()}/0", "opds-test:library", Refreshes())
    bus.start()
    started = time.monotonic()
    bus.announce()  # returns at once: the publishing thread meets the error
    assert time.monotonic() - started < 0.1
    time.sleep(0.5)
    bus.close()
    assert all(not thread.is_alive() for thread in bus._threads)


def test_start_up_waits_a_bounded_time_for_redis_then_goes_on_without_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="opds_server.cache.store")
    port = free_port()
    started = time.monotonic()
    assert wait_for_redis(f"redis://:hunter2@127.0.0.1:{port}/0", seconds=0.5) is False
    assert 0.5 <= time.monotonic() - started < 5
    said = caplog.text
    assert f"waiting for Redis at 127.0.0.1:{port}" in said
    assert f"Redis at 127.0.0.1:{port} did not answer in 0 s" in said
    assert "starting without it" in said
    assert "hunter2" not in said
    assert wait_for_redis(REDIS_TEST_URL, seconds=0.5) is True
