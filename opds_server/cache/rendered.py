"""Rendered feed bytes, by the feed's ETag: an in-process LRU bounded by bytes, in front of Redis.

The ETag names everything the bytes depend on (library generation, representation, base URL,
client profile, path and query, and the user for personal feeds), so a Calibre write invalidates
by changing the generation, not by scanning keys, and no entry is ever shared between users.
Rendering happens in a worker thread and this cache is called from there, so its Redis tier
uses Redis's thread-safe synchronous client (the async ``Store`` belongs to the event loop).
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

import brotli
from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 8 * 1024 * 1024
SHARED_TTL = 3600.0
RENDER_WAIT = 30.0  # seconds a request waits for another thread's rendering of the same bytes
BROTLI_QUALITY = 6  # about gzip's speed, a tenth smaller; paid once per feed version


def encode(body: bytes, coding: str) -> bytes:
    """``body`` compressed with ``br`` or ``gzip``."""
    return brotli.compress(body, quality=BROTLI_QUALITY) if coding == "br" else gzip.compress(body, mtime=0)


class RenderedCache:
    """Bytes by key: this process's LRU first, then the shared store (when there is one)."""

    def __init__(
        self, *, max_bytes: int = DEFAULT_MAX_BYTES, redis_url: str | None = None, prefix: str = "opds:"
    ) -> None:
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._max_bytes = max_bytes
        self._shared = Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1) if redis_url else None
        self._prefix = f"{prefix}rendered:"
        self._lock = threading.Lock()
        self._pending: dict[str, threading.Event] = {}

    def _remember(self, key: str, value: bytes) -> None:
        if len(value) > self._max_bytes // 8:
            return  # one huge page must not flush everything else
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._size -= len(previous)
            self._entries[key] = value
            self._size += len(value)
            while self._size > self._max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._size -= len(evicted)

    def peek(self, key: str) -> bytes | None:
        """This process's copy, if any: cheap enough for the event loop."""
        return self._local(key)

    def _local(self, key: str) -> bytes | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def _shared_get(self, key: str) -> bytes | None:
        if self._shared is None:
            return None
        try:
            value = self._shared.get(self._prefix + key)
        except (RedisError, OSError):
            return None
        return value if isinstance(value, bytes) else None

    def _shared_set(self, key: str, value: bytes) -> None:
        if self._shared is None:
            return
        try:
            self._shared.set(self._prefix + key, value, px=int(SHARED_TTL * 1000))
        except (RedisError, OSError):
            log.debug("rendered bytes not shared: Redis is unavailable")

    def close(self) -> None:
        if self._shared is not None:
            self._shared.close()

    def read_or_render(self, key: str, render: Callable[[], bytes]) -> tuple[bytes, bool]:
        """The bytes for ``key`` and whether they came from a cache; renders (and keeps) on a miss.

        Blocking (Redis): call it from a worker thread, as sync handlers run.
        """
        found = self._local(key)
        if found is not None:
            return found, True
        with self._lock:
            pending = self._pending.get(key)
            leads = pending is None
            if pending is None:
                pending = self._pending[key] = threading.Event()
        if not leads:
            # Another thread is rendering these bytes (right after a library change, every client
            # asks for the newest feed at once): wait for it rather than render it again.
            pending.wait(RENDER_WAIT)
            found = self._local(key)
            if found is not None:
                return found, True
        try:
            found = self._shared_get(key)
            if found is not None:
                self._remember(key, found)
                return found, True
            value = render()
            self._remember(key, value)
            self._shared_set(key, value)
            return value, False
        finally:
            if leads:
                with self._lock:
                    self._pending.pop(key, None)
                pending.set()

    def peek_encoded(self, key: str, coding: str) -> bytes | None:
        """This process's compressed copy of the bytes for ``key``, if any."""
        return self._local(f"{key}|{coding}")

    def encoded(self, key: str, body: bytes, coding: str) -> bytes:
        """``body`` (the bytes for ``key``) compressed with ``coding`` (``br`` or ``gzip``), compressed
        once and kept beside them: a cached feed is sent compressed without compressing it again."""
        variant = f"{key}|{coding}"
        found = self._local(variant)
        if found is None:
            found = encode(body, coding)
            self._remember(variant, found)
        return found

    @property
    def size(self) -> int:
        """Bytes held in this process."""
        return self._size
