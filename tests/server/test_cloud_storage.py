"""The fixture library served from the cloud: book files from Google Drive (the Drive emulator), covers
and thumbnails from S3 (moto's server) by presigned redirect, through the real server over HTTP.

The served library folder holds ``metadata.db`` and nothing else, so every byte of every book and
cover has to come from Drive; covers are pushed first with ``opds-server covers push``.
"""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import opds_check
import pytest
from PIL import Image

from tests.conftest import ROOT, LiveServer, start_server, stop_server
from tests.drive_emulator import DriveEmulator
from tests.s3_server import S3Server, s3_client, s3_settings
from tests.server.api_client import PASSWORDS, add_user, login
from tests.server.kobo_device import Kobo, items_of
from tests.server.test_conformance import CRAWL_BUDGET

THUMBNAIL_WIDTH = 300


@dataclass(frozen=True)
class Cloud:
    server: LiveServer
    drive: DriveEmulator
    books: Path
    """The Drive's content: the whole fixture library, as the tests compare it."""
    env: dict[str, str]
    bucket: str


def _cloud_env(drive: DriveEmulator, s3: S3Server, bucket: str, workdir: Path) -> dict[str, str]:
    return {
        **s3_settings(s3.url, bucket, "library/"),
        "GOOGLE_DRIVE_CREDENTIALS": str(drive.write_credentials(workdir / "service-account.json")),
        "GOOGLE_DRIVE_FOLDER_ID": drive.folder_id,
        "GOOGLE_DRIVE_API_URL": drive.api_url,
        "OPDS_THUMBNAIL_WIDTH": str(THUMBNAIL_WIDTH),
    }


def split_library(fixture_library: Path, workdir: Path) -> tuple[Path, Path]:
    """The library as a Drive user has it: the book folders for Drive, and a local folder holding
    only ``metadata.db``; (Drive's content, the library folder to serve)."""
    books = workdir / "drive" / "Calibre Library"
    shutil.copytree(fixture_library, books, ignore=shutil.ignore_patterns("metadata.db*", ".calnotes"))
    local = workdir / "library"
    local.mkdir()
    shutil.copyfile(fixture_library / "metadata.db", local / "metadata.db")
    return books, local


