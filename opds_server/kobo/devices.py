"""Kobo devices: registering one (CLI and API), and finding the device a path token names.

The token is 128 random bits as 32 hex characters (spec 2), shown once and kept hashed. A lookup
is cached in the process for a minute, and only while the credential epoch holds, so revoking a
device (or disabling its user) takes effect at once on every instance, as a password change does.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
import time

from opds_server.db.engine import DATABASE_DOWN
from opds_server.db.kobo import DeviceRecord, KoboStore, token_hash

TOKEN_PATTERN = re.compile(r"[0-9a-f]{32}")
CACHE_SECONDS = 60.0
SEEN_EVERY = dt.timedelta(minutes=5)
MAX_LABEL = 100


class DeviceLabelError(ValueError):
    """A device label that is empty or too long."""


def new_device_token() -> str:
    return secrets.token_hex(16)


def register_device(store: KoboStore, user_id: int, label: str, *, now: dt.datetime) -> tuple[DeviceRecord, str]:
    """A new device for the user; returns it and its token (shown once, kept only hashed)."""
    cleaned = " ".join(label.split())
    if not cleaned or len(cleaned) > MAX_LABEL:
        raise DeviceLabelError(f"a device label has 1 to {MAX_LABEL} characters")
    token = new_device_token()
    record = store.add_device(
        user_id,
        cleaned,
        token=token,
        sync_key=secrets.token_hex(32),
        access_token=secrets.token_urlsafe(32),
        now=now,
    )
    return record, token


def endpoint_line(public_base: str, token: str) -> str:
    """The line to paste into ``.kobo/Kobo/Kobo eReader.conf`` under ``[OneStoreServices]``."""
    return f"api_endpoint={public_base.rstrip('/')}/kobo/{token}"


class DeviceDirectory:
    """Path token -> device, cached per epoch."""

    def __init__(self, store: KoboStore) -> None:
        self.store = store
        self._cache: dict[str, tuple[str, float, DeviceRecord | None]] = {}
        self._seen: dict[int, dt.datetime] = {}
        self._lock = threading.Lock()
        self.last_epoch = ""
        """The credential epoch of the last lookup (for the 404 handler, which cannot await it)."""

    def find(self, token: str, *, epoch: str, now: dt.datetime) -> DeviceRecord | None:
        """The live device of this token, or ``None`` (malformed, unknown, revoked, user disabled)."""
        if not TOKEN_PATTERN.fullmatch(token):
            return None
        key = token_hash(token)
        self.last_epoch = epoch
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] == epoch and time.monotonic() - cached[1] < CACHE_SECONDS:
            device = cached[2]
        else:
            device = self.store.device_by_token(token)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key] = (epoch, time.monotonic(), device)
        if device is not None:
            self._note_seen(device, now)
        return device

    def _note_seen(self, device: DeviceRecord, now: dt.datetime) -> None:
        with self._lock:
            last = self._seen.get(device.id) or device.last_seen_at
            if last is not None and now - last < SEEN_EVERY:
                return
            self._seen[device.id] = now
        try:
            self.store.touch(device.id, now=now)
        except DATABASE_DOWN:  # a note, not the request's point: the next request notes it again
            with self._lock:
                self._seen[device.id] = last or now - SEEN_EVERY
