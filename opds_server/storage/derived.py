"""Images we derive and keep in the data dir: thumbnails of covers, and covers for books without one.

Each file's name carries everything its bytes depend on (book, cover mtime and size, width; or the
text drawn on a placeholder), so a changed cover or title simply gets a new file, and the ETag
built from the file's own mtime and size changes with it. Files are written under a temporary name
and renamed, so two workers making the same image never serve a half-written one.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from opds_server.storage.artwork import draw_cover

JPEG_QUALITY = 82


class ThumbnailError(Exception):
    """The cover could not be read as an image."""


def write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` so that readers see either nothing or all of it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        Path(temporary).replace(target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _remove_older(folder: Path, pattern: str, keep: Path) -> None:
    for stale in folder.glob(pattern):
        if stale != keep:
            stale.unlink(missing_ok=True)


class ThumbnailStore:
    """Thumbnails of covers under ``folder``, ``width`` pixels wide at most."""

    def __init__(self, folder: Path, width: int) -> None:
        self.folder = folder
        self.width = width

    def read_thumbnail(self, key: str, cover: Path, version: str) -> Path:
        """The thumbnail of this version of a cover, made now if it does not exist yet.

        Args:
            key: names the cover's owner (``12`` for book 12's cover, ``12-placeholder``...).
            cover: the full-size image.
            version: the cover's version (``CoverImage.version``).

        Raises:
            ThumbnailError: the cover is not an image Pillow can read.
        """
        target = self.folder / f"{key}-{version}-{self.width}.jpg"
        if target.is_file():
            return target
        try:
            with Image.open(cover) as image:
                image.draft("RGB", (self.width, self.width * 4))  # JPEG: decode at a reduced scale
                thumb = image.convert("RGB")
                thumb.thumbnail((self.width, self.width * 4), Image.Resampling.LANCZOS)
        except (UnidentifiedImageError, OSError) as exc:
            raise ThumbnailError(f"cover {key} is not a readable image") from exc
        buffer = io.BytesIO()
        thumb.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
        write_atomically(target, buffer.getvalue())
        _remove_older(self.folder, f"{key}-*-{self.width}.jpg", target)
        return target


class PlaceholderStore:
    """Covers drawn for books that have none: title and authors on a colour of their own."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def version_of(book_id: int, title: str, authors: Sequence[str], series: str | None) -> str:
        """Names the drawn cover for this text (it changes with the text), without drawing it."""
        digest = hashlib.blake2s("\x1f".join([title, *authors, series or ""]).encode(), digest_size=8).hexdigest()
        return f"{book_id}-{digest}"

    def read_placeholder(self, book_id: int, title: str, authors: Sequence[str], series: str | None) -> Path:
        """The drawn cover for this text, made now if it does not exist yet."""
        target = self.folder / f"{self.version_of(book_id, title, authors, series)}.jpg"
        if not target.is_file():
            write_atomically(target, draw_cover(title, authors, series))
            _remove_older(self.folder, f"{book_id}-*.jpg", target)
        return target
