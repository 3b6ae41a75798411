"""The server secret: ``OPDS_SECRET_KEY``, or one generated on first start and kept in the data dir."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from opds_server.config import Settings

SECRET_FILE = "secret.key"  # noqa: S105 - a file name


def load_secret(settings: Settings) -> bytes:
    """The secret's bytes; creates ``secret.key`` (mode 0600) exactly once, even with racing workers."""
    if settings.secret_key:
        return settings.secret_key.encode()
    path = settings.data_dir / SECRET_FILE
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    with os.fdopen(descriptor, "w", encoding="ascii") as out:
        out.write(secrets.token_urlsafe(48))
    return _read(path)


def _read(path: Path) -> bytes:
    value = path.read_text(encoding="ascii").strip()
    if len(value) < 32:  # a worker reading while another writes: the writer is a few bytes away
        value = path.read_text(encoding="ascii").strip()
    return value.encode()
