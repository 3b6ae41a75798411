"""HTTP plumbing shared by the routes: HEAD on every GET route, conditional requests, files with Range.

* ``get_and_head`` declares a route for GET and HEAD; ``HeadMiddleware`` drops the body of a HEAD
  answer but keeps its headers (Content-Length included), so HEAD and GET always agree.
* ``conditional`` answers ``If-None-Match`` / ``If-Modified-Since`` with a 304 before any rendering.
* ``FileResponse`` streams a file or one byte range of it (RFC 9110 section 14): 206 with
  Content-Range, 416 with ``Content-Range: bytes */size``. A whole file is handed to the server
  with ASGI ``pathsend`` when the server offers it (granian does).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import Any, cast

import anyio
from litestar import Request, Response, route
from litestar.enums import HttpMethod
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from opds_server.cache.rendered import RenderedCache, encode
from opds_server.errors import RangeNotSatisfiableError, problems
from opds_server.storage.files import CHUNK_SIZE, LibraryFiles, StorageError, StoredFile

log = logging.getLogger(__name__)

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

_ANSWERS = problems(400, 401, 404, 503)
"""What a catalogue or file route may answer besides its content: a bad parameter, a login needed,
no such book or category, or the library unavailable (a route may say otherwise)."""

get_and_head = partial(route, http_method=[HttpMethod.GET, HttpMethod.HEAD], sync_to_thread=True, responses=_ANSWERS)
"""A route answering GET and HEAD (Litestar routes HEAD only where it is declared), run in a thread."""

get_and_head_async = partial(route, http_method=[HttpMethod.GET, HttpMethod.HEAD], responses=_ANSWERS)
"""The same for async handlers, which answer on the event loop and send blocking work to a thread."""


class AcceptEncodingMiddleware:
    """Rewrite ``Accept-Encoding`` to the codings the client accepts, best first (RFC 9110 12.5.3).

    Litestar's compression looks only for the name ``br`` or ``gzip`` in the header, so
    ``gzip;q=0`` (refused) would still get gzip. Codings with ``q=0`` are dropped here, before it
    looks.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if str(scope["type"]) == "http":
            headers = [(k, v) for k, v in scope["headers"] if k != b"accept-encoding"]
            raw = b",".join(v for k, v in scope["headers"] if k == b"accept-encoding")
            if raw:
                accepted = acceptable_codings(raw.decode("latin-1"))
                headers.append((b"accept-encoding", ", ".join(accepted).encode("latin-1") or b"identity"))
                scope = cast("Scope", {**scope, "headers": headers})
        await self.app(scope, receive, send)


def acceptable_codings(header: str) -> list[str]:
    """The codings of an ``Accept-Encoding`` value with q > 0, highest q first."""
    weighted = []
    for position, item in enumerate(header.split(",")):
        name, *parameters = (part.strip() for part in item.split(";"))
        quality = 1.0
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if name and quality > 0:
            weighted.append((-quality, position, name.lower()))
    return [name for _, _, name in sorted(weighted)]


_PAGE_POLICY = (
    b"default-src 'none'; img-src * data:; style-src 'unsafe-inline'; form-action 'self';"
    b" frame-ancestors 'none'; base-uri 'none'"
)


def security_headers(headers: list[tuple[bytes, bytes]]) -> None:
    """Add what every answer carries unless it set its own: no MIME sniffing, no framing, referrers
    kept to this site; an HTML page also a Content-Security-Policy that runs no script at all and
    loads nothing but images (covers may come from S3) from elsewhere."""
    present = {k.lower() for k, _ in headers}
    content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
    for name, value in _EVERY_ANSWER:
        if name not in present:
            headers.append((name, value))
    if content_type.startswith(b"text/html") and b"content-security-policy" not in present:
        headers.append((b"content-security-policy", _PAGE_POLICY))


_EVERY_ANSWER = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)


