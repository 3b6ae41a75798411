"""KOReader document keys of the fixture library's files, kept on SQLite and Postgres.

What the store should hold is worked out here from ``metadata.db`` and the files on disk, read
without the code under test; partial MD5s are cut out of the bytes by slicing (the algorithm itself
is checked against the spec's vectors in ``tests/sync/test_koreader_keys.py``). Book 16 has no file
at all, book 17's file was deleted, book 18 has an EPUB and a PDF.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from opds_server.db.document_keys import DocumentKeyRecord, DocumentKeyStore
from sync.koreader.keys import SAMPLE_OFFSETS, filename_key
from tests.benchmark.library import run_calibre
from tests.opds_server.conftest import Indexed

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
NO_FILES = 16
MISSING_FILE = 17
TWO_FORMATS = 18
XML_SPECIALS = 13
TWO_AUTHORS = 5


@dataclass(frozen=True)
class BookFile:
    book_id: int
    format: str
    path: Path


def library_files(folder: Path) -> list[BookFile]:
    """Every file metadata.db lists, whether or not it is on disk."""
    with closing(sqlite3.connect(f"file:{folder / 'metadata.db'}?mode=ro", uri=True)) as connection:
        rows = connection.execute(
            "SELECT d.book, d.format, b.path, d.name FROM data d JOIN books b ON b.id = d.book ORDER BY d.book"
        ).fetchall()
    return [BookFile(book, fmt, folder / path / f"{name}.{fmt.lower()}") for book, fmt, path, name in rows]


def expected_key(data: bytes) -> str:
    """KOReader's partial MD5, from the sample windows cut out of the bytes."""
    return hashlib.md5(b"".join(data[offset : offset + 1024] for offset in SAMPLE_OFFSETS)).hexdigest()


def keys(store: DocumentKeyStore, book_id: int, variant: str) -> dict[str, str]:
    """Format -> key of one variant of a book's streams."""
    return {record.format: record.key for record in store.keys_of(book_id) if record.variant == variant}


def calibredb(library: Path, command: str, *arguments: str) -> str:
    """The real calibredb on ``library`` (headless, throwaway config)."""
    return run_calibre("calibredb", command, "--library-path", str(library), *arguments)


def rewrite(path: Path) -> None:
    """Change a file's first bytes and move its mtime on by a second."""
    data = bytearray(path.read_bytes())
    data[100:110] = b"rewritten!"
    before = path.stat().st_mtime_ns
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


# --- the indexer over the fixture library --------------------------------------------------------


def test_every_file_on_disk_gets_the_partial_md5_of_its_bytes(indexed: Indexed) -> None:
    files = library_files(indexed.folder)
    on_disk = [f for f in files if f.path.is_file()]
    assert len(on_disk) == len(files) - 1  # book 17's EPUB was deleted

    assert indexed.indexer.refresh(now=NOW) == len(on_disk)

    for book_file in on_disk:
        data = book_file.path.read_bytes()
        stored = [
            r for r in indexed.store.keys_of(book_file.book_id) if r.variant == "file" and r.format == book_file.format
        ]
        assert [(r.key, r.file_size, r.file_mtime_ns) for r in stored] == [
            (expected_key(data), len(data), book_file.path.stat().st_mtime_ns)
        ]
        assert book_file.book_id in indexed.store.books_for(expected_key(data))


def test_books_without_a_file_on_disk_get_no_key(indexed: Indexed) -> None:
    indexed.indexer.refresh(now=NOW)
    assert indexed.store.keys_of(MISSING_FILE) == []
    assert indexed.store.keys_of(NO_FILES) == []


def test_a_key_finds_its_book(indexed: Indexed) -> None:
    indexed.indexer.refresh(now=NOW)
    epub = next(f for f in library_files(indexed.folder) if f.book_id == TWO_FORMATS and f.format == "EPUB")
    assert indexed.store.books_for(expected_key(epub.path.read_bytes())) == [TWO_FORMATS]
    assert indexed.indexer.book_ids_for(expected_key(epub.path.read_bytes())) == [TWO_FORMATS]
    assert indexed.store.books_for("0" * 32) == []


def test_a_second_refresh_hashes_nothing_and_changes_nothing(indexed: Indexed) -> None:
    indexed.indexer.refresh(now=NOW)
    before = {book: indexed.store.keys_of(book) for book in range(1, 41)}
    known = indexed.store.known_files()

    assert indexed.indexer.refresh(now=NOW + dt.timedelta(hours=1)) == 0

    assert {book: indexed.store.keys_of(book) for book in range(1, 41)} == before
    assert indexed.store.known_files() == known


