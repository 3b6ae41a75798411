"""News of library changes between instances, over Redis pub/sub.

Every instance already notices a change to ``metadata.db`` by itself: its watcher sees the write,
and every request compares the file's fingerprint with the snapshot it serves. But an instance
whose library folder sends no inotify events (a network share written from another host, a
Google Drive mirror that polls) would only notice at its next request or poll, and that request
would pay for the refresh. So when an instance loads a new generation of the library, or its
storage reports changed files, it says so on a Redis channel; every other instance then refreshes
at once, in the background (``Services.refresh_library``: index, Drive's file map, covers, keys).

The news carries no data: a receiver reads the library itself, so a lost, late or repeated message
costs at most one needless ``stat``. An instance that refreshes because of news announces only if
that refresh found something new, so news ends after one round. Publishing happens on this module's
own thread, never in a request; Redis being down only means no news until it is back.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable

import msgspec
from redis import Redis
from redis.client import PubSub
from redis.exceptions import RedisError

from opds_server.observability import LIBRARY_NEWS

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
"""How long the listener waits before subscribing again after Redis went away."""


class News(msgspec.Struct, frozen=True):
    instance: str
    """Who sends it (a receiver ignores its own)."""


class LibraryBus:
    """Announces this instance's library changes and calls ``on_news`` for other instances' ones."""

    def __init__(self, redis_url: str, channel: str, on_news: Callable[[], None]) -> None:
        self.instance = secrets.token_hex(8)
        self.channel = channel
        self._redis = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
        self._on_news = on_news
        self._stopping = threading.Event()
        self._to_announce = threading.Event()
        self._news = threading.Event()
        self._threads: list[threading.Thread] = []
        self.received = 0
        """News from other instances heard so far (the tests read it)."""

    def start(self) -> None:
        for name, target in (("listen", self._listen), ("announce", self._announce), ("refresh", self._refresh)):
            thread = threading.Thread(target=target, name=f"library-bus {name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def announce(self) -> None:
        """Tell the other instances, soon and from another thread, that the library changed."""
        self._to_announce.set()

    def close(self) -> None:
        self._stopping.set()
        self._to_announce.set()
        self._news.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._redis.close()

    def _announce(self) -> None:
        body = msgspec.json.encode(News(instance=self.instance))
        while True:
            self._to_announce.wait()
            if self._stopping.is_set():
                return
            self._to_announce.clear()
            try:
                self._redis.publish(self.channel, body)
                LIBRARY_NEWS.labels(direction="sent").inc()
            except (RedisError, OSError) as exc:
                log.info("library news not sent (Redis: %s); other instances notice on their own", exc)

    def _refresh(self) -> None:
        while True:
            self._news.wait()
            if self._stopping.is_set():
                return
            self._news.clear()  # news arriving during the refresh gets a refresh of its own
            try:
                self._on_news()
            except Exception:
                log.exception("refreshing after another instance's news failed; the next request retries")

    def _listen(self) -> None:
        subscribed: PubSub | None = None
        lost = False
        while not self._stopping.is_set():
            try:
                if subscribed is None:
                    subscribed = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                    subscribed.subscribe(self.channel)
                    if lost:  # news may have gone by while Redis was away
                        self._news.set()
                    lost = False
                message = subscribed.get_message(timeout=1.0)
            except (RedisError, OSError) as exc:
                log.info("library news: Redis is unreachable (%s); subscribing again in %g s", exc, RETRY_SECONDS)
                if subscribed is not None:
                    subscribed.close()
                subscribed = None
                lost = True
                self._stopping.wait(RETRY_SECONDS)
                continue
            if message is not None and message.get("type") == "message":
                self._heard(message.get("data"))
        if subscribed is not None:
            subscribed.close()

    def _heard(self, data: object) -> None:
        try:
            news = msgspec.json.decode(data if isinstance(data, bytes) else b"", type=News)
        except msgspec.DecodeError:
            log.info("library news: ignored a malformed message on %s", self.channel)
            return
        if news.instance != self.instance:
            LIBRARY_NEWS.labels(direction="heard").inc()
            self.received += 1
            self._news.set()
