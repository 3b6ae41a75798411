"""The URLs a Kobo is sent (spec 4.4): from ``OPDS_BASE_URL`` when set, else from the request with
the port the server listens on, since a Kobo's ``Host`` header has none."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Request

from opds_server.kobo.urls import KoboUrls, public_base


def request(host: str | None, *, scheme: str = "http", port: int = 8080, root_path: str = "") -> Request[Any, Any, Any]:
    headers = [(b"host", host.encode())] if host is not None else []
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/kobo/x/v1/initialization",
        "root_path": root_path,
        "scheme": scheme,
        "server": ("10.0.0.5", port),
        "headers": headers,
        "query_string": b"",
    }
    return Request(scope)  # type: ignore[arg-type]  # a hand-made ASGI scope


@pytest.mark.parametrize(
    ("host", "scheme", "port", "root_path", "expected"),
    [
        ("books.lan", "http", 8080, "", "http://books.lan:8080"),  # the Kobo dropped the port
        ("books.lan:8080", "http", 8080, "", "http://books.lan:8080"),
        ("books.lan", "http", 80, "", "http://books.lan"),
        ("books.lan", "https", 443, "/calibre", "https://books.lan/calibre"),
        ("[::1]", "http", 9000, "", "http://[::1]:9000"),
        (None, "http", 8080, "", "http://10.0.0.5:8080"),
    ],
)
def test_the_port_comes_from_the_listening_socket_when_host_lacks_it(
    host: str | None, scheme: str, port: int, root_path: str, expected: str
) -> None:
    assert public_base(request(host, scheme=scheme, port=port, root_path=root_path), None) == expected


def test_the_configured_base_url_wins_over_the_request() -> None:
    found = public_base(request("internal:8000"), "https://books.example.org:8443/calibre/")
    assert found == "https://books.example.org:8443/calibre"
    urls = KoboUrls(public=found, token="ab" * 16)
    assert urls.base == f"https://books.example.org:8443/calibre/kobo/{'ab' * 16}"
    assert urls.site == "https://books.example.org:8443"
    assert urls.download("0e6a7b4c-2f7c-4a59-9c1e-3f1e2d4c5b6a", "KEPUB").endswith(
        "/v1/books/0e6a7b4c-2f7c-4a59-9c1e-3f1e2d4c5b6a/file/kepub"
    )
