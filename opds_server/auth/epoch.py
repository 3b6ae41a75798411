"""The credential epoch: one value that changes whenever any credential or user changes.

Cached credentials remember the epoch they were verified in and count only while it holds, so a
password change, a revoked app password or a deleted user takes effect on every instance at once,
not after the cache's TTL. With Redis the epoch is a Redis counter every instance reads; without,
it is a file in the data dir that every worker process (and the CLI) on this machine shares, read
with one ``stat`` per request.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Protocol

from opds_server.cache.store import Store

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
