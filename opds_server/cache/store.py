"""Key-value stores with expiry: in-process (bounded, LRU) and Redis."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Protocol
from urllib.parse import urlsplit

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from opds_server.waiting import wait_until_answers

log = logging.getLogger(__name__)


class StoreUnavailableError(Exception):
    """The store did not answer (Redis down)."""


class Store(Protocol):
    """What the server keeps for a short while and may lose without harm."""

    async def get(self, key: str) -> bytes | None: ...

    async def get_many(self, keys: list[str]) -> list[bytes | None]: ...

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def increment(self, key: str, *, ttl: float) -> int:
        """Add one to a counter, creating it (with ``ttl`` seconds to live) at 1."""
        ...

    async def close(self) -> None: ...


class MemoryStore:
    """This process's own store, bounded to ``max_entries`` (least recently used go first)."""

    def __init__(self, *, max_entries: int = 50_000) -> None:
        self._entries: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._max_entries = max_entries

    def _live(self, key: str) -> bytes | None:
        found = self._entries.get(key)
        if found is None:
            return None
        value, expires = found
        if expires is not None and expires <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [self._live(key) for key in keys]

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self._entries[key] = (value, time.monotonic() + ttl if ttl is not None else None)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    async def increment(self, key: str, *, ttl: float) -> int:
        current = self._live(key)
        if current is None:
            await self.set(key, b"1", ttl=ttl)
            return 1
        count = int(current) + 1
        _, expires = self._entries[key]
        self._entries[key] = (str(count).encode(), expires)
        return count

    async def close(self) -> None:
        self._entries.clear()


def _as_bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


class RedisStore:
    """Redis, shared by every instance; keys carry a prefix so the database can be shared."""

    def __init__(self, url: str, *, prefix: str = "opds:") -> None:
        self._redis = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._prefix = prefix

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(self._key(key))
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(str(exc)) from exc
        return _as_bytes(value)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        try:
            values = await self._redis.mget([self._key(k) for k in keys])
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(str(exc)) from exc
        return [_as_bytes(value) for value in values]

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        try:
            await self._redis.set(self._key(key), value, px=int(ttl * 1000) if ttl is not None else None)
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(str(exc)) from exc

    async def delete(self, key: str) -> None:
        try:
            await self._redis.delete(self._key(key))
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(str(exc)) from exc

    async def increment(self, key: str, *, ttl: float) -> int:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(self._key(key))
                pipe.pexpire(self._key(key), int(ttl * 1000), nx=True)
                count, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(str(exc)) from exc
        return int(count)

    async def close(self) -> None:
        await self._redis.aclose()


REDIS_STARTUP_WAIT_SECONDS = 10.0
"""How long start-up waits for Redis (a container starting beside it) before going on without it."""


def wait_for_redis(url: str, *, seconds: float = REDIS_STARTUP_WAIT_SECONDS) -> bool:
    """Wait until Redis answers, saying so, at most ``seconds``; whether it answered.

    The server runs without Redis (each process caches for itself, and picks Redis up as soon as it
    answers), so a Redis that stays away is a warning, not a reason to refuse to start.
    """
    parsed = urlsplit(url)
    where = f"{parsed.hostname or 'localhost'}:{parsed.port or 6379}"
    client = SyncRedis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        exc = wait_until_answers(client.ping, (RedisError, OSError), what=f"Redis at {where}", seconds=seconds)
    finally:
        client.close()
    if exc is None:
        return True
    log.warning(
        "Redis at %s did not answer in %.0f s (%s); starting without it: each process caches"
        " logins for itself and library news waits, until Redis answers",
        where,
        seconds,
        exc,
    )
    return False
