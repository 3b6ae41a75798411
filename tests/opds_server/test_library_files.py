"""The library's files on local disk: what ``LocalFiles`` finds, streams and refuses.

Paths come from ``metadata.db``, which anyone who can write the library can edit: a path that would
leave the library folder is never looked up, whatever the file system holds outside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from opds_server.storage.files import LOCAL_READER, LocalFiles, StorageError, is_safe_relative, local_stored


@pytest.fixture
def library(tmp_path: Path) -> Path:
    root = tmp_path / "library"
    (root / "Author" / "Book (1)").mkdir(parents=True)
    (root / "Author" / "Book (1)" / "Book - Author.epub").write_bytes(bytes(range(256)) * 40)
    (tmp_path / "secret.txt").write_text("outside the library")
    return root


@pytest.mark.parametrize(
    "relative",
    ["../secret.txt", "Author/../../secret.txt", "/etc/passwd", "\\\\server\\share", "C:/Windows", "a\x00b", ""],
)
def test_paths_that_leave_the_library_are_never_looked_up(library: Path, relative: str) -> None:
    assert not is_safe_relative(relative)
    assert LocalFiles(library).stat(relative) is None


def test_a_file_is_found_with_its_size_and_version_and_streamed_by_ranges(library: Path) -> None:
    files = LocalFiles(library)
    stored = files.stat("Author/Book (1)/Book - Author.epub")
    assert stored is not None
    assert stored.size == 10240
    assert stored.version == f"{stored.mtime_ns}-10240"
    with files.read_chunks(stored, 1000, 300) as chunks:
        assert b"".join(chunks) == (bytes(range(256)) * 40)[1000:1300]
    with files.open(stored) as handle:
        handle.seek(10230)
        assert handle.read() == (bytes(range(256)) * 40)[10230:]
    assert files.local_copy(stored, keep=True) == library / "Author" / "Book (1)" / "Book - Author.epub"


def test_folders_and_missing_files_are_not_files(library: Path) -> None:
    files = LocalFiles(library)
    assert files.stat("Author/Book (1)") is None
    assert files.stat("Author/Book (1)/gone.epub") is None


def test_a_file_gone_between_stat_and_read_is_a_missing_storage_error(library: Path) -> None:
    files = LocalFiles(library)
    stored = files.stat("Author/Book (1)/Book - Author.epub")
    assert stored is not None
    (library / "Author" / "Book (1)" / "Book - Author.epub").unlink()
    with pytest.raises(StorageError) as gone, files.read_chunks(stored, 0, 10):
        pass
    assert gone.value.is_missing


def test_a_file_of_ours_is_described_with_the_version_it_copies(tmp_path: Path) -> None:
    thumbnail = tmp_path / "thumb.jpg"
    thumbnail.write_bytes(b"\xff\xd8 jpeg")
    stored = local_stored(thumbnail, mtime_ns=123)
    assert (stored.size, stored.mtime_ns, stored.local_path) == (7, 123, str(thumbnail))
    with LOCAL_READER.read_chunks(stored, 0, stored.size) as chunks:
        assert b"".join(chunks) == b"\xff\xd8 jpeg"
