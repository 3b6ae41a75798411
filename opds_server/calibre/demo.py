"""The demo library: a small Calibre library written from scratch, laid out as calibre 6.13 does it.

``opds-server demo-library PATH`` calls :func:`write_demo_library`, and so does ``serve`` when it finds
no library. This module owns the calibre conventions a writer needs: the schema (``schema.sql``, dumped
from a library calibre wrote), the rows a new library starts with, ``Author/Title (id)`` folders and
``Title - Author.epub`` names, timestamps as text, and the SQL functions calibre's triggers call. It
also renders the files: EPUB 3, a one-page PDF, a CBZ and JPEG covers. The books are data in
``demo_books``.

It must not touch an existing library: it refuses a folder that already holds ``metadata.db`` and never
opens one. It needs neither calibre nor the network, and the request path never imports it. Its output
is the same bytes on every run (uuid5 uuids, fixed timestamps and ZIP dates), so tests can rely on it.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re
import sqlite3
import textwrap
import uuid
import zipfile
from collections.abc import Sequence
from contextlib import closing
from importlib.resources import files
from pathlib import Path

from opds_server.calibre.demo_books import BOOKS, DemoBook
from opds_server.storage.artwork import draw_comic_page, draw_cover, fold_to_ascii

CALIBRE_USER_VERSION = 25
"""``PRAGMA user_version`` of calibre 6.13's schema; calibre upgrades a library with a lower one."""
BUILT_AT = dt.datetime(2024, 11, 1, 9, 30, tzinfo=dt.UTC)
"""Stands in for the time of the run (``last_modified``, ZIP dates), so every run writes the same bytes."""
DEMO_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "demo-library.opds-server.invalid")
EPUB_LANGUAGES = {"eng": "en", "fra": "fr", "deu": "de"}
# What calibredb 6.13 leaves in a new library. The fixture's sixth row, `field_metadata`, is written
# only by the custom column commands (for readers such as calibre2opds); the demo has no custom column.
PREFERENCES = (
    ("bools_are_tristate", "true"),
    ("user_categories", "{}"),
    ("saved_searches", "{}"),
    ("grouped_search_terms", "{}"),
    ("update_all_last_mod_dates_on_start", "false"),
)
# calibre's default title sort (calibre.ebooks.metadata.title_sort) moves English articles only, whatever
# the book's language, and drops one leading quote character.
_ARTICLE = re.compile(r"^(A|The|An)\s+", re.IGNORECASE)
_QUOTES = "'\"\u2018\u2019\u201a\u201b\u201c\u201d\u2032\u2033"
_UNSAFE_IN_PATH = re.compile(r'[/\\:*?"<>|]')


def write_demo_library(path: Path) -> None:
    """Write a small demo Calibre library (metadata.db, book folders, EPUBs, covers) to `path`.

    ``metadata.db`` is written under a temporary name and renamed once complete, so a failed run leaves
    no library behind and can simply be repeated.

    Raises:
        FileExistsError: `path` already holds a ``metadata.db``; nothing is written.
    """
    database = path / "metadata.db"
    if database.exists():
        raise FileExistsError(f"{database} already exists: the demo library goes where there is no library")
    path.mkdir(parents=True, exist_ok=True)
    partial = path / "metadata.db.partial"
    partial.unlink(missing_ok=True)
    with closing(sqlite3.connect(partial)) as db:
        # calibre registers these on its own connections; books_insert_trg and series_insert_trg call them.
        db.create_function("title_sort", 1, title_sort, deterministic=True)
        db.create_function("uuid4", 0, lambda: str(uuid.uuid4()))
        db.executescript(files("opds_server.calibre").joinpath("schema.sql").read_text(encoding="utf-8"))
        db.execute(f"PRAGMA user_version = {CALIBRE_USER_VERSION}")
        with db:
            library_id = str(uuid.uuid5(DEMO_NAMESPACE, "library"))
            db.execute("INSERT INTO library_id(uuid) VALUES (?)", (library_id,))
            db.executemany("INSERT INTO preferences(key, val) VALUES (?, ?)", PREFERENCES)
            for book in BOOKS:
                _add_book(db, path, book)
    partial.replace(database)


