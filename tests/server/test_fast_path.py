"""Repeated catalogue requests are answered from whole stored responses (opds_server/fastpath.py):
the same bytes and headers as the application's, but never to someone who may not have them,
never for another Host, client or coding, and never after the library changed."""

from __future__ import annotations

import base64
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, copy_fixture_library, start_server, stop_server
from tests.server.api_client import PASSWORDS, add_user

FEED = "/opds/books?sort=title"


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    work = tmp_path_factory.mktemp("fast-path")
    library = copy_fixture_library(work / "library")
    env = {"OPDS_DATA_DIR": str(work / "data"), "OPDS_ANONYMOUS_BROWSING": "false"}
    add_user(env, "ada")
    add_user(env, "bob")
    live = start_server(library, work / "data", work / "server.log", env)
    yield live
    stop_server(live)


@pytest.fixture
def ada(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client(headers=basic("ada", PASSWORDS["ada"])) as client:
        yield client


def comparable(response: httpx.Response) -> dict[str, str]:
    """Headers that must be the same when the same answer is sent again (each request has its own id)."""
    return {k: v for k, v in response.headers.items() if k not in {"date", "server", "x-cache", "x-request-id"}}


def test_a_repeated_request_gets_the_same_response_from_the_store(ada: httpx.Client) -> None:
    for coding in ("identity", "gzip", "br"):
        first = ada.get("/opds/v2/books?sort=author", headers={"Accept-Encoding": coding})
        second = ada.get("/opds/v2/books?sort=author", headers={"Accept-Encoding": coding})
        assert first.status_code == second.status_code == 200
        assert second.headers["x-cache"] == "hit"
        assert (comparable(second), second.content) == (comparable(first), first.content)


def test_a_stored_feed_is_never_given_without_a_valid_login(server: LiveServer, ada: httpx.Client) -> None:
    assert ada.get(FEED).status_code == 200
    assert ada.get(FEED).headers["x-cache"] == "hit"
    with server.client() as anonymous:
        refused = anonymous.get(FEED)
        assert refused.status_code == 401
        assert "<entry>" not in refused.text
        wrong = anonymous.get(FEED, headers=basic("ada", "not the password"))
        assert wrong.status_code == 401


def test_the_host_the_client_and_the_coding_each_get_their_own_response(ada: httpx.Client) -> None:
    plain = ada.get(FEED)
    other_host = ada.get(FEED, headers={"Host": "books.example.org:8443"})
    assert "books.example.org:8443" in other_host.text
    assert "books.example.org" not in ada.get(FEED).text
    koreader = ada.get("/opds/books?sort=new", headers={"User-Agent": "KOReader/2024.11"})
    generic = ada.get("/opds/books?sort=new", headers={"User-Agent": "Thorium/3.0"})
    assert koreader.content != generic.content  # KOReader gets one joined <author> (quirks.py)
    compressed = ada.get(FEED, headers={"Accept-Encoding": "gzip"})
    assert compressed.headers["content-encoding"] == "gzip"
    assert compressed.content == plain.content  # httpx decoded it: the same feed
    identity = ada.get(FEED, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in identity.headers


def test_revalidation_is_answered_from_the_store(ada: httpx.Client) -> None:
    first = ada.get(FEED)
    again = ada.get(FEED, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    assert "content-length" not in again.headers or again.headers["content-length"] == "0"


def test_a_library_change_is_never_hidden_by_the_store(server: LiveServer, ada: httpx.Client) -> None:
    before = ada.get(FEED)
    assert ada.get(FEED).headers["x-cache"] == "hit"
    database = server.library / "metadata.db"
    with closing(sqlite3.connect(database)) as calibre:
        # Calibre's triggers on books need its SQL functions: change a book's comments instead.
        calibre.execute("UPDATE comments SET text = 'Changed behind the store' WHERE book = 1")
        calibre.commit()
    os.utime(database)
    after = ada.get(FEED)
    assert after.headers["etag"] != before.headers["etag"]
    assert after.headers["x-cache"] == "miss"


def test_head_and_other_paths_go_through_the_application(ada: httpx.Client, server: LiveServer) -> None:
    head = ada.head(FEED)
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) > 0
    assert ada.get("/opds/books?sort=bogus").status_code == 400
    assert ada.get("/opds/books/999999").status_code == 404
    assert ada.get("/opds/books/999999").status_code == 404
    assert Path(server.data_dir).is_dir()


def book_file(server: LiveServer, book_id: int) -> Path:
    """Book ``book_id``'s EPUB in the server's library (the fixture keeps one per book folder)."""
    return next(server.library.glob(f"*/* ({book_id})/*.epub"))


def test_covers_and_books_are_sent_again_as_the_same_file(server: LiveServer, ada: httpx.Client) -> None:
    for path in ("/covers/1", "/covers/1/thumbnail", "/download/1/1.epub"):
        first, second = ada.get(path), ada.get(path)
        assert first.status_code == second.status_code == 200, path
        assert (comparable(second), second.content) == (comparable(first), first.content), path
    assert ada.get("/download/1/1.epub").content == book_file(server, 1).read_bytes()


def test_a_stored_book_answers_byte_ranges_exactly(server: LiveServer, ada: httpx.Client) -> None:
    data = book_file(server, 2).read_bytes()
    whole = ada.get("/download/2/2.epub")
    assert whole.status_code == 200
    for header, expected in (("bytes=0-99", data[:100]), ("bytes=100-", data[100:]), ("bytes=-50", data[-50:])):
        for _ in range(2):  # the first through the application, the second from the store
            part = ada.get("/download/2/2.epub", headers={"Range": header})
            assert part.status_code == 206, header
            assert part.content == expected, header
            assert part.headers["content-length"] == str(len(expected))
            start = len(data) - len(expected) if header.startswith("bytes=-") else int(header[6:].split("-")[0])
            assert part.headers["content-range"] == f"bytes {start}-{start + len(expected) - 1}/{len(data)}"
    stale = ada.get("/download/2/2.epub", headers={"Range": "bytes=0-9", "If-Range": '"not-the-etag"'})
    assert (stale.status_code, stale.content) == (200, data)
    beyond = ada.get("/download/2/2.epub", headers={"Range": f"bytes={len(data) + 10}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"


def test_a_book_file_changed_on_disk_is_never_sent_stale(server: LiveServer, ada: httpx.Client) -> None:
    path = book_file(server, 3)
    assert ada.get("/download/3/3.epub").content == path.read_bytes()
    assert ada.get("/download/3/3.epub").content == path.read_bytes()
    changed = path.read_bytes() + b"\0" * 100  # Calibre replacing the file would change it likewise
    path.write_bytes(changed)
    assert ada.get("/download/3/3.epub").content == changed
    with server.client() as anonymous:
        assert anonymous.get("/download/3/3.epub").status_code == 401
        # Covers are public (readers fetch images without credentials), from the store as well.
        assert anonymous.get("/covers/1/thumbnail").content == ada.get("/covers/1/thumbnail").content


def test_a_first_request_with_a_range_gets_its_range(server: LiveServer, ada: httpx.Client) -> None:
    data = book_file(server, 4).read_bytes()
    for _ in range(3):  # the first primes the store with the whole file's answer, without sending it
        part = ada.get("/download/4/4.epub", headers={"Range": "bytes=10-19"})
        assert (part.status_code, part.content) == (206, data[10:20])
        assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    with server.client() as anonymous:
        refused = anonymous.get("/download/5/5.epub", headers={"Range": "bytes=0-9"})
        assert refused.status_code == 401
        assert ada.get("/download/999999/999999.epub", headers={"Range": "bytes=0-9"}).status_code == 404


def test_each_reader_gets_their_own_root(server: LiveServer, ada: httpx.Client) -> None:
    with server.client(headers=basic("bob", PASSWORDS["bob"])) as bob:
        for root in ("/opds", "/opds/v2"):
            adas, adas_again = ada.get(root), ada.get(root)
            bobs, bobs_again = bob.get(root), bob.get(root)
            assert (adas_again.headers["x-cache"], bobs_again.headers["x-cache"]) == ("hit", "hit")
            assert adas_again.content == adas.content
            assert bobs_again.content == bobs.content
            assert adas.headers["etag"] != bobs.headers["etag"]  # their own feeds
            if root == "/opds":
                assert adas.content != bobs.content  # Atom ids name the user
    with server.client() as anonymous:
        assert anonymous.get("/opds").status_code == 401
