"""Google Drive as the library's storage: the real google-auth client against the Drive emulator.

The emulator serves a copy of the fixture library as a Drive folder; ``DriveFiles`` maps Calibre's
paths to its ids, streams ranges, reads zip members by ranges, follows the changes feed and turns
Drive's failures into ``StorageError`` for the one file.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine

from opds_server.calibre.database import CalibreDatabase
from opds_server.calibre.snapshot import Library
from opds_server.db.document_keys import DocumentKeyStore
from opds_server.koreader.keys import DocumentKeyIndexer
from opds_server.koreader.spine import read_spine
from opds_server.storage.drive import DriveFiles, FileMapCache, RedisMapCache
from opds_server.storage.drive_api import DriveApi
from opds_server.storage.files import LocalFiles, StorageError, StoredFile
from opds_server.storage.kepub import KepubStore
from sync.koreader.keys import partial_md5
from tests.conftest import FIXTURE_LIBRARY, REDIS_TEST_URL
from tests.drive_emulator import DriveEmulator


def _first_epub(root: Path) -> str:
    """The library's largest EPUB, by its Calibre path."""
    found = sorted(root.rglob("*.epub"), key=lambda p: (-p.stat().st_size, str(p)))
    return found[0].relative_to(root).as_posix()


EPUB = _first_epub(FIXTURE_LIBRARY)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture library's book folders (what Drive holds), plus one larger file to stream."""
    root = tmp_path_factory.mktemp("drive") / "Calibre Library"
    root.mkdir()
    for entry in FIXTURE_LIBRARY.iterdir():
        if entry.is_dir():
            shutil.copytree(entry, root / entry.name)
    large = root / "Large" / "Big (999)"
    large.mkdir(parents=True)
    (large / "big.bin").write_bytes(hashlib.sha256(b"seed").digest() * 40_000)  # 1.28 MB, not repetitive per chunk
    return root


@pytest.fixture(scope="module")
def emulator(library: Path) -> Iterator[DriveEmulator]:
    with DriveEmulator(library) as running:
        yield running


@pytest.fixture
def drive(emulator: DriveEmulator, tmp_path: Path) -> Iterator[DriveFiles]:
    emulator.clear_faults()
    api = DriveApi(emulator.write_credentials(tmp_path / "account.json"), emulator.api_url)
    files = DriveFiles(api, emulator.folder_id, FileMapCache(tmp_path / "map.msgpack"), tmp_path)
    files.load()
    yield files
    files.close()


def _largest_epub(drive: DriveFiles, library: Path) -> tuple[str, StoredFile]:
    """The largest EPUB's path and how Drive has it."""
    relative = _first_epub(library)
    stored = drive.stat(relative)
    assert stored is not None
    return relative, stored


def _bytes(files: DriveFiles, stored: StoredFile, start: int, length: int) -> bytes:
    with files.read_chunks(stored, start, length) as chunks:
        return b"".join(chunks)


def test_every_library_file_is_mapped_with_its_size_and_nothing_outside_the_folder(
    drive: DriveFiles, library: Path
) -> None:
    local = LocalFiles(library)
    on_disk = sorted(p.relative_to(library).as_posix() for p in library.rglob("*") if p.is_file())
    assert len(on_disk) > 40
    for relative in on_disk:
        stored = drive.stat(relative)
        assert stored is not None, relative
        assert stored.size == (library / relative).stat().st_size
        assert stored.remote_id is not None
        assert stored.local_path is None
        expected = local.stat(relative)
        assert expected is not None
        assert abs(stored.mtime_ns - expected.mtime_ns) < 1_000_000  # Drive keeps milliseconds
    assert drive.stat("notes.txt") is None  # the emulator's file outside the library folder
    assert drive.stat("Other stuff/notes.txt") is None
    assert drive.stat("../Other stuff/notes.txt") is None
    assert drive.stat("/etc/passwd") is None
    assert drive.generation.startswith("drive:")


