"""Cover thumbnails, made once per (book, cover mtime, cover size, width) and kept in the data dir.

A thumbnail's file name carries that tuple, so a new cover simply gets a new file and the ETag
built from the same tuple changes with it. Files are written to a temporary name and renamed, so
two workers making the same thumbnail never serve a half-written one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image, UnidentifiedImageError

JPEG_QUALITY = 82


class ThumbnailError(Exception):
    """The cover could not be read as an image."""


class ThumbnailStore:
    """Thumbnails of covers under ``folder``."""

    def __init__(self, folder: Path, width: int) -> None:
        self.folder = folder
        self.width = width

    def _name(self, book_id: int, mtime_ns: int, size: int) -> str:
        return f"{book_id}-{mtime_ns}-{size}-{self.width}.jpg"

    def read_thumbnail(self, book_id: int, cover: Path, mtime_ns: int, size: int) -> Path:
        """The thumbnail file for this cover version, made now if it does not exist yet.

        Raises:
            ThumbnailError: the cover is not an image Pillow can read.
        """
        target = self.folder / self._name(book_id, mtime_ns, size)
        if target.is_file():
            return target
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            with Image.open(cover) as image:
                image.draft("RGB", (self.width, self.width * 4))  # JPEG: decode at a reduced scale
                thumb = image.convert("RGB")
                thumb.thumbnail((self.width, self.width * 4), Image.Resampling.LANCZOS)
        except (UnidentifiedImageError, OSError) as exc:
            raise ThumbnailError(f"cover of book {book_id} is not a readable image") from exc
        handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                thumb.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
            Path(temporary).replace(target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        for stale in self.folder.glob(f"{book_id}-*-{self.width}.jpg"):
            if stale != target:
                stale.unlink(missing_ok=True)
        return target
