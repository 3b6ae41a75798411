"""Covers and thumbnails in an S3 bucket, served as redirects to presigned URLs.

Layout. Every rendition of a cover (``cover.jpg``, ``thumb-300.jpg``, the Kobo sizes...; the names
are opaque here) lives at ``{prefix}covers/{book_id}/{version}/{name}``, uploaded with
``Cache-Control: public, max-age=31536000, immutable``. ``version`` changes whenever the cover
does, so a changed cover gets new keys and no CDN or e-reader cache can serve a stale one. Beside
them, ``{prefix}covers/manifest.json.gz`` (gzip-compressed JSON) says which version of each book
has every rendition uploaded::

    {"format": 1, "renditions": ["cover.jpg", ...], "books": {"12": "<version>", ...}}

Push (``opds-server covers push``) uploads only what the manifest lacks, then writes the manifest
(also every 2,000 books, so a push killed midway loses little) and only then deletes the objects
of replaced versions and of books gone from the library, so a server still holding the previous
manifest never redirects to a deleted object.

Freshness and fallback. A server reads nothing but the manifest: a daemon thread reloads it every
``manifest_interval`` seconds with a conditional GET (a 304 costs nothing), and
``request_refresh()`` wakes it sooner. ``redirect_url`` answers from memory only, never over the
network: a presigned URL when the manifest holds exactly the version the library has, else None
and the caller serves the file from disk. While S3 does not answer, every cover comes from disk;
that is logged once when it starts and once when it ends. Presigned URLs are cached and handed out
again until ten minutes before they expire, so a client sees one stable URL per cover.

This module must not import the HTTP layer; the routes and the CLI call it.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import msgspec
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from opds_server.config import Settings
from opds_server.storage.files import StorageError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
IMMUTABLE = "public, max-age=31536000, immutable"
CHECKPOINT_BOOKS = 2000
"""A long push writes the manifest after this many uploaded books."""
DELETE_BATCH = 1000
"""DeleteObjects takes at most 1,000 keys."""
URL_CACHE_SIZE = 100_000
URL_RENEW_BEFORE = 600
"""A cached presigned URL is replaced this many seconds before it expires."""


class CoverSource(msgspec.Struct, frozen=True, kw_only=True):
    """A book's cover as the library has it now."""

    book_id: int
    version: str


class PushReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a push did; ``failed`` holds one line per book, ``"book 12: <reason>"``."""

    uploaded_books: int
    uploaded_objects: int
    unchanged: int
    deleted_objects: int
    failed: tuple[str, ...]
    seconds: float


class CoverBucketError(Exception):
    """The bucket cannot be used: S3 unreachable, bucket missing, access denied, manifest unreadable."""


class _Manifest(msgspec.Struct, frozen=True, kw_only=True):
    format: int
    renditions: tuple[str, ...]
    books: dict[int, str]


_EMPTY = _Manifest(format=MANIFEST_FORMAT, renditions=(), books={})
_manifest_decoder = msgspec.json.Decoder(_Manifest)


class _Fetched(msgspec.Struct, frozen=True, kw_only=True):
    manifest: _Manifest
    etag: str | None


class _Outcome(msgspec.Struct, frozen=True, kw_only=True):
    source: CoverSource
    uploaded_keys: tuple[str, ...]
    error: str | None = None


def make_s3_client(settings: Settings, *, max_attempts: int = 3) -> S3Client:
    """A boto3 S3 client for ``settings``; keys and region left unset fall back to boto3's chain."""
    config = Config(
        signature_version="s3v4",
        connect_timeout=3,
        read_timeout=10,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        # MinIO and local servers have no per-bucket DNS names; AWS picks virtual hosts itself.
        s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
        max_pool_connections=16,
    )
    # A session of its own: boto3's default session is a module global and not thread-safe to create.
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.aws_secret_access_key,
        config=config,
    )


def _reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
        message = error.get("Message")
        return f"{code} ({message})" if message else code
    return str(exc) or type(exc).__name__


def _read_manifest(body: bytes) -> _Manifest:
    # botocore hands over the stored bytes; a proxy may already have undone the gzip encoding.
    try:
        manifest = _manifest_decoder.decode(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)
    except (OSError, EOFError, zlib.error, msgspec.DecodeError) as exc:
        raise ValueError(f"the cover manifest is unreadable: {exc}") from exc
    if manifest.format != MANIFEST_FORMAT:
        raise ValueError(f"the cover manifest has format {manifest.format}; this server reads {MANIFEST_FORMAT}")
    return manifest