def test_a_range_goes_to_drive_as_a_range_and_comes_back_exact(
    drive: DriveFiles, emulator: DriveEmulator, library: Path
) -> None:
    relative = "Large/Big (999)/big.bin"
    stored = drive.stat(relative)
    assert stored is not None
    data = (library / relative).read_bytes()
    emulator.clear_log()
    assert _bytes(drive, stored, 1000, 300_000) == data[1000:301_000]
    media = [r for r in emulator.requests if r.query.get("alt") == "media"]
    assert [r.range for r in media] == ["bytes=1000-300999"]
    assert _bytes(drive, stored, 0, stored.size) == data
    assert _bytes(drive, stored, stored.size - 7, 7) == data[-7:]


def test_zip_members_and_koreader_keys_are_read_by_ranges_not_whole_files(
    drive: DriveFiles, emulator: DriveEmulator, library: Path
) -> None:
    relative, stored = _largest_epub(drive, library)
    emulator.clear_log()
    with drive.open(stored) as handle, zipfile.ZipFile(handle) as remote:
        names = remote.namelist()
        container = remote.read("META-INF/container.xml")
    with zipfile.ZipFile(library / relative) as local:
        assert names == local.namelist()
        assert container == local.read("META-INF/container.xml")
    with drive.open(stored) as handle:
        assert partial_md5(handle) == partial_md5(io.BytesIO((library / relative).read_bytes()))
    fetched = [r for r in emulator.requests if r.query.get("alt") == "media"]
    assert all(r.range is not None for r in fetched)


def test_a_local_copy_has_the_bytes_and_a_kept_one_is_reused(drive: DriveFiles, library: Path) -> None:
    relative = next(p.relative_to(library).as_posix() for p in sorted(library.rglob("cover.jpg")))
    stored = drive.stat(relative)
    assert stored is not None
    kept = drive.local_copy(stored, keep=True)
    assert kept.read_bytes() == (library / relative).read_bytes()
    assert drive.local_copy(stored, keep=True) == kept
    scratch = drive.local_copy(stored, keep=False)
    assert scratch != kept
    assert scratch.read_bytes() == kept.read_bytes()
    scratch.unlink()


def test_changes_add_move_replace_and_delete_reach_the_map(drive: DriveFiles, emulator: DriveEmulator) -> None:
    before = drive.generation
    emulator.add_file("New Author/New Book (500)/New Book - New Author.epub", b"PK new book")
    emulator.add_file("New Author/New Book (500)/cover.jpg", b"\xff\xd8 not a real jpeg")
    assert drive.stat("New Author/New Book (500)/New Book - New Author.epub") is None  # not polled yet
    assert drive.poll() is True
    added = drive.stat("New Author/New Book (500)/New Book - New Author.epub")
    assert added is not None
    assert added.size == len(b"PK new book")
    assert drive.generation != before

    # Calibre renames a book's folder when its title changes: the files follow the folder.
    emulator.move("New Author/New Book (500)", "New Author/Renamed Book (500)")
    assert drive.poll() is True
    assert drive.stat("New Author/New Book (500)/cover.jpg") is None
    moved = drive.stat("New Author/Renamed Book (500)/New Book - New Author.epub")
    assert moved is not None
    assert moved.remote_id == added.remote_id

    emulator.replace_file("New Author/Renamed Book (500)/New Book - New Author.epub", b"PK a longer new book")
    assert drive.poll() is True
    replaced = drive.stat("New Author/Renamed Book (500)/New Book - New Author.epub")
    assert replaced is not None
    assert replaced.size == len(b"PK a longer new book")
    assert replaced.version != moved.version
    assert _bytes(drive, replaced, 0, replaced.size) == b"PK a longer new book"

    emulator.delete("New Author")
    assert drive.poll() is True
    assert drive.stat("New Author/Renamed Book (500)/cover.jpg") is None
    assert drive.poll() is False  # nothing new


