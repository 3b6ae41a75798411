"""The one error hierarchy and its problem-details responses.

::

    AppError (500)
    ├── BadRequestError (400)
    │   ├── InvalidCursorError
    │   ├── InvalidQueryError
    │   ├── InvalidRangeError
    │   ├── InvalidBodyError
    │   └── InvalidSyncTokenError
    ├── AuthenticationFailedError (401, WWW-Authenticate: Bearer)
    ├── UnknownDeviceError (401, no challenge: a Kobo path token)
    ├── NotFoundError (404)
    │   ├── BookNotFoundError
    │   ├── FormatNotFoundError
    │   ├── FileMissingError
    │   ├── CoverNotFoundError
    │   ├── ShelfNotFoundError
    │   ├── AppPasswordNotFoundError
    │   └── FavouriteNotFoundError
    ├── ConflictError (409)
    ├── RangeNotSatisfiableError (416)
    ├── TooManyAttemptsError (429, Retry-After)
    ├── SyncBusyError (503, Retry-After)
    ├── DatabaseUnavailableError (503, Retry-After)
    └── LibraryUnavailableError (503, Retry-After)

Errors of other layers map here in one place: ``StoreUnavailableError`` (Redis down where a change
must reach every instance) and the database's ``DATABASE_DOWN`` errors become 503s with Retry-After
(nothing was written: each change is one transaction); ``pure_error`` maps the pure packages'
errors (``sync.kobo``'s forged token, invalid reading state, bad timestamp) onto 400s.

Handlers render every error as RFC 9457 ``application/problem+json``; a 5xx is logged with its
traceback, a 4xx at info. Nothing else catches a broad ``Exception``.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any, ClassVar

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, SerializationException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import Empty
from litestar.utils.scope.state import ScopeState

from feeds.html import SiteFrame, render_message_html
from opds_server.storage.files import StorageError
from sync.kobo.token import ForgedSyncTokenError

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"


class AppError(Exception):
    """Root of our errors; subclasses set the status, a title and a ``type`` slug."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal server error"
    slug: ClassVar[str] = "internal"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class BadRequestError(AppError):
    status = 400
    title = "Bad request"
    slug = "bad-request"


class InvalidCursorError(BadRequestError):
    title = "Invalid page cursor"
    slug = "invalid-cursor"


class InvalidQueryError(BadRequestError):
    title = "Invalid query parameter"
    slug = "invalid-query"


class InvalidRangeError(BadRequestError):
    title = "Invalid Range header"
    slug = "invalid-range"


class InvalidBodyError(BadRequestError):
    title = "Invalid request body"
    slug = "invalid-body"


class AuthenticationFailedError(AppError):
    """Credentials or a token that do not hold; the challenge tells API clients to send a bearer token."""

    status = 401
    title = "Authentication failed"
    slug = "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="opds-server"'})


class UnknownDeviceError(AppError):
    """A Kobo path token that is unknown or revoked: the same answer for both, and no challenge (the
    token in the path is a Kobo's only credential)."""

    status = 401
    title = "Unknown device"
    slug = "unknown-device"


class InvalidSyncTokenError(BadRequestError):
    title = "Invalid sync token"
    slug = "invalid-sync-token"


class NotFoundError(AppError):
    status = 404
    title = "Not found"
    slug = "not-found"


class BookNotFoundError(NotFoundError):
    title = "Book not found"
    slug = "book-not-found"


class FormatNotFoundError(NotFoundError):
    title = "Format not found"
    slug = "format-not-found"


class FileMissingError(NotFoundError):
    title = "Book file missing"
    slug = "file-missing"


class CoverNotFoundError(NotFoundError):
    title = "Cover not found"
    slug = "cover-not-found"


class ShelfNotFoundError(NotFoundError):
    title = "Shelf not found"
    slug = "shelf-not-found"


class AppPasswordNotFoundError(NotFoundError):
    title = "App password not found"
    slug = "app-password-not-found"


class FavouriteNotFoundError(NotFoundError):
    title = "Not a favourite"
    slug = "favourite-not-found"