def test_a_rewritten_file_is_rehashed_alone_and_its_old_key_forgotten(indexed: Indexed) -> None:
    indexed.indexer.refresh(now=NOW)
    epub = next(f for f in library_files(indexed.folder) if f.book_id == TWO_FORMATS and f.format == "EPUB")
    old_key = expected_key(epub.path.read_bytes())
    pdf_key = keys(indexed.store, TWO_FORMATS, "file")["PDF"]

    rewrite(epub.path)
    assert indexed.indexer.refresh(now=NOW) == 1

    new_key = expected_key(epub.path.read_bytes())
    assert new_key != old_key
    assert keys(indexed.store, TWO_FORMATS, "file") == {"EPUB": new_key, "PDF": pdf_key}
    assert indexed.store.books_for(new_key) == [TWO_FORMATS]
    assert indexed.store.books_for(old_key) == []
    assert indexed.store.known_files()[TWO_FORMATS, "EPUB", "file"] == (
        epub.path.stat().st_size,
        epub.path.stat().st_mtime_ns,
    )


def test_a_touched_file_is_rehashed_even_when_its_bytes_are_the_same(indexed: Indexed) -> None:
    indexed.indexer.refresh(now=NOW)
    epub = next(f for f in library_files(indexed.folder) if f.book_id == 1)
    key = expected_key(epub.path.read_bytes())
    mtime = epub.path.stat().st_mtime_ns + 5_000_000_000
    os.utime(epub.path, ns=(mtime, mtime))

    assert indexed.indexer.refresh(now=NOW) == 1
    assert keys(indexed.store, 1, "file") == {"EPUB": key}
    assert indexed.store.known_files()[1, "EPUB", "file"][1] == mtime


def test_a_kepub_we_made_gets_a_kepub_key(indexed: Indexed) -> None:
    indexed.indexer.refresh(now=NOW)
    indexed.kepubs.mkdir(parents=True)
    kepub = b"PK\x03\x04 a KEPUB of book 1 " * 100  # 2,700 bytes: three samples
    (indexed.kepubs / "1-1000-5000.kepub.epub").write_bytes(b"an older conversion")
    (indexed.kepubs / "1-2000-5000.kepub.epub").write_bytes(kepub)
    (indexed.kepubs / "1-3000-5000.as-is").write_text("fixed\n")
    (indexed.kepubs / ".tmp1234.part").write_bytes(b"a conversion under way")
    (indexed.kepubs / "999-2000-5000.kepub.epub").write_bytes(b"a book no longer in the library")

    assert indexed.indexer.refresh(now=NOW) == 1

    stored = [r for r in indexed.store.keys_of(1) if r.variant == "kepub"]
    assert [(r.format, r.key, r.file_size) for r in stored] == [("KEPUB", expected_key(kepub), len(kepub))]
    assert indexed.store.books_for(expected_key(kepub)) == [1]
    assert indexed.store.keys_of(999) == []

    (indexed.kepubs / "1-2000-5000.kepub.epub").unlink()
    (indexed.kepubs / "1-1000-5000.kepub.epub").unlink()
    assert indexed.indexer.refresh(now=NOW) == 0
    assert indexed.store.books_for(expected_key(kepub)) == []
    assert keys(indexed.store, 1, "file")  # the EPUB's own key stays


def test_each_format_gets_the_key_of_its_predicted_download_name(indexed: Indexed) -> None:
    indexed.indexer.refresh(now=NOW)
    tricky = filename_key("Flann O'Brien - Tom & Jerry _The _Complete__ 'Edition'.epub")
    assert keys(indexed.store, XML_SPECIALS, "filename") == {"EPUB": tricky}
    assert indexed.store.books_for(tricky) == [XML_SPECIALS]
    assert keys(indexed.store, TWO_AUTHORS, "filename") == {
        "EPUB": filename_key("Jane Doe & John Roe - The First Voyage.epub")
    }
    assert keys(indexed.store, TWO_FORMATS, "filename") == {
        "EPUB": filename_key("Dr. Lena Okafor - Principles of Navigation.epub"),
        "PDF": filename_key("Dr. Lena Okafor - Principles of Navigation.pdf"),
    }
    assert keys(indexed.store, MISSING_FILE, "filename") == {}  # nothing to download, no name


def test_a_book_left_without_files_loses_its_keys(indexed: Indexed) -> None:
    indexed.indexer.refresh(now=NOW)
    plain_words = next(f for f in library_files(indexed.folder) if f.book_id == 29)  # TXT only
    assert keys(indexed.store, 29, "file") == {"TXT": expected_key(plain_words.path.read_bytes())}

    plain_words.path.unlink()
    assert indexed.indexer.refresh(now=NOW) == 0
    assert indexed.store.keys_of(29) == []