def test_a_restart_reads_the_map_from_the_cache_instead_of_listing_the_drive(
    drive: DriveFiles, emulator: DriveEmulator, tmp_path: Path
) -> None:
    emulator.clear_log()
    api = DriveApi(tmp_path / "account.json", emulator.api_url)
    again = DriveFiles(api, emulator.folder_id, FileMapCache(tmp_path / "map.msgpack"), tmp_path)
    try:
        again.load()
        assert again.stat(EPUB) == drive.stat(EPUB)
        assert again.generation == drive.generation
    finally:
        again.close()
    listed = [r for r in emulator.requests if r.path.endswith("/files")]
    assert listed == []
    assert any(r.path.endswith("/changes") for r in emulator.requests)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_drive_failures_are_retried(drive: DriveFiles, emulator: DriveEmulator, status: int) -> None:
    stored = drive.stat(EPUB)
    assert stored is not None
    emulator.fail_next(2, status, file_id=stored.remote_id, media_only=True)
    assert _bytes(drive, stored, 0, 64) == (FIXTURE_LIBRARY / EPUB).read_bytes()[:64]


def test_a_file_drive_no_longer_has_is_missing_and_a_quota_is_an_outage(
    drive: DriveFiles, emulator: DriveEmulator
) -> None:
    stored = drive.stat(EPUB)
    assert stored is not None
    assert stored.remote_id is not None
    emulator.fail_file(stored.remote_id, 404)
    with pytest.raises(StorageError) as missing:
        _bytes(drive, stored, 0, 10)
    assert missing.value.is_missing
    emulator.fail_file(stored.remote_id, 403)
    with pytest.raises(StorageError, match="downloadQuotaExceeded") as quota:
        _bytes(drive, stored, 0, 10)
    assert not quota.value.is_missing
    emulator.fail_file(stored.remote_id, 500)
    with pytest.raises(StorageError, match="did not answer after 4 tries"):
        _bytes(drive, stored, 0, 10)
    emulator.clear_faults()
    assert len(_bytes(drive, stored, 0, 10)) == 10