class HeadMiddleware:
    """Send a HEAD answer's status and headers, never its body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if str(scope["type"]) != "http" or cast("HTTPScope", scope)["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            kind = str(message["type"])
            if kind == "http.response.start":
                await send(message)
            elif kind == "http.response.pathsend" or not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app(scope, receive, send_without_body)


def http_date(moment: dt.datetime) -> str:
    return email.utils.format_datetime(moment.astimezone(dt.UTC), usegmt=True)


def make_etag(*parts: object, weak: bool = False) -> str:
    """An ETag from whatever determines the bytes; weak where the bytes vary by content coding."""
    digest = hashlib.blake2s("\x1f".join(map(str, parts)).encode(), digest_size=12).hexdigest()
    return f'W/"{digest}"' if weak else f'"{digest}"'


def is_fresh(request: Request[Any, Any, Any], etag: str, last_modified: dt.datetime | None) -> bool:
    """Whether the client's cached copy is current (If-None-Match wins over If-Modified-Since)."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return etag.removeprefix("W/") in tags or "*" in tags  # weak comparison (RFC 9110 13.1.2)
    since = request.headers.get("if-modified-since")
    if since and last_modified is not None:
        try:
            parsed = email.utils.parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
        if parsed.tzinfo is None:
            return False
        return last_modified.replace(microsecond=0) <= parsed
    return False


def validators(etag: str, last_modified: dt.datetime | None, cache_control: str) -> dict[str, str]:
    headers = {"ETag": etag, "Cache-Control": cache_control}
    if last_modified is not None:
        headers["Last-Modified"] = http_date(last_modified)
    return headers


def conditional(
    request: Request[Any, Any, Any],
    *,
    etag: str,
    last_modified: dt.datetime | None,
    cache_control: str,
    media_type: str,
    render: Callable[[], bytes],
    cache: RenderedCache | None = None,
) -> Response[bytes]:
    """A 304 when the client's copy is current; otherwise the bytes (from ``cache`` by ETag, or
    rendered) with validators and ``X-Cache: hit|miss``."""
    unchanged = not_modified(
        request, etag=etag, last_modified=last_modified, cache_control=cache_control, media_type=media_type
    )
    if unchanged is not None:
        return unchanged
    body, was_cached = cache.read_or_render(etag, render) if cache is not None else (render(), None)
    coding = preferred_coding(request) if len(body) >= COMPRESS_FROM else None
    if coding is not None:
        body = cache.encoded(etag, body, coding) if cache is not None else encode(body, coding)
    return full_response(
        body,
        was_cached=was_cached,
        etag=etag,
        last_modified=last_modified,
        cache_control=cache_control,
        media_type=media_type,
        coding=coding,
    )


def not_modified(
    request: Request[Any, Any, Any],
    *,
    etag: str,
    last_modified: dt.datetime | None,
    cache_control: str,
    media_type: str,
) -> Response[bytes] | None:
    """A 304 with the validators when the client's copy is current; ``None`` otherwise."""
    if not is_fresh(request, etag, last_modified):
        return None
    headers = validators(etag, last_modified, cache_control)
    return Response(content=b"", status_code=304, headers=headers, media_type=media_type)


COMPRESS_FROM = 512
"""Bytes below which a feed is sent as it is: compressing a small body saves less than it costs."""


def preferred_coding(request: Request[Any, Any, Any]) -> str | None:
    """``br`` or ``gzip``, whichever the client prefers (``AcceptEncodingMiddleware`` has ordered
    and filtered its ``Accept-Encoding``); ``None`` for identity."""
    for name in request.headers.get("accept-encoding", "").split(","):
        coding = name.strip()
        if coding in {"br", "gzip"}:
            return coding
        if coding == "identity":
            return None
    return None


