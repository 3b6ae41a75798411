"""KOReader's OPDS browser against the running server: Part B of shared/specs/koreader-sync.md.

Every request is made the way KOReader's LuaSocket makes it (``plugins/opds.koplugin/opdsbrowser.lua``,
``opdspse.lua``): a fresh connection, KOReader's User-Agent, ``Accept-Encoding: identity``, the
OPDS 2-first ``Accept`` on feeds, Basic credentials sent preemptively, redirects not followed (a
test sees them). Feeds are read the way KOReader reads them: ``HEAD`` then ``GET``, feed links
indexed by ``rel`` only when their type contains ``application/atom+xml``, pages walked by ``next``.

Two catalogues: the shared open one (no user exists, page size 50) and one of this module's own
with a user and seven books a page, so that ``next`` links and credentials are exercised. The
Last-Modified and catalogue-sync tests change a private copy of the library with calibredb.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import math
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import msgspec
import pytest
from lxml import etree

from tests.benchmark.library import run_calibre
from tests.conftest import ROOT, LiveServer, copy_fixture_library, start_server, stop_server
from tests.server.api_client import PASSWORDS, add_user
from tests.server.reading import NS, VISIBLE, elements, one, strings

# KOReader's frontend/socketutil.lua: "KOReader/" .. Version:getShortVersion() .. " (https://koreader.rocks/) "
# .. http.USERAGENT:gsub(" ", "/"), LuaSocket's own agent being "LuaSocket 3.0-rc1".
KOREADER = "KOReader/2024.11 (https://koreader.rocks/) LuaSocket/3.0-rc1"
OTHER_CLIENT = "Thorium/3.1.0 (Linux x86_64)"
FEED_ACCEPT = "application/opds+json, application/atom+xml;profile=opds-catalog, */*"  # OPDSBrowser.opds20_feed
ATOM = "application/atom+xml"  # KOReader's catalog_type: a link whose type contains it is a feed link
OPENSEARCH_TYPE = "application/opensearchdescription+xml"
ACQUISITION_REL = "http://opds-spec.org/acquisition"
DOWNLOAD_RELS = {ACQUISITION_REL, ACQUISITION_REL + "/open-access"}
IMAGE_REL = "http://opds-spec.org/image"
THUMBNAIL_REL = "http://opds-spec.org/image/thumbnail"
STREAM_REL = "http://vaemendis.net/opds-pse/stream"
NAVIGATION_RELS = {
    None,
    "subsection",
    "http://opds-spec.org/subsection",
    "http://opds-spec.org/crawlable",
    "http://opds-spec.org/sort/popular",
    "http://opds-spec.org/sort/new",
}
SCREEN_WIDTH = 1072  # KOReader puts Screen:getWidth() in {maxWidth}: a Kobo Clara's
USER = "ada"
WRONG_PASSWORD_USERS = ("bob", "cyd", "dee")
UTF8_USER = ("zoë", "Jürgen's pässwörd ✓")
PAGE_SIZE = 7
DEFAULT_PAGE_SIZE = 50
THREE_AUTHORS = 6  # Second Tide: John Roe, Jane Doe, Ada Quill
COMIC, COMIC_PAGES = 21, 4
MEDIA_TYPES = {
    "epub": {"application/epub+zip"},
    "pdf": {"application/pdf"},
    "cbz": {"application/vnd.comicbook+zip", "application/x-cbz"},
    "azw3": {"application/vnd.amazon.mobi8-ebook", "application/x-mobi8-ebook"},
    "txt": {"text/plain"},
}
MAGIC = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n"}
COMPARED_HEADERS = (
    "content-type",
    "content-length",
    "etag",
    "last-modified",
    "content-disposition",
    "content-encoding",
    "cache-control",
    "vary",
)

# What KOReader reaches: feeds (under /opds, fetched with the OPDS Accept) and files.
FEEDS = [
    pytest.param("/opds", id="root"),
    pytest.param("/opds/authors", id="navigation-feed"),
    pytest.param("/opds/books?sort=new", id="acquisition-feed"),
    pytest.param("/opds/books?query=Second%20Tide", id="search-feed"),
    pytest.param("/opds/books/6", id="book-entry"),
    pytest.param("/opds/opensearch.xml", id="opensearch-description"),
    pytest.param("/opds/v2", id="opds2-root"),
]
FILES = [
    pytest.param("/download/6/6.epub", id="download-epub"),
    pytest.param("/download/21/21.cbz", id="download-cbz"),
    pytest.param("/covers/6", id="cover"),
    pytest.param("/covers/6/thumbnail", id="thumbnail"),
]
PAGE = f"/pse/{COMIC}/0?maxWidth={SCREEN_WIDTH}"


# --- requests as LuaSocket makes them ------------------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def luasocket_headers(*, authorization: str | None, accept: str | None, agent: str = KOREADER) -> dict[str, str]:
    """LuaSocket's defaults (user-agent, te, connection) and what KOReader adds to them."""
    headers = {"User-Agent": agent, "TE": "trailers", "Connection": "close, TE", "Accept-Encoding": "identity"}
    if accept is not None:
        headers["Accept"] = accept
    if authorization is not None:
        headers["Authorization"] = authorization
    return headers


