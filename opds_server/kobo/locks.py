"""One sync session at a time per device, across threads, worker processes and instances (spec 7.4
step 7; Kavita added the same after two overlapping syncs of one URL corrupted each other).

Pages are pure functions of the token, so overlapping sessions could not send wrong items; the
lock keeps them from freezing two snapshots for one device at once. Within a process a
``threading.Lock``; across processes an ``fcntl`` lock on a file in the data dir (the embedded
setup: one machine); across instances a Redis lock with a lease, so a crashed instance cannot
hold a device forever. While Redis does not answer, the file lock still keeps this machine's
sessions apart: two instances could then serve one device at once, which costs nothing wrong (see
above), where refusing the sync would cost the reader their sync.
"""

from __future__ import annotations

import fcntl
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import redis

log = logging.getLogger(__name__)

LEASE_SECONDS = 60.0
WAIT_SECONDS = 30.0


class DeviceBusyError(Exception):
    """Another session of the device held its lock for longer than ``WAIT_SECONDS``."""


class DeviceLocks:
    def __init__(self, folder: Path, *, redis_url: str | None = None, prefix: str = "opds:") -> None:
        self.folder = folder
        self.prefix = prefix
        self._redis = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5) if redis_url else None
        self._guard = threading.Lock()
        self._locks: dict[int, threading.Lock] = {}

    @contextmanager
    def hold(self, device_id: int) -> Iterator[None]:
        """Hold the device's lock for the ``with`` block.

        Raises:
            DeviceBusyError: it stayed taken for ``WAIT_SECONDS``.
        """
        with self._guard:
            local = self._locks.setdefault(device_id, threading.Lock())
        if not local.acquire(timeout=WAIT_SECONDS):
            raise DeviceBusyError(f"device {device_id} is syncing in another request")
        try:
            with self._shared(device_id):
                yield
        finally:
            local.release()

    @contextmanager
    def _shared(self, device_id: int) -> Iterator[None]:
        if self._redis is not None:
            lock = self._redis.lock(
                f"{self.prefix}kobo:sync:{device_id}", timeout=LEASE_SECONDS, blocking_timeout=WAIT_SECONDS
            )
            try:
                acquired = lock.acquire()
            except (redis.RedisError, OSError) as exc:
                log.warning("device %d: Redis did not answer (%s); locking on this machine only", device_id, exc)
            else:
                if not acquired:
                    raise DeviceBusyError(f"device {device_id} is syncing on another instance")
                try:
                    yield
                finally:
                    with suppress(redis.RedisError, OSError):  # Redis went away meanwhile: the lease ends it
                        lock.release()
                return
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / f"kobo-{device_id}.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