def test_a_download_cut_midway_resumes_where_it_stopped(
    drive: DriveFiles, emulator: DriveEmulator, library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("opds_server.storage.drive_api.TIMEOUT", (2.0, 0.5))
    relative = "Large/Big (999)/big.bin"
    stored = drive.stat(relative)
    assert stored is not None
    emulator.stall_next(1, 3.0, file_id=stored.remote_id, media_only=True, after_bytes=300_000)
    emulator.clear_log()
    assert _bytes(drive, stored, 0, stored.size) == (library / relative).read_bytes()
    ranges = [r.range for r in emulator.requests if r.query.get("alt") == "media"]
    assert ranges[0] == f"bytes=0-{stored.size - 1}"
    assert len(ranges) == 2
    assert ranges[1] is not None
    assert int(ranges[1].removeprefix("bytes=").split("-")[0]) >= 262_144  # from where it stopped


def test_an_expired_token_is_refreshed_on_its_own(drive: DriveFiles, emulator: DriveEmulator) -> None:
    stored = drive.stat(EPUB)
    assert stored is not None
    issued = emulator.tokens_issued
    emulator.expire_tokens()
    assert len(_bytes(drive, stored, 0, 32)) == 32
    assert emulator.tokens_issued == issued + 1


@pytest.fixture
def drive_library(drive: DriveFiles, library: Path, tmp_path: Path) -> Iterator[Library]:
    """The fixture library's metadata.db on local disk, its files in Drive, indexed."""
    folder = tmp_path / "library"
    folder.mkdir()
    shutil.copyfile(FIXTURE_LIBRARY / "metadata.db", folder / "metadata.db")
    served = Library(CalibreDatabase(folder, files=drive), tmp_path / "index" / "index.sqlite3")
    served.snapshot()
    yield served
    served.close()


def test_the_index_offers_the_books_drive_has(drive_library: Library, library: Path) -> None:
    on_disk = Library(CalibreDatabase(FIXTURE_LIBRARY), library.parent / "disk-index.sqlite3")
    try:
        assert drive_library.snapshot().book_count == on_disk.snapshot().book_count > 20
    finally:
        on_disk.close()


def test_koreader_keys_of_drive_files_are_the_partial_md5_of_their_bytes(
    drive_library: Library, engine: Engine, library: Path, tmp_path: Path
) -> None:
    store = DocumentKeyStore(engine)
    indexer = DocumentKeyIndexer(drive_library, store, tmp_path / "kepub")
    assert indexer.refresh() > 20
    relative = _first_epub(library)
    key = partial_md5(io.BytesIO((library / relative).read_bytes()))
    (book_id,) = indexer.book_ids_for(key)
    assert f"({book_id})" in relative
    assert indexer.refresh() == 0  # nothing changed: nothing read from Drive again


def test_a_kepub_is_made_from_a_drive_epub_as_from_the_same_file_on_disk(
    drive: DriveFiles, library: Path, tmp_path: Path
) -> None:
    relative, stored = _largest_epub(drive, library)
    from_drive = KepubStore(tmp_path / "from-drive").read_stored(1, stored, drive)
    from_disk = KepubStore(tmp_path / "from-disk").read_kepub(1, library / relative)
    assert from_drive is not None
    assert from_disk is not None
    with zipfile.ZipFile(from_drive) as made, zipfile.ZipFile(from_disk) as expected:
        assert made.namelist() == expected.namelist()
        assert all(made.read(name) == expected.read(name) for name in made.namelist())
    assert list(drive.copies.glob(".*")) == []  # the downloaded EPUB was removed


def test_a_spine_is_read_from_drive_by_ranges(drive: DriveFiles, library: Path) -> None:
    relative, stored = _largest_epub(drive, library)
    spine = read_spine(drive, stored)
    local = LocalFiles(library)
    on_disk = local.stat(relative)
    assert on_disk is not None
    expected = read_spine(local, on_disk)
    assert spine is not None
    assert spine == expected


def test_instances_share_the_map_through_redis(emulator: DriveEmulator, tmp_path: Path) -> None:
    key = f"opds-test:drive-map:{uuid.uuid4().hex}"
    credentials = emulator.write_credentials(tmp_path / "account.json")
    first = DriveFiles(
        DriveApi(credentials, emulator.api_url), emulator.folder_id, RedisMapCache(REDIS_TEST_URL, key), tmp_path
    )
    try:
        first.load()
        emulator.clear_log()
        second = DriveFiles(
            DriveApi(credentials, emulator.api_url), emulator.folder_id, RedisMapCache(REDIS_TEST_URL, key), tmp_path
        )
        try:
            second.load()
            assert second.stat(EPUB) == first.stat(EPUB)
        finally:
            second.close()
        assert not [r for r in emulator.requests if r.path.endswith("/files")]  # read from Redis, not listed
    finally:
        first.close()
        redis.Redis.from_url(REDIS_TEST_URL).delete(key)


def test_drive_stalling_before_it_answers_is_retried_then_a_storage_error(
    drive: DriveFiles, emulator: DriveEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("opds_server.storage.drive_api.TIMEOUT", (2.0, 0.3))
    stored = drive.stat(EPUB)
    assert stored is not None
    emulator.stall_next(1, 1.0, file_id=stored.remote_id, media_only=True)
    assert _bytes(drive, stored, 0, 16) == (FIXTURE_LIBRARY / EPUB).read_bytes()[:16]
    emulator.stall_next(4, 1.0, file_id=stored.remote_id, media_only=True)
    with pytest.raises(StorageError, match="did not answer after 4 tries: ReadTimeout") as stalled:
        _bytes(drive, stored, 0, 16)
    assert not stalled.value.is_missing
