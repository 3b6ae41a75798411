"""A Kobo as the server sees one: the device's headers and calls (spec 4.1, 12), over real HTTP.

Every response is checked for what a device cannot cope with: a ``Set-Cookie`` (spec 3) or an
HTML error page.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec

USER_AGENT = (
    "Mozilla/5.0 (Linux; U; Android 2.0; en-us;) AppleWebKit/538.1 (KHTML, like Gecko) Version/4.0 Mobile"
    " Safari/538.1 (Kobo Touch 0393/4.44.23552)"
)
SYNC_QUERY = "?Filter=ALL&DownloadUrlFilter=Generic,Android&PrioritizeRecentReads=true"


@dataclass
class Page:
    items: list[dict[str, Any]]
    token: str
    has_more: bool
    body: bytes
    header_bytes: int


@dataclass
class Kobo:
    """One device: its path token and the sync token it last received."""

    url: str
    token: str
    sync_token: str | None = None
    pages: list[Page] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/kobo/{self.token}",
            timeout=30,
            headers={
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                "Accept-Encoding": "gzip",
                "Authorization": "Bearer made-up-by-the-device",
                "x-kobo-userkey": "5c0b9c8a-userkey",
                "x-kobo-deviceid": "d3v1c3",
            },
        )

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self.client() as http:
            response = http.request(method, path, **kwargs)
        assert "set-cookie" not in response.headers, f"{method} {path} set a cookie"
        assert not response.headers.get("content-type", "").startswith("text/html"), f"{method} {path}: HTML"
        return response

    def sync_page(self, token: str | None = None) -> Page:
        """One ``/v1/library/sync`` call with ``token`` (default: the last one received)."""
        sent = self.sync_token if token is None else token
        headers = {"x-kobo-synctoken": sent} if sent else {}
        response = self.call("GET", "/v1/library/sync" + SYNC_QUERY, headers=headers)
        assert response.status_code == 200, response.text[:500]
        assert response.headers["content-type"].startswith("application/json")
        new_token = response.headers["x-kobo-synctoken"]
        assert new_token, "every sync response carries a token (calibre-web#1246)"
        raw = sum(len(k) + len(v) + 4 for k, v in response.headers.raw)
        page = Page(
            items=msgspec.json.decode(response.content),
            token=new_token,
            has_more=response.headers.get("x-kobo-sync") == "continue",
            body=response.content,
            header_bytes=raw,
        )
        self.sync_token = new_token
        return page

    def sync(self, *, max_pages: int = 100) -> list[Page]:
        """Sync until a page has no ``continue``, as the device does; every page it got."""
        pages: list[Page] = []
        for _ in range(max_pages):
            page = self.sync_page()
            pages.append(page)
            if not page.has_more:
                return pages
        raise AssertionError(f"sync did not end in {max_pages} pages")


def items_of(pages: list[Page], kind: str) -> list[dict[str, Any]]:
    return [item[kind] for page in pages for item in page.items if kind in item]


def entitlement_ids(pages: list[Page], kind: str = "NewEntitlement") -> list[str]:
    return [item["BookEntitlement"]["Id"] for item in items_of(pages, kind)]


def kobo_books(library: Path) -> dict[str, int]:
    """uuid -> id of the books a Kobo should get: an EPUB or KEPUB file on disk."""
    with closing(sqlite3.connect(f"file:{library / 'metadata.db'}?mode=ro", uri=True)) as connection:
        rows = connection.execute(
            "SELECT b.id, b.uuid, b.path, d.name, d.format FROM books b JOIN data d ON d.book = b.id"
            " WHERE d.format IN ('EPUB', 'KEPUB')"
        ).fetchall()
    return {
        str(uuid): int(book)
        for book, uuid, path, name, fmt in rows
        if (library / str(path) / f"{name}.{str(fmt).lower()}").is_file()
    }


def uuids_by_id(library: Path) -> dict[int, str]:
    with closing(sqlite3.connect(f"file:{library / 'metadata.db'}?mode=ro", uri=True)) as connection:
        return {int(i): str(u) for i, u in connection.execute("SELECT id, uuid FROM books")}


def chunks(iterable: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(iterable), size):
        yield iterable[start : start + size]
