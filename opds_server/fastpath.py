"""The answer to a repeated catalogue request, without the framework in the way.

E-readers fetch the same feeds again and again. Once a catalogue feed (``/opds/books``,
``/opds/books/<id>``, the category lists, the OpenSearch description, both representations) has
been answered, this middleware keeps the whole response (status 200, headers, bytes) under the
exact request that produced it and the library generation it was made from. The next identical
request, while ``metadata.db`` has not changed, is answered here: one ``stat``, the login check
and a dictionary lookup, instead of routing, parameter parsing, dependency injection and response
building, which cost three times as much as everything else on a cached feed.

Covers, thumbnails and book files are kept the same way, as the file that was sent: the next
identical request gets it by ``pathsend`` (or the byte range it asks for, read in one go) after one
``stat`` shows the file unchanged. Book files streamed from Google Drive are not local files, and
go to the application every time.

What makes two requests identical is everything the response can depend on: the path and raw
query string, the scheme, ``Host`` and root path (links are absolute unless ``OPDS_BASE_URL`` is
set), ``User-Agent`` (device quirks) and ``Accept-Encoding`` (the body is stored compressed as
sent). These feeds never depend on who asks, only on whether they may (the roots, which lead a
logged-in reader to their own feeds, are kept per user): each request is still authenticated (the
credential cache makes that cheap), and only a principal allowed to browse the catalogue, or an
anonymous request where anonymous browsing is on, is answered here. Everything
else (other paths, HEAD, ``If-Modified-Since``, a failed login, a changed library) goes through
the application as before, which also fills this cache.

Freshness is the generation's: an entry is used only while ``Library.current()`` (one ``stat`` of
``metadata.db``) reports the generation that was current when the request that filled it began,
so a request made after Calibre's write never gets old bytes.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import time
from collections import OrderedDict
from typing import Any, cast

import anyio.to_thread
import msgspec
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from opds_server.auth.middleware import refuse, required_scope
from opds_server.auth.principal import Scope as AccessScope
from opds_server.auth.service import AuthenticationError, RateLimitedError
from opds_server.cache.store import StoreUnavailableError
from opds_server.db.engine import DATABASE_DOWN
from opds_server.errors import DATABASE_DOWN_DETAIL, AppError
from opds_server.http import parse_range

ROOTS = re.compile(r"^/opds(/v2)?/?$")
"""The roots: a logged-in reader's leads to their own feeds, so it is kept per user."""
SHAREABLE = re.compile(
    r"^/opds(/v2)?/?$|^/opds(/v2)?/(books|books/\d+|authors|series|tags|languages|publishers|ratings|titles|formats|opensearch\.xml)$"
    r"|^/covers/\d+(/thumbnail)?$|^/download/\d+/[^/]+$"
)
FILES = re.compile(r"^/covers/\d+(/thumbnail)?$|^/download/\d+/[^/]+$")
COVERS = re.compile(r"^/covers/\d+(/thumbnail)?$")
REDIRECT_SECONDS = 240.0
"""How long a cover's redirect is answered again from here: less than the 5 minutes a client may
keep it, well inside the 10 minutes its presigned URL stays valid at the least."""
RANGE_READ_LIMIT = 4 * 1024 * 1024
"""A byte range up to this size is read in one go; a larger one goes through the application, which streams it."""
MAX_BYTES = 4 * 1024 * 1024
_VARYING = (b"host", b"user-agent", b"accept-encoding")


class _Answered(Exception):  # noqa: N818 - control flow, not an error
    """The request has been answered (refused) here."""


class _Answer(msgspec.Struct, frozen=True):
    generation: str
    etag: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    file: tuple[str, int, int] | None = None
    """A file answer (a cover, a thumbnail, a book): its path, size and mtime when it was sent."""
    status: int = 200
    expires: float = float("inf")
    """``time.monotonic()`` after which it is not used (a redirect to a presigned URL)."""


class _Answers:
    """Whole responses by request key, least recently used first out, bounded by bytes."""

    def __init__(self, max_bytes: int) -> None:
        self._entries: OrderedDict[tuple[Any, ...], _Answer] = OrderedDict()
        self._size = 0
        self._max_bytes = max_bytes
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> _Answer | None:
        with self._lock:
            answer = self._entries.get(key)
            if answer is not None:
                self._entries.move_to_end(key)
            return answer

    def put(self, key: tuple[Any, ...], answer: _Answer) -> None:
        size = len(answer.body) + 512
        if size > self._max_bytes // 16:
            return
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._size -= len(previous.body) + 512
            self._entries[key] = answer
            self._size += size
            while self._size > self._max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._size -= len(evicted.body) + 512


def _request_key(scope: HTTPScope) -> tuple[Any, ...]:
    varying = tuple(value for name, value in scope["headers"] if name in _VARYING)
    names = tuple(name for name, _ in scope["headers"] if name in _VARYING)
    return (scope["path"], scope["query_string"], scope["scheme"], scope.get("root_path", ""), names, varying)