@dataclass(frozen=True)
class Catalog:
    """A catalogue as KOReader is set up for it: the URL typed in, the credentials, and our page size."""

    url: str
    library: Path
    authorization: str | None
    page_size: int
    http: httpx.Client  # one client, no pool: ``Connection: close`` gives every request its own connection

    def absolute(self, href: str) -> str:
        """LuaSocket's ``url.absolute`` against the catalogue."""
        return str(httpx.URL(self.url).join(href))

    def request(
        self,
        method: str,
        href: str,
        *,
        is_feed: bool = True,
        agent: str = KOREADER,
        authorization: str | None = None,
    ) -> httpx.Response:
        """``fetchFeed`` (feeds: with the OPDS ``Accept``) or ``downloadFile`` / ``streamPages`` (files)."""
        headers = luasocket_headers(
            authorization=authorization or self.authorization, accept=FEED_ACCEPT if is_feed else None, agent=agent
        )
        return self.http.request(method, self.absolute(href), headers=headers)

    def feed(self, href: str, *, agent: str = KOREADER) -> etree._Element:
        """``parseFeed``: HEAD for Last-Modified, then GET; an Atom body parsed."""
        head = self.request("HEAD", href, agent=agent)
        assert head.status_code == 200, f"HEAD {href}: {head.status_code}"
        response = self.request("GET", href, agent=agent)
        assert response.status_code == 200, f"GET {href}: {response.status_code} {response.text[:300]}"
        assert not response.content.lstrip().startswith(b"{"), f"{href}: KOReader would read this as OPDS 2"
        return etree.fromstring(response.content)

    def walk(self, href: str, *, agent: str = KOREADER) -> list[etree._Element]:
        """Every page of a feed, following ``next`` the way ``onNextPage`` does."""
        pages = [self.feed(href, agent=agent)]
        while (following := feed_links(pages[-1]).get("next")) is not None:
            assert len(pages) < 50, "next links never end"
            pages.append(self.feed(following, agent=agent))
        return pages

    def new_books_href(self) -> str:
        """The new-books feed as KOReader finds it: the root entry whose link has rel ``sort/new``."""
        root = self.feed("/opds")
        (href,) = strings(
            root, f"a:entry/a:link[@rel='http://opds-spec.org/sort/new'][contains(@type, '{ATOM}')]/@href"
        )
        return href


def feed_links(feed: etree._Element) -> dict[str, str]:
    """KOReader's ``hrefs``: feed links by rel, only those whose type contains application/atom+xml."""
    return {
        str(link.get("rel")): str(link.get("href"))
        for link in elements(feed, "a:link")
        if ATOM in (link.get("type") or "") and link.get("rel") and link.get("href")
    }


def entries(pages: list[etree._Element]) -> list[etree._Element]:
    return [entry for page in pages for entry in elements(page, "a:entry")]


def acquisitions(entry: etree._Element) -> list[etree._Element]:
    return [link for link in elements(entry, "a:link") if (link.get("rel") or "").startswith(ACQUISITION_REL)]


def book_id(entry: etree._Element) -> int:
    """The Calibre id, from the first acquisition href (``/download/<id>/<file>``)."""
    href = acquisitions(entry)[0].get("href") or ""
    return int(httpx.URL(href).path.split("/")[2])


def first_hrefs(pages: list[etree._Element]) -> list[str]:
    """What catalogue sync compares: each entry's first acquisition href."""
    return [str(acquisitions(entry)[0].get("href")) for entry in entries(pages)]


def http_time(value: str | None) -> dt.datetime:
    assert value is not None, "no Last-Modified"
    return email.utils.parsedate_to_datetime(value)


def atom_time(node: etree._Element, path: str) -> dt.datetime:
    text = one(node, path)
    assert text is not None, path
    return dt.datetime.fromisoformat(text)


