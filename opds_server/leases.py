"""One holder at a time of a periodic job (a cover push, a KOReader key refresh), across the threads
and worker processes of one machine (an ``flock`` on a file in the data dir) and across instances
(a Redis lock with a lease, so a crashed instance cannot hold the job for ever).

``held()`` never waits: the caller learns whether the job is its own this time, and leaves it to
the holder otherwise. While Redis does not answer, each machine's file lock still keeps its own
workers apart, and the job runs (the jobs are idempotent: running one twice costs time, never data).
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import redis

log = logging.getLogger(__name__)


class Lease:
    def __init__(self, lock_file: Path, *, redis_url: str | None, key: str, seconds: float) -> None:
        self.lock_file = lock_file
        self.key = key
        self.seconds = seconds
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5) if redis_url else None

    @contextmanager
    def held(self) -> Iterator[bool]:
        """Whether this caller holds the job now (for the ``with`` block); ``False``: someone else does."""
        self.lock_file.parent.mkdir(parents=True, exist_ok=True)
        with self.lock_file.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                with self._shared() as is_ours:
                    yield is_ours
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def _shared(self) -> Iterator[bool]:
        if self._redis is None:
            yield True
            return
        lock = self._redis.lock(self.key, timeout=self.seconds)
        try:
            acquired = bool(lock.acquire(blocking=False))
        except redis.RedisError as exc:
            log.warning("%s: Redis did not answer (%s); this machine runs the job on its own", self.key, exc)
            yield True
            return
        if not acquired:
            yield False
            return
        try:
            yield True
        finally:
            with suppress(redis.RedisError):
                lock.release()

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