def title_sort(title: str) -> str:
    """calibre's default title sort: a leading English article moves to the end ("Bridge of Embers, A")."""
    title = title.strip()
    if title and title[0] in _QUOTES:
        title = title[1:]
    if match := _ARTICLE.match(title):
        title = f"{title[match.end() :]}, {match.group(1)}"
        if title[0] in _QUOTES:
            title = title[1:]
    return title.strip()


def _author_sort(name: str) -> str:
    *given, family = name.split()
    return f"{family}, {' '.join(given)}" if given else family


def _path_component(text: str) -> str:
    """The part of calibre's ``ascii_filename`` the demo needs: ASCII, and ``_`` for ``/\\:*?"<>|``."""
    return _UNSAFE_IN_PATH.sub("_", fold_to_ascii(text)).strip()


def _isbn13(stem: str) -> str:
    """`stem` (12 digits) followed by its ISBN-13 check digit."""
    total = sum(int(digit) * (3 if position % 2 else 1) for position, digit in enumerate(stem))
    return f"{stem}{-total % 10}"


def _calibre_time(moment: dt.datetime) -> str:
    """The text calibre stores for a timestamp: ``2019-03-04 10:00:00+00:00``."""
    return moment.astimezone(dt.UTC).isoformat(sep=" ")


def _add_book(db: sqlite3.Connection, library: Path, book: DemoBook) -> None:
    """Insert one book and write its folder, in the order calibredb's ``add`` does."""
    author_sort = " & ".join(_author_sort(name) for name in book.authors)
    pubdate = f"{book.published.isoformat()} 00:00:00+00:00"
    book_id = db.execute(
        "INSERT INTO books(title, series_index, author_sort, timestamp, pubdate, has_cover) VALUES (?, ?, ?, ?, ?, ?)",
        (book.title, book.series_index, author_sort, _calibre_time(book.added), pubdate, book.has_cover),
    ).lastrowid
    if book_id is None:
        raise RuntimeError(f"no books row was inserted for {book.title!r}")
    author_folder = _path_component(book.authors[0])
    path = f"{author_folder}/{_path_component(book.title)} ({book_id})"
    book_uuid = str(uuid.uuid5(DEMO_NAMESPACE, f"book/{book.title}"))
    modified = BUILT_AT + dt.timedelta(seconds=book_id)
    # books_insert_trg has set `sort` and a random uuid; a uuid5 keeps the output deterministic.
    db.execute(
        "UPDATE books SET path = ?, uuid = ?, last_modified = ? WHERE id = ?",
        (path, book_uuid, _calibre_time(modified), book_id),
    )
    _link_metadata(db, book_id, book)

    folder = library / path
    folder.mkdir(parents=True, exist_ok=True)
    series = f"{book.series} {book.series_index:g}" if book.series is not None else None
    cover_page = draw_cover(book.title, book.authors, series)
    if book.has_cover:
        (folder / "cover.jpg").write_bytes(cover_page)
    name = f"{_path_component(book.title)} - {author_folder}"
    for book_format in book.formats:
        match book_format:
            case "EPUB":
                content = _render_epub(book, book_uuid, cover_page if book.has_cover else None, modified)
            case "PDF":
                content = _render_pdf(book)
            case "CBZ":  # the cover, then a page per chapter; calibre takes a comic's cover from page 1
                pages = [cover_page, *(draw_comic_page(c.title, c.paragraphs) for c in book.chapters)]
                content = _zip([(f"{n:03}.jpg", page) for n, page in enumerate(pages, 1)])
        (folder / f"{name}.{book_format.lower()}").write_bytes(content)
        db.execute(
            "INSERT INTO data(book, format, uncompressed_size, name) VALUES (?, ?, ?, ?)",
            (book_id, book_format, len(content), name),
        )
    # No metadata.opf backup is written: as after calibredb's `set_metadata`, the book is marked dirty
    # and the next calibre that opens the library writes the backups.
    db.execute("INSERT INTO metadata_dirtied(book) VALUES (?)", (book_id,))