def raw_head(url: str, headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
    """A HEAD on a socket of its own, read to the end: the status, headers and whatever came after them."""
    target = httpx.URL(url)
    port = target.port or 80
    lines = [f"HEAD {target.raw_path.decode('ascii')} HTTP/1.1", f"Host: {target.host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() != "connection"]
    with socket.create_connection((target.host, port), timeout=30) as connection:
        connection.sendall(("\r\n".join([*lines, "Connection: close", "", ""])).encode("latin-1"))
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), parsed, body


def newest_first(library: Path) -> list[int]:
    """The offered books by Calibre's date added, newest first, read from metadata.db."""
    with closing(sqlite3.connect(f"file:{library / 'metadata.db'}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT id FROM books ORDER BY timestamp DESC, id DESC").fetchall()
    return [int(row[0]) for row in rows if int(row[0]) in VISIBLE]


def library_changed(library: Path) -> dt.datetime:
    """When the library last changed: its newest ``last_modified`` or metadata.db's mtime, to the second."""
    database = library / "metadata.db"
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        (newest,) = db.execute("SELECT MAX(last_modified) FROM books").fetchone()
    written = dt.datetime.fromtimestamp(database.stat().st_mtime, tz=dt.UTC)
    return max(dt.datetime.fromisoformat(str(newest)), written).replace(microsecond=0)


# --- the catalogues ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30, follow_redirects=False) as client:
        yield client


@pytest.fixture(scope="module")
def login_catalog(tmp_path_factory: pytest.TempPathFactory, http: httpx.Client) -> Iterator[Catalog]:
    """A server with one user and seven books a page: KOReader set up with a user name and password."""
    work = tmp_path_factory.mktemp("koreader")
    env = {"OPDS_DATA_DIR": str(work / "data"), "OPDS_PAGE_SIZE": str(PAGE_SIZE)}
    add_user(env, USER)
    server = start_server(copy_fixture_library(work / "library"), work / "data", work / "server.log", env)
    yield Catalog(
        url=server.url,
        library=server.library,
        authorization=basic(USER, PASSWORDS[USER]),
        page_size=PAGE_SIZE,
        http=http,
    )
    stop_server(server)


def add_user_with_password(env: Mapping[str, str], name: str, password: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "opds_server", "users", "add", name, "--password-stdin"],
        cwd=ROOT,
        env={**os.environ, "OPDS_NO_BOOTSTRAP": "1", **env},
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def guarded_catalog(tmp_path_factory: pytest.TempPathFactory, http: httpx.Client) -> Iterator[Catalog]:
    """A server of its own for wrong passwords: failures are counted per account (ten allowed in 15
    minutes, then a 429) and per address, so they are spread over three users and kept off the others."""
    work = tmp_path_factory.mktemp("koreader-guarded")
    env = {"OPDS_DATA_DIR": str(work / "data")}
    users = [(name, PASSWORDS[name]) for name in WRONG_PASSWORD_USERS] + [UTF8_USER]
    with ThreadPoolExecutor() as pool:
        list(pool.map(lambda user: add_user_with_password(env, *user), users))
    server = start_server(copy_fixture_library(work / "library"), work / "data", work / "server.log", env)
    yield Catalog(url=server.url, library=server.library, authorization=None, page_size=DEFAULT_PAGE_SIZE, http=http)
    stop_server(server)


@pytest.fixture(scope="module", params=["open", "login"])
def catalog(request: pytest.FixtureRequest, http: httpx.Client) -> Catalog:
    if request.param == "open":
        shared: LiveServer = request.getfixturevalue("live_server")
        return Catalog(
            url=shared.url, library=shared.library, authorization=None, page_size=DEFAULT_PAGE_SIZE, http=http
        )
    made: Catalog = request.getfixturevalue("login_catalog")
    return made


# --- B.1 HEAD then GET --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [*FEEDS, *FILES])
def test_head_answers_with_the_status_and_headers_of_get_and_no_body(catalog: Catalog, path: str) -> None:
    is_feed = path.startswith("/opds")
    headers = luasocket_headers(authorization=catalog.authorization, accept=FEED_ACCEPT if is_feed else None)
    status, head_headers, head_body = raw_head(catalog.absolute(path), headers)
    got = catalog.request("GET", path, is_feed=is_feed)
    assert (status, got.status_code) == (200, 200)
    assert head_body == b""
    assert {name: head_headers.get(name) for name in COMPARED_HEADERS} == {
        name: got.headers.get(name) for name in COMPARED_HEADERS
    }
    assert "etag" in got.headers
    assert int(got.headers["content-length"]) == len(got.content)


# --- B.1 compression and Accept -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [*FEEDS, *FILES, pytest.param(PAGE, id="pse-page")])
def test_identity_gets_an_uncompressed_200_never_a_406(catalog: Catalog, path: str) -> None:
    is_feed = path.startswith("/opds")
    with catalog.http.stream(
        "GET",
        catalog.absolute(path),
        headers=luasocket_headers(authorization=catalog.authorization, accept=FEED_ACCEPT if is_feed else None),
    ) as response:
        raw = b"".join(response.iter_raw())
    assert response.status_code == 200
    assert response.headers.get("content-encoding", "identity") == "identity"
    expected_start = (b"<?xml", b"{") if is_feed else (b"PK\x03\x04", *MAGIC.values())
    assert raw.startswith(expected_start), raw[:40]


def test_the_feed_sent_uncompressed_to_koreader_is_compressed_for_a_client_that_accepts_gzip(catalog: Catalog) -> None:
    """The control of the test above: the server does compress, so identity was honoured, not ignored."""
    url = catalog.absolute("/opds/books?sort=new")
    headers = {**luasocket_headers(authorization=catalog.authorization, accept=FEED_ACCEPT), "Accept-Encoding": "gzip"}
    with catalog.http.stream("GET", url, headers=headers) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers.get("content-encoding") == "gzip"
    assert raw.startswith(b"\x1f\x8b")


@pytest.mark.parametrize(
    ("path", "first", "media_type"),
    [
        ("/opds", b"<", ATOM),
        ("/opds/books?sort=new", b"<", ATOM),
        ("/opds/v2", b"{", "application/opds+json"),
        ("/opds/v2/books?sort=new", b"{", "application/opds+json"),
    ],
)
def test_the_body_koreader_sniffs_agrees_with_the_content_type(
    catalog: Catalog, path: str, first: bytes, media_type: str
) -> None:
    """KOReader sends an OPDS 2-first Accept and decides the format by the body's first character."""
    response = catalog.request("GET", path)
    assert response.status_code == 200
    assert response.content.lstrip()[:1] == first
    assert media_type in response.headers["content-type"]


# --- B.1 Last-Modified ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/opds/books?sort=new", "/opds/authors", "/opds/books?query=Tide", "/opds/books?sort=title"]
)
def test_a_library_feed_is_last_modified_when_the_library_last_changed(catalog: Catalog, path: str) -> None:
    head = catalog.request("HEAD", path)
    modified = http_time(head.headers.get("last-modified"))
    assert modified == library_changed(catalog.library)
    feed = catalog.feed(path)
    assert modified == atom_time(feed, "/a:feed/a:updated/text()")
    for entry in elements(feed, "a:entry"):
        assert atom_time(entry, "a:updated/text()") <= modified


def test_the_root_has_no_last_modified_or_the_library_change_time(catalog: Catalog) -> None:
    """A logged-in user's root lists their own feeds: it may drop Last-Modified, never send a stale one."""
    sent = catalog.request("HEAD", "/opds").headers.get("last-modified")
    assert sent is None or http_time(sent) == library_changed(catalog.library)


@dataclass(frozen=True)
class Visit:
    """What KOReader sees of the catalogue at one moment."""

    last_modified: dict[str, str | None]
    hrefs: list[str]  # the new-books feed's first acquisition hrefs, in order
    titles: list[str]


@dataclass(frozen=True)
class Changes:
    """Visits before and after calibredb adds a book, and after it removes another."""

    before: Visit
    added: Visit
    removed: Visit
    added_id: int
    removed_href: str
    catalog: Catalog  # still running, for changes of its own


NEWEST = "/opds/books?sort=new"
WATCHED = (NEWEST, "/opds/authors", "/opds/books?query=Harbour", "/opds/books/1")
ADDED_TITLE = "Zanzibar Quokka Almanac"
REMOVED = 26  # The Long Harbour


def _visit(catalog: Catalog) -> Visit:
    pages = catalog.walk("/opds/books?sort=new")
    return Visit(
        last_modified={path: catalog.request("HEAD", path).headers.get("last-modified") for path in WATCHED},
        hrefs=first_hrefs(pages),
        titles=[one(entry, "a:title/text()") or "" for entry in entries(pages)],
    )


def _after_this_second() -> None:
    """Last-Modified is an HTTP date, to the second: two writes in one second cannot differ in it."""
    time.sleep(1.05 - time.time() % 1)


@pytest.fixture(scope="module")
def changes(tmp_path_factory: pytest.TempPathFactory, http: httpx.Client) -> Iterator[Changes]:
    work = tmp_path_factory.mktemp("koreader-changes")
    library = copy_fixture_library(work / "library")
    server = start_server(library, work / "data", work / "server.log", {"OPDS_PAGE_SIZE": str(PAGE_SIZE)})
    try:
        catalog = Catalog(url=server.url, library=library, authorization=None, page_size=PAGE_SIZE, http=http)
        before = _visit(catalog)
        source = work / "almanac.epub"
        source.write_bytes(next(library.glob("*/*/*.epub")).read_bytes())
        _after_this_second()
        output = run_calibre("calibredb", "add", "--library-path", str(library), "--title", ADDED_TITLE, str(source))
        added_id = int(output.rsplit(":", 1)[1].strip())
        _after_this_second()  # within the change's second a feed has no Last-Modified (routes/feeds.py)
        added = _visit(catalog)
        removed_href = next(href for href in added.hrefs if f"/download/{REMOVED}/" in href)
        _after_this_second()
        run_calibre("calibredb", "remove", "--permanent", "--library-path", str(library), str(REMOVED))
        _after_this_second()
        removed = _visit(catalog)
        yield Changes(
            before=before,
            added=added,
            removed=removed,
            added_id=added_id,
            removed_href=removed_href,
            catalog=catalog,
        )
    finally:
        stop_server(server)


@pytest.mark.parametrize("path", WATCHED)
def test_last_modified_moves_when_calibredb_adds_a_book(changes: Changes, path: str) -> None:
    assert changes.added.titles[0] == ADDED_TITLE
    assert http_time(changes.added.last_modified[path]) > http_time(changes.before.last_modified[path])


@pytest.mark.parametrize("path", WATCHED)
def test_last_modified_moves_when_calibredb_removes_a_book(changes: Changes, path: str) -> None:
    assert changes.removed_href not in changes.removed.hrefs
    assert http_time(changes.removed.last_modified[path]) > http_time(changes.added.last_modified[path])


RENAMED = 40


def _rename(library: Path, book: int, title: str) -> None:
    """What Calibre writes when a title is edited: the title, its sort and ``last_modified``, now."""
    with closing(sqlite3.connect(library / "metadata.db", isolation_level=None)) as db:
        db.create_function("title_sort", 1, lambda title: title, deterministic=True)  # Calibre's trigger calls it
        now = dt.datetime.now(dt.UTC).isoformat(sep=" ")
        db.execute("UPDATE books SET title = ?, last_modified = ? WHERE id = ?", (title, now, book))


def test_two_changes_within_one_second_never_share_a_last_modified(changes: Changes) -> None:
    """KOReader keys its feed cache on URL + Last-Modified: a change must never reuse the value sent
    after the previous one (no value at all is fine: KOReader then does not cache)."""
    catalog = changes.catalog
    for attempt in range(5):
        _after_this_second()
        started = time.time()
        seen: list[str | None] = []
        for title in (f"Renamed once {attempt}", f"Renamed twice {attempt}"):
            _rename(catalog.library, RENAMED, title)
            seen.append(catalog.request("HEAD", NEWEST).headers.get("last-modified"))
            listed = {book_id(entry): entry for entry in entries([catalog.feed(NEWEST)])}
            if one(listed[RENAMED], "a:title/text()") != title:
                pytest.fail(f"the feed does not show {title!r} yet")
        if int(time.time()) == int(started):
            break
    else:
        pytest.fail("five tries, and never two changes within one second")
    assert None in seen or seen[0] != seen[1], seen


def test_catalog_sync_meets_its_remembered_href_right_after_the_new_book(changes: Changes) -> None:
    """``getSyncDownloadList``: from the first entry on, until the first href downloaded last time."""
    remembered = changes.before.hrefs[0]
    fetched = changes.added.hrefs
    assert remembered in fetched, "the href remembered by the last sync has changed"
    pending = fetched[: fetched.index(remembered)]
    assert [int(httpx.URL(href).path.split("/")[2]) for href in pending] == [changes.added_id]
    assert changes.added.hrefs[1:] == changes.before.hrefs


# --- B.2 authors ----------------------------------------------------------------------------------------------------


def test_koreader_gets_exactly_one_author_element_per_entry_naming_every_author(catalog: Catalog) -> None:
    listed = {book_id(entry): entry for entry in entries(catalog.walk(catalog.new_books_href()))}
    for number, entry in listed.items():
        assert len(elements(entry, "a:author")) == 1, f"book {number}"
    other = catalog.feed(f"/opds/books/{THREE_AUTHORS}", agent=OTHER_CLIENT)
    names = strings(other, "/a:entry/a:author/a:name/text()")
    assert len(names) == 3
    for shown in (
        one(listed[THREE_AUTHORS], "a:author/a:name/text()"),
        one(catalog.feed(f"/opds/books/{THREE_AUTHORS}"), "/a:entry/a:author/a:name/text()"),
    ):
        assert shown is not None
        positions = [shown.find(name) for name in names]
        assert -1 not in positions, (shown, names)
        assert positions == sorted(positions), (shown, names)


def test_other_clients_get_one_author_element_per_author(catalog: Catalog) -> None:
    pages = catalog.walk(catalog.new_books_href(), agent=OTHER_CLIENT)
    (entry,) = [entry for entry in entries(pages) if book_id(entry) == THREE_AUTHORS]
    assert strings(entry, "a:author/a:name/text()") == ["John Roe", "Jane Doe", "Ada Quill"]


# --- B.2 search -----------------------------------------------------------------------------------------------------


def search_template(catalog: Catalog) -> str:
    """``getSearchTemplate``: the root's OpenSearch link, then the first Atom ``Url`` of the description."""
    root = catalog.feed("/opds")
    (description,) = strings(root, f"/a:feed/a:link[contains(@type, '{OPENSEARCH_TYPE}')]/@href")
    document = catalog.feed(description)
    templates = [
        str(url.get("template"))
        for url in elements(document, "/os:OpenSearchDescription/os:Url")
        if ATOM in (url.get("type") or "") and url.get("template")
    ]
    assert templates, "no Url of an Atom type"
    return catalog.absolute(templates[0])


@pytest.mark.parametrize(
    "path", ["/opds", "/opds/books?sort=new", "/opds/authors", "/opds/books?query=Tide", "/opds/books?sort=title"]
)
def test_feeds_link_the_opensearch_description_by_its_media_type(catalog: Catalog, path: str) -> None:
    feed = catalog.feed(path)
    (href,) = strings(feed, f"/a:feed/a:link[@type='{OPENSEARCH_TYPE}']/@href")
    assert catalog.request("GET", href).status_code == 200


def test_the_opensearch_template_has_search_terms_and_no_other_parameter(catalog: Catalog) -> None:
    template = search_template(catalog)
    assert re.findall(r"\{[^{}]*\}", template) == ["{searchTerms}"]


def koreader_url_encode(text: str) -> str:
    """``util.urlEncode``: UTF-8 bytes percent-encoded except letters, digits and ``-._~!*'()``."""
    return quote(text, safe="!*'()")


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("Second Tide", {6}),
        ("Misérables", {8}),
        ("Harriet Vane-Moss", {34, 35}),
        ("The Cartographer's Apprentice", {22}),
        ("Tom & Jerry", {13}),
    ],
)
def test_a_search_filled_in_the_template_gives_an_acquisition_feed_with_the_books(
    catalog: Catalog, term: str, expected: set[int]
) -> None:
    """``searchCatalog``: ``{searchTerms}`` became ``%s``, which becomes the encoded input."""
    url = search_template(catalog).replace("{searchTerms}", "%s").replace("%s", koreader_url_encode(term))
    response = catalog.request("GET", url)
    assert response.status_code == 200
    assert "kind=acquisition" in response.headers["content-type"]
    found = {book_id(entry) for entry in entries(catalog.walk(url))}
    assert expected <= found