class CoverBucket:
    """One bucket of covers: ``push`` fills it (CLI), ``redirect_url`` points readers at it (HTTP)."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: S3Client | None = None,
        clock: Callable[[], float] = time.time,
        url_lifetime: int = 3600,
        manifest_interval: float = 60.0,
    ) -> None:
        if not settings.s3_bucket:
            raise CoverBucketError("S3_BUCKET is not set")
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self._client = client if client is not None else make_s3_client(settings)
        self._clock = clock
        self._url_lifetime = url_lifetime
        self._reuse_for = max(url_lifetime - URL_RENEW_BEFORE, url_lifetime / 2)
        self._manifest_interval = manifest_interval
        self._manifest_key = f"{self.prefix}covers/manifest.json.gz"
        # Swapped whole, never mutated: readers on other threads see the old or the new one.
        self._served: _Manifest | None = None
        self._etag: str | None = None
        self._reachable: bool | None = None  # None: not asked yet
        self._urls: OrderedDict[tuple[int, str, str], tuple[str, float]] = OrderedDict()
        self._urls_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def location(self) -> str:
        """``<endpoint>/<bucket>``, for messages."""
        return f"{self._client.meta.endpoint_url}/{self.bucket}"

    @property
    def is_reachable(self) -> bool:
        return self._reachable is True

    def key(self, book_id: int, version: str, name: str) -> str:
        return f"{self.prefix}covers/{book_id}/{version}/{name}"

    # --- push side ---------------------------------------------------------------------------

    def push(
        self,
        sources: Iterable[CoverSource],
        renditions: Sequence[str],
        render: Callable[[CoverSource], Mapping[str, Path]],
        *,
        workers: int = 8,
        discard: Callable[[Mapping[str, Path]], None] | None = None,
    ) -> PushReport:
        """Upload the renditions of every changed cover, drop those of deleted books, write the manifest.

        ``discard`` is given each book's rendered files once they are uploaded (or failed), to
        remove them: a push of 100,000 covers never holds more than a few books' files at once.

        Raises:
            CoverBucketError: the manifest cannot be read or written.
        """
        started = time.monotonic()
        names = tuple(renditions)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"renditions must be distinct names, got {names!r}")
        try:
            fetched = self._fetch_manifest(None)
        except (BotoCoreError, ClientError, ValueError) as exc:
            raise CoverBucketError(f"cannot push covers to {self.location}: {_reason(exc)}") from exc
        previous = fetched.manifest if fetched is not None else _EMPTY
        run = _PushRun(self, previous, names, is_new=fetched is None or fetched.etag is None)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-cover-push") as pool:
            in_flight: set[Future[_Outcome]] = set()
            for source in sources:
                if run.is_unchanged(source):
                    continue
                if len(in_flight) >= workers * 4:  # bounded: a 100,000-book library is a lazy iterable
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    run.record(done)
                in_flight.add(pool.submit(self._upload_book, source, names, render, discard))
            run.record(wait(in_flight).done)
        run.finish()
        report = PushReport(
            uploaded_books=run.uploaded_books,
            uploaded_objects=run.uploaded_objects,
            unchanged=run.unchanged,
            deleted_objects=run.deleted_objects,
            failed=tuple(run.failed),
            seconds=round(time.monotonic() - started, 3),
        )
        logger.info(
            "covers pushed to %s: %d books uploaded (%d objects), %d unchanged, %d failed, %d deleted in %.1f s",
            self.location,
            report.uploaded_books,
            report.uploaded_objects,
            report.unchanged,
            len(report.failed),
            report.deleted_objects,
            report.seconds,
        )
        self.request_refresh()
        return report

    def _upload_book(
        self,
        source: CoverSource,
        names: Sequence[str],
        render: Callable[[CoverSource], Mapping[str, Path]],
        discard: Callable[[Mapping[str, Path]], None] | None,
    ) -> _Outcome:
        try:
            files = render(source)
        except (OSError, ValueError, StorageError) as exc:
            return _Outcome(source=source, uploaded_keys=(), error=str(exc) or type(exc).__name__)
        try:
            return self._upload_files(source, names, files)
        finally:
            if discard is not None:
                discard(files)

    def _upload_files(self, source: CoverSource, names: Sequence[str], files: Mapping[str, Path]) -> _Outcome:
        missing = [name for name in names if name not in files]
        if missing:
            return _Outcome(source=source, uploaded_keys=(), error=f"render gave no {', '.join(missing)}")
        uploaded: list[str] = []
        for name in names:
            key = self.key(source.book_id, source.version, name)
            try:
                with files[name].open("rb") as body:  # streamed from the file by botocore
                    self._client.put_object(
                        Bucket=self.bucket, Key=key, Body=body, ContentType="image/jpeg", CacheControl=IMMUTABLE
                    )
            except (OSError, BotoCoreError, ClientError) as exc:
                return _Outcome(source=source, uploaded_keys=tuple(uploaded), error=f"{name}: {_reason(exc)}")
            uploaded.append(key)
        return _Outcome(source=source, uploaded_keys=tuple(uploaded))

    def _write_manifest(self, names: tuple[str, ...], books: Mapping[int, str]) -> None:
        manifest = _Manifest(format=MANIFEST_FORMAT, renditions=names, books=dict(sorted(books.items())))
        body = gzip.compress(msgspec.json.encode(manifest), mtime=0)  # same books, same bytes, same ETag
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=self._manifest_key,
                Body=body,
                ContentType="application/json",
                ContentEncoding="gzip",
                CacheControl="no-cache",
            )
        except (BotoCoreError, ClientError) as exc:
            raise CoverBucketError(f"cannot write {self._manifest_key} to {self.location}: {_reason(exc)}") from exc

    def _delete(self, keys: Iterable[str]) -> int:
        ordered = sorted(set(keys))
        deleted = 0
        for start in range(0, len(ordered), DELETE_BATCH):
            batch = ordered[start : start + DELETE_BATCH]
            try:
                response = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
                )
            except (BotoCoreError, ClientError) as exc:
                logger.warning("could not delete %d old covers from %s: %s", len(batch), self.location, _reason(exc))
                continue
            errors = response.get("Errors", [])
            if errors:
                logger.warning("%d old covers stay in %s, e.g. %s", len(errors), self.location, errors[0])
            deleted += len(batch) - len(errors)
        return deleted

    # --- serve side --------------------------------------------------------------------------

    def count_changed(self, sources: Iterable[CoverSource], renditions: Sequence[str]) -> int | None:
        """How many books a push would upload or delete, by the manifest last read (no request);
        ``None`` when no manifest has been read yet."""
        served = self._served
        if served is None:
            return None
        seen: set[int] = set()
        changed = 0
        for source in sources:
            seen.add(source.book_id)
            changed += served.renditions != tuple(renditions) or served.books.get(source.book_id) != source.version
        return changed + len(served.books.keys() - seen)  # books gone from the library: objects to delete

    @property
    def state(self) -> str:
        """Changes whenever what ``redirect_url`` may answer does: another manifest, S3 lost or back."""
        return f"{self._etag}:{self._reachable}"

    def redirect_url(self, book_id: int, version: str, name: str) -> str | None:
        """A presigned URL of this rendition, or None: not uploaded in this version, or S3 unreachable."""
        served = self._served
        if not self._reachable or served is None or name not in served.renditions:
            return None
        if served.books.get(book_id) != version:
            return None
        cache_key = (book_id, version, name)
        now = self._clock()
        with self._urls_lock:
            cached = self._urls.get(cache_key)
            if cached is not None and now < cached[1]:
                self._urls.move_to_end(cache_key)
                return cached[0]
        try:  # signing is local: no request is made
            url = self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self.key(book_id, version, name)},
                ExpiresIn=self._url_lifetime,
            )
        except BotoCoreError as exc:
            logger.debug("cannot sign a cover URL for %s: %s", self.location, exc)
            return None
        with self._urls_lock:
            self._urls[cache_key] = (url, now + self._reuse_for)
            self._urls.move_to_end(cache_key)
            while len(self._urls) > URL_CACHE_SIZE:
                self._urls.popitem(last=False)
        return url

    def refresh_manifest(self) -> bool:
        """Load the manifest once (conditionally); returns whether S3 answered."""
        with self._refresh_lock:
            try:
                fetched = self._fetch_manifest(self._etag)
            except (BotoCoreError, ClientError, ValueError) as exc:
                self._mark_unreachable(_reason(exc))
                return False
            if fetched is not None:
                self._served, self._etag = fetched.manifest, fetched.etag
            self._mark_reachable()
            return True

    def start(self) -> None:
        """Load the manifest now and then every ``manifest_interval`` seconds, on a daemon thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._watch, name=f"s3-covers-{self.bucket}", daemon=True)
        self._thread.start()

    def request_refresh(self) -> None:
        """Reload the manifest soon (after a push, after a library change)."""
        self._wake.set()

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _watch(self) -> None:
        while not self._stopping.is_set():
            self.refresh_manifest()
            self._wake.wait(self._manifest_interval)
            self._wake.clear()

    def _fetch_manifest(self, etag: str | None) -> _Fetched | None:
        """The stored manifest (empty when there is none yet); None when unchanged since ``etag``.

        Raises:
            BotoCoreError, ClientError: S3 did not answer, or refused.
            ValueError: the manifest is not one we can read.
        """
        try:
            if etag is None:
                response = self._client.get_object(Bucket=self.bucket, Key=self._manifest_key)
            else:
                response = self._client.get_object(Bucket=self.bucket, Key=self._manifest_key, IfNoneMatch=etag)
            body = response["Body"].read()
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 304:
                return None
            if exc.response.get("Error", {}).get("Code") == "NoSuchKey":
                return _Fetched(manifest=_EMPTY, etag=None)
            raise
        return _Fetched(manifest=_read_manifest(body), etag=response.get("ETag"))

    def _mark_unreachable(self, reason: str) -> None:
        was_reachable, self._reachable = self._reachable, False
        if was_reachable is not False:
            logger.warning("S3 unreachable at %s: %s; serving covers from disk until it is back", self.location, reason)

    def _mark_reachable(self) -> None:
        was_reachable, self._reachable = self._reachable, True
        books = len(self._served.books) if self._served else 0
        if was_reachable is False:
            logger.info("S3 reachable again at %s; covers of %d books served from it", self.location, books)
        elif was_reachable is None:
            logger.info("covers of %d books served from S3 at %s", books, self.location)


