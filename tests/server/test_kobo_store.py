"""The optional Kobo store proxy (spec 10) against a local stand-in for ``storeapi.kobo.com``.

The stand-in answers the store calls the proxy makes and records what it received, so the tests
check both what the device gets and what the store was sent. With the store gone, every call is
answered locally as if the proxy were off.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import copy_fixture_library, start_server, stop_server
from tests.server.api_client import add_user, login
from tests.server.kobo_device import Kobo, entitlement_ids, kobo_books

STORE_BOOK = "5a1c0a9e-0000-4000-8000-0000000000aa"


def store_item(number: int) -> dict[str, Any]:
    return {"NewEntitlement": {"BookEntitlement": {"Id": f"{STORE_BOOK[:-2]}{number:02d}"}, "BookMetadata": {}}}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeStore:
    url: str
    seen: list[Seen] = field(default_factory=list)

    def calls(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path.split("?")[0] == path]


def _handler(store: FakeStore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            return

        def _answer(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Set-Cookie", "store-session=1")  # must not reach the device
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            store.seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            path = self.path.split("?")[0]
            if path == "/v1/initialization":
                resources = {
                    "library_sync": "https://storeapi.kobo.com/v1/library/sync",
                    "store_only": "https://storeapi.kobo.com/v1/store/only",
                    "oauth_host": "https://oauth.kobo.com",
                    "image_host": "https://cdn.kobo.com/book-images/",
                }
                self._answer(200, {"Resources": resources})
            elif path == "/v1/auth/device":
                self._answer(200, {"AccessToken": "store-access", "RefreshToken": "r", "TokenType": "Bearer"})
            elif path == "/v1/library/sync":
                if self.headers.get("x-kobo-synctoken") == "store.page2":
                    self._answer(200, [store_item(2)], {"x-kobo-synctoken": "store.done"})
                else:
                    headers = {"x-kobo-synctoken": "store.page2", "x-kobo-sync": "continue", "x-kobo-sync-mode": "x"}
                    self._answer(200, [store_item(1)], headers)
            else:
                self._answer(200, {"store": path, "method": self.command})

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle  # noqa: N815  # http.server's names

    return Handler


@pytest.fixture(scope="module")
def fake_store() -> Iterator[FakeStore]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    store = FakeStore(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(store)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield store
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class Proxied:
    url: str
    library: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def proxied(fake_store: FakeStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    work = tmp_path_factory.mktemp("kobo-store")
    library = copy_fixture_library(work / "library")
    env = {
        "OPDS_DATA_DIR": str(work / "data"),
        "OPDS_KOBO_STORE_PROXY": "true",
        "OPDS_KOBO_STORE_URL": fake_store.url,
    }
    server = start_server(library, work / "data", work / "server.log", env)
    try:
        add_user(env, "ada")
        yield Proxied(url=server.url, library=library, env=env)
    finally:
        stop_server(server)


def register(proxied: Proxied) -> Kobo:
    with httpx.Client(base_url=proxied.url) as http:
        token = login(http, "ada").access_token
        created = http.post("/api/kobo/devices", json={}, headers={"Authorization": f"Bearer {token}"}).json()
    return Kobo(proxied.url, created["api_endpoint"].rsplit("/", 1)[1])


def test_initialization_starts_from_the_stores_map_and_points_it_at_us(proxied: Proxied, fake_store: FakeStore) -> None:
    kobo = register(proxied)
    resources = kobo.call("GET", "/v1/initialization").json()["Resources"]
    base = f"{proxied.url}/kobo/{kobo.token}"
    assert resources["store_only"] == f"{base}/v1/store/only"
    assert resources["library_sync"] == f"{base}/v1/library/sync"
    assert resources["oauth_host"] == "https://oauth.kobo.com"  # the store handles its own tokens
    assert resources["image_url_template"].startswith(f"{base}/v1/books/")
    (sent,) = fake_store.calls("/v1/initialization")[-1:]
    assert sent.headers["authorization"] == "Bearer made-up-by-the-device"
    assert sent.headers["x-kobo-userkey"] == "5c0b9c8a-userkey"


def test_store_calls_go_to_the_store_server_side_without_its_cookies(proxied: Proxied, fake_store: FakeStore) -> None:
    kobo = register(proxied)
    assert kobo.call("POST", "/v1/auth/device", json={"UserKey": "k"}).json()["AccessToken"] == "store-access"
    assert kobo.call("GET", "/v1/user/profile").json() == {"store": "/v1/user/profile", "method": "GET"}
    forwarded = kobo.call("POST", "/v1/assets/anything?x=1", json={"DiffRequests": [1]})  # no route of ours
    assert forwarded.json() == {"store": "/v1/assets/anything", "method": "POST"}
    (seen,) = fake_store.calls("/v1/assets/anything")[-1:]
    assert json.loads(seen.body) == {"DiffRequests": [1]}
    assert seen.path.endswith("?x=1")
    assert "x-kobo-synctoken" not in seen.headers
    assert "cookie" not in seen.headers  # the store's cookie (set on every answer) is never kept
    state = kobo.call("PUT", f"/v1/library/{STORE_BOOK}/state", json={"ReadingStates": [{"EntitlementId": STORE_BOOK}]})
    assert state.json() == {"store": f"/v1/library/{STORE_BOOK}/state", "method": "PUT"}
    cover = kobo.call("GET", f"/v1/books/{STORE_BOOK}/thumbnail/355/530/false/image.jpg")
    assert cover.status_code == 307
    assert cover.headers["location"] == f"https://cdn.kobo.com/book-images/{STORE_BOOK}/355/530/false/image.jpg"


def test_the_stores_delta_follows_our_last_page_and_its_token_rides_in_ours(
    proxied: Proxied, fake_store: FakeStore
) -> None:
    kobo = register(proxied)
    store_token = "eyJ0eXAiOjF9.eyJJbnRlcm5hbFN5bmNUb2tlbiI6ImZpcnN0In0"  # from the device's days with Kobo
    first = kobo.sync_page(store_token)
    ours = set(kobo_books(proxied.library))
    assert set(entitlement_ids([first])) == ours | {f"{STORE_BOOK[:-2]}01"}
    assert first.has_more  # the store's continue
    assert fake_store.calls("/v1/library/sync")[-1].headers["x-kobo-synctoken"] == store_token
    second = kobo.sync_page()
    assert entitlement_ids([second]) == [f"{STORE_BOOK[:-2]}02"]
    assert not second.has_more
    assert fake_store.calls("/v1/library/sync")[-1].headers["x-kobo-synctoken"] == "store.page2"
    assert "." not in second.token  # ours, with the store's inside


def test_a_store_that_cannot_be_reached_leaves_everything_answered_locally(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    work = tmp_path_factory.mktemp("kobo-store-gone")
    library = copy_fixture_library(work / "library")
    env = {
        "OPDS_DATA_DIR": str(work / "data"),
        "OPDS_KOBO_STORE_PROXY": "true",
        "OPDS_KOBO_STORE_URL": "http://127.0.0.1:9",
    }
    server = start_server(library, work / "data", work / "server.log", env)
    try:
        add_user(env, "ada")
        kobo = register(Proxied(url=server.url, library=library, env=env))
        resources = kobo.call("GET", "/v1/initialization").json()["Resources"]
        assert resources["oauth_host"] == f"{server.url}/kobo/{kobo.token}/oauth"  # the built-in map, local mode
        assert kobo.call("POST", "/v1/auth/device", json={}).json()["TokenType"] == "Bearer"
        assert kobo.call("GET", "/v1/user/profile").json() == {}
        assert kobo.call("GET", "/v1/assets/x").json() == {}
        pages = kobo.sync()
        assert sorted(entitlement_ids(pages)) == sorted(kobo_books(library))
    finally:
        stop_server(server)