def _link_metadata(db: sqlite3.Connection, book_id: int, book: DemoBook) -> None:
    """Link authors, tags, series...; each value is inserted on first use (its table is UNIQUE on it)."""
    for author in book.authors:
        db.execute("INSERT OR IGNORE INTO authors(name, sort) VALUES (?, ?)", (author, _author_sort(author)))
        db.execute(
            "INSERT INTO books_authors_link(book, author) SELECT ?, id FROM authors WHERE name = ?",
            (book_id, author),
        )
    for tag in book.tags:
        db.execute("INSERT OR IGNORE INTO tags(name) VALUES (?)", (tag,))
        db.execute("INSERT INTO books_tags_link(book, tag) SELECT ?, id FROM tags WHERE name = ?", (book_id, tag))
    db.execute("INSERT OR IGNORE INTO languages(lang_code) VALUES (?)", (book.language,))
    db.execute(
        "INSERT INTO books_languages_link(book, lang_code) SELECT ?, id FROM languages WHERE lang_code = ?",
        (book_id, book.language),
    )
    db.execute("INSERT OR IGNORE INTO publishers(name) VALUES (?)", (book.publisher,))
    db.execute(
        "INSERT INTO books_publishers_link(book, publisher) SELECT ?, id FROM publishers WHERE name = ?",
        (book_id, book.publisher),
    )
    if book.rating is not None:
        db.execute("INSERT OR IGNORE INTO ratings(rating) VALUES (?)", (book.rating,))
        db.execute(
            "INSERT INTO books_ratings_link(book, rating) SELECT ?, id FROM ratings WHERE rating = ?",
            (book_id, book.rating),
        )
    if book.series is not None:
        db.execute("INSERT OR IGNORE INTO series(name) VALUES (?)", (book.series,))
        db.execute(
            "INSERT INTO books_series_link(book, series) SELECT ?, id FROM series WHERE name = ?",
            (book_id, book.series),
        )
    if book.isbn_stem is not None:
        isbn = _isbn13(book.isbn_stem)
        db.execute("INSERT INTO identifiers(book, type, val) VALUES (?, 'isbn', ?)", (book_id, isbn))
    db.execute("INSERT INTO comments(book, text) VALUES (?, ?)", (book_id, book.comments))


def _zip(entries: Sequence[tuple[str, bytes]]) -> bytes:
    """A ZIP with fixed dates and modes; ``mimetype`` and JPEGs are stored, the rest deflated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries:
            info = zipfile.ZipInfo(name, date_time=BUILT_AT.timetuple()[:6])
            info.create_system = 3  # Unix on every OS, so that the bytes do not depend on it
            info.external_attr = 0o644 << 16
            is_stored = name == "mimetype" or name.endswith(".jpg")
            info.compress_type = zipfile.ZIP_STORED if is_stored else zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buffer.getvalue()


def _render_epub(book: DemoBook, book_uuid: str, cover: bytes | None, modified: dt.datetime) -> bytes:
    """An EPUB 3 with an NCX for EPUB 2 readers; the cover is its first page when there is one."""
    lang, title = EPUB_LANGUAGES[book.language], html.escape(book.title)
    chapters = [(f"chapter-{n}.xhtml", chapter) for n, chapter in enumerate(book.chapters, 1)]
    spine = ([("cover", "cover.xhtml")] if cover else []) + [(name[:-6], name) for name, _ in chapters]
    creators = "".join(
        f'<dc:creator id="creator-{n}">{html.escape(name)}</dc:creator>\n'
        f'<meta refines="#creator-{n}" property="file-as">{html.escape(_author_sort(name))}</meta>\n'
        for n, name in enumerate(book.authors, 1)
    )
    cover_meta = '<meta name="cover" content="cover-jpg"/>\n' if cover else ""  # for EPUB 2 readers
    cover_item = '<item id="cover-jpg" href="cover.jpg" media-type="image/jpeg" properties="cover-image"/>\n'
    items = "".join(f'<item id="{i}" href="{href}" media-type="application/xhtml+xml"/>\n' for i, href in spine)
    itemrefs = "".join(f'<itemref idref="{i}"/>\n' for i, _ in spine)
    opf = f"""<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="book-id" xml:lang="{lang}">