# --- B.2 and B.3 pagination, catalogue sync -------------------------------------------------------------------------


def test_next_links_are_typed_atom_and_walk_every_book_once_newest_first(catalog: Catalog) -> None:
    pages = catalog.walk(catalog.new_books_href())
    assert len(pages) == math.ceil(len(VISIBLE) / catalog.page_size)
    for page in pages[:-1]:
        (kind,) = strings(page, "/a:feed/a:link[@rel='next']/@type")
        assert ATOM in kind
    listed = [book_id(entry) for entry in entries(pages)]
    assert len(listed) == len(set(listed))
    assert listed == newest_first(catalog.library)


def test_acquisition_hrefs_are_the_same_on_every_walk(catalog: Catalog) -> None:
    href = catalog.new_books_href()
    assert first_hrefs(catalog.walk(href)) == first_hrefs(catalog.walk(href))


# --- B.2 and B.3 acquisitions ---------------------------------------------------------------------------------------


def test_acquisition_links_have_the_format_media_type_and_end_in_its_extension(catalog: Catalog) -> None:
    listed = entries(catalog.walk(catalog.new_books_href()))
    assert len(listed) == len(VISIBLE)
    for entry in listed:
        links = acquisitions(entry)
        assert links, one(entry, "a:title/text()")
        for link in links:
            assert link.get("rel") in DOWNLOAD_RELS, link.get("rel")  # ".../borrow" would be a disabled button
            extension = httpx.URL(link.get("href") or "").path.rpartition(".")[2]
            assert extension in MEDIA_TYPES, link.get("href")
            assert link.get("type") in MEDIA_TYPES[extension], (link.get("href"), link.get("type"))