class ConflictError(AppError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class TooManyAttemptsError(AppError):
    status = 429
    title = "Too many attempts"
    slug = "rate-limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class RangeNotSatisfiableError(AppError):
    status = 416
    title = "Range not satisfiable"
    slug = "range-not-satisfiable"


class LibraryUnavailableError(AppError):
    status = 503
    title = "Library unavailable"
    slug = "library-unavailable"

    def __init__(self, detail: str, *, retry_after: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class SearchIndexingError(LibraryUnavailableError):
    """The search index of a newly indexed library is still being filled; browsing works meanwhile."""

    title = "Search index not ready"
    slug = "search-indexing"


class LibraryBusyError(LibraryUnavailableError):
    """Calibre holds metadata.db's write lock past the busy timeout: the last good data still serves."""


class DatabaseUnavailableError(AppError):
    """The user database (Postgres) does not answer: personal features wait; the catalogue goes on."""

    status = 503
    title = "Database unavailable"
    slug = "database-unavailable"

    def __init__(self, detail: str, *, retry_after: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class UpstreamError(AppError):
    """A storage we read from (Google Drive, S3) failed for this file: the others still work."""

    status = 502
    title = "Storage unavailable"
    slug = "storage-unavailable"

    def __init__(self, detail: str, *, retry_after: int = 30) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class SyncBusyError(AppError):
    """A device's other sync session held its lock too long (``opds_server.kobo.locks``)."""

    status = 503
    title = "Sync busy"
    slug = "sync-busy"

    def __init__(self, detail: str, *, retry_after: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


_KOBO_TOKEN = re.compile(r"/kobo/[^/\s\"']+")


def redact(text: str) -> str:
    """``text`` without a Kobo's path token (its only credential): ``/kobo/<token>``."""
    return _KOBO_TOKEN.sub("/kobo/<token>", text)


def shown_path(request: Request[Any, Any, Any]) -> str:
    """The request's path as logs and problem documents may show it."""
    return redact(request.url.path)


_NOT_PAGES = re.compile(r"^/(opds|api|kobo|kosync|covers|pse|health|metrics|schema)(/|$)")
"""Paths whose errors are always problem documents: feeds, APIs, device protocols, images."""


def wants_page(request: Request[Any, Any, Any]) -> bool:
    """A browser asking for one of the HTML view's pages (or a download from one): errors are pages too."""
    return "text/html" in request.headers.get("accept", "") and not _NOT_PAGES.match(request.url.path)


def page_response(
    request: Request[Any, Any, Any], status: int, title: str, detail: str, *, headers: dict[str, str] | None = None
) -> Response[bytes]:
    """An error as a page of the HTML view, never a JSON document shown raw in a browser."""
    settings = request.app.state.services.settings
    base = settings.base_url or str(request.base_url).rstrip("/")
    frame = SiteFrame(library_name=settings.library_name, home_href=f"{base}/", search_href=f"{base}/books")
    body = render_message_html(frame, title, redact(detail))
    return Response(
        content=body,
        status_code=status,
        media_type="text/html",  # Litestar adds "; charset=utf-8"
        headers={**(headers or {}), "Cache-Control": "no-store"},
    )


_PROBLEMS = {
    400: "The body or a parameter is invalid; the detail names the field, the value received and what is accepted",
    401: "No valid login, or a token that is forged, expired or revoked",
    404: "No such book, format, category, shelf or app password (another account's looks the same as none)",
    409: "You have a shelf of that name already (names compare without case)",
    413: "The request body is too large",
    429: "Too many failed logins for this account or address; wait for Retry-After seconds",
    503: "The library, the user database or another part is unavailable for now; try again after Retry-After",
}


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """The OpenAPI description of the problem+json answers a handler gives with these statuses.

    Args:
        statuses: HTTP statuses among 400, 401, 404, 409, 413, 429 and 503.

    Returns:
        The ``responses`` argument of a route decorator.
    """
    return {
        status: ResponseSpec(data_container=Problem, media_type=PROBLEM_TYPE, description=_PROBLEMS[status])
        for status in statuses
    }


def problem_response(
    status: int, title: str, slug: str, detail: str, *, path: str, headers: dict[str, str] | None = None
) -> Response[bytes]:
    body = msgspec.json.encode(
        Problem(type=f"about:blank#{slug}", title=title, status=status, detail=redact(detail), instance=path)
    )
    return Response(content=body, status_code=status, media_type=PROBLEM_TYPE, headers=headers or {})


def handle_app_error(request: Request[Any, Any, Any], exc: AppError) -> Response[bytes]:
    if isinstance(exc, LibraryUnavailableError | SyncBusyError | DatabaseUnavailableError):  # a state, not a bug
        log.warning("%s %s -> %d: %s", request.method, shown_path(request), exc.status, redact(exc.detail))
    elif exc.status >= 500:
        log.error("%s %s failed: %s", request.method, shown_path(request), redact(exc.detail), exc_info=exc)
    else:
        log.info("%s %s -> %d: %s", request.method, shown_path(request), exc.status, redact(exc.detail))
    if wants_page(request):
        return page_response(request, exc.status, exc.title, exc.detail, headers=exc.headers)
    return problem_response(exc.status, exc.title, exc.slug, exc.detail, path=shown_path(request), headers=exc.headers)


def _wire_name(request: Request[Any, Any, Any], key: str) -> str:
    """The name the client used for a handler argument (``query`` for ``search``, ``maxWidth``...)."""
    parameter = request.route_handler.parsed_fn_signature.parameters.get(key)
    kwarg = getattr(parameter, "kwarg_definition", None)
    return str(getattr(kwarg, "query", None) or getattr(kwarg, "header", None) or key)


def _shown(value: str) -> str:
    return repr(value) if len(value) <= 60 else f"{value[:40]!r}... ({len(value)} characters)"


def _validation_detail(request: Request[Any, Any, Any], exc: ValidationException) -> str:
    extra = exc.extra if isinstance(exc.extra, list) else []
    parts = []
    for item in extra:
        if not isinstance(item, dict):
            continue
        name = _wire_name(request, str(item.get("key", "?")))
        source = item.get("source", "query")
        where = str(getattr(source, "value", source))
        received = request.query_params.get(name) if where == "query" else request.path_params.get(name)
        value = f" = {_shown(str(received))}" if received is not None else ""
        parts.append(f"{where} parameter {name!r}{value}: {item.get('message', 'invalid value')}")
    return "; ".join(parts) or str(exc.detail)


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Render Litestar's own errors (400 from parameter parsing, 404 routing, 405) as problems."""
    status = exc.status_code
    if isinstance(exc, ValidationException):
        detail = _validation_detail(request, exc)
        log.info("%s %s -> 400: %s", request.method, shown_path(request), detail)
        if wants_page(request):
            return page_response(request, 400, "Invalid request", detail)
        return problem_response(400, "Invalid request", "invalid-request", detail, path=shown_path(request))
    if isinstance(exc, NotFoundException):
        detail = f"nothing is served at {shown_path(request)}; the catalogue starts at /opds and /opds/v2"
        if wants_page(request):
            return page_response(request, 404, "Not found", f"There is no page at {shown_path(request)}.")
        return problem_response(404, "Not found", "not-found", detail, path=shown_path(request))
    title = HTTPStatus(status).phrase if status < 500 else "Internal server error"
    detail = str(exc.detail) if status < 500 else "internal error"
    return problem_response(status, title, "http", detail, path=shown_path(request), headers=dict(exc.headers or {}))


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """The one boundary that catches everything: log with the traceback, answer a bare 500."""
    log.error("%s %s crashed", request.method, shown_path(request), exc_info=exc)
    return problem_response(500, "Internal server error", "internal", "internal error", path=shown_path(request))


_PATH_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _received_in_body(request: Request[Any, Any, Any], key: str) -> str:
    """`` = <the JSON value>`` the client sent at ``key`` (``percentage``, ``book_ids[2]``), if it can be found."""
    value: Any = ScopeState.from_scope(request.scope).json  # the body Litestar already decoded
    for name, index in _PATH_STEP.findall(key):
        if name and isinstance(value, dict) and name in value:
            value = value[name]
        elif index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            return ""
    text = msgspec.json.encode(value).decode()
    return f" = {text if len(text) <= 60 else f'{text[:40]}... ({len(text)} characters)'}"


def _source(item: dict[str, Any]) -> str:
    source = item.get("source", "query")
    return str(getattr(source, "value", source))


def _body_detail(request: Request[Any, Any, Any], item: dict[str, Any]) -> str:
    key, message = str(item.get("key", "data")), str(item.get("message", "invalid value"))
    if key != "data":
        return f"body field {key!r}{_received_in_body(request, key)}: {message}"
    if ScopeState.from_scope(request.scope).json in (Empty, None):
        return "the request body is empty; send a JSON object"
    return f"request body: {message}"


def handle_api_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Litestar's errors on the JSON API: a body that is not JSON says so, and a body that does not
    fit names the field, the value received and what is accepted; anything else as everywhere."""
    if isinstance(exc.__cause__, SerializationException):  # Litestar wraps a failed decode in a 400
        detail = f"the request body is not valid JSON: {exc.detail}"
        log.info("%s %s -> 400: %s", request.method, shown_path(request), detail)
        return problem_response(400, "Malformed JSON", "malformed-json", detail, path=shown_path(request))
    if exc.status_code == 413:
        length = request.headers.get("content-length", "more")
        detail = f"the request body has {length} bytes, more than this endpoint accepts"
        log.info("%s %s -> 413: %s", request.method, shown_path(request), detail)
        return problem_response(413, "Request body too large", "body-too-large", detail, path=shown_path(request))
    extra = exc.extra if isinstance(exc, ValidationException) and isinstance(exc.extra, list) else []
    items = [item for item in extra if isinstance(item, dict)]
    if not any(_source(item) == "body" for item in items):
        return handle_http_exception(request, exc)
    detail = "; ".join(
        _body_detail(request, item)
        if _source(item) == "body"
        else f"{_source(item)} parameter {item.get('key', '?')!r}: {item.get('message', 'invalid value')}"
        for item in items
    )
    log.info("%s %s -> 400: %s", request.method, shown_path(request), detail)
    return problem_response(400, "Invalid request body", "invalid-body", detail, path=shown_path(request))


def handle_store_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Redis did not answer where a change had to reach every instance: 503, try again shortly.

    What the database holds is already changed; only the news of it did not reach the store.
    """
    log.warning("%s %s -> 503: the cache store is unavailable: %s", request.method, shown_path(request), exc)
    detail = (
        "the shared cache (Redis) is unavailable: the change is saved, but other servers may accept old"
        " credentials until they expire (at most 5 minutes); try again shortly"
    )
    return problem_response(
        503, "Cache unavailable", "cache-unavailable", detail, path=shown_path(request), headers={"Retry-After": "5"}
    )


def first_line(exc: BaseException) -> str:
    """An error's type and first line: a database error's full text carries its SQL and parameters."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}"


DATABASE_DOWN_DETAIL = "the user database is not answering; nothing was changed, try again shortly"


def handle_database_down(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """The database did not answer (``DATABASE_DOWN``): 503, the request's transaction rolled back."""
    log.info("%s %s: the database error: %s", request.method, shown_path(request), first_line(exc))
    return handle_app_error(request, DatabaseUnavailableError(DATABASE_DOWN_DETAIL))


def handle_storage_error(request: Request[Any, Any, Any], exc: StorageError) -> Response[bytes]:
    """A file's bytes could not be had from the storage: 404 when it says the file is gone, else 502."""
    error: AppError = FileMissingError(str(exc)) if exc.is_missing else UpstreamError(str(exc))
    return handle_app_error(request, error)


def pure_error(exc: ValueError) -> AppError:
    """The ``AppError`` for an error raised by ``sync/`` (which knows nothing of HTTP)."""
    if isinstance(exc, ForgedSyncTokenError):
        return InvalidSyncTokenError(str(exc))
    return InvalidBodyError(str(exc))
