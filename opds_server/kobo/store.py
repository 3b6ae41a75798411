"""The optional proxy to the Kobo store (spec 10), for readers who also buy or borrow from Kobo.

Off by default: every call is then answered locally. On (``OPDS_KOBO_STORE_PROXY``), what is not
ours goes to the store server-side, never by redirect (a Kobo turns a redirected POST into a
GET): unknown calls, the initialization map (then rewritten to us), device authentication, the
store's part of a library sync (after our last page, with the store's token kept inside ours),
and reading states, metadata and collections of ids we do not have. Store covers redirect to
Kobo's CDN. The device's credentials and ``x-kobo-*`` headers go along; the sync token goes only
to the sync call and only as the store's own. A store that fails or times out is answered
locally instead, so the store being down never breaks a sync with us.
"""

from __future__ import annotations

import logging
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
import msgspec
from litestar import Request, Response
from litestar.datastructures import MutableScopeHeaders
from litestar.response.base import ASGIResponse
from litestar.types import Receive, Scope, Send

log = logging.getLogger(__name__)

CDN = "https://cdn.kobo.com/book-images"
_FORWARDED = {"authorization", "user-agent", "accept", "accept-language", "content-type"}
_HOP_BY_HOP = {"connection", "content-encoding", "content-length", "transfer-encoding", "keep-alive", "set-cookie"}
TIMEOUT = httpx.Timeout(10.0, connect=2.0)
"""calibre-web's: 2 s to connect, 10 s to answer."""


class StoreAnswer(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


def forwarded_headers(request: Request[Any, Any, Any], *, sync_token: str | None = None) -> dict[str, str]:
    """The device's headers the store needs; ``x-kobo-synctoken`` only as the store's own token."""
    headers = {
        name: value
        for name, value in request.headers.items()
        if (name in _FORWARDED or name.startswith("x-kobo-")) and name != "x-kobo-synctoken"
    }
    if sync_token:
        headers["x-kobo-synctoken"] = sync_token
    return headers


class KoboStore:
    """The Kobo store's API, reached server-side."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # No cookie jar: one device's store session must never ride on another device's calls.
            jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
            self._client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False, cookies=jar)
        return self._client

    async def call(
        self, method: str, path: str, *, headers: dict[str, str], query: str = "", body: bytes = b""
    ) -> StoreAnswer | None:
        """The store's answer to one call (``path`` after the token, e.g. ``/v1/user/profile``);
        ``None`` when the store cannot be reached (logged)."""
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        try:
            response = await self.client.request(method, url, headers=headers, content=body or None)
        except httpx.HTTPError as exc:
            log.warning("Kobo store %s %s failed: %s", method, path, exc)
            return None
        kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _HOP_BY_HOP]
        return StoreAnswer(status=response.status_code, headers=kept, body=response.content)

    async def forward(self, request: Request[Any, Any, Any], path: str, body: bytes) -> StoreAnswer | None:
        return await self.call(
            request.method,
            path,
            headers=forwarded_headers(request),
            query=request.url.query,
            body=body,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


async def send_answer(answer: StoreAnswer, send: Send) -> None:
    headers = MutableScopeHeaders()
    for name, value in answer.headers:
        headers.add(name, value)
    headers["content-length"] = str(len(answer.body))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers.headers})
    await send({"type": "http.response.body", "body": answer.body, "more_body": False})


MAX_FORWARDED_BODY = 1024 * 1024


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORWARDED_BODY:
            break  # a store call is small; the rest is not forwarded
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class _ForwardedCall(ASGIResponse):
    def __init__(self, store: KoboStore, request: Request[Any, Any, Any], path: str) -> None:
        super().__init__(body=b"")
        self.store = store
        self.request = request
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)  # no route matched: Litestar's request.body() needs one
        answer = await self.store.forward(self.request, self.path, body)
        if answer is None:
            answer = StoreAnswer(status=200, headers=[("content-type", "application/json; charset=utf-8")], body=b"{}")
        await send_answer(answer, send)


class ForwardedResponse(Response[bytes]):
    """The request, forwarded to the store when the response is sent (or ``200 {}`` when the store
    fails): what the 404 handler answers for a Kobo call no route of ours matches, since an
    exception handler cannot await."""

    def __init__(self, store: KoboStore, path: str) -> None:
        super().__init__(content=b"")
        self.store = store
        self.path = path

    def to_asgi_response(self, app: Any, request: Request[Any, Any, Any], **kwargs: Any) -> ASGIResponse:
        return _ForwardedCall(self.store, request, self.path)