def server_file_name(disposition: str) -> str | None:
    """``getServerFileName``: the quoted ``filename=``, else an unquoted one; then URL-decoded."""
    quoted = re.search(r'filename="([^"]+)"', disposition)
    plain = quoted or re.search(r"filename=([^;]+)", disposition)
    return unquote(plain[1]) if plain else None


def test_head_on_an_acquisition_names_the_file_with_its_extension_plain_filename_first(catalog: Catalog) -> None:
    for entry in entries(catalog.walk(catalog.new_books_href())):
        for link in acquisitions(entry):
            href = link.get("href") or ""
            head = catalog.request("HEAD", href)  # getServerFileName goes through fetchFeed
            assert head.status_code == 200, href
            assert head.headers["content-type"].split(";")[0] == link.get("type")
            disposition = head.headers["content-disposition"]
            assert disposition.startswith("attachment;"), disposition
            plain, extended = disposition.find("filename="), disposition.find("filename*=")
            assert plain != -1, disposition
            assert extended == -1 or plain < extended, disposition
            name = server_file_name(disposition)
            assert name is not None, disposition
            assert name.lower().endswith("." + httpx.URL(href).path.rpartition(".")[2]), (href, name)


def test_a_download_is_a_200_with_the_whole_file(catalog: Catalog) -> None:
    for entry in entries(catalog.walk(catalog.new_books_href())):
        for link in acquisitions(entry):
            got = catalog.request("GET", link.get("href") or "", is_feed=False)
            assert got.status_code == 200, link.get("href")
            assert len(got.content) == int(got.headers["content-length"]) == int(link.get("length") or -1)


