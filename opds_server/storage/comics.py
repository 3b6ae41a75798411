"""Comic archives (CBZ) read page by page, for OPDS-PSE streaming.

Pages are the archive's images in natural name order. The page list is remembered per version of
the file, so a feed listing a comic costs one ``stat``, not an archive scan; an archive in Google
Drive is read by ranges (its directory, then the one page), never downloaded whole.
"""

from __future__ import annotations

import io
import re
import zipfile
from functools import lru_cache
from pathlib import Path

from PIL import Image

from opds_server.storage.files import LibraryFiles, StorageError, StoredFile

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")
_DIGITS = re.compile(r"(\d+)")
IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


def _natural(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part.casefold() for part in _DIGITS.split(name)]


@lru_cache(maxsize=1024)
def _pages(files: LibraryFiles, stored: StoredFile) -> tuple[str, ...]:
    try:
        with files.open(stored) as handle, zipfile.ZipFile(handle) as archive:
            names = [
                info.filename
                for info in archive.infolist()
                if not info.is_dir()
                and info.filename.lower().endswith(_IMAGE_SUFFIXES)
                and not info.filename.startswith(("__MACOSX/", "."))
            ]
    except (OSError, StorageError, zipfile.BadZipFile):
        return ()
    return tuple(sorted(names, key=_natural))


def read_page_names(files: LibraryFiles, stored: StoredFile) -> tuple[str, ...]:
    """The archive's image entries in reading order; empty when the file is unreadable.
    Remembered per version of the file, so a feed listing a comic reads nothing."""
    return _pages(files, stored)


def read_page(files: LibraryFiles, stored: StoredFile, number: int, max_width: int | None) -> tuple[bytes, str] | None:
    """Page ``number`` (0-based) as (bytes, media type), scaled down to ``max_width`` if wider.

    Raises:
        StorageError: the archive's bytes cannot be had now.
    """
    names = read_page_names(files, stored)
    if not 0 <= number < len(names):
        return None
    name = names[number]
    with files.open(stored) as handle, zipfile.ZipFile(handle) as archive:
        data = archive.read(name)
    media_type = IMAGE_TYPES[Path(name).suffix.lower()]
    if max_width is None:
        return data, media_type
    with Image.open(io.BytesIO(data)) as image:
        if image.width <= max_width:
            return data, media_type
        height = max(1, round(image.height * max_width / image.width))
        scaled = image.convert("RGB").resize((max_width, height), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        scaled.save(out, "JPEG", quality=85)
    return out.getvalue(), "image/jpeg"
