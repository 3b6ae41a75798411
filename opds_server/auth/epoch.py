"""The credential epoch: one value that changes whenever any credential or user changes.

Cached credentials remember the epoch they were verified in and count only while it holds, so a
password change, a revoked app password or device or a deleted user takes effect on every instance
at once, not after the cache's TTL.

The epoch has two parts (``CredentialEpoch``):

- the database's counter (``credential_epoch``), bumped in the transaction of every such change:
  the authority, which no cache can outlive. Each process reads it at most once a second; while the
  database is down its last value stands (no credential can change while it is down).
- a fast signal, so that the change is seen at once rather than within that second: with Redis a
  counter every instance reads; without, a file in the data dir that every worker process (and the
  CLI) on this machine shares, read with one ``stat`` per request. Losing it (Redis down, or
  restarted empty) costs at most a second of delay, never a stale login.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import anyio.to_thread
from sqlalchemy.exc import SQLAlchemyError

from opds_server.cache.store import Store, StoreUnavailableError

log = logging.getLogger(__name__)

EPOCH_KEY = "auth:epoch"


class Epoch(Protocol):
    async def current(self) -> str: ...

    async def bump(self) -> None: ...


class FileEpoch:
    """The epoch as a file's identity (inode, mtime, size), changed by an atomic rewrite."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            self._write()

    async def current(self) -> str:
        return self._read()

    def _read(self) -> str:
        try:
            stat = self.path.stat()
        except OSError:
            return "missing"
        return f"{stat.st_ino}-{stat.st_mtime_ns}-{stat.st_size}"

    async def bump(self) -> None:
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        temporary.write_text(secrets.token_hex(16), encoding="ascii")
        temporary.replace(self.path)  # a new inode: the identity changes even within one mtime tick


class StoreEpoch:
    """The epoch as a counter in a shared store (Redis)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def current(self) -> str:
        value = await self.store.get(EPOCH_KEY)
        return value.decode() if value else "0"

    async def bump(self) -> None:
        await self.store.increment(EPOCH_KEY, ttl=10 * 365 * 86400)


DATABASE_READ_EVERY = 1.0
"""Seconds a process trusts the database's counter it read last (the longest a change made while the
fast signal is lost takes to reach it)."""


class CredentialEpoch:
    """The fast signal and the database's counter, as one value (see the module docstring)."""

    def __init__(
        self, fast: Epoch, read_database: Callable[[], int], *, read_every: float = DATABASE_READ_EVERY
    ) -> None:
        self.fast = fast
        self._read_database = read_database
        self._read_every = read_every
        self._database: int | None = None
        self._read_at = -math.inf
        self._fast_down = False

    async def current(self) -> str:
        try:
            fast = await self.fast.current()
        except StoreUnavailableError as exc:
            if not self._fast_down:
                log.warning("credential epoch: Redis is unreachable (%s); the database's counter alone counts", exc)
                self._fast_down = True
            fast = "-"
        else:
            self._fast_down = False
        return f"{fast}.{await self._database_value()}"

    async def _database_value(self) -> int:
        now = time.monotonic()
        if self._database is not None and now - self._read_at < self._read_every:
            return self._database
        self._read_at = now  # concurrent requests use the value in hand meanwhile
        try:
            self._database = await anyio.to_thread.run_sync(self._read_database)
        except SQLAlchemyError as exc:
            if self._database is None:
                raise
            log.warning("credential epoch: the database is unreachable (%s); keeping %d", exc, self._database)
        return self._database

    async def bump(self) -> None:
        """After a change the database has counted: this process rereads it, the others learn at once."""
        self._read_at = -math.inf
        try:
            await self.fast.bump()
        except StoreUnavailableError as exc:
            log.warning(
                "credential epoch: Redis is unreachable (%s); other instances see the change within %g s",
                exc,
                self._read_every,
            )
