"""Calibre writes while the server runs: every request made after calibredb returns sees the write,
and a Calibre holding its lock never turns the catalogue into errors.

Real calibredb against a private copy of the fixture library, the real server over HTTP.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.benchmark.library import run_calibre
from tests.conftest import LiveServer, copy_fixture_library, start_server, stop_server
from tests.server.reading import atom_at, strings

NEWEST = "/opds/books?sort=new"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    library = copy_fixture_library(tmp_path / "library")
    live = start_server(library, tmp_path / "data", tmp_path / "server.log")
    yield live
    stop_server(live)


def newest_titles(http: httpx.Client) -> list[str]:
    return strings(atom_at(http, NEWEST), "/a:feed/a:entry/a:title/text()")


def epub_of(library: Path) -> Path:
    return next(library.glob("*/*/*.epub"))


def test_a_book_added_by_calibredb_is_in_the_very_next_request(server: LiveServer, tmp_path: Path) -> None:
    with server.client() as http:
        before = http.get(NEWEST)
        assert before.status_code == 200
        assert "Zanzibar Quokka Almanac" not in before.text
        source = tmp_path / "almanac.epub"
        source.write_bytes(epub_of(server.library).read_bytes())
        output = run_calibre(
            "calibredb", "add", "--library-path", str(server.library), "--title", "Zanzibar Quokka Almanac", str(source)
        )
        assert "Added book ids" in output, output
        # No sleep: the watcher may not have fired yet; the request itself must notice the write.
        assert newest_titles(http)[0] == "Zanzibar Quokka Almanac"
        stale = http.get(NEWEST, headers={"If-None-Match": before.headers["etag"]})
        assert stale.status_code == 200, "the old ETag must not validate after a change"
        found = http.get("/opds/books", params={"query": "quokka"})
        assert "Zanzibar Quokka Almanac" in found.text
        book_id = output.rsplit(":", 1)[1].strip()
        run_calibre("calibredb", "remove", "--permanent", "--library-path", str(server.library), book_id)
        assert "Zanzibar Quokka Almanac" not in newest_titles(http)
        assert http.get(f"/opds/books/{book_id}").status_code == 404
        assert "Zanzibar Quokka Almanac" not in http.get("/opds/books", params={"query": "quokka"}).text


def test_calibre_holding_its_lock_leaves_the_last_good_catalogue_serving(server: LiveServer) -> None:
    database = server.library / "metadata.db"
    with server.client() as http:
        titles = newest_titles(http)
        with closing(sqlite3.connect(database, timeout=1, isolation_level=None)) as calibre:
            calibre.execute("BEGIN EXCLUSIVE")
            calibre.execute("UPDATE comments SET text = 'Rewritten while locked' WHERE book = 1")
            os.utime(database)  # the server sees a change and must read metadata.db, which is locked
            started = time.monotonic()
            during = http.get(NEWEST)
            waited = time.monotonic() - started
            assert during.status_code == 200, during.text[:300]
            assert newest_titles(http) == titles
            assert http.get("/health").json()["calibre"] is True
            calibre.execute("ROLLBACK")
        assert waited < 10, f"a request waited {waited:.1f} s on Calibre's lock"
        assert newest_titles(http) == titles