def full_response(
    body: bytes,
    *,
    was_cached: bool | None,
    etag: str,
    last_modified: dt.datetime | None,
    cache_control: str,
    media_type: str,
    coding: str | None = None,
) -> Response[bytes]:
    """The bytes with their validators; ``X-Cache`` says where they came from, when a cache was asked.
    ``coding``: ``body`` is already compressed with it (feeds are compressed once, then cached)."""
    headers = validators(etag, last_modified, cache_control)
    if was_cached is not None:
        headers["X-Cache"] = "hit" if was_cached else "miss"
    if coding is not None:
        headers["Content-Encoding"] = coding
    return Response(content=body, headers=headers, media_type=media_type)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range ``(start, end inclusive)`` asked for; ``None`` to send the whole file.

    A header we do not understand, or one asking for several ranges, is ignored as RFC 9110
    allows (the client gets a 200 with everything).

    Raises:
        RangeNotSatisfiableError: the range starts past the end of the file.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None or (not match[1] and not match[2]):
        return None
    if not match[1]:
        suffix = int(match[2])
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiableError(
                f"Range {header!r} asks for no bytes of a {size}-byte file",
                headers={"Content-Range": f"bytes */{size}"},
            )
        return (max(0, size - suffix), size - 1)
    start = int(match[1])
    end = min(int(match[2]), size - 1) if match[2] else size - 1
    if start >= size or (match[2] and int(match[2]) < start):
        raise RangeNotSatisfiableError(
            f"Range {header!r} is outside the file, which has {size} bytes",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return (start, end)


def _read_range(path: Path, start: int, length: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(start)
        return handle.read(length)


class _FileASGIResponse(ASGIResponse):
    def __init__(self, body: FileBody, *, is_whole: bool, **kwargs: Any) -> None:
        super().__init__(content_length=body.length, **kwargs)
        self.file_body = body
        self.is_whole = is_whole

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.file_body
        try:
            await self.start_response(send=send)
            if cast("HTTPScope", scope)["method"] == "HEAD":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if body.chunks is not None:
                await _send_chunks(body.chunks, body.length, send)
                return
            path = body.path
            assert path is not None
            if self.is_whole and "http.response.pathsend" in (scope.get("extensions") or {}):
                await send(cast("Message", {"type": "http.response.pathsend", "path": str(path)}))
                return
            if body.length <= CHUNK_SIZE:  # most ranges: one read in one worker thread, not four
                data = await anyio.to_thread.run_sync(_read_range, path, body.start, body.length)
                await send({"type": "http.response.body", "body": data, "more_body": False})
                return
            async with await anyio.open_file(path, "rb") as handle:
                await handle.seek(body.start)
                remaining = body.length
                while remaining > 0:
                    chunk = await handle.read(min(CHUNK_SIZE, remaining))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
            if remaining > 0:  # the file shrank while we sent it: end the body rather than hang
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await body.close()


async def _send_chunks(chunks: Iterator[bytes], length: int, send: Send) -> None:
    """Send what a storage's iterator yields, each chunk fetched in a worker thread (it blocks on
    the network); a stream that fails midway ends the body short, as the headers are gone."""
    remaining = length
    while remaining > 0:
        try:
            chunk = await anyio.to_thread.run_sync(next, chunks, b"")
        except StorageError as exc:
            log.warning("a download stopped after %d of %d bytes: %s", length - remaining, length, exc)
            break
        if not chunk:
            break
        chunk = chunk[:remaining]
        remaining -= len(chunk)
        await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
    if remaining > 0:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class FileBody:
    """Where a file answer's bytes come from: a local file (sent by ``pathsend`` when whole), or a
    storage's stream opened by the handler, so a failure to open it is still an error answer."""

    def __init__(self, stored: StoredFile, files: LibraryFiles, *, start: int, length: int, is_get: bool) -> None:
        self.start = start
        self.length = length
        self.path = Path(stored.local_path) if stored.local_path is not None else None
        self._context: AbstractContextManager[Iterator[bytes]] | None = None
        self.chunks: Iterator[bytes] | None = None
        if self.path is None and is_get and length > 0:
            context = files.read_chunks(stored, start, length)
            self.chunks = context.__enter__()  # raises StorageError: the handler's error answer
            self._context = context

    async def close(self) -> None:
        context, self._context = self._context, None
        if context is not None:
            await anyio.to_thread.run_sync(context.__exit__, None, None, None)


class FileResponse(Response[bytes]):
    """A file of the library or of ours, or the byte range of it the request asked for."""

    def __init__(
        self,
        stored: StoredFile,
        *,
        files: LibraryFiles,
        is_get: bool,
        media_type: str,
        byte_range: tuple[int, int] | None,
        headers: Mapping[str, str],
    ) -> None:
        size = stored.size
        status = 206 if byte_range else 200
        all_headers = {"Accept-Ranges": "bytes", **headers}
        if byte_range:
            all_headers["Content-Range"] = f"bytes {byte_range[0]}-{byte_range[1]}/{size}"
        super().__init__(content=b"", status_code=status, media_type=media_type, headers=all_headers)
        start = byte_range[0] if byte_range else 0
        length = (byte_range[1] - byte_range[0] + 1) if byte_range else size
        self.file_body = FileBody(stored, files, start=start, length=length, is_get=is_get)
        self.is_whole = byte_range is None

    def to_asgi_response(self, app: Any, request: Request[Any, Any, Any], **kwargs: Any) -> ASGIResponse:
        headers = {**dict(self.headers), **dict(kwargs.get("headers") or {})}
        return _FileASGIResponse(
            self.file_body,
            is_whole=self.is_whole,
            headers=headers,
            media_type=self.media_type,
            status_code=self.status_code,
        )