# --- B.2 covers -------------------------------------------------------------------------------------------------------


def test_every_entry_links_a_jpeg_cover_and_thumbnail_that_answer_200(catalog: Catalog) -> None:
    for entry in entries(catalog.walk(catalog.new_books_href())):
        for rel in (IMAGE_REL, THUMBNAIL_REL):
            (link,) = [link for link in elements(entry, "a:link") if link.get("rel") == rel]
            assert link.get("type") == "image/jpeg"
            got = catalog.request("GET", link.get("href") or "", is_feed=False)  # streamPages(cover_link, 1)
            assert got.status_code == 200, link.get("href")
            assert got.headers["content-type"] == "image/jpeg"
            assert got.content.startswith(MAGIC["image/jpeg"])


# --- B.4 page streaming -----------------------------------------------------------------------------------------------


def comic_stream(catalog: Catalog) -> etree._Element:
    """The stream link of the comic's entry in the new-books feed, where KOReader reads it."""
    listed = entries(catalog.walk(catalog.new_books_href()))
    (entry,) = [entry for entry in listed if book_id(entry) == COMIC]
    (link,) = [link for link in elements(entry, "a:link") if link.get("rel") == STREAM_REL]
    return link


def test_the_comic_offers_a_page_stream_with_a_raw_template_and_a_page_count(catalog: Catalog) -> None:
    link = comic_stream(catalog)
    href = link.get("href") or ""
    assert "{pageNumber}" in href
    assert (link.get("type") or "").startswith("image/")
    assert link.get(f"{{{NS['pse']}}}count") == str(COMIC_PAGES)
    prefixes = [prefix for prefix, namespace in link.nsmap.items() if namespace == NS["pse"]]
    assert prefixes, "no prefix for the PSE namespace"  # KOReader looks for an attribute named "<prefix>:count"
    assert None not in prefixes
    assert not ("/api" in href and "chapterId=" in href)


def test_every_streamed_page_is_a_200_image(catalog: Catalog) -> None:
    link = comic_stream(catalog)
    count = int(link.get(f"{{{NS['pse']}}}count") or 0)
    assert count == COMIC_PAGES
    for index in range(count):
        href = (link.get("href") or "").replace("{pageNumber}", str(index)).replace("{maxWidth}", str(SCREEN_WIDTH))
        got = catalog.request("GET", href, is_feed=False)
        assert got.status_code == 200, href
        media_type = got.headers["content-type"]
        assert media_type in MAGIC, media_type
        assert got.content.startswith(MAGIC[media_type])


# --- B.1 credentials and redirects --------------------------------------------------------------------------------


PROTECTED = [
    *FEEDS,
    *FILES,
    pytest.param(PAGE, id="pse-page"),
]


