"""HTTP behaviour of the feeds over real HTTP: compression, conditional requests, media types,
OpenSearch, KOReader's request pattern, and links behind a reverse proxy (``OPDS_BASE_URL``).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import brotli
import httpx
import msgspec
import pytest
from lxml import etree

from tests.conftest import LiveServer, copy_fixture_library, start_server, stop_server

ATOM_NS = "http://www.w3.org/2005/Atom"
OPENSEARCH_NS = "http://a9.com/-/spec/opensearch/1.1/"
KOREADER_AGENT = "KOReader/2024.11 (https://koreader.rocks/; Linux; aarch64)"
KOREADER = {"User-Agent": KOREADER_AGENT, "Accept-Encoding": "identity"}
PUBLIC_BASE = "https://books.example.org/calibre"
NAVIGATION = "application/atom+xml;profile=opds-catalog;kind=navigation"
ACQUISITION = "application/atom+xml;profile=opds-catalog;kind=acquisition"
ENTRY = "application/atom+xml;type=entry;profile=opds-catalog"
OPDS2 = "application/opds+json"
PUBLICATION = "application/opds-publication+json"
OPENSEARCH = "application/opensearchdescription+xml"
FEEDS = ("/opds", "/opds/v2", "/opds/books?limit=5&sort=title", "/opds/v2/books?sort=new", "/opds/authors")
DECODERS = {"gzip": gzip.decompress, "br": brotli.decompress}


def fetch_raw(client: httpx.Client, path: str, headers: Mapping[str, str]) -> tuple[httpx.Response, bytes]:
    """A GET and its body exactly as sent on the wire (httpx would decode it otherwise)."""
    with client.stream("GET", path, headers=headers) as response:
        return response, b"".join(response.iter_raw())


def identity_body(client: httpx.Client, path: str) -> bytes:
    response, raw = fetch_raw(client, path, {"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    return raw


def atom_hrefs(body: bytes) -> list[str]:
    return [str(link.get("href")) for link in etree.fromstring(body).iter(f"{{{ATOM_NS}}}link")]


def json_hrefs(value: Any) -> Iterator[str]:
    """Every ``href`` anywhere in an OPDS 2 document."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "href":
                yield str(item)
            else:
                yield from json_hrefs(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_hrefs(item)


def entry_titles(body: bytes) -> list[str]:
    feed = etree.fromstring(body)
    return [str(title.text) for title in feed.iterfind(f"{{{ATOM_NS}}}entry/{{{ATOM_NS}}}title")]


@pytest.fixture(scope="module")
def proxied_server(fixture_library: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server told it is published under a sub-path of another host."""
    workdir = tmp_path_factory.mktemp("proxied")
    server = start_server(fixture_library, workdir / "data", workdir / "server.log", env={"OPDS_BASE_URL": PUBLIC_BASE})
    yield server
    stop_server(server)


# Compression


@pytest.mark.parametrize("path", FEEDS)
def test_koreader_identity_feed_is_sent_uncompressed(client: httpx.Client, path: str) -> None:
    response, raw = fetch_raw(client, path, KOREADER)
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert int(response.headers["content-length"]) == len(raw)
    assert raw.lstrip().startswith((b"<?xml", b"{"))


@pytest.mark.parametrize("coding", sorted(DECODERS))
@pytest.mark.parametrize("path", FEEDS)
def test_feed_is_compressed_with_the_asked_coding(client: httpx.Client, path: str, coding: str) -> None:
    response, raw = fetch_raw(client, path, {"Accept-Encoding": coding})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == coding
    assert "accept-encoding" in response.headers["vary"].lower()
    assert int(response.headers["content-length"]) == len(raw)
    assert DECODERS[coding](raw) == identity_body(client, path)
    # Compressed once, then sent from the cache as the same bytes.
    again, raw_again = fetch_raw(client, path, {"Accept-Encoding": coding})
    assert (again.headers["x-cache"], again.headers["content-encoding"], raw_again) == ("hit", coding, raw)


@pytest.mark.parametrize(
    ("accept", "refused"),
    [("br;q=0, gzip", {"br"}), ("gzip;q=0", {"gzip"}), ("identity, gzip;q=0, br;q=0", {"gzip", "br"})],
    ids=["br-refused", "gzip-refused", "both-refused"],
)
def test_a_coding_with_q_zero_is_never_used(client: httpx.Client, accept: str, refused: set[str]) -> None:
    response, raw = fetch_raw(client, "/opds/books", {"Accept-Encoding": accept})
    assert response.status_code == 200
    coding = response.headers.get("content-encoding", "identity")
    assert coding not in refused  # q=0 means not acceptable (RFC 9110 12.5.3)
    assert coding in {"identity", *DECODERS}
    decoded = raw if coding == "identity" else DECODERS[coding](raw)
    assert decoded == identity_body(client, "/opds/books")


@pytest.mark.parametrize("path", ["/download/1/epub", "/download/29/txt", "/download/19/pdf", "/covers/1"])
def test_downloads_and_covers_are_never_compressed(client: httpx.Client, path: str) -> None:
    response, raw = fetch_raw(client, path, {"Accept-Encoding": "br, gzip, deflate"})
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert raw == identity_body(client, path)
    assert int(response.headers["content-length"]) == len(raw)


# Conditional requests


@pytest.mark.parametrize("path", FEEDS)
def test_feed_has_a_weak_etag_and_last_modified(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    # Weak: the same feed goes out as identity, gzip or brotli bytes (RFC 9110 8.8.3).
    assert response.headers["etag"].startswith('W/"')
    assert "User-Agent" in response.headers["vary"]
    assert email.utils.parsedate_to_datetime(response.headers["last-modified"]).tzinfo is not None


@pytest.mark.parametrize("path", FEEDS)
def test_if_none_match_with_the_feed_etag_is_a_304_without_body(client: httpx.Client, path: str) -> None:
    etag = client.get(path).headers["etag"]
    response = client.get(path, headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag


@pytest.mark.parametrize("path", FEEDS)
def test_if_modified_since_the_last_modified_is_a_304(client: httpx.Client, path: str) -> None:
    modified = client.get(path).headers["last-modified"]
    response = client.get(path, headers={"If-Modified-Since": modified})
    assert response.status_code == 304
    assert response.content == b""


@pytest.mark.parametrize("path", FEEDS)
def test_if_modified_since_an_earlier_date_sends_the_feed(client: httpx.Client, path: str) -> None:
    modified = email.utils.parsedate_to_datetime(client.get(path).headers["last-modified"])
    earlier = email.utils.format_datetime(modified - dt.timedelta(days=1), usegmt=True)
    response = client.get(path, headers={"If-Modified-Since": earlier})
    assert response.status_code == 200
    assert response.content == client.get(path).content


@pytest.mark.parametrize("path", FEEDS)
def test_another_host_gets_another_etag(client: httpx.Client, path: str) -> None:
    here = client.get(path)
    elsewhere = client.get(path, headers={"Host": "books.example.net"})
    assert elsewhere.status_code == 200
    assert elsewhere.headers["etag"] != here.headers["etag"]


# Media types and OpenSearch


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/opds", NAVIGATION),
        ("/opds/authors", NAVIGATION),
        ("/opds/tags", NAVIGATION),
        ("/opds/books", ACQUISITION),
        ("/opds/books?author=1", ACQUISITION),
        ("/opds/books/1", ENTRY),
        ("/opds/v2", OPDS2),
        ("/opds/v2/authors", OPDS2),
        ("/opds/v2/books", OPDS2),
        ("/opds/v2/books/1", PUBLICATION),
        ("/opds/opensearch.xml", OPENSEARCH),
    ],
)
def test_each_document_has_its_media_type(client: httpx.Client, path: str, media_type: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type


def test_opensearch_template_finds_a_book_by_title(client: httpx.Client) -> None:
    description = etree.fromstring(client.get("/opds/opensearch.xml").content)
    (url,) = description.iterfind(f"{{{OPENSEARCH_NS}}}Url")
    assert url.get("type") == ACQUISITION
    template = str(url.get("template"))
    assert "{searchTerms}" in template
    response = client.get(template.replace("{searchTerms}", quote("Lantern Keeper")))
    assert response.status_code == 200
    assert response.headers["content-type"] == ACQUISITION
    assert "The Lantern Keeper" in entry_titles(response.content)


# KOReader


@pytest.mark.parametrize("path", ["/opds", "/opds/books?sort=new", "/covers/1", "/download/1/epub"])
def test_koreader_head_then_get_agree(client: httpx.Client, path: str) -> None:
    head = client.head(path, headers=KOREADER)
    got = client.get(path, headers=KOREADER)
    assert (head.status_code, got.status_code) == (200, 200)
    assert head.content == b""
    assert "content-encoding" not in got.headers
    assert int(got.headers["content-length"]) == len(got.content)
    for name in ("content-type", "content-length", "etag", "last-modified"):
        assert head.headers[name] == got.headers[name], name


def _entry_for(feed: bytes, title: str) -> etree._Element:
    (entry,) = [
        e for e in etree.fromstring(feed).iterfind(f"{{{ATOM_NS}}}entry") if e.findtext(f"{{{ATOM_NS}}}title") == title
    ]
    return entry


def _author_names(entry: etree._Element) -> list[str | None]:
    return [author.findtext(f"{{{ATOM_NS}}}name") for author in entry.iterfind(f"{{{ATOM_NS}}}author")]


def test_koreader_gets_all_authors_in_one_element(client: httpx.Client) -> None:
    # KOReader's parser keeps only the last of repeated elements (shared/specs/koreader-sync.md B.2).
    path = "/opds/books?sort=title&limit=200"
    koreader = _entry_for(client.get(path, headers=KOREADER).content, "Second Tide")
    thorium = _entry_for(client.get(path, headers={"User-Agent": "Thorium/3.0"}).content, "Second Tide")
    assert _author_names(koreader) == ["John Roe & Jane Doe & Ada Quill"]
    assert _author_names(thorium) == ["John Roe", "Jane Doe", "Ada Quill"]


def test_acquisition_links_end_in_the_file_extension(client: httpx.Client) -> None:
    # KOReader takes a download's file type from the extension at the end of the href (B.2).
    entry = etree.fromstring(client.get("/opds/books/18", headers=KOREADER).content)
    hrefs = sorted(
        link.get("href", "")
        for link in entry.iterfind(f"{{{ATOM_NS}}}link")
        if link.get("rel", "").startswith("http://opds-spec.org/acquisition")
    )
    assert [httpx.URL(href).path for href in hrefs] == ["/download/18/18.epub", "/download/18/18.pdf"]
    for href in hrefs:
        assert client.head(href, headers=KOREADER).status_code == 200


# Reverse proxy


@pytest.mark.parametrize("path", ["/opds", "/opds/books?sort=title&limit=10", "/opds/books/21"])
def test_atom_links_use_the_public_base_url(proxied_server: LiveServer, path: str) -> None:
    with proxied_server.client() as http:
        response = http.get(path)
    assert response.status_code == 200
    hrefs = atom_hrefs(response.content)
    assert hrefs
    assert [href for href in hrefs if not href.startswith(f"{PUBLIC_BASE}/")] == []


@pytest.mark.parametrize("path", ["/opds/v2", "/opds/v2/books?sort=title&limit=10"])
def test_opds2_links_use_the_public_base_url(proxied_server: LiveServer, path: str) -> None:
    with proxied_server.client() as http:
        response = http.get(path)
    assert response.status_code == 200
    hrefs = list(json_hrefs(msgspec.json.decode(response.content)))
    assert hrefs
    assert [href for href in hrefs if not href.startswith(f"{PUBLIC_BASE}/")] == []


def test_opensearch_template_uses_the_public_base_url(proxied_server: LiveServer) -> None:
    with proxied_server.client() as http:
        description = etree.fromstring(http.get("/opds/opensearch.xml").content)
    (url,) = description.iterfind(f"{{{OPENSEARCH_NS}}}Url")
    assert str(url.get("template")).startswith(f"{PUBLIC_BASE}/opds/books?")


# The rendered-bytes cache


def test_a_feed_is_rendered_once_then_served_from_the_cache(client: httpx.Client) -> None:
    path = "/opds/books?sort=title&limit=13"
    first, second = client.get(path), client.get(path)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    assert first.content == second.content
    assert first.headers["etag"] == second.headers["etag"]


def test_a_calibre_write_changes_the_generation_and_misses_the_cache(tmp_path: Path) -> None:
    library = copy_fixture_library(tmp_path / "library")
    server = start_server(library, tmp_path / "data", tmp_path / "server.log")
    try:
        with server.client() as http:
            before = http.get("/opds/books?sort=new")
            assert http.get("/opds/books?sort=new").headers["x-cache"] == "hit"
            stat = (library / "metadata.db").stat()
            os.utime(library / "metadata.db", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
            after = http.get("/opds/books?sort=new")
        assert after.headers["x-cache"] == "miss"
        assert after.headers["etag"] != before.headers["etag"]
    finally:
        stop_server(server)
