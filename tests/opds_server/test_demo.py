"""The demo library reads like one calibre wrote: checked through metadata.db, opened read-only."""

from __future__ import annotations

import io
import re
import sqlite3
import zipfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from lxml import etree
from PIL import Image

from opds_server.calibre.demo import write_demo_library
from tests.conftest import FIXTURE_LIBRARY

FIXTURE_DB = FIXTURE_LIBRARY / "metadata.db"

CALIBRE_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?\+00:00$")
OPF = {"opf": "http://www.idpf.org/2007/opf", "dc": "http://purl.org/dc/elements/1.1/"}


def connect_read_only(database: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "Demo Library"  # a space, as in "Calibre Library"
    write_demo_library(path)
    return path


@pytest.fixture
def db(library: Path) -> Iterator[sqlite3.Connection]:
    with closing(connect_read_only(library / "metadata.db")) as connection:
        yield connection


def book_files(library: Path, db: sqlite3.Connection, book_format: str) -> list[Path]:
    rows = db.execute(
        "SELECT books.path, data.name FROM data JOIN books ON books.id = data.book WHERE data.format = ?",
        (book_format,),
    )
    return [library / path / f"{name}.{book_format.lower()}" for path, name in rows]


def test_library_has_twelve_books(db: sqlite3.Connection) -> None:
    assert db.execute("SELECT COUNT(*) FROM books").fetchone() == (12,)


def test_database_is_calibre_schema_version_25_and_intact(db: sqlite3.Connection) -> None:
    assert db.execute("PRAGMA user_version").fetchone() == (25,)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_schema_is_calibres_without_the_fixtures_custom_columns(db: sqlite3.Connection) -> None:
    query = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid"
    with closing(connect_read_only(FIXTURE_DB)) as calibre:
        expected = [row for row in calibre.execute(query) if "custom_column_" not in row[1]]
    assert db.execute(query).fetchall() == expected


def test_every_data_row_names_a_file_of_the_recorded_size(library: Path, db: sqlite3.Connection) -> None:
    rows = db.execute(
        "SELECT books.path, data.name, data.format, data.uncompressed_size FROM data JOIN books ON books.id = data.book"
    ).fetchall()
    assert len(rows) == 13
    for path, name, book_format, size in rows:
        assert book_format == book_format.upper()
        assert (library / path / f"{name}.{book_format.lower()}").stat().st_size == size


def test_formats_are_mostly_epub_with_one_pdf_and_one_cbz(db: sqlite3.Connection) -> None:
    counts = dict(db.execute("SELECT format, COUNT(*) FROM data GROUP BY format"))
    assert counts == {"EPUB": 11, "PDF": 1, "CBZ": 1}
    (pdf_book,) = db.execute("SELECT book FROM data WHERE format = 'PDF'").fetchone()
    assert db.execute("SELECT format FROM data WHERE book = ? ORDER BY id", (pdf_book,)).fetchall() == [
        ("EPUB",),
        ("PDF",),
    ]


def test_folders_follow_calibres_layout(db: sqlite3.Connection) -> None:
    rows = db.execute(
        "SELECT books.id, books.path, data.name FROM books JOIN data ON data.book = books.id"
        " WHERE books.title IN ('The Wrecker', 'De la Terre à la Lune')"
    ).fetchall()
    assert sorted(rows) == [
        (6, "Jules Verne/De la Terre a la Lune (6)", "De la Terre a la Lune - Jules Verne"),
        (8, "Robert Louis Stevenson/The Wrecker (8)", "The Wrecker - Robert Louis Stevenson"),
    ]


def test_epubs_open_with_an_uncompressed_mimetype_and_name_their_cover(library: Path, db: sqlite3.Connection) -> None:
    uuids = dict(db.execute("SELECT path, uuid FROM books"))
    for epub in book_files(library, db, "EPUB"):
        with zipfile.ZipFile(epub) as archive:
            first = archive.infolist()[0]
            assert (first.filename, first.compress_type) == ("mimetype", zipfile.ZIP_STORED)
            assert archive.read("mimetype") == b"application/epub+zip"
            container = etree.fromstring(archive.read("META-INF/container.xml"))
            opf_path = container.xpath("string(//*[local-name()='rootfile']/@full-path)")
            opf = etree.fromstring(archive.read(str(opf_path)))
            cover_items = opf.xpath("//opf:item[@properties='cover-image']/@href", namespaces=OPF)
            has_cover = (epub.parent / "cover.jpg").exists()
        assert opf.get("version") == "3.0"
        identifier = opf.xpath("string(//dc:identifier)", namespaces=OPF)
        assert identifier == f"urn:uuid:{uuids[epub.parent.relative_to(library).as_posix()]}"
        assert opf.xpath("//opf:meta[@property='dcterms:modified']", namespaces=OPF)
        assert opf.xpath("//opf:item[@properties='nav']", namespaces=OPF)
        assert cover_items == (["cover.jpg"] if has_cover else [])


def test_books_with_a_cover_have_a_600x900_jpeg(library: Path, db: sqlite3.Connection) -> None:
    rows = db.execute("SELECT path, has_cover FROM books").fetchall()
    for path, has_cover in rows:
        cover = library / path / "cover.jpg"
        assert cover.exists() == bool(has_cover)
        if has_cover:
            with Image.open(cover) as image:
                assert (image.format, image.size) == ("JPEG", (600, 900))
    assert sorted(has_cover for _, has_cover in rows) == [0] + [1] * 11


def test_comic_is_a_zip_of_jpeg_pages(library: Path, db: sqlite3.Connection) -> None:
    (cbz,) = book_files(library, db, "CBZ")
    with zipfile.ZipFile(cbz) as archive:
        assert archive.namelist() == ["001.jpg", "002.jpg", "003.jpg"]
        for name in archive.namelist():
            with Image.open(io.BytesIO(archive.read(name))) as page:
                assert page.format == "JPEG"


def test_pdf_has_a_cross_reference_table_where_startxref_points(library: Path, db: sqlite3.Connection) -> None:
    (pdf,) = book_files(library, db, "PDF")
    content = pdf.read_bytes()
    assert content.startswith(b"%PDF-1.4\n")
    assert content.endswith(b"%%EOF\n")
    xref_at = int(content.rsplit(b"startxref\n", 1)[1].split(b"\n", 1)[0])
    assert content[xref_at:].startswith(b"xref\n0 8\n")


def test_isbns_have_valid_check_digits(db: sqlite3.Connection) -> None:
    isbns = [isbn for (isbn,) in db.execute("SELECT val FROM identifiers WHERE type = 'isbn'")]
    assert len(isbns) >= 5
    for isbn in isbns:
        assert re.fullmatch(r"97[89]\d{10}", isbn), isbn
        assert sum(int(digit) * (1, 3)[position % 2] for position, digit in enumerate(isbn)) % 10 == 0, isbn


def test_triggers_sort_titles_and_series_like_calibre(db: sqlite3.Connection) -> None:
    sorts = dict(db.execute("SELECT title, sort FROM books"))
    assert sorts["The Tide Clock"] == "Tide Clock, The"
    assert sorts["A Bridge of Reeds"] == "Bridge of Reeds, A"
    assert sorts["An Almanac of Small Weather"] == "Almanac of Small Weather, An"
    assert sorts["Moby-Dick"] == "Moby-Dick"
    assert dict(db.execute("SELECT name, sort FROM series"))["The Saltmarsh Chronicles"] == "Saltmarsh Chronicles, The"
    uuids = [uuid for (uuid,) in db.execute("SELECT uuid FROM books")]
    assert len(set(uuids)) == 12
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", u) for u in uuids)


def test_series_have_indices_including_a_fractional_one(db: sqlite3.Connection) -> None:
    rows = db.execute(
        "SELECT series.name, books.series_index, books.title FROM books"
        " JOIN books_series_link ON books_series_link.book = books.id"
        " JOIN series ON series.id = books_series_link.series ORDER BY series.name, books.series_index"
    ).fetchall()
    assert [(name, index) for name, index, _ in rows] == [
        ("The Copper Street Mysteries", 1.0),
        ("The Copper Street Mysteries", 2.0),
        ("The Saltmarsh Chronicles", 1.0),
        ("The Saltmarsh Chronicles", 1.5),
        ("The Saltmarsh Chronicles", 2.0),
    ]


def test_a_book_has_two_authors_in_order(db: sqlite3.Connection) -> None:
    rows = db.execute(
        "SELECT books.author_sort, authors.name FROM books"
        " JOIN books_authors_link ON books_authors_link.book = books.id"
        " JOIN authors ON authors.id = books_authors_link.author"
        " WHERE books.title = 'The Wrecker' ORDER BY books_authors_link.id"
    ).fetchall()
    assert rows == [
        ("Stevenson, Robert Louis & Osbourne, Lloyd", "Robert Louis Stevenson"),
        ("Stevenson, Robert Louis & Osbourne, Lloyd", "Lloyd Osbourne"),
    ]


def test_metadata_covers_languages_tags_ratings_and_old_pubdates(db: sqlite3.Connection) -> None:
    assert {code for (code,) in db.execute("SELECT lang_code FROM languages")} == {"eng", "fra", "deu"}
    assert db.execute("SELECT COUNT(*) FROM tags WHERE name LIKE '%.%.%'").fetchone() == (1,)
    assert {rating for (rating,) in db.execute("SELECT rating FROM ratings")} <= set(range(11))
    assert db.execute("SELECT MIN(pubdate) FROM books").fetchone() == ("1813-01-28 00:00:00+00:00",)
    assert db.execute("SELECT COUNT(*) FROM books WHERE pubdate LIKE '1851-%'").fetchone() == (1,)


def test_timestamps_are_stored_as_calibre_text_and_added_dates_are_not_in_id_order(
    db: sqlite3.Connection,
) -> None:
    rows = db.execute("SELECT timestamp, pubdate, last_modified FROM books ORDER BY id").fetchall()
    assert all(CALIBRE_TIME.match(value) for row in rows for value in row)
    added = [timestamp for timestamp, _, _ in rows]
    assert added != sorted(added)
    assert len({timestamp[:4] for timestamp in added}) >= 8


def test_output_is_the_same_bytes_on_every_run(library: Path, tmp_path: Path) -> None:
    write_demo_library(tmp_path)
    first = {path.relative_to(library): path.read_bytes() for path in library.rglob("*") if path.is_file()}
    second = {path.relative_to(tmp_path): path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    assert first == second


def test_writing_twice_to_the_same_path_raises_and_changes_nothing(tmp_path: Path) -> None:
    write_demo_library(tmp_path)
    before = (tmp_path / "metadata.db").read_bytes()
    with pytest.raises(FileExistsError, match=r"metadata\.db already exists"):
        write_demo_library(tmp_path)
    assert (tmp_path / "metadata.db").read_bytes() == before
    assert not (tmp_path / "metadata.db.partial").exists()