<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">
<dc:identifier id="book-id">urn:uuid:{book_uuid}</dc:identifier>
<dc:title>{title}</dc:title>
{creators}<dc:language>{lang}</dc:language>
<dc:publisher>{html.escape(book.publisher)}</dc:publisher>
<dc:date>{book.published.isoformat()}</dc:date>
<meta property="dcterms:modified">{modified.strftime("%Y-%m-%dT%H:%M:%SZ")}</meta>
{cover_meta}</metadata>
<manifest>
<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>
<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>
<item id="css" href="style.css" media-type="text/css"/>
{cover_item if cover else ""}{items}</manifest>
<spine toc="ncx">
{itemrefs}</spine>
</package>
"""
    nav_points = "".join(
        f'<navPoint id="nav-{n}" playOrder="{n}"><navLabel><text>{html.escape(chapter.title)}</text>'
        f'</navLabel><content src="{name}"/></navPoint>\n'
        for n, (name, chapter) in enumerate(chapters, 1)
    )
    ncx = f"""<?xml version="1.0" encoding="utf-8"?>
<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1" xml:lang="{lang}">
<head><meta name="dtb:uid" content="urn:uuid:{book_uuid}"/><meta name="dtb:depth" content="1"/>
<meta name="dtb:totalPageCount" content="0"/><meta name="dtb:maxPageNumber" content="0"/></head>
<docTitle><text>{title}</text></docTitle>
<navMap>
{nav_points}</navMap>
</ncx>
"""
    toc = "".join(f'<li><a href="{name}">{html.escape(chapter.title)}</a></li>' for name, chapter in chapters)
    entries = [
        ("mimetype", b"application/epub+zip"),
        ("META-INF/container.xml", _CONTAINER_XML),
        ("OEBPS/content.opf", opf.encode()),
        ("OEBPS/nav.xhtml", _xhtml(book.title, lang, f'<nav epub:type="toc" id="toc"><ol>{toc}</ol></nav>')),
        ("OEBPS/toc.ncx", ncx.encode()),
        ("OEBPS/style.css", _STYLE_CSS),
    ]
    if cover:
        cover_body = f'<div class="cover"><img src="cover.jpg" alt="{title}"/></div>'
        entries += [("OEBPS/cover.xhtml", _xhtml(book.title, lang, cover_body)), ("OEBPS/cover.jpg", cover)]
    for name, chapter in chapters:
        paragraphs = "".join(f"<p>{html.escape(text)}</p>" for text in chapter.paragraphs)
        body = f'<section epub:type="chapter"><h1>{html.escape(chapter.title)}</h1>{paragraphs}</section>'
        entries.append((f"OEBPS/{name}", _xhtml(chapter.title, lang, body)))
    return _zip(entries)


_CONTAINER_XML = b"""<?xml version="1.0" encoding="utf-8"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles>
</container>
"""
_STYLE_CSS = b"""body { margin: 0 5%; font-family: serif; line-height: 1.4; }
h1 { font-size: 1.4em; margin: 2em 0 1em; }
p { margin: 0; text-indent: 1.5em; }
div.cover { text-align: center; }
div.cover img { height: 100%; max-width: 100%; }
"""


def _xhtml(title: str, lang: str, body: str) -> bytes:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops" xml:lang="{lang}"
 lang="{lang}"><head><title>{html.escape(title)}</title><link rel="stylesheet" href="style.css"/></head>
<body>{body}</body>
</html>
""".encode()


def _render_pdf(book: DemoBook) -> bytes:
    """A one-page PDF 1.4 in the standard Helvetica and Times fonts (so cp1252 text); text past the page is cut."""
    lines = [("F1", 24, book.title), ("F2", 14, " & ".join(book.authors))]
    for chapter in book.chapters:
        lines.append(("F1", 14, chapter.title))
        lines.extend(("F2", 11, line) for text in chapter.paragraphs for line in textwrap.wrap(text, 88))
    ops, y = ["BT", "72 770 Td"], 770
    for font, size, text in lines:
        step = round(size * 1.3) + (10 if font == "F1" else 0)
        if y - step < 72:
            break
        ops.append(f"/{font} {size} Tf 0 -{step} Td ({_pdf_string(text)}) Tj")
        y -= step
    content = "\n".join([*ops, "ET"]).encode("cp1252")
    info = f"<< /Title ({_pdf_string(book.title)}) /CreationDate (D:{BUILT_AT:%Y%m%d%H%M%S}Z) >>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Resources << /Font << /F1 4 0 R /F2 5 0 R >> >> /Contents 6 0 R >>"
        ),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Times-Roman /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        info.encode("cp1252"),
    ]
    pdf = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    pdf += b"trailer\n<< /Size %d /Root 1 0 R /Info 7 0 R >>\n" % (len(objects) + 1)
    pdf += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(pdf)


def _pdf_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