def _header(scope: HTTPScope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def _matches(if_none_match: bytes, etag: bytes) -> bool:
    """Weak comparison (RFC 9110 13.1.2), as the application makes it."""
    tags = {tag.strip().removeprefix(b"W/") for tag in if_none_match.split(b",")}
    return etag.removeprefix(b"W/") in tags or b"*" in tags


class FastPathMiddleware:
    """Answers repeated catalogue requests from whole stored responses (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BYTES) -> None:
        self.app = app
        self.answers = _Answers(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if str(scope["type"]) != "http":
            await self.app(scope, receive, send)
            return
        http = cast("HTTPScope", scope)
        if http["method"] != "GET" or not SHAREABLE.match(http["path"]) or _header(http, b"if-modified-since"):
            await self.app(scope, receive, send)
            return
        services = http["app"].state.services
        if not services.files_are_local and http["path"].startswith("/download/"):
            # A book streamed from Drive is never a file to keep, and a first ranged request must
            # not fetch the whole book to keep it: the application streams what is asked for.
            await self.app(scope, receive, send)
            return
        try:
            snapshot = services.library.current()
        except AppError:
            snapshot = None
        if snapshot is None:
            await self.app(scope, receive, send)  # a refresh is due: the application does it
            return
        try:
            allowed, user_id = await self._who(http, services, send)
        except _Answered:
            return
        if not allowed:
            await self.app(scope, receive, send)  # the application refuses, in its words
            return
        key = _request_key(http) + ((user_id,) if ROOTS.match(http["path"]) else ())
        # A feed rendered in the second of the library's change has no Last-Modified (routes/feeds.py):
        # kept apart, so the answer stored after that second carries one.
        generation = snapshot.generation
        if snapshot.updated >= dt.datetime.now(tz=dt.UTC).replace(microsecond=0):
            generation += ":unsettled"
        if COVERS.match(http["path"]):
            # Whether a cover redirects to S3 depends on the bucket's manifest and reachability too.
            generation += ":" + services.covers.state
        await self._answer(http, generation, key, self.answers.get(key), receive, send)

    async def _answer(  # noqa: PLR0917 - one request's parts, passed on as they are
        self,
        http: HTTPScope,
        generation: str,
        key: tuple[Any, ...],
        answer: _Answer | None,
        receive: Receive,
        send: Send,
    ) -> None:
        if (
            answer is not None
            and answer.generation == generation
            and (answer.file is None or _unchanged(answer.file))
            and time.monotonic() < answer.expires
        ):
            if answer.status == 302:
                await send({"type": "http.response.start", "status": 302, "headers": answer.headers})
                await send({"type": "http.response.body", "body": answer.body, "more_body": False})
                return
            if_none_match = _header(http, b"if-none-match")
            if if_none_match is not None and _matches(if_none_match, answer.etag):
                await send({"type": "http.response.start", "status": 304, "headers": _validators(answer.headers)})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if answer.file is None:
                await send({"type": "http.response.start", "status": 200, "headers": answer.headers})
                await send({"type": "http.response.body", "body": answer.body, "more_body": False})
                return
            if await _send_file(http, answer, send):
                return
        if answer is None and _header(http, b"range") is not None and FILES.match(http["path"]):
            await self._prime(http, generation, key, receive, send)
            return
        await self.app(cast("Scope", http), receive, self._recorder(key, generation, send))

    async def _prime(
        self, http: HTTPScope, generation: str, key: tuple[Any, ...], receive: Receive, send: Send
    ) -> None:
        """A first ranged request for a file: ask the application for the whole file (without
        sending it), keep the answer, and send the range from it, so range requests are stored too.
        Anything but a whole file (a 401, a 404) goes to the client as the application gave it."""
        messages: list[Message] = []

        async def keep(message: Message) -> None:
            messages.append(message)

        whole = cast("HTTPScope", {
            **http,
            "headers": [(k, v) for k, v in http["headers"] if k not in {b"range", b"if-range"}],
            "extensions": {**(http.get("extensions") or {}), "http.response.pathsend": {}},
        })  # fmt: skip
        await self.app(cast("Scope", whole), receive, self._recorder(key, generation, keep))
        answer = self.answers.get(key)
        if answer is not None and answer.file is not None and await _send_file(http, answer, send):
            return
        if messages and messages[0].get("status") == 200:  # a whole file we could not keep
            await self.app(cast("Scope", http), receive, send)
            return
        for message in messages:
            await send(message)

    @staticmethod
    async def _who(scope: HTTPScope, services: Any, send: Send) -> tuple[bool, int | None]:
        """Whether a stored answer may go to this request, and the user asking (``None``:
        anonymous). A failed login is refused here, as ``AuthenticationMiddleware`` would, and
        counted once: the request does not go on to it.

        Raises:
            _Answered: the request was refused.
        """
        header = _header(scope, b"authorization")
        if header is None:
            # Public paths (covers: readers fetch images without credentials) need no login.
            return required_scope(scope["path"]) is None or bool(services.settings.anonymous_browsing), None
        client = scope.get("client")
        try:
            principal = await services.authenticator.authenticate(
                header.decode("latin-1"), client[0] if client else "unknown"
            )
        except AuthenticationError as exc:
            await refuse(scope, send, services, 401, str(exc))
            raise _Answered from exc
        except RateLimitedError as exc:
            await refuse(scope, send, services, 429, str(exc), retry_after=exc.retry_after)
            raise _Answered from exc
        except StoreUnavailableError as exc:
            await refuse(scope, send, services, 503, "the credential store is unavailable", retry_after=5)
            raise _Answered from exc
        except DATABASE_DOWN as exc:
            await refuse(scope, send, services, 503, DATABASE_DOWN_DETAIL, retry_after=5)
            raise _Answered from exc
        return bool(principal.can(AccessScope.CATALOG)), principal.user_id

    def _recorder(self, key: tuple[Any, ...], generation: str, send: Send) -> Send:
        started: dict[str, Any] = {}

        async def record(message: Message) -> None:
            kind = str(message["type"])  # "http.response.pathsend" is an extension Litestar's types omit
            if kind == "http.response.start":
                started.update(message)
            elif kind == "http.response.pathsend" and started.get("status") == 200:
                headers = [(bytes(k), bytes(v)) for k, v in started.get("headers", ())]
                etag = next((v for k, v in headers if k.lower() == b"etag"), None)
                path = str(cast("dict[str, Any]", message)["path"])
                if etag is not None:
                    try:
                        stat = os.stat(path)  # noqa: PTH116 - a str path, no Path to build
                    except OSError:
                        stat = None
                    if stat is not None:
                        file = (path, stat.st_size, stat.st_mtime_ns)
                        self.answers.put(key, _Answer(generation, etag, headers, b"", file))
            elif kind == "http.response.body" and started.get("status") == 302 and not message.get("more_body"):
                if COVERS.match(str(key[0])):  # a cover's redirect to S3: its URL stays valid a while
                    headers = [(bytes(k), bytes(v)) for k, v in started.get("headers", ())]
                    body = cast("bytes", message.get("body", b""))
                    expires = time.monotonic() + REDIRECT_SECONDS
                    self.answers.put(key, _Answer(generation, b"", headers, body, status=302, expires=expires))
            elif kind == "http.response.body" and started.get("status") == 200 and not message.get("more_body"):
                headers = [(bytes(k), bytes(v)) for k, v in started.get("headers", ())]
                etag = next((v for k, v in headers if k.lower() == b"etag"), None)
                if etag is not None and any(k.lower() == b"x-cache" for k, _ in headers):
                    stored = [(k, b"hit" if k.lower() == b"x-cache" else v) for k, v in headers]
                    self.answers.put(key, _Answer(generation, etag, stored, cast("bytes", message.get("body", b""))))
            await send(message)

        return record


def _unchanged(file: tuple[str, int, int]) -> bool:
    """The file is still the one the stored answer describes (one ``stat``)."""
    path, size, mtime_ns = file
    try:
        stat = os.stat(path)  # noqa: PTH116 - on every hit: no Path object to build
    except OSError:
        return False
    return stat.st_size == size and stat.st_mtime_ns == mtime_ns


async def _send_file(scope: HTTPScope, answer: _Answer, send: Send) -> bool:
    """A stored file answer: the whole file by ``pathsend``, or the byte range asked for (206).
    ``False`` when the application must answer (no ``pathsend``, a range it refuses, a large range)."""
    assert answer.file is not None
    path, size, _ = answer.file
    wanted = _header(scope, b"range")
    if_range = _header(scope, b"if-range")
    if wanted is not None and (if_range is None or if_range.strip() == answer.etag):
        try:
            byte_range = parse_range(wanted.decode("latin-1"), size)
        except AppError:
            return False  # 416: the application words it
        if byte_range is not None:
            start, end = byte_range
            if end - start + 1 > RANGE_READ_LIMIT:
                return False
            body = await anyio.to_thread.run_sync(_read, path, start, end - start + 1)
            headers = [(k, v) for k, v in answer.headers if k.lower() != b"content-length"]
            headers += [
                (b"content-range", f"bytes {start}-{end}/{size}".encode()),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": 206, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return True
    if "http.response.pathsend" not in (scope.get("extensions") or {}):
        return False
    await send({"type": "http.response.start", "status": 200, "headers": answer.headers})
    await send(cast("Message", {"type": "http.response.pathsend", "path": path}))
    return True


def _read(path: str, start: int, length: int) -> bytes:
    with open(path, "rb") as handle:  # noqa: PTH123 - a plain read in a worker thread
        return os.pread(handle.fileno(), length, start)


def _validators(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """What a 304 repeats of a 200 (RFC 9110 15.4.5): validators, caching and Vary, no body headers."""
    kept = {b"etag", b"last-modified", b"cache-control", b"vary", b"content-type"}
    return [(k, v) for k, v in headers if k.lower() in kept]
