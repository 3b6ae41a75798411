"""The KEPUB store: converts a book's EPUB once per version of the file, and remembers the books
that a Kobo gets as EPUB (fixed layout, already a KEPUB, conversion failed)."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import zipfile
from pathlib import Path

import pytest

from opds_server.storage.kepub import KepubStore
from sync.kobo.kepub import read_layout
from tests.sync.test_kepub import build_epub, page

LANTERN_KEEPER = Path("Eleanor Whitby/The Lantern Keeper (1)/The Lantern Keeper - Eleanor Whitby.epub")
SALT_ROAD = Path("Eleanor Whitby/The Salt Road (3)/The Salt Road - Eleanor Whitby.epub")


@pytest.fixture
def epub(fixture_library: Path, tmp_path: Path) -> Path:
    """A private copy of book 1's EPUB, free to change."""
    copy = tmp_path / "library" / "book.epub"
    copy.parent.mkdir()
    shutil.copyfile(fixture_library / LANTERN_KEEPER, copy)
    return copy


@pytest.fixture
def store(tmp_path: Path) -> KepubStore:
    return KepubStore(tmp_path / "data" / "kepub")


def is_kepub(path: Path) -> bool:
    with path.open("rb") as handle:
        return zipfile.ZipFile(handle).testzip() is None and read_layout(handle) == "kepub"


def test_an_epub_is_converted_into_a_file_named_after_its_version(store: KepubStore, epub: Path) -> None:
    kepub = store.read_kepub(1, epub)
    stat = epub.stat()
    assert kepub == store.folder / f"1-{stat.st_mtime_ns}-{stat.st_size}.kepub.epub"
    assert is_kepub(kepub)
    assert sorted(path.name for path in store.folder.iterdir()) == [kepub.name]  # no temporary file left


def test_a_second_read_returns_the_cached_file_without_converting(store: KepubStore, epub: Path) -> None:
    first = store.read_kepub(1, epub)
    assert first is not None
    os.utime(first, ns=(1_000_000_000, 1_000_000_000))  # any rewrite would move this
    assert store.read_kepub(1, epub) == first
    assert first.stat().st_mtime_ns == 1_000_000_000


def test_a_changed_epub_gets_a_new_kepub_and_the_old_one_goes(
    store: KepubStore, epub: Path, fixture_library: Path
) -> None:
    old = store.read_kepub(1, epub)
    assert old is not None
    shutil.copyfile(fixture_library / SALT_ROAD, epub)  # another book: another size
    later = epub.stat().st_mtime_ns + 5_000_000_000
    os.utime(epub, ns=(later, later))
    new = store.read_kepub(1, epub)
    assert new is not None
    assert new != old
    assert new.name == f"1-{later}-{epub.stat().st_size}.kepub.epub"
    assert not old.exists()
    assert is_kepub(new)
    with zipfile.ZipFile(new) as archive:
        assert b"Salt Road" in archive.read("content.opf")


def test_other_books_keep_their_kepubs(store: KepubStore, epub: Path, fixture_library: Path, tmp_path: Path) -> None:
    other = tmp_path / "library" / "other.epub"
    shutil.copyfile(fixture_library / SALT_ROAD, other)
    first = store.read_kepub(1, epub)
    third = store.read_kepub(3, other)
    assert first is not None
    assert third is not None
    assert first.exists()
    assert third.exists()


def test_a_fixed_layout_epub_is_sent_as_it_is(store: KepubStore, tmp_path: Path) -> None:
    fixed = tmp_path / "fixed.epub"
    fixed.write_bytes(
        build_epub({"a.xhtml": page("<p>A.</p>")}, metadata='<meta property="rendition:layout">pre-paginated</meta>')
    )
    assert store.read_kepub(5, fixed) is None
    assert store.read_kepub(5, fixed) is None
    assert [path.suffix for path in store.folder.iterdir()] == [".as-is"]


def test_a_kepub_is_sent_as_it_is(store: KepubStore, epub: Path, tmp_path: Path) -> None:
    kepub = store.read_kepub(1, epub)
    assert kepub is not None
    already = tmp_path / "already.kepub.epub"
    shutil.copyfile(kepub, already)
    assert store.read_kepub(2, already) is None


def test_a_failed_conversion_is_logged_once_and_not_retried(
    store: KepubStore, epub: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    valid = epub.read_bytes()
    broken = tmp_path / "broken.epub"
    broken.write_bytes(b"\0" * len(valid))
    with caplog.at_level(logging.WARNING, logger="opds_server.storage.kepub"):
        assert store.read_kepub(7, broken) is None
        assert store.read_kepub(7, broken) is None
    assert len(caplog.records) == 1
    assert "not a zip" in caplog.records[0].getMessage()
    (marker,) = store.folder.iterdir()
    assert marker.suffix == ".failed"
    # The same version of the file (same mtime and size) is not opened again, even if it could now be converted.
    stat = broken.stat()
    broken.write_bytes(valid)
    os.utime(broken, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert store.read_kepub(7, broken) is None
    # A new version is tried, converted, and replaces the marker.
    os.utime(broken, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    kepub = store.read_kepub(7, broken)
    assert kepub is not None
    assert [path.name for path in store.folder.iterdir()] == [kepub.name]


def test_a_missing_epub_is_an_error(store: KepubStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.read_kepub(17, tmp_path / "missing.epub")


def test_prepare_converts_ahead(store: KepubStore, epub: Path) -> None:
    store.prepare(1, epub)
    stat = epub.stat()
    assert is_kepub(store.folder / f"1-{stat.st_mtime_ns}-{stat.st_size}.kepub.epub")


def test_threads_converting_the_same_book_all_get_a_whole_file(store: KepubStore, epub: Path) -> None:
    barrier = threading.Barrier(4)
    results: list[Path | None] = []

    def convert() -> None:
        barrier.wait()
        results.append(store.read_kepub(1, epub))

    threads = [threading.Thread(target=convert) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert len(set(results)) == 1
    (kepub,) = set(results)
    assert kepub is not None
    assert is_kepub(kepub)
    assert [path.name for path in store.folder.iterdir()] == [kepub.name]
