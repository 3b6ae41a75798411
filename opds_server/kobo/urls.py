"""Absolute URLs a Kobo is sent, and the one device quirk they work around (spec 4.4).

A Kobo's ``Host`` header has no port even when its ``api_endpoint`` has one (Komga's
``KoboMissingPortFilter``; calibre-web#1227; bookorbit#1281), and the device stores the URLs it
is sent in its configuration file, so a wrong one persists until a later good sync. So: with
``OPDS_BASE_URL`` set, every URL comes from it; without, from the request's scheme and host with
the port the server is listening on (from the ASGI scope), never the port-less ``Host`` alone.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import msgspec
from litestar import Request


class KoboUrls(msgspec.Struct, frozen=True, kw_only=True):
    public: str
    """``scheme://host[:port][/prefix]``: the public base URL of the server."""
    token: str

    @property
    def base(self) -> str:
        """The device's endpoint: ``<public>/kobo/<token>``."""
        return f"{self.public}/kobo/{self.token}"

    @property
    def site(self) -> str:
        """``scheme://host[:port]`` only: the reading-services host, whose path the device drops."""
        parts = urlsplit(self.public)
        return f"{parts.scheme}://{parts.netloc}"

    def download(self, book_uuid: str, book_format: str) -> str:
        return f"{self.base}/v1/books/{book_uuid}/file/{book_format.lower()}"


def public_base(request: Request[Any, Any, Any], configured: str | None) -> str:
    """The server's public base URL as a Kobo must be told it."""
    if configured:
        return configured.rstrip("/")
    scheme = request.scope.get("scheme", "http")
    host = request.headers.get("host", "")
    server = request.scope.get("server")
    if host and ":" not in host.rsplit("]", 1)[-1] and server and server[1]:
        default = 443 if scheme == "https" else 80
        if int(server[1]) != default:
            host = f"{host}:{server[1]}"
    if not host and server:
        host = f"{server[0]}:{server[1]}"
    return f"{scheme}://{host}{request.scope.get('root_path', '')}".rstrip("/")
