"""Downloads, covers, thumbnails and OPDS-PSE comic pages, over real HTTP against the live server.

Expected bytes and names come from the session's copy of the fixture library (its ``metadata.db``
opened read-only), never from the server's own code.
"""

from __future__ import annotations

import email.utils
import io
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote

import httpx
import msgspec
import pytest
from lxml import etree
from PIL import Image

from tests.conftest import LiveServer

ATOM_NS = "http://www.w3.org/2005/Atom"
PSE_NS = "http://vaemendis.net/opds-pse/ns"
PSE_STREAM = "http://vaemendis.net/opds-pse/stream"
KOREADER_AGENT = "KOReader/2024.11 (https://koreader.rocks/; Linux; aarch64)"
BROWSER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) Thorium/3.0"
MEDIA_TYPES = {
    "EPUB": "application/epub+zip",
    "PDF": "application/pdf",
    "CBZ": "application/vnd.comicbook+zip",
    "AZW3": "application/vnd.amazon.mobi8-ebook",
    "TXT": "text/plain; charset=utf-8",
}
BOOKS_WITHOUT_COVER = (4, 24, 29, 38, 39)
THUMBNAIL_WIDTH = 300
COMIC_BOOK, COMIC_PAGES = 21, 4
_PARAMETER = re.compile(r'\s*([\w!#$%&\'*+.^`|~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


class BookFile(NamedTuple):
    """One row of Calibre's ``data`` table, with the path it names."""

    book_id: int
    format: str
    path: Path

    @property
    def url(self) -> str:
        return f"/download/{self.book_id}/{self.format.lower()}"


class Problem(msgspec.Struct, frozen=True):
    """RFC 9457 problem details, the fields every error body must carry."""

    type: str
    title: str
    status: int
    detail: str


def read_library(library: Path, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    uri = f"{(library / 'metadata.db').as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        return db.execute(sql, parameters).fetchall()


def library_files(library: Path) -> list[BookFile]:
    rows = read_library(
        library, "SELECT d.book, d.format, b.path, d.name FROM data d JOIN books b ON b.id = d.book ORDER BY d.book"
    )
    return [
        BookFile(int(str(book)), str(fmt), library / str(folder) / f"{name}.{str(fmt).lower()}")
        for book, fmt, folder, name in rows
    ]


def book_file(library: Path, book_id: int, book_format: str) -> BookFile:
    (found,) = [f for f in library_files(library) if f.book_id == book_id and f.format == book_format]
    return found


def cover_path(library: Path, book_id: int) -> Path:
    ((folder,),) = read_library(library, "SELECT path FROM books WHERE id = ?", (book_id,))
    return library / str(folder) / "cover.jpg"


def read_problem(response: httpx.Response, status: int) -> Problem:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = msgspec.json.decode(response.content, type=Problem)
    assert problem.status == status
    return problem


def read_image(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG"
    return image


def disposition_names(header: str) -> tuple[str, str]:
    """The ``filename`` fallback and the decoded ``filename*`` of an attachment (RFC 6266)."""
    kind, _, rest = header.partition(";")
    assert kind.strip() == "attachment"
    params = {name.lower(): value.strip() for name, value in _PARAMETER.findall(rest)}
    fallback = params["filename"]
    assert fallback.startswith('"'), header
    assert fallback.endswith('"'), header
    charset, _, encoded = params["filename*"].partition("''")
    assert charset.upper() == "UTF-8", header
    return fallback[1:-1], unquote(encoded, encoding="utf-8", errors="strict")


def assert_whole_file(response: httpx.Response, expected: BookFile) -> None:
    data = expected.path.read_bytes()
    assert response.status_code == 200, (expected, response.text)
    assert response.headers["content-type"] == MEDIA_TYPES[expected.format], expected
    assert int(response.headers["content-length"]) == len(data), expected
    assert response.content == data, expected
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"].startswith('"')
    assert email.utils.parsedate_to_datetime(response.headers["last-modified"]).tzinfo is not None
    fallback, exact = disposition_names(response.headers["content-disposition"])
    assert exact == expected.path.name
    assert fallback.isascii()


def pse_link(client: httpx.Client, agent: str) -> etree._Element:
    response = client.get(f"/opds/books/{COMIC_BOOK}", headers={"User-Agent": agent})
    assert response.status_code == 200
    entry = etree.fromstring(response.content)
    (link,) = [link for link in entry.iter(f"{{{ATOM_NS}}}link") if link.get("rel") == PSE_STREAM]
    return link


def expand_pse(href: str, page: int, width: int) -> str:
    """Substitute an OPDS-PSE template the way clients do, raw or percent-encoded."""
    for name, value in (("pageNumber", page), ("maxWidth", width)):
        href = href.replace(f"{{{name}}}", str(value)).replace(f"%7B{name}%7D", str(value))
    return href


@pytest.fixture(scope="module")
def epub(live_server: LiveServer) -> BookFile:
    """Book 1's EPUB, the file the Range tests cut up."""
    return book_file(live_server.library, 1, "EPUB")


# Downloads


def test_the_library_has_a_file_of_every_served_format(live_server: LiveServer) -> None:
    assert {f.format for f in library_files(live_server.library) if f.path.is_file()} == set(MEDIA_TYPES)


@pytest.mark.parametrize("book_format", sorted(MEDIA_TYPES))
def test_every_file_on_disk_downloads_whole_with_type_length_name_and_validators(
    live_server: LiveServer, client: httpx.Client, book_format: str
) -> None:
    files = [f for f in library_files(live_server.library) if f.format == book_format and f.path.is_file()]
    assert files
    for expected in files:
        assert_whole_file(client.get(expected.url), expected)


@pytest.mark.parametrize(
    ("book_id", "name"),
    [
        (8, "Les Miserables - Victor Hugo.epub"),
        (10, "Wu Bei haMao dearu - Xia Mu Shu Shi.epub"),
        (13, "Tom & Jerry _The _Complete__ 'Edition' - Flann O'Brien.epub"),
    ],
)
def test_download_is_named_after_the_calibre_file(client: httpx.Client, book_id: int, name: str) -> None:
    response = client.get(f"/download/{book_id}/epub")
    assert response.status_code == 200
    assert disposition_names(response.headers["content-disposition"]) == (name, name)


@pytest.mark.parametrize(
    ("header", "part"),
    [
        ("bytes=0-99", slice(0, 100)),
        ("bytes=-100", slice(-100, None)),
        ("bytes=100-", slice(100, None)),
        ("bytes=1000-99999999", slice(1000, None)),
    ],
)
def test_a_single_range_is_a_206_with_those_bytes(
    client: httpx.Client, epub: BookFile, header: str, part: slice
) -> None:
    data = epub.path.read_bytes()
    start, stop, _ = part.indices(len(data))
    response = client.get(epub.url, headers={"Range": header})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{stop - 1}/{len(data)}"
    assert int(response.headers["content-length"]) == stop - start
    assert response.content == data[part]


def test_a_range_starting_at_the_end_is_a_416_naming_the_size(client: httpx.Client, epub: BookFile) -> None:
    size = epub.path.stat().st_size
    response = client.get(epub.url, headers={"Range": f"bytes={size}-"})
    problem = read_problem(response, 416)
    assert response.headers["content-range"] == f"bytes */{size}"
    assert str(size) in problem.detail


@pytest.mark.parametrize("header", ["bytes=abc", "bytes=", "bytes=0-1,5-9", "pages=0-99", "bytes 0-99"])
def test_a_malformed_or_multiple_range_gets_the_whole_file(client: httpx.Client, epub: BookFile, header: str) -> None:
    response = client.get(epub.url, headers={"Range": header})
    assert "content-range" not in response.headers
    assert_whole_file(response, epub)


def test_if_range_with_the_current_etag_honours_the_range(client: httpx.Client, epub: BookFile) -> None:
    etag = client.head(epub.url).headers["etag"]
    response = client.get(epub.url, headers={"Range": "bytes=0-99", "If-Range": etag})
    assert response.status_code == 206
    assert response.content == epub.path.read_bytes()[:100]


@pytest.mark.parametrize("validator", ['"stale-etag"', "weak"])
def test_if_range_with_a_stale_or_weak_etag_sends_the_whole_file(
    client: httpx.Client, epub: BookFile, validator: str
) -> None:
    etag = client.head(epub.url).headers["etag"]
    if_range = f"W/{etag}" if validator == "weak" else validator  # If-Range compares strongly (RFC 9110 13.1.5)
    response = client.get(epub.url, headers={"Range": "bytes=0-99", "If-Range": if_range})
    assert_whole_file(response, epub)


@pytest.mark.parametrize(
    "path",
    [
        "/download/1/epub",
        "/download/21/cbz",
        "/covers/1",
        "/covers/4",
        "/covers/1/thumbnail",
        "/covers/4/thumbnail",
        "/opds",
        "/opds/v2",
        "/opds/books?sort=title",
        "/opds/books/1",
        "/opds/v2/books/1",
    ],
)
def test_head_has_the_headers_of_get_and_no_body(client: httpx.Client, path: str) -> None:
    got = client.get(path)
    head = client.head(path)
    assert (head.status_code, got.status_code) == (200, 200)
    for name in ("content-type", "content-length", "etag", "last-modified", "content-encoding"):
        assert head.headers.get(name) == got.headers.get(name), name
    assert head.content == b""


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/download/17/epub", ("17", "EPUB", "missing")),
        ("/download/1/pdf", ("1", "PDF")),
        ("/download/9999/epub", ("9999",)),
        ("/covers/9999", ("9999",)),
        ("/covers/9999/thumbnail", ("9999",)),
        ("/pse/1/0", ("1", "CBZ")),
    ],
)
def test_missing_books_formats_and_files_are_404_problems_saying_what(
    client: httpx.Client, path: str, words: tuple[str, ...]
) -> None:
    detail = read_problem(client.get(path), 404).detail
    for word in words:
        assert re.search(rf"\b{word}\b", detail), (word, detail)


@pytest.mark.parametrize(
    "path",
    [
        "/download/1/..%2F..%2Fmetadata.db",
        "/download/1/%2e%2e%2f%2e%2e%2fmetadata.db",
        "/download/1/epub%2F..%2F..%2F..%2Fmetadata.db",
        "/download/1/..%5C..%5Cmetadata.db",
        "/download/1/%2E%2E",
        "/download/1/db",
        "/download/%2e%2e/epub",
        "/covers/1%2F..%2F..%2Fmetadata.db",
        "/pse/21/..%2F..%2Fmetadata.db",
    ],
)
def test_path_traversal_never_returns_file_bytes(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.request.url.raw_path == path.encode()  # sent as written, not normalised by httpx
    assert 400 <= response.status_code < 500
    read_problem(response, response.status_code)


# Covers and thumbnails


def test_cover_is_the_library_cover_jpg(live_server: LiveServer, client: httpx.Client) -> None:
    response = client.get("/covers/1")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content == cover_path(live_server.library, 1).read_bytes()
    assert "max-age" in response.headers["cache-control"]


@pytest.mark.parametrize("book_id", BOOKS_WITHOUT_COVER)
def test_a_book_without_cover_gets_a_drawn_600x900_jpeg(
    live_server: LiveServer, client: httpx.Client, book_id: int
) -> None:
    assert not cover_path(live_server.library, book_id).exists()
    response = client.get(f"/covers/{book_id}")
    assert read_image(response).size == (600, 900)
    assert "max-age" in response.headers["cache-control"]


@pytest.mark.parametrize("book_id", [1, 4, 19, 33, 35, 36, 37])
def test_thumbnail_is_a_jpeg_at_most_300_wide(client: httpx.Client, book_id: int) -> None:
    response = client.get(f"/covers/{book_id}/thumbnail")
    assert read_image(response).width <= THUMBNAIL_WIDTH
    assert "cache-control" in response.headers


def test_thumbnail_is_made_once_and_then_reused(live_server: LiveServer, client: httpx.Client) -> None:
    folder = live_server.data_dir / "thumbnails"
    book_id = 37

    def made() -> list[tuple[Path, int]]:
        return [(path, path.stat().st_mtime_ns) for path in folder.glob(f"{book_id}-*.jpg")]

    first = client.get(f"/covers/{book_id}/thumbnail")
    (before,) = made()
    second = client.get(f"/covers/{book_id}/thumbnail")
    assert made() == [before]
    assert second.content == first.content == before[0].read_bytes()


@pytest.mark.parametrize("path", ["/covers/1", "/covers/4", "/covers/1/thumbnail", "/download/1/epub"])
def test_if_none_match_with_the_etag_is_a_304_without_body(client: httpx.Client, path: str) -> None:
    etag = client.get(path).headers["etag"]
    response = client.get(path, headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag


# OPDS-PSE


def test_comic_entry_streams_its_four_pages(client: httpx.Client) -> None:
    link = pse_link(client, BROWSER_AGENT)
    assert link.get(f"{{{PSE_NS}}}count") == str(COMIC_PAGES)


def test_koreader_gets_raw_pse_placeholders(client: httpx.Client) -> None:
    href = pse_link(client, KOREADER_AGENT).get("href", "")
    assert "{pageNumber}" in href
    assert "{maxWidth}" in href


def test_other_clients_get_percent_encoded_pse_placeholders(client: httpx.Client) -> None:
    href = pse_link(client, BROWSER_AGENT).get("href", "")
    assert "%7BpageNumber%7D" in href
    assert "%7BmaxWidth%7D" in href
    assert "{" not in href
    assert "}" not in href


@pytest.mark.parametrize("agent", [KOREADER_AGENT, BROWSER_AGENT])
def test_pse_pages_are_jpegs_and_the_page_after_the_last_is_404(client: httpx.Client, agent: str) -> None:
    href = pse_link(client, agent).get("href", "")
    for page in range(COMIC_PAGES):
        read_image(client.get(expand_pse(href, page, 2000)))
    read_problem(client.get(expand_pse(href, COMIC_PAGES, 2000)), 404)


def test_pse_max_width_scales_the_page_down(client: httpx.Client) -> None:
    href = pse_link(client, KOREADER_AGENT).get("href", "")
    assert read_image(client.get(expand_pse(href, 0, 200))).width == 200