class _PushRun:
    """The bookkeeping of one push; every method runs on the pushing thread."""

    def __init__(self, bucket: CoverBucket, previous: _Manifest, names: tuple[str, ...], *, is_new: bool) -> None:
        self.bucket = bucket
        self.previous = previous
        self.names = names
        self.same_names = previous.renditions == names
        # With other rendition names, no stored book is complete any more: start from nothing.
        self.books: dict[int, str] = dict(previous.books) if self.same_names else {}
        self.is_dirty = is_new or not self.same_names
        self.seen: set[int] = set()
        self.pending: list[str] = []  # deleted once a written manifest no longer names them
        self.since_checkpoint = 0
        self.uploaded_books = self.uploaded_objects = self.unchanged = self.deleted_objects = 0
        self.failed: list[str] = []

    def old_keys(self, book_id: int) -> set[str]:
        version = self.previous.books.get(book_id)
        if version is None:
            return set()
        return {self.bucket.key(book_id, version, name) for name in self.previous.renditions}

    def is_unchanged(self, source: CoverSource) -> bool:
        self.seen.add(source.book_id)
        if self.same_names and self.previous.books.get(source.book_id) == source.version:
            self.unchanged += 1
            return True
        return False

    def record(self, done: Iterable[Future[_Outcome]]) -> None:
        for future in done:
            outcome = future.result()
            book_id = outcome.source.book_id
            old = self.old_keys(book_id)
            if outcome.error is not None:
                self.failed.append(f"book {book_id}: {outcome.error}")
                kept = old if self.same_names else set()  # the manifest keeps naming the old version
                self.pending.extend((set(outcome.uploaded_keys) | old) - kept)
                continue
            self.books[book_id] = outcome.source.version
            self.is_dirty = True
            self.uploaded_books += 1
            self.uploaded_objects += len(outcome.uploaded_keys)
            self.pending.extend(old - set(outcome.uploaded_keys))
            self.since_checkpoint += 1
            if self.since_checkpoint >= CHECKPOINT_BOOKS:
                self.checkpoint()

    def checkpoint(self) -> None:
        self.bucket._write_manifest(self.names, self.books)
        self.deleted_objects += self.bucket._delete(self.pending)
        self.pending.clear()
        self.since_checkpoint = 0
        self.is_dirty = False

    def finish(self) -> None:
        for book_id in self.previous.books.keys() - self.seen:
            self.books.pop(book_id, None)
            self.pending.extend(self.old_keys(book_id))
            self.is_dirty = True
        if self.is_dirty or self.pending:
            self.checkpoint()