def assert_plain_401(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert "location" not in response.headers
    assert response.headers["www-authenticate"].startswith("Basic")
    assert "html" not in response.headers.get("content-type", "")
    assert response.content.lstrip()[:1] != b"<"


WRONG_PASSWORDS = [
    pytest.param(
        method, param.values[0], WRONG_PASSWORD_USERS[number % len(WRONG_PASSWORD_USERS)], id=f"{param.id}-{method}"
    )
    for number, (method, param) in enumerate((method, param) for param in PROTECTED for method in ("HEAD", "GET"))
]


@pytest.mark.parametrize(("method", "path", "user"), WRONG_PASSWORDS)
def test_a_wrong_password_is_a_401_never_a_redirect_or_html(
    guarded_catalog: Catalog, method: str, path: str, user: str
) -> None:
    wrong = basic(user, "not " + PASSWORDS[user])
    assert_plain_401(guarded_catalog.request(method, path, authorization=wrong, is_feed=path.startswith("/opds")))


@pytest.mark.parametrize("path", ["/opds", "/opds/books?sort=new", "/opds/books/6", "/download/6/6.epub", PAGE])
def test_no_credentials_on_a_catalogue_with_users_is_a_401(guarded_catalog: Catalog, path: str) -> None:
    assert_plain_401(guarded_catalog.request("GET", path, is_feed=path.startswith("/opds")))


def test_a_utf8_user_name_and_password_log_in_with_basic(guarded_catalog: Catalog) -> None:
    """LuaSocket base64-encodes the bytes typed, UTF-8 on every KOReader device."""
    response = guarded_catalog.request("GET", "/opds/books?sort=new", authorization=basic(*UTF8_USER))
    assert response.status_code == 200


@pytest.mark.parametrize("method", ["HEAD", "GET"])
@pytest.mark.parametrize("path", [*PROTECTED, pytest.param("/opds/", id="root-with-slash")])
def test_authenticated_resources_answer_200_directly(login_catalog: Catalog, path: str, method: str) -> None:
    """LuaSocket drops the Basic credentials on a redirect: everything must answer where it is linked."""
    response = login_catalog.request(method, path, is_feed=path.startswith("/opds"))
    assert response.status_code == 200, (response.status_code, response.headers.get("location"))


def test_every_link_koreader_follows_answers_200_without_a_redirect(login_catalog: Catalog) -> None:
    """The hrefs as published, not as typed here: navigation, acquisitions, images and the stream."""
    pages = login_catalog.walk(login_catalog.new_books_href())
    root = login_catalog.feed("/opds")
    hrefs = [
        str(link.get("href"))
        for entry in elements(root, "a:entry")
        for link in elements(entry, "a:link")
        if ATOM in (link.get("type") or "") and link.get("rel") in NAVIGATION_RELS
    ]
    files = []
    for entry in entries(pages):
        for link in elements(entry, "a:link"):
            rel = link.get("rel") or ""
            if rel.startswith(ACQUISITION_REL) or rel in {IMAGE_REL, THUMBNAIL_REL}:
                files.append(str(link.get("href")))
            elif rel == STREAM_REL:
                files.append(str(link.get("href")).replace("{pageNumber}", "0").replace("{maxWidth}", "600"))
    assert len(files) > 3 * len(VISIBLE)
    for href, is_feed in [*((href, True) for href in hrefs), *((href, False) for href in files)]:
        response = login_catalog.request("GET", href, is_feed=is_feed)
        assert response.status_code == 200, (href, response.status_code, response.headers.get("location"))


# --- B.5 OPDS 2.0 -------------------------------------------------------------------------------------------------


def link_rel(link: Mapping[str, Any]) -> str | None:
    """``get_value``: a rel is a string or a list whose first item counts."""
    rel = link.get("rel")
    if isinstance(rel, list):
        return str(rel[0]) if rel else None
    return str(rel) if rel is not None else None


def opds2_search_url(href: str) -> str:
    """``genItemTableFromCatalog2``: the template part becomes ``%s``, or ``?query=%s`` when it names no query."""
    if "query" in re.sub(r"\{.*\}", "", href):
        return re.sub(r"\{.*\}", "%s", href)
    return re.sub(r"\{.*\}", "?query=%s", href)


def test_opds2_root_is_json_with_a_title_and_a_search_link_koreader_can_fill(catalog: Catalog) -> None:
    response = catalog.request("GET", "/opds/v2")
    assert response.status_code == 200
    assert response.content.lstrip().startswith(b"{")
    document = msgspec.json.decode(response.content, type=dict[str, Any])
    title = document["metadata"]["title"]
    assert isinstance(title, str)
    assert title
    searches = [link["href"] for link in document["links"] if link_rel(link) == "search" and "href" in link]
    assert len(searches) == 1
    url = catalog.absolute(opds2_search_url(searches[0])).replace("%s", koreader_url_encode("Second Tide"))
    assert "{" not in url
    found = catalog.request("GET", url)
    assert found.status_code == 200, url
    assert found.content.lstrip().startswith(b"{")
    results = msgspec.json.decode(found.content, type=dict[str, Any])
    (publication,) = [p for p in results["publications"] if p["metadata"]["title"] == "Second Tide"]
    authors = publication["metadata"]["author"]
    assert [author["name"] for author in authors] == ["John Roe", "Jane Doe", "Ada Quill"]
    assert publication["images"]
    assert any((link_rel(link) or "").startswith(ACQUISITION_REL) for link in publication["links"])


def opds2_walk(catalog: Catalog, href: str) -> list[dict[str, Any]]:
    """Every page of an OPDS 2 feed, by the ``next`` link KOReader keeps in ``item_table.hrefs``."""
    pages: list[dict[str, Any]] = []
    following: str | None = href
    while following is not None:
        assert len(pages) < 50, "next links never end"
        response = catalog.request("GET", following)
        assert response.status_code == 200, following
        pages.append(msgspec.json.decode(response.content, type=dict[str, Any]))
        nexts = [link["href"] for link in pages[-1].get("links", []) if link_rel(link) == "next"]
        following = nexts[0] if nexts else None
    return pages


def test_opds2_navigation_groups_facets_and_pages_have_what_koreader_reads(catalog: Catalog) -> None:
    root = msgspec.json.decode(catalog.request("GET", "/opds/v2").content, type=dict[str, Any])
    for item in root["navigation"]:
        assert item["title"]
        assert catalog.request("GET", item["href"]).content.lstrip().startswith(b"{"), item["href"]
    for group in root.get("groups", []):
        assert group["metadata"]["title"]
        if "navigation" not in group:
            assert catalog.request("GET", group["links"][0]["href"]).status_code == 200
    (new_books,) = [item["href"] for item in root["navigation"] if link_rel(item) == "http://opds-spec.org/sort/new"]
    pages = opds2_walk(catalog, new_books)
    assert len(pages) == math.ceil(len(VISIBLE) / catalog.page_size)
    for facet in pages[0].get("facets", []):
        assert facet["metadata"]["title"]
        assert all(link["href"] for link in facet["links"])
    publications = [publication for page in pages for publication in page["publications"]]
    titles = [publication["metadata"]["title"] for publication in publications]
    atom_titles = [one(entry, "a:title/text()") for entry in entries(catalog.walk(catalog.new_books_href()))]
    assert titles == atom_titles
    for publication in publications:
        assert publication["metadata"]["author"], publication["metadata"]["title"]
        assert publication["images"]
        assert any((link_rel(link) or "").startswith(ACQUISITION_REL) for link in publication["links"])


# --- B.2 what the flattening parser needs ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/opds", "/opds/authors", "/opds/books?sort=new", "/opds/books/6"])
def test_atom_elements_are_unprefixed_as_koreader_looks_them_up_by_name(catalog: Catalog, path: str) -> None:
    """opdsparser.lua keeps prefixes in names and looks for ``feed``, ``entry``, ``link``, ``author``."""
    document = catalog.feed(path)
    for element in document.iter(f"{{{NS['a']}}}*"):
        assert element.prefix is None, element.tag


def test_the_opensearch_description_is_unprefixed_as_koreader_looks_it_up_by_name(catalog: Catalog) -> None:
    document = catalog.feed("/opds/opensearch.xml")
    assert document.tag == f"{{{NS['os']}}}OpenSearchDescription"
    for element in document.iter(f"{{{NS['os']}}}*"):
        assert element.prefix is None, element.tag


NAVIGATION_FEEDS = ["/opds", "/opds/authors", "/opds/series", "/opds/tags", "/opds/languages", "/opds/publishers"]


@pytest.mark.parametrize("path", NAVIGATION_FEEDS)
def test_every_navigation_entry_has_a_link_koreader_opens(catalog: Catalog, path: str) -> None:
    """An entry opens a sub-catalogue only through a link typed Atom with no rel or a navigation rel."""
    listed = entries(catalog.walk(path))
    assert listed
    for entry in listed:
        opened = [
            str(link.get("href"))
            for link in elements(entry, "a:link")
            if ATOM in (link.get("type") or "") and link.get("rel") in NAVIGATION_RELS
        ]
        assert opened, one(entry, "a:title/text()")
        assert catalog.feed(opened[-1]) is not None  # KOReader keeps the last such link


def test_facets_have_a_group_and_lead_to_feeds(catalog: Catalog) -> None:
    feed = catalog.feed(catalog.new_books_href())
    facets = elements(feed, "/a:feed/a:link[@rel='http://opds-spec.org/facet']")
    assert facets
    opds = "{http://opds-spec.org/2010/catalog}"
    for facet in facets:
        assert facet.get("type"), facet.get("href")  # KOReader reads facets only from typed links
        assert facet.get(opds + "facetGroup")
        assert facet.get(opds + "activeFacet") in {None, "true"}
        count = facet.get(f"{{{NS['thr']}}}count")
        assert count is None or count.isdigit()
        assert catalog.feed(facet.get("href") or "") is not None


def test_entries_carry_the_description_koreader_shows_as_book_information(catalog: Catalog) -> None:
    with closing(sqlite3.connect(f"file:{catalog.library / 'metadata.db'}?mode=ro", uri=True)) as db:
        described = {int(row[0]) for row in db.execute("SELECT book FROM comments WHERE trim(text) != ''")}
    listed = {book_id(entry): entry for entry in entries(catalog.walk(catalog.new_books_href()))}
    assert described & set(listed)
    for number in described & set(listed):
        shown = one(listed[number], "a:content/text()") or one(listed[number], "a:summary/text()")
        assert shown is not None, f"book {number}"
        assert shown.strip(), f"book {number}"
