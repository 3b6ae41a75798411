"""Covers at the size a Kobo asks for (spec 5.10): fitted into ``width`` x ``height``, JPEG.

Made once per (book, cover version, size, greyscale) and kept in the data dir, like the feeds'
thumbnails; books without a cover get the one we draw for the catalogue. Sizes are clamped to
what a screen can use, so a request for a 100,000-pixel cover cannot make us allocate one.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from opds_server.catalog.service import Catalog, CoverImage, cover_or_drawn
from opds_server.errors import CoverNotFoundError
from opds_server.storage.derived import JPEG_QUALITY, PlaceholderStore, write_atomically

MIN_SIDE = 16
MAX_SIDE = 2000


class KoboCovers:
    def __init__(self, folder: Path, catalog: Catalog, placeholders: PlaceholderStore) -> None:
        self.folder = folder
        self.catalog = catalog
        self.placeholders = placeholders

    def read(self, book_id: int, width: int, height: int, *, is_greyscale: bool) -> Path:
        """The cover of a book fitted into ``width`` x ``height``.

        Raises:
            BookNotFoundError: no such book.
            CoverNotFoundError: the cover is not a readable image.
        """
        cover, path = cover_or_drawn(self.catalog, self.placeholders, book_id)
        return self.fit(cover, path, width, height, is_greyscale=is_greyscale)

    def fit(self, cover: CoverImage, path: Path, width: int, height: int, *, is_greyscale: bool) -> Path:
        """This version of a cover fitted into ``width`` x ``height`` (made once, then kept).

        Raises:
            CoverNotFoundError: the cover is not a readable image.
        """
        book_id = cover.book_id
        box = (min(max(width, MIN_SIDE), MAX_SIDE), min(max(height, MIN_SIDE), MAX_SIDE))
        grey = "g" if is_greyscale else "c"
        target = self.folder / f"{book_id}-{cover.version}-{box[0]}x{box[1]}{grey}.jpg"
        if target.is_file():
            return target
        try:
            with Image.open(path) as image:
                image.draft("RGB", box)
                fitted = ImageOps.contain(image.convert("L" if is_greyscale else "RGB"), box, Image.Resampling.LANCZOS)
        except (UnidentifiedImageError, OSError) as exc:
            raise CoverNotFoundError(f"book {book_id}'s cover is not a readable image") from exc
        buffer = io.BytesIO()
        fitted.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
        write_atomically(target, buffer.getvalue())
        for stale in self.folder.glob(f"{book_id}-*-{box[0]}x{box[1]}{grey}.jpg"):
            if stale != target:
                stale.unlink(missing_ok=True)
        return target
