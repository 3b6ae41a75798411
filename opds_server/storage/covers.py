"""Where a cover answer comes from: a presigned S3 redirect when the bucket has that version of the
cover, else the file on local disk; and what ``opds-server covers push`` uploads.

Every cover is pushed in a few renditions, each a JPEG named in ``renditions``: the cover itself
(``cover.jpg``), the feeds' thumbnail (``thumb-<width>.jpg``) and three sizes for Kobos, chosen by
the height the device asks for as calibre-web does (spec 5.10: up to 500 pixels ``kobo-small``, up
to 1000 ``kobo-medium``, above ``kobo-large``). Books without a cover get the one we draw, pushed
the same way. A rendition's key carries the cover's version, so a changed cover is a new object and
a CDN never serves the old one (``opds_server.storage.s3``).

Only covers redirect. Downloads are always streamed: KOReader drops its credentials on a redirect.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from litestar.response import Redirect

from opds_server.calibre.books import read_books
from opds_server.catalog.service import Catalog, CoverImage, cover_file, find_cover
from opds_server.errors import CoverNotFoundError
from opds_server.kobo.covers import KoboCovers
from opds_server.leases import Lease
from opds_server.storage.derived import PlaceholderStore, ThumbnailError, ThumbnailStore
from opds_server.storage.s3 import CoverBucket, CoverSource, PushReport

log = logging.getLogger(__name__)

COVER = "cover.jpg"
KOBO_TIERS: tuple[tuple[str, int, tuple[int, int]], ...] = (
    ("kobo-small.jpg", 500, (334, 500)),
    ("kobo-medium.jpg", 1000, (750, 1000)),
    ("kobo-large.jpg", 100_000, (1440, 1920)),
)
"""(name, largest requested height it answers, the box it is fitted into)."""
REDIRECT_CACHE_CONTROL = "private, max-age=300"
"""A redirect may be reused for 5 minutes: the URL it names stays valid for at least 10."""
BOOKS_PER_BATCH = 500
PUSH_LEASE_SECONDS = 3600
"""How long a crashed instance can keep others from pushing (a first push of a large library is
the CLI's job; after that a push sends a few changed covers)."""
BUSY_RETRY_SECONDS = 60.0
BACKGROUND_LIMIT = 1000
"""Covers a server pushes by itself after a library change; more is ``covers push``'s job."""
BACKGROUND_WORKERS = 2


def _linked(source: Path, target: Path) -> Path:
    """``source`` under the scratch name ``target`` (a hard link where possible, else a copy), so
    removing the push's files never removes the library's or the caches' own."""
    target.unlink(missing_ok=True)
    try:
        target.hardlink_to(source)
    except OSError:
        shutil.copyfile(source, target)
    return target


def _discard(made: Mapping[str, Path]) -> None:
    """Remove a book's renditions once they are uploaded (or failed): all of them are scratch files."""
    for path in made.values():
        path.unlink(missing_ok=True)


def kobo_tier(height: int) -> str:
    """The Kobo rendition answering a request for a cover ``height`` pixels high."""
    return next(name for name, largest, _box in KOBO_TIERS if height <= largest)


class CoverDelivery:
    """Covers by redirect when S3 is configured (``bucket``), and the push that fills the bucket."""

    def __init__(
        self,
        bucket: CoverBucket | None,
        *,
        catalog: Catalog,
        placeholders: PlaceholderStore,
        thumbnails: ThumbnailStore,
        kobo_covers: KoboCovers,
        lock_file: Path,
        redis_url: str | None = None,
        redis_prefix: str = "opds:",
    ) -> None:
        self.bucket = bucket
        self.lease = Lease(
            lock_file,
            redis_url=redis_url if bucket is not None else None,
            key=f"{redis_prefix}covers:push",
            seconds=PUSH_LEASE_SECONDS,
        )
        self.catalog = catalog
        self.placeholders = placeholders
        self.thumbnails = thumbnails
        self.kobo_covers = kobo_covers
        self._push_wanted = threading.Event()
        self._push_thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._warned_large = False

    @property
    def state(self) -> str:
        """Names what covers redirect to now (empty without a bucket); see ``CoverBucket.state``."""
        return self.bucket.state if self.bucket is not None else ""

    @property
    def thumbnail_name(self) -> str:
        return f"thumb-{self.thumbnails.width}.jpg"

    @property
    def renditions(self) -> tuple[str, ...]:
        return (COVER, self.thumbnail_name, *(name for name, _largest, _box in KOBO_TIERS))

    def redirect(self, cover: CoverImage, name: str) -> Redirect | None:
        """A 302 to the presigned URL of this rendition of this version of the cover; ``None`` when
        it must be served from disk (no bucket, not pushed yet, S3 unreachable)."""
        if self.bucket is None:
            return None
        url = self.bucket.redirect_url(cover.book_id, cover.version, name)
        if url is None:
            return None
        return Redirect(url, status_code=302, headers={"Cache-Control": REDIRECT_CACHE_CONTROL})

    def redirect_kobo(self, book_id: int, height: int) -> Redirect | None:
        """``redirect`` for a Kobo's cover request (``BookNotFoundError`` for an unknown book)."""
        if self.bucket is None:
            return None
        return self.redirect(find_cover(self.catalog, self.placeholders, book_id), kobo_tier(height))

    # The push side: what `opds-server covers push` and the watcher run.

    def sources(self) -> Iterator[CoverSource]:
        """Every offered book's cover version, read in batches (no image is read or drawn)."""
        snapshot = self.catalog.snapshot()
        db = self.catalog.library.db
        rows = db.fetch("SELECT b.id, b.path, b.has_cover FROM books b JOIN opds_books k ON k.id = b.id ORDER BY b.id")
        files = self.catalog.files
        drawn: list[int] = []
        for book_id, path, has_cover in rows:
            stored = files.stat(f"{path}/cover.jpg") if has_cover else None
            if stored is None:
                drawn.append(int(str(book_id)))
                continue
            yield CoverSource(book_id=int(str(book_id)), version=stored.version)
        for start in range(0, len(drawn), BOOKS_PER_BATCH):
            books = read_books(db, drawn[start : start + BOOKS_PER_BATCH], snapshot.custom_columns)
            for book_id, book in sorted(books.items()):
                series = f"{book.series.name} {book.series.index:g}" if book.series else None
                authors = [a.name for a in book.authors]
                yield CoverSource(
                    book_id=book_id, version=self.placeholders.version_of(book_id, book.title, authors, series)
                )

    def render(self, source: CoverSource, thumbnails: ThumbnailStore, kobo_covers: KoboCovers) -> dict[str, Path]:
        """Every rendition of a book's cover as a local file, made by ``thumbnails`` and
        ``kobo_covers`` (the push's own, in a scratch folder: pushing 100,000 covers does not fill
        the data dir's caches). A cover in Drive is downloaded to a temporary file, ``COVER``.

        Raises:
            ValueError: the cover changed since ``source`` was read, or is not a readable image.
            StorageError: the cover's bytes cannot be had from the storage now.
            OSError: a file could not be read or written.
        """
        cover = find_cover(self.catalog, self.placeholders, source.book_id)
        if cover.version != source.version:
            raise ValueError(f"the cover changed while it was pushed (now {cover.version}); the next push sends it")
        if cover.stored is not None:
            original = self.catalog.files.local_copy(cover.stored, keep=False)
            if cover.stored.local_path is not None:  # a library file: uploaded from where it is, never removed
                original = _linked(original, thumbnails.folder / f"{source.book_id}-cover.jpg")
        else:
            original = cover_file(self.catalog, self.placeholders, cover)
            original = _linked(original, thumbnails.folder / f"{source.book_id}-cover.jpg")
        made = {COVER: original}
        try:
            made[self.thumbnail_name] = thumbnails.read_thumbnail(cover.key, original, cover.version)
            for name, _largest, (width, height) in KOBO_TIERS:
                made[name] = kobo_covers.fit(cover, original, width, height, is_greyscale=False)
        except (CoverNotFoundError, ThumbnailError) as exc:
            for path in made.values():
                path.unlink(missing_ok=True)
            raise ValueError(f"book {source.book_id}'s cover is not a readable image: {exc}") from exc
        return made

    def push(self, *, workers: int = 8) -> PushReport:
        """Upload what changed since the last push (``CoverBucket.push``) and remove what is gone.

        Raises:
            CoverBucketError: S3 cannot be reached, or the bucket is missing or forbidden.
        """
        if self.bucket is None:
            raise ValueError("no S3 bucket is configured (S3_BUCKET)")
        with tempfile.TemporaryDirectory(prefix="opds-covers-") as scratch:
            thumbnails = ThumbnailStore(Path(scratch) / "renditions", self.thumbnails.width)
            kobo_covers = KoboCovers(Path(scratch) / "renditions", self.catalog, self.placeholders)
            thumbnails.folder.mkdir(parents=True)
            report = self.bucket.push(
                self.sources(),
                self.renditions,
                lambda source: self.render(source, thumbnails, kobo_covers),
                workers=workers,
                discard=_discard,
            )
        self.bucket.request_refresh()
        return report

    def push_alone(self) -> PushReport | None:
        """``push``, unless another process is pushing (``None`` then)."""
        with self.lease.held() as is_mine:
            return self.push() if is_mine else None

    def start(self) -> None:
        """Start the bucket's manifest thread, and the thread that pushes after library changes."""
        if self.bucket is None:
            return
        self.bucket.start()
        self._push_thread = threading.Thread(target=self._pushing, name="cover-push", daemon=True)
        self._push_thread.start()

    def request_push(self) -> None:
        """The library changed: push the covers that changed, soon, in the background."""
        if self.bucket is not None:
            self._push_wanted.set()

    def _pushing(self) -> None:
        while not self._closing.is_set():
            self._push_wanted.wait()
            if self._closing.is_set():
                return
            self._push_wanted.clear()
            try:
                if not self._is_small_change():
                    continue
                with self.lease.held() as is_mine:
                    if not is_mine:  # another process pushes: look again later, for what it missed
                        self._closing.wait(BUSY_RETRY_SECONDS)
                        self._push_wanted.set()
                        continue
                    report = self.push(workers=BACKGROUND_WORKERS)
            except Exception as exc:  # noqa: BLE001  # a failed background push is logged, retried on the next change
                log.warning("covers: the push after a library change failed: %s", exc)
                continue
            if report.uploaded_objects or report.deleted_objects:
                log.info(
                    "covers: %d books pushed, %d objects deleted after a library change",
                    report.uploaded_books,
                    report.deleted_objects,
                )

    def _is_small_change(self) -> bool:
        """Whether the covers to push are few enough for a server to push them beside its requests;
        a first push of a whole library is the command's job (rendering is CPU work)."""
        assert self.bucket is not None
        changed = self.bucket.count_changed(self.sources(), self.renditions)
        if changed is None:  # the manifest is not read yet: the bucket's thread reads it soon
            self._closing.wait(BUSY_RETRY_SECONDS)
            self._push_wanted.set()
            return False
        if changed > BACKGROUND_LIMIT:
            if not self._warned_large:
                log.warning(
                    "covers: %d covers are not in S3 yet, more than a server pushes by itself (%d):"
                    " run 'opds-server covers push'; they are served from disk meanwhile",
                    changed,
                    BACKGROUND_LIMIT,
                )
                self._warned_large = True
            return False
        self._warned_large = False
        return changed > 0

    def close(self) -> None:
        self._closing.set()
        self._push_wanted.set()
        if self._push_thread is not None:
            self._push_thread.join(timeout=5)
        if self.bucket is not None:
            self.bucket.close()
        self.lease.close()