def push_covers(library: Path, data_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opds_server", "covers", "push", "--library", str(library)],
        cwd=ROOT,
        env={**os.environ, "OPDS_NO_BOOTSTRAP": "1", "OPDS_DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def cloud(fixture_library: Path, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    workdir = tmp_path_factory.mktemp("cloud")
    books, local = split_library(fixture_library, workdir)
    with DriveEmulator(books) as drive:
        bucket = s3_server.create_bucket()
        env = _cloud_env(drive, s3_server, bucket, workdir)
        pushed = push_covers(local, workdir / "data", env)
        assert pushed.returncode == 0, pushed.stderr
        assert "books uploaded" in pushed.stdout
        server = start_server(local, workdir / "data", workdir / "server.log", env)
        try:
            yield Cloud(server=server, drive=drive, books=books, env=env, bucket=bucket)
        finally:
            stop_server(server)


def _files(books: Path) -> list[tuple[int, str, Path]]:
    """(book id, format, file) of every book file in the library."""
    found = []
    for path in sorted(books.glob("*/*/*")):
        book = path.parent.name
        if path.suffix in {".jpg", ".opf"} or not book.endswith(")"):
            continue
        book_id = int(book.rpartition("(")[2].rstrip(")"))
        found.append((book_id, path.suffix.lstrip(".").upper(), path))
    return found


def test_the_library_folder_holds_no_book_files(cloud: Cloud) -> None:
    assert sorted(p.name for p in cloud.server.library.iterdir()) == ["metadata.db"]


def test_every_book_downloads_from_drive_byte_for_byte(cloud: Cloud) -> None:
    files = _files(cloud.books)
    assert len(files) > 25
    with cloud.server.client() as client:
        for book_id, book_format, path in files:
            answer = client.get(f"/download/{book_id}/{book_id}.{book_format.lower()}")
            assert answer.status_code == 200, (path, answer.text)
            assert answer.content == path.read_bytes(), path
            assert answer.headers["content-length"] == str(path.stat().st_size)
            assert answer.headers["accept-ranges"] == "bytes"


def test_ranged_and_resumed_downloads_return_the_exact_bytes(cloud: Cloud) -> None:
    book_id, book_format, path = max(_files(cloud.books), key=lambda f: f[2].stat().st_size)
    data = path.read_bytes()
    url = f"/download/{book_id}/{book_id}.{book_format.lower()}"
    file_id = cloud.drive.file_id(path.relative_to(cloud.books).as_posix())

    def fetched() -> list[str | None]:
        """The ranges asked of Drive for this book (the server reads other files in the background)."""
        return [r.range for r in cloud.drive.requests if r.query.get("alt") == "media" and file_id in r.path]

    with cloud.server.client() as client:
        cloud.drive.clear_log()
        first = client.get(url, headers={"Range": "bytes=0-999"})
        # Only the range asked for is fetched from Drive, never the whole book first.
        assert fetched() == ["bytes=0-999"]
        assert first.status_code == 206
        assert first.headers["content-range"] == f"bytes 0-999/{len(data)}"
        assert first.content == data[:1000]
        etag = first.headers["etag"]
        cloud.drive.clear_log()
        rest = client.get(url, headers={"Range": "bytes=1000-", "If-Range": etag})
        assert rest.status_code == 206
        assert first.content + rest.content == data
        assert fetched() == [f"bytes=1000-{len(data) - 1}"]
        suffix = client.get(url, headers={"Range": "bytes=-100"})
        assert (suffix.status_code, suffix.content) == (206, data[-100:])
        stale = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"another-version"'})
        assert (stale.status_code, stale.content) == (200, data)
        beyond = client.get(url, headers={"Range": f"bytes={len(data)}-"})
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{len(data)}"
        head = client.head(url)
        assert (head.status_code, head.headers["content-length"], head.content) == (200, str(len(data)), b"")


def test_covers_and_thumbnails_redirect_to_s3_with_the_right_bytes(cloud: Cloud) -> None:
    covered = sorted(cloud.books.glob("*/*/cover.jpg"))
    assert covered
    with cloud.server.client() as client:
        for cover in covered[:5]:
            book_id = int(cover.parent.name.rpartition("(")[2].rstrip(")"))
            answer = client.get(f"/covers/{book_id}")
            assert answer.status_code == 302, answer.text
            location = answer.headers["location"]
            assert location.startswith(cloud.env["S3_ENDPOINT_URL"])
            assert f"/library/covers/{book_id}/" in location
            assert "X-Amz-Signature=" in location
            assert httpx.get(location).content == cover.read_bytes()
            thumbnail = client.get(f"/covers/{book_id}/thumbnail")
            assert thumbnail.status_code == 302
            image = Image.open(io.BytesIO(httpx.get(thumbnail.headers["location"]).content))
            assert image.format == "JPEG"
            assert image.width <= THUMBNAIL_WIDTH
            again = client.get(f"/covers/{book_id}")
            assert again.headers["location"] == location  # one URL per cover while it is valid


def test_a_book_without_a_cover_redirects_to_its_drawn_one(cloud: Cloud) -> None:
    bare = [f for f in _files(cloud.books) if not (f[2].parent / "cover.jpg").exists()]
    assert bare
    book_id = bare[0][0]
    with cloud.server.client() as client:
        answer = client.get(f"/covers/{book_id}")
    assert answer.status_code == 302
    image = Image.open(io.BytesIO(httpx.get(answer.headers["location"]).content))
    assert image.size == (600, 900)


def test_a_drive_failure_for_one_book_leaves_every_other_book_working(cloud: Cloud) -> None:
    files = _files(cloud.books)
    (broken_id, broken_format, broken), (other_id, other_format, other) = files[0], files[1]
    file_id = cloud.drive.file_id(broken.relative_to(cloud.books).as_posix())
    try:
        with cloud.server.client() as client:
            cloud.drive.fail_file(file_id, 500)
            failed = client.get(f"/download/{broken_id}/{broken_id}.{broken_format.lower()}")
            assert failed.status_code == 502
            assert failed.headers["content-type"].startswith("application/problem+json")
            assert "Google Drive" in failed.json()["detail"]
            assert failed.headers["retry-after"] == "30"
            cloud.drive.fail_file(file_id, 404)
            gone = client.get(f"/download/{broken_id}/{broken_id}.{broken_format.lower()}")
            assert gone.status_code == 404
            fine = client.get(f"/download/{other_id}/{other_id}.{other_format.lower()}")
            assert (fine.status_code, fine.content) == (200, other.read_bytes())
            feed = client.get("/opds/books")
            assert feed.status_code == 200
    finally:
        cloud.drive.clear_faults()
    with cloud.server.client() as client:
        healed = client.get(f"/download/{broken_id}/{broken_id}.{broken_format.lower()}")
    assert (healed.status_code, healed.content) == (200, broken.read_bytes())


def test_a_second_push_uploads_nothing(cloud: Cloud) -> None:
    again = push_covers(cloud.server.library, cloud.server.data_dir, cloud.env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1].startswith("0 books uploaded (0 objects)"), again.stdout
    listed = s3_client(cloud.env["S3_ENDPOINT_URL"]).list_objects_v2(Bucket=cloud.bucket, Prefix="library/covers/")
    assert listed["KeyCount"] > 5


@pytest.mark.slow
def test_catalogue_crawl_from_drive_and_s3_has_no_failures(cloud: Cloud, crawl_summaries: list[str]) -> None:
    """Every feed page checked again, and every acquisition and cover link fetched through Drive and
    S3. One root is enough here: both roots link the same files, and the feeds are built by the same
    code as on local disk, whose crawl (test_conformance) runs Readium's parser on both roots."""
    root = "/opds"
    report = opds_check.run(cloud.server.url + root, **CRAWL_BUDGET)
    crawl_summaries.append(f"Drive + S3 {root}: {report.summary().splitlines()[-1]} ({len(report.warnings)} warnings)")
    assert report.errors == [], "\n".join(map(str, report.errors))
    assert report.passed > 100, report.summary()
    unverified = [w for w in report.warnings if w.rule in {"crawl.limit", "links.limit", "pagination.unverified"}]
    assert unverified == [], "the crawl did not cover the whole catalogue:\n" + "\n".join(map(str, unverified))


def test_covers_come_from_disk_while_s3_is_unreachable(
    fixture_library: Path, tmp_path: Path, s3_server: S3Server
) -> None:
    books, local = split_library(fixture_library, tmp_path)
    with DriveEmulator(books) as drive:
        env = _cloud_env(drive, s3_server, "no-such-bucket-here", tmp_path)
        env["S3_ENDPOINT_URL"] = "http://127.0.0.1:9"  # the discard port: nothing listens
        server = start_server(local, tmp_path / "data", tmp_path / "server.log", env)
        try:
            cover = sorted(books.glob("*/*/cover.jpg"))[0]
            book_id = int(cover.parent.name.rpartition("(")[2].rstrip(")"))
            with server.client() as client:
                for _ in range(3):
                    answer = client.get(f"/covers/{book_id}")
                    assert (answer.status_code, answer.content) == (200, cover.read_bytes())
        finally:
            stop_server(server)
        log = (tmp_path / "server.log").read_text(errors="replace")
    assert log.count("S3 unreachable") == 1, log


def test_a_cover_changed_by_calibre_reaches_s3_under_a_new_key(cloud: Cloud) -> None:
    cover = sorted(cloud.books.glob("*/*/cover.jpg"))[-1]
    book_id = int(cover.parent.name.rpartition("(")[2].rstrip(")"))
    buffer = io.BytesIO()
    Image.new("RGB", (400, 600), (200, 30, 30)).save(buffer, "JPEG")
    with cloud.server.client() as client:
        before = client.get(f"/covers/{book_id}").headers["location"]
        # What Calibre does: a new cover.jpg (synced to Drive) and the book's last_modified in metadata.db.
        cloud.drive.replace_file(cover.relative_to(cloud.books).as_posix(), buffer.getvalue())
        with sqlite3.connect(cloud.server.library / "metadata.db") as calibre:
            calibre.create_function("title_sort", 1, lambda title: title)  # Calibre's triggers call it
            calibre.execute("UPDATE books SET last_modified = '2030-01-01 00:00:00+00:00' WHERE id = ?", (book_id,))
        deadline = time.monotonic() + 45  # the watcher, Drive's changes feed, the push, the manifest
        after = before
        while after == before and time.monotonic() < deadline:
            time.sleep(0.5)
            answer = client.get(f"/covers/{book_id}")
            after = answer.headers.get("location", before)
    assert after != before, "the new cover never reached S3"
    assert httpx.get(after).content == buffer.getvalue()
    assert httpx.get(before).status_code == 404  # the old version's objects are deleted


def test_a_kobo_syncs_and_downloads_kepubs_made_from_drive_epubs(
    fixture_library: Path, tmp_path: Path, s3_server: S3Server
) -> None:
    books, local = split_library(fixture_library, tmp_path)
    with DriveEmulator(books) as drive:
        env = {
            **_cloud_env(drive, s3_server, s3_server.create_bucket(), tmp_path),
            "OPDS_DATA_DIR": str(tmp_path / "data"),
        }
        add_user(env, "ada")
        pushed = push_covers(local, tmp_path / "data", env)
        assert pushed.returncode == 0, pushed.stderr
        server = start_server(local, tmp_path / "data", tmp_path / "server.log", env)
        try:
            with server.client() as http:
                token = login(http, "ada").access_token
                created = http.post(
                    "/api/kobo/devices", json={"label": "Libra"}, headers={"Authorization": f"Bearer {token}"}
                )
            assert created.status_code == 201, created.text
            kobo = Kobo(server.url, created.json()["api_endpoint"].rpartition("/")[2])
            pages = kobo.sync()
            entitlements = items_of(pages, "NewEntitlement")
            with_epub = {p.parent.name for p in books.glob("*/*/*.epub")}
            assert len(entitlements) == len(with_epub) > 10
            kepubs = 0
            for entitlement in entitlements:
                (download,) = entitlement["BookMetadata"]["DownloadUrls"]
                answer = httpx.get(download["Url"], timeout=30)
                assert answer.status_code == 200, answer.text
                assert answer.content[:2] == b"PK"
                with zipfile.ZipFile(io.BytesIO(answer.content)) as epub:
                    text = b"".join(epub.read(n) for n in epub.namelist() if n.endswith((".xhtml", ".html")))
                kepubs += b"koboSpan" in text
            assert kepubs > 5
            # Covers at the size a Kobo asks for: the rendition of S3 made for that height (spec 5.10).
            image_id = entitlements[0]["BookMetadata"]["CoverImageId"]
            for height, name, box in ((1680, "kobo-large.jpg", (1440, 1920)), (355, "kobo-small.jpg", (334, 500))):
                cover = kobo.call("GET", f"/v1/books/{image_id}/thumbnail/{height * 3 // 4}/{height}/false/image.jpg")
                assert cover.status_code == 302, cover.text
                assert f"/{name}?" in cover.headers["location"]
                image = Image.open(io.BytesIO(httpx.get(cover.headers["location"]).content))
                assert image.width <= box[0]
                assert image.height <= box[1]
                assert max(image.width / box[0], image.height / box[1]) > 0.99  # fitted to the box
            # A logged-in reader's first ranged request fetches only that range from Drive.
            largest = max(books.glob("*/*/*.epub"), key=lambda p: p.stat().st_size)
            book_id = int(largest.parent.name.rpartition("(")[2].rstrip(")"))
            file_id = drive.file_id(largest.relative_to(books).as_posix())
            drive.clear_log()
            with server.client(auth=("ada", PASSWORDS["ada"])) as http:
                part = http.get(f"/download/{book_id}/{book_id}.epub", headers={"Range": "bytes=0-99"})
            assert (part.status_code, part.content) == (206, largest.read_bytes()[:100])
            asked = [r.range for r in drive.requests if r.query.get("alt") == "media" and file_id in r.path]
            assert asked == ["bytes=0-99"]
        finally:
            stop_server(server)


def test_drive_down_at_start_up_is_a_degraded_server_that_still_answers(fixture_library: Path, tmp_path: Path) -> None:
    local = tmp_path / "library"
    local.mkdir()
    shutil.copyfile(fixture_library / "metadata.db", local / "metadata.db")
    with DriveEmulator(tmp_path) as drive:
        credentials = drive.write_credentials(tmp_path / "service-account.json")
        env = {
            "GOOGLE_DRIVE_CREDENTIALS": str(credentials),
            "GOOGLE_DRIVE_FOLDER_ID": drive.folder_id,
            "GOOGLE_DRIVE_API_URL": "http://127.0.0.1:9/drive/v3",  # nothing listens there
        }
        server = start_server(local, tmp_path / "data", tmp_path / "server.log", env)
    try:
        with server.client() as client:
            deadline = time.monotonic() + 20
            health = client.get("/health").json()
            while health["storage"] is not False and time.monotonic() < deadline:
                time.sleep(0.2)
                health = client.get("/health").json()
            assert health == {"status": "degraded", "cache": True, "database": True, "calibre": True, "storage": False}
            feed = client.get("/opds/books")
            assert feed.status_code == 200
            assert b"<entry>" not in feed.content  # no book is offered while their files cannot be found
            download = client.get("/download/1/1.epub")
            assert download.status_code == 404
    finally:
        stop_server(server)
    assert "Google Drive: the folder could not be listed" in (tmp_path / "server.log").read_text(errors="replace")


def test_with_no_library_folder_metadata_db_comes_from_drive_and_follows_calibres_writes(
    fixture_library: Path, tmp_path: Path
) -> None:
    books = tmp_path / "drive" / "Calibre Library"
    shutil.copytree(fixture_library, books, ignore=shutil.ignore_patterns(".calnotes"))
    edited = tmp_path / "edited.db"
    shutil.copyfile(fixture_library / "metadata.db", edited)
    with sqlite3.connect(edited) as calibre:  # what Calibre desktop writes, synced to Drive
        calibre.create_function("title_sort", 1, lambda title: title)  # Calibre's triggers call it
        book_id, folder, name = calibre.execute(
            "SELECT b.id, b.path, d.name FROM books b JOIN data d ON d.book = b.id WHERE d.format = 'EPUB'"
            " ORDER BY b.id LIMIT 1"
        ).fetchone()
        calibre.execute(
            "UPDATE books SET title = 'Retitled In Drive', last_modified = '2030-01-01 00:00:00+00:00' WHERE id = ?",
            (book_id,),
        )
    with DriveEmulator(books) as drive:
        env = {
            "GOOGLE_DRIVE_CREDENTIALS": str(drive.write_credentials(tmp_path / "service-account.json")),
            "GOOGLE_DRIVE_FOLDER_ID": drive.folder_id,
            "GOOGLE_DRIVE_API_URL": drive.api_url,
            "GOOGLE_DRIVE_POLL_SECONDS": "1",
            "HOME": str(tmp_path),
        }
        server = start_server(None, tmp_path / "data", tmp_path / "server.log", env)
        try:
            copy = tmp_path / "data" / "drive-library" / "metadata.db"
            assert copy.read_bytes() == (fixture_library / "metadata.db").read_bytes()
            with server.client() as client:
                assert b"Retitled In Drive" not in client.get(f"/opds/books/{book_id}").content
                drive.replace_file("metadata.db", edited.read_bytes())
                deadline = time.monotonic() + 20
                entry = client.get(f"/opds/books/{book_id}")
                while b"Retitled In Drive" not in entry.content and time.monotonic() < deadline:
                    time.sleep(0.25)
                    entry = client.get(f"/opds/books/{book_id}")
                assert b"Retitled In Drive" in entry.content
                download = client.get(f"/download/{book_id}/{book_id}.epub")
                assert (download.status_code, download.content) == (200, (books / folder / f"{name}.epub").read_bytes())
                assert sorted(p.name for p in copy.parent.iterdir() if not p.name.startswith(".")) == ["metadata.db"]
        finally:
            stop_server(server)


def test_a_server_pushes_a_small_librarys_covers_by_itself(
    fixture_library: Path, tmp_path: Path, s3_server: S3Server
) -> None:
    books, local = split_library(fixture_library, tmp_path)
    with DriveEmulator(books) as drive:
        env = _cloud_env(drive, s3_server, s3_server.create_bucket(), tmp_path)
        server = start_server(local, tmp_path / "data", tmp_path / "server.log", env)
        try:
            cover = sorted(books.glob("*/*/cover.jpg"))[0]
            book_id = int(cover.parent.name.rpartition("(")[2].rstrip(")"))
            with server.client() as client:
                first = client.get(f"/covers/{book_id}")
                deadline = time.monotonic() + 30
                answer = first
                while answer.status_code != 302 and time.monotonic() < deadline:
                    time.sleep(0.5)
                    answer = client.get(f"/covers/{book_id}")
            if first.status_code == 200:  # from disk until the push is done
                assert first.content == cover.read_bytes()
            assert answer.status_code == 302
            assert httpx.get(answer.headers["location"]).content == cover.read_bytes()
        finally:
            stop_server(server)
