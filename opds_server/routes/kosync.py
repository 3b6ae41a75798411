"""``/kosync``: KOReader's progress sync ("kosync"), as the stock plugin speaks it (spec part A).

The plugin sends ``x-auth-user`` and ``x-auth-key`` (md5 of the password it was given: the
account's or an app password); no Basic, no cookies. Errors come in KOReader's shape,
``{"code": 2001, "message": "Unauthorized"}``, which the device shows; an unknown document is
``200 {}``; timestamps are integer seconds; any ``Accept`` header is accepted. Registration is
off unless ``OPDS_KOSYNC_REGISTRATION`` is set, and then limited per address.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio.to_thread
import msgspec
from litestar import Request, Response, Router, get, post, put
from litestar.di import Provide
from litestar.exceptions import HTTPException

from opds_server.auth.principal import Principal
from opds_server.auth.service import AuthenticationError, RateLimitedError
from opds_server.cache.store import StoreUnavailableError
from opds_server.db.engine import DATABASE_DOWN
from opds_server.db.users import InvalidNameError, UserExistsError
from opds_server.errors import DATABASE_DOWN_DETAIL, DatabaseUnavailableError
from opds_server.state import Services, utc_now
from sync.koreader.progress import Document, ProgressUpdate, Registration

JSON = "application/json"
MAX_BODY = 64 * 1024
REGISTRATIONS_PER_HOUR = 5
_DOCUMENT = msgspec.json.Decoder(Document)
_UPDATE = msgspec.json.Decoder(ProgressUpdate)
_REGISTRATION = msgspec.json.Decoder(Registration)


class KosyncError(Exception):
    """An error in KOReader's shape (the reference server's codes, spec A.3)."""

    def __init__(self, status: int, code: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def unauthorized(message: str = "Unauthorized") -> KosyncError:
    return KosyncError(401, 2001, message)


def handle_kosync_error(_request: Request[Any, Any, Any], exc: KosyncError) -> Response[bytes]:
    body = msgspec.json.encode({"code": exc.code, "message": exc.message})
    return Response(content=body, status_code=exc.status, media_type=JSON, headers=exc.headers)


def handle_kosync_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Litestar's own refusals (a body over the limit, a method not allowed) in KOReader's shape."""
    if exc.status_code == 413:
        error = KosyncError(413, 2003, f"Invalid request: the body is larger than {MAX_BODY} bytes")
    else:
        error = KosyncError(exc.status_code, 2003, f"Invalid request: {exc.detail}")
    return handle_kosync_error(request, error)


def _json(value: object, status: int = 200) -> Response[bytes]:
    return Response(content=msgspec.json.encode(value), status_code=status, media_type=JSON)


def _invalid(exc: msgspec.ValidationError | msgspec.DecodeError) -> KosyncError:
    text = str(exc)
    if "$.document" in text or "field `document`" in text:
        return KosyncError(403, 2004, f"Field 'document' not provided or invalid: {text}")
    return KosyncError(403, 2003, f"Invalid request: {text}")


async def provide_reader(request: Request[Any, Any, Any], services: Services) -> Principal:
    name = request.headers.get("x-auth-user", "")
    key = request.headers.get("x-auth-key", "")
    if not name or not key or ":" in name:
        raise unauthorized()
    client = request.client.host if request.client else "unknown"
    try:
        return await services.authenticator.kosync(name, key, client)
    except AuthenticationError as exc:
        raise unauthorized() from exc
    except RateLimitedError as exc:
        raise KosyncError(429, 2001, f"Unauthorized: {exc}", headers={"Retry-After": str(exc.retry_after)}) from exc
    except StoreUnavailableError as exc:
        raise KosyncError(502, 1000, "Cannot connect to the credential store.") from exc
    except DATABASE_DOWN as exc:
        raise DatabaseUnavailableError(DATABASE_DOWN_DETAIL) from exc


@get("/healthcheck")
async def healthcheck() -> Response[bytes]:
    return _json({"state": "OK"})


@get("/users/auth", dependencies={"reader": Provide(provide_reader)})
async def authorize(reader: Principal) -> Response[bytes]:
    return _json({"authorized": "OK"})


@post("/users/create", status_code=201)
async def register(request: Request[Any, Any, Any], body: bytes, services: Services) -> Response[bytes]:
    if not services.settings.kosync_registration:
        raise KosyncError(402, 2005, "User registration is disabled.")
    client = request.client.host if request.client else "unknown"
    attempts = await services.store.increment(f"kosync:register:{client}", ttl=3600)
    if attempts > REGISTRATIONS_PER_HOUR:
        raise KosyncError(429, 2003, "Too many registrations from this address; try again in an hour.")
    try:
        data = _REGISTRATION.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _invalid(exc) from exc
    if ":" in data.username:
        raise KosyncError(403, 2003, "Invalid request: a user name has no ':'")
    try:
        await anyio.to_thread.run_sync(services.kosync_accounts.register, data.username, data.password)
    except UserExistsError as exc:
        raise KosyncError(402, 2002, "Username is already registered.") from exc
    except InvalidNameError as exc:
        raise KosyncError(403, 2003, f"Invalid request: {exc}") from exc
    await services.authenticator.changed()
    return _json({"username": data.username}, status=201)


@put("/syncs/progress", dependencies={"reader": Provide(provide_reader)})
async def push_progress(body: bytes, services: Services, reader: Principal) -> Response[bytes]:
    try:
        update = _UPDATE.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _invalid(exc) from exc
    timestamp = await anyio.to_thread.run_sync(partial(services.koreader.push, reader.user_id, update, now=utc_now()))
    return _json({"document": update.document, "timestamp": timestamp})


@get("/syncs/progress/{document:str}", dependencies={"reader": Provide(provide_reader)})
async def pull_progress(services: Services, reader: Principal, document: str) -> Response[bytes]:
    try:
        key = _DOCUMENT.decode(msgspec.json.encode(document))
    except msgspec.ValidationError as exc:
        raise KosyncError(403, 2004, f"Field 'document' not provided or invalid: {exc}") from exc
    record = await anyio.to_thread.run_sync(services.koreader.pull, reader.user_id, key)
    return Response(content=msgspec.json.encode(record) if record else b"{}", media_type=JSON)


def kosync_router() -> Router:
    return Router(
        path="/kosync",
        route_handlers=[healthcheck, authorize, register, push_progress, pull_progress],
        exception_handlers={KosyncError: handle_kosync_error, HTTPException: handle_kosync_http_exception},
        request_max_body_size=MAX_BODY,
        include_in_schema=False,
    )
