"""Covers in S3: push uploads what changed and cleans up; redirects come from memory and fall back to disk.

Everything goes through real boto3 to moto's S3 server on 127.0.0.1 (``tests/s3_server.py``), and
presigned URLs are fetched over HTTP with httpx.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
import pytest
from botocore.awsrequest import AWSResponse
from PIL import Image

from opds_server.config import Settings, settings_from_env
from opds_server.storage.s3 import CoverBucket, CoverBucketError, CoverSource, make_s3_client
from tests.conftest import free_port
from tests.s3_server import S3Server, s3_client, s3_settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

RENDITIONS = ("cover.jpg", "thumb-300.jpg", "kobo-small.jpg")
PREFIX = "opds/"
LOGGER = "opds_server.storage.s3"


class Renderer:
    """Draws small distinct JPEGs per (book, version, rendition) and remembers whom it drew for."""

    def __init__(self, folder: Path, *, broken: frozenset[int] = frozenset()) -> None:
        self.folder = folder
        self.broken = broken
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, source: CoverSource) -> dict[str, Path]:
        with self._lock:
            self.calls.append(source.book_id)
        if source.book_id in self.broken:
            raise OSError(f"cover of book {source.book_id} is not an image")
        files: dict[str, Path] = {}
        for index, name in enumerate(RENDITIONS):
            path = self.folder / f"{source.book_id}-{source.version}-{name}"
            if not path.exists():
                shade = (source.book_id * 40 + index * 70 + len(source.version) * 13) % 256
                Image.new("RGB", (16 + 8 * index, 24 + source.book_id), (shade, 255 - shade, 90)).save(path, "JPEG")
            files[name] = path
        return files


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def sources(**versions: str) -> list[CoverSource]:
    """``sources(b1="v1", b2="v1")``: book 1 and book 2 at version v1."""
    return [CoverSource(book_id=int(book.removeprefix("b")), version=version) for book, version in versions.items()]


def cover_keys(books: dict[int, str], names: tuple[str, ...] = RENDITIONS) -> set[str]:
    return {f"{PREFIX}covers/{book}/{version}/{name}" for book, version in books.items() for name in names}


def stored_keys(settings: Settings) -> set[str]:
    assert settings.s3_endpoint_url is not None
    assert settings.s3_bucket is not None
    pages = s3_client(settings.s3_endpoint_url).get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def stored_manifest(settings: Settings) -> dict[str, Any]:
    assert settings.s3_endpoint_url is not None
    assert settings.s3_bucket is not None
    answer = s3_client(settings.s3_endpoint_url).get_object(
        Bucket=settings.s3_bucket, Key=f"{PREFIX}covers/manifest.json.gz"
    )
    assert answer["ContentType"] == "application/json"
    assert answer["ContentEncoding"] == "gzip"
    manifest: dict[str, Any] = msgspec.json.decode(gzip.decompress(answer["Body"].read()))
    return manifest


@pytest.fixture
def settings(s3_server: S3Server) -> Settings:
    """Settings of a new, empty bucket on the test server."""
    environ = {**s3_settings(s3_server.url, s3_server.create_bucket(), PREFIX), "OPDS_ENV_FILE": "/nonexistent"}
    return settings_from_env(environ)


@pytest.fixture(scope="module")
def client(s3_server: S3Server) -> S3Client:
    """One client made by ``make_s3_client`` for the tests that need nothing special (each costs 50 ms)."""
    return make_s3_client(settings_from_env({**s3_settings(s3_server.url, "any"), "OPDS_ENV_FILE": "/nonexistent"}))


@pytest.fixture
def renderer(tmp_path: Path) -> Renderer:
    return Renderer(tmp_path)


def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_push_uploads_every_rendition_under_its_versioned_key(
    settings: Settings, client: S3Client, renderer: Renderer
) -> None:
    report = CoverBucket(settings, client=client).push(sources(b1="v1", b2="v1", b3="a7"), RENDITIONS, renderer)

    assert (report.uploaded_books, report.uploaded_objects, report.unchanged) == (3, 9, 0)
    assert (report.deleted_objects, report.failed) == (0, ())
    assert stored_keys(settings) == cover_keys({1: "v1", 2: "v1", 3: "a7"}) | {f"{PREFIX}covers/manifest.json.gz"}
    assert settings.s3_endpoint_url is not None
    assert settings.s3_bucket is not None
    client = s3_client(settings.s3_endpoint_url)
    for name in RENDITIONS:
        answer = client.get_object(Bucket=settings.s3_bucket, Key=f"{PREFIX}covers/3/a7/{name}")
        assert answer["ContentType"] == "image/jpeg"
        assert answer["CacheControl"] == "public, max-age=31536000, immutable"
        assert answer["Body"].read() == renderer(CoverSource(book_id=3, version="a7"))[name].read_bytes()
    assert stored_manifest(settings) == {
        "format": 1,
        "renditions": list(RENDITIONS),
        "books": {"1": "v1", "2": "v1", "3": "a7"},
    }


def test_second_push_of_the_same_covers_renders_and_uploads_nothing(
    settings: Settings, client: S3Client, renderer: Renderer
) -> None:
    covers = CoverBucket(settings, client=client)
    covers.push(sources(b1="v1", b2="v1"), RENDITIONS, renderer)
    assert settings.s3_endpoint_url is not None
    assert settings.s3_bucket is not None
    head = s3_client(settings.s3_endpoint_url).head_object
    etag = head(Bucket=settings.s3_bucket, Key=f"{PREFIX}covers/manifest.json.gz")["ETag"]
    renderer.calls.clear()

    report = covers.push(sources(b1="v1", b2="v1"), RENDITIONS, renderer)

    assert renderer.calls == []
    assert (report.uploaded_books, report.uploaded_objects, report.unchanged, report.deleted_objects) == (0, 0, 2, 0)
    assert head(Bucket=settings.s3_bucket, Key=f"{PREFIX}covers/manifest.json.gz")["ETag"] == etag


def test_changed_cover_replaces_its_old_version_and_removed_books_are_deleted(
    settings: Settings, client: S3Client, renderer: Renderer
) -> None:
    covers = CoverBucket(settings, client=client)
    covers.push(sources(b1="v1", b2="v1", b3="v1"), RENDITIONS, renderer)
    renderer.calls.clear()

    report = covers.push(sources(b1="v1", b2="v2"), RENDITIONS, renderer)

    assert renderer.calls == [2]
    assert (report.uploaded_books, report.uploaded_objects, report.unchanged) == (1, 3, 1)
    assert report.deleted_objects == 6  # book 2's v1 and all of book 3
    assert stored_keys(settings) == cover_keys({1: "v1", 2: "v2"}) | {f"{PREFIX}covers/manifest.json.gz"}
    assert stored_manifest(settings)["books"] == {"1": "v1", "2": "v2"}


def test_new_rendition_names_upload_every_book_again_and_drop_the_obsolete_ones(
    settings: Settings, client: S3Client, renderer: Renderer
) -> None:
    covers = CoverBucket(settings, client=client)
    covers.push(sources(b1="v1", b2="v1"), RENDITIONS, renderer)

    report = covers.push(sources(b1="v1", b2="v1"), RENDITIONS[:2], renderer)

    assert (report.uploaded_books, report.uploaded_objects, report.deleted_objects) == (2, 4, 2)
    assert stored_keys(settings) == cover_keys({1: "v1", 2: "v1"}, RENDITIONS[:2]) | {
        f"{PREFIX}covers/manifest.json.gz"
    }
    assert stored_manifest(settings)["renditions"] == list(RENDITIONS[:2])


def test_unreadable_cover_fails_alone_and_stays_out_of_the_manifest(
    settings: Settings, client: S3Client, tmp_path: Path
) -> None:
    renderer = Renderer(tmp_path, broken=frozenset({2}))

    report = CoverBucket(settings, client=client).push(
        sources(b1="v1", b2="v1", b3="v1"), RENDITIONS, renderer, workers=2
    )

    assert report.failed == ("book 2: cover of book 2 is not an image",)
    assert report.uploaded_books == 2
    assert stored_manifest(settings)["books"] == {"1": "v1", "3": "v1"}
    assert stored_keys(settings) == cover_keys({1: "v1", 3: "v1"}) | {f"{PREFIX}covers/manifest.json.gz"}


def test_redirect_is_a_presigned_url_of_the_uploaded_bytes_reused_until_near_expiry(
    settings: Settings, client: S3Client, renderer: Renderer
) -> None:
    clock = Clock()
    covers = CoverBucket(settings, client=client, clock=clock)
    covers.push(sources(b1="v1", b2="v1"), RENDITIONS, renderer)
    assert covers.redirect_url(1, "v1", "thumb-300.jpg") is None  # no manifest loaded yet

    assert covers.refresh_manifest()
    url = covers.redirect_url(1, "v1", "thumb-300.jpg")

    assert url is not None
    answer = httpx.get(url)
    assert answer.status_code == 200
    assert answer.content == renderer(CoverSource(book_id=1, version="v1"))["thumb-300.jpg"].read_bytes()
    assert covers.redirect_url(1, "v1", "thumb-300.jpg") is url
    clock.now += 3000 - 1
    assert covers.redirect_url(1, "v1", "thumb-300.jpg") is url
    clock.now += 2  # less than ten minutes of the hour left: sign again
    renewed = covers.redirect_url(1, "v1", "thumb-300.jpg")
    assert renewed is not None
    assert renewed is not url
    assert httpx.get(renewed).status_code == 200
    assert covers.redirect_url(1, "v0", "thumb-300.jpg") is None
    assert covers.redirect_url(9, "v1", "thumb-300.jpg") is None
    assert covers.redirect_url(1, "v1", "kobo-large.jpg") is None


def test_unreachable_s3_falls_back_to_disk_with_one_warning_and_one_notice_when_back(
    settings: Settings, client: S3Client, renderer: Renderer, caplog: pytest.LogCaptureFixture
) -> None:
    CoverBucket(settings, client=client).push(sources(b1="v1"), RENDITIONS, renderer)
    standby = S3Server(free_port())  # moto's buckets are shared by every server of the process
    elsewhere = msgspec.structs.replace(settings, s3_endpoint_url=standby.url)
    covers = CoverBucket(elsewhere, client=make_s3_client(elsewhere, max_attempts=1))
    caplog.set_level(logging.INFO, logger=LOGGER)

    def logged(level: int) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]

    assert not covers.refresh_manifest()
    assert not covers.refresh_manifest()
    assert covers.redirect_url(1, "v1", "cover.jpg") is None
    assert not covers.is_reachable
    [warning] = logged(logging.WARNING)
    assert warning.startswith(f"S3 unreachable at {standby.url}/{settings.s3_bucket}: ")
    assert warning.endswith("; serving covers from disk until it is back")
    try:
        standby.start()
        assert covers.refresh_manifest()
        assert covers.refresh_manifest()
        assert len([m for m in logged(logging.INFO) if m.startswith("S3 reachable again")]) == 1
        url = covers.redirect_url(1, "v1", "cover.jpg")
        assert url is not None
        assert url.startswith(standby.url)
        assert httpx.get(url).status_code == 200

        standby.stop()
        assert not covers.refresh_manifest()
        assert covers.redirect_url(1, "v1", "cover.jpg") is None  # known, but not used while unreachable
        assert len(logged(logging.WARNING)) == 2
    finally:
        standby.stop()


def test_push_to_a_missing_bucket_names_it(s3_server: S3Server, renderer: Renderer) -> None:
    environ = {**s3_settings(s3_server.url, "no-such-covers", PREFIX), "OPDS_ENV_FILE": "/nonexistent"}

    with pytest.raises(CoverBucketError, match=r"no-such-covers.*NoSuchBucket"):
        CoverBucket(settings_from_env(environ)).push(sources(b1="v1"), RENDITIONS, renderer)
    assert renderer.calls == []


def test_manifest_is_fetched_again_only_when_it_changed(
    settings: Settings, client: S3Client, renderer: Renderer
) -> None:
    counted = make_s3_client(settings)
    statuses: list[int] = []

    def record(http_response: AWSResponse, **_: object) -> None:
        statuses.append(http_response.status_code)

    counted.meta.events.register("after-call.s3.GetObject", record)
    CoverBucket(settings, client=client).push(sources(b1="v1"), RENDITIONS, renderer)
    covers = CoverBucket(settings, client=counted)

    assert covers.refresh_manifest()
    assert covers.refresh_manifest()
    assert statuses == [200, 304]
    assert covers.redirect_url(1, "v1", "cover.jpg") is not None

    CoverBucket(settings, client=client).push(sources(b1="v2"), RENDITIONS, renderer)
    assert covers.refresh_manifest()
    assert statuses == [200, 304, 200]
    assert covers.redirect_url(1, "v1", "cover.jpg") is None
    assert covers.redirect_url(1, "v2", "cover.jpg") is not None


def test_background_thread_loads_the_manifest_and_reloads_it_when_asked(
    settings: Settings, client: S3Client, renderer: Renderer
) -> None:
    CoverBucket(settings, client=client).push(sources(b1="v1"), RENDITIONS, renderer)
    covers = CoverBucket(settings, manifest_interval=60)
    covers.start()
    try:
        wait_until(lambda: covers.redirect_url(1, "v1", "cover.jpg") is not None)
        CoverBucket(settings, client=client).push(sources(b1="v2"), RENDITIONS, renderer)

        covers.request_refresh()

        wait_until(lambda: covers.redirect_url(1, "v2", "cover.jpg") is not None)
    finally:
        covers.close()


def test_the_manifest_read_counts_what_a_push_would_upload_or_delete(
    settings: Settings, client: S3Client, renderer: Renderer
) -> None:
    bucket = CoverBucket(settings, client=client)
    assert bucket.count_changed(sources(b1="v1"), RENDITIONS) is None  # no manifest read yet
    bucket.push(sources(b1="v1", b2="v1", b3="v1"), RENDITIONS, renderer)
    assert bucket.refresh_manifest()
    assert bucket.count_changed(sources(b1="v1", b2="v1", b3="v1"), RENDITIONS) == 0
    assert bucket.count_changed(sources(b1="v2", b2="v1", b3="v1", b4="v1"), RENDITIONS) == 2  # changed, new
    assert bucket.count_changed(sources(b1="v1"), RENDITIONS) == 2  # two books gone: their objects to delete
    assert bucket.count_changed(sources(b1="v1", b2="v1", b3="v1"), RENDITIONS[:1]) == 3  # other renditions
