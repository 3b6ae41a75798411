"""The benchmark library generator (``tests/benchmark/library.py``) writes a library real calibre reads.

Checked with calibre 6.13's own ``calibredb``. calibre is a requirement of the suite, like PostgreSQL:
without it these tests fail (``.ci/run`` installs it), they never skip.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.benchmark.library import generate_library, run_calibre

BOOKS = 200
SEED = 7


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("calibredb") is None:
        pytest.fail("calibredb is not installed: apt-get install calibre")
    path = tmp_path_factory.mktemp("benchmark") / "Benchmark Library"
    generate_library(path, BOOKS, seed=SEED)
    return path


@pytest.fixture
def db(library: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(f"{(library / 'metadata.db').as_uri()}?mode=ro", uri=True)) as connection:
        yield connection


def calibredb(library: Path, *arguments: str) -> str:
    return run_calibre("calibredb", *arguments, "--with-library", str(library))


def written_books(library: Path, db: sqlite3.Connection) -> dict[int, dict[str, object]]:
    """What the generator wrote, shaped like ``calibredb list --for-machine``."""
    books: dict[int, dict[str, object]] = {}
    for book_id, title, path in db.execute("SELECT id, title, path FROM books"):
        authors = db.execute(
            "SELECT name FROM books_authors_link JOIN authors ON authors.id = author WHERE book = ? "
            "ORDER BY books_authors_link.id",
            (book_id,),
        ).fetchall()
        series = db.execute(
            "SELECT name FROM books_series_link JOIN series ON series.id = series WHERE book = ?", (book_id,)
        ).fetchone()
        tags = db.execute("SELECT name FROM books_tags_link JOIN tags ON tags.id = tag WHERE book = ?", (book_id,))
        files = db.execute("SELECT name, format FROM data WHERE book = ?", (book_id,))
        books[book_id] = {
            "title": title,
            "authors": " & ".join(name for (name,) in authors),
            "series": series[0] if series else None,
            "tags": sorted(name for (name,) in tags),
            "formats": sorted(str(library / path / f"{name}.{fmt.lower()}") for name, fmt in files),
        }
    return books


def test_calibredb_lists_every_book_with_the_authors_series_tags_and_formats_written(
    library: Path, db: sqlite3.Connection
) -> None:
    output = calibredb(library, "list", "--for-machine", "--fields", "title,authors,series,tags,formats")
    listed = {
        book["id"]: {
            "title": book["title"],
            "authors": book["authors"],
            "series": book.get("series"),
            "tags": sorted(book.get("tags", [])),
            "formats": sorted(book.get("formats", [])),
        }
        for book in json.loads(output)
    }
    assert len(listed) == BOOKS
    assert listed == written_books(library, db)
    # The 200 books exercise what the benchmarks rely on.
    assert any(" & " in str(book["authors"]) for book in listed.values())
    assert any(book["series"] for book in listed.values())
    assert any("." in tag for book in listed.values() for tag in book["tags"])


def test_every_data_row_has_its_file_and_every_cover_its_jpeg(library: Path, db: sqlite3.Connection) -> None:
    rows = db.execute("SELECT path, name, format, uncompressed_size FROM data JOIN books ON books.id = data.book")
    for path, name, book_format, size in rows:
        assert (library / path / f"{name}.{book_format.lower()}").stat().st_size == size
    for path, has_cover in db.execute("SELECT path, has_cover FROM books"):
        assert (library / path / "cover.jpg").is_file() == bool(has_cover)


def test_database_keeps_calibres_schema_journal_mode_and_integrity(db: sqlite3.Connection) -> None:
    assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("PRAGMA user_version").fetchone() == (25,)
    assert db.execute("SELECT COUNT(*) FROM books WHERE uuid IS NULL OR sort IS NULL").fetchone() == (0,)
    assert db.execute("SELECT MIN(id), MAX(id) FROM books").fetchone() == (1, BOOKS)


def test_calibredb_search_finds_the_books_of_a_tag(library: Path, db: sqlite3.Connection) -> None:
    tag, *_ = db.execute(
        "SELECT name FROM tags JOIN books_tags_link ON tags.id = tag GROUP BY tag ORDER BY COUNT(*) DESC"
    ).fetchone()
    linked = db.execute("SELECT book FROM books_tags_link JOIN tags ON tags.id = tag WHERE name = ?", (tag,))
    expected = {book for (book,) in linked}
    found = calibredb(library, "search", "--limit", "1000", f'tags:"={tag}"')
    assert {int(book) for book in found.split(",")} == expected


def test_calibredb_adds_its_next_book_after_the_last_generated_id(library: Path, tmp_path: Path) -> None:
    copy = tmp_path / "library"
    shutil.copytree(library, copy)
    output = calibredb(copy, "add", "--empty", "--title", "Added by calibre", "--authors", "Zoë Hale")
    assert re.findall(r"^Added book ids: (\d+)$", output, re.MULTILINE) == [str(BOOKS + 1)]


def test_the_same_seed_writes_the_same_books(library: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_library(again, BOOKS, seed=SEED)
    # calibre's AZW3 writer is not reproducible (a new uuid, and a few bytes more or less): the sizes of
    # the MOBI and AZW3 templates, which ebook-convert makes, are left out.
    data = "SELECT id, book, format, name, CASE WHEN format IN ('MOBI', 'AZW3') THEN 0 ELSE uncompressed_size END"
    tables = ("books", "authors", "series", "tags", "books_tags_link", "comments", "identifiers", f"({data} FROM data)")
    with (
        closing(sqlite3.connect(f"{(library / 'metadata.db').as_uri()}?mode=ro", uri=True)) as first,
        closing(sqlite3.connect(f"{(again / 'metadata.db').as_uri()}?mode=ro", uri=True)) as second,
    ):
        for table in tables:
            query = f"SELECT * FROM {table} ORDER BY id"
            assert first.execute(query).fetchall() == second.execute(query).fetchall(), table