def test_a_new_title_gets_a_new_file_name_key_without_rehashing(indexed: Indexed) -> None:
    indexed.indexer.refresh(now=NOW)
    epub = next(f for f in library_files(indexed.folder) if f.book_id == TWO_AUTHORS)
    file_key = expected_key(epub.path.read_bytes())
    old_name = filename_key("Jane Doe & John Roe - The First Voyage.epub")

    calibredb(indexed.folder, "set_metadata", "--field", "title:The Second Voyage, Revised", str(TWO_AUTHORS))
    assert indexed.indexer.refresh(now=NOW) == 0  # calibre moved the file, it did not rewrite it

    assert keys(indexed.store, TWO_AUTHORS, "filename") == {
        "EPUB": filename_key("Jane Doe & John Roe - The Second Voyage_ Revised.epub")
    }
    assert indexed.store.books_for(old_name) == []
    assert keys(indexed.store, TWO_AUTHORS, "file") == {"EPUB": file_key}


def test_a_book_removed_from_the_library_loses_its_keys(indexed: Indexed) -> None:
    indexed.indexer.refresh(now=NOW)
    assert keys(indexed.store, 29, "file")
    calibredb(indexed.folder, "remove", "--permanent", "29")
    indexed.indexer.refresh(now=NOW)
    assert indexed.store.keys_of(29) == []


def test_keys_of_books_the_library_never_had_are_dropped(indexed: Indexed) -> None:
    gone = DocumentKeyRecord(key="f" * 32, book_id=4242, format="EPUB", variant="file", file_size=1, file_mtime_ns=1)
    indexed.store.replace_book(4242, [gone], now=NOW)
    assert indexed.store.books_for("f" * 32) == [4242]

    indexed.indexer.refresh(now=NOW)
    assert indexed.store.books_for("f" * 32) == []
    assert all(book != 4242 for book, _, _ in indexed.store.known_files())


# --- the store -----------------------------------------------------------------------------------


def record(key: str, book_id: int, book_format: str = "EPUB", variant: str = "file") -> DocumentKeyRecord:
    return DocumentKeyRecord(
        key=key * 32,
        book_id=book_id,
        format=book_format,
        variant=variant,  # type: ignore[arg-type]  # tests pass plain strings for the Literal
        file_size=10,
        file_mtime_ns=20,
    )


def test_replacing_a_variant_leaves_the_other_variants_alone(engine: Engine) -> None:
    store = DocumentKeyStore(engine)
    store.replace_book(1, [record("a", 1), record("b", 1, "PDF"), record("c", 1, variant="filename")], now=NOW)
    store.replace_book(1, [record("d", 1)], now=NOW)
    assert [(r.format, r.variant, r.key[0]) for r in store.keys_of(1)] == [
        ("EPUB", "file", "d"),
        ("EPUB", "filename", "c"),
    ]
    store.replace_book(1, [], variants=["filename"], now=NOW)
    assert [r.key[0] for r in store.keys_of(1)] == ["d"]
    store.replace_book(1, [], now=NOW)  # no variant named: nothing replaced
    assert [r.key[0] for r in store.keys_of(1)] == ["d"]


def test_one_key_may_belong_to_several_books(engine: Engine) -> None:
    store = DocumentKeyStore(engine)
    store.replace_books({7: [record("e", 7)], 3: [record("e", 3), record("e", 3, variant="filename")]}, now=NOW)
    assert store.books_for("e" * 32) == [3, 7]
    assert store.remove_books([3]) == 2
    assert store.books_for("e" * 32) == [7]


def test_the_same_row_twice_is_stored_once(engine: Engine) -> None:
    store = DocumentKeyStore(engine)
    store.replace_book(1, [record("a", 1), record("a", 1)], now=NOW)
    store.replace_books({1: [record("a", 1)]}, variants=["kepub"], now=NOW)  # already there: not an error
    assert [r.key for r in store.keys_of(1)] == ["a" * 32]
    assert store.known_files() == {(1, "EPUB", "file"): (10, 20)}
    assert store.records_between(0, 2) == [record("a", 1)]
    assert store.records_between(2, 100) == []
    assert store.last_book_id() == 1


def test_a_key_listed_under_another_book_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match=r"keys of books \[2\] were given as book 1's"):
        DocumentKeyStore(engine).replace_book(1, [record("a", 2)], now=NOW)
