"""What the Kobo routes share: the device dependency, JSON answers, body decoding, book ids, and
forwarding to the Kobo store when the proxy is on (``opds_server.kobo.store``)."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import anyio.to_thread
import msgspec
from litestar import Request, Response

from opds_server.db.kobo import DeviceRecord
from opds_server.errors import (
    InvalidBodyError,
    UnknownDeviceError,
)
from opds_server.kobo.store import StoreAnswer
from opds_server.kobo.urls import KoboUrls, public_base
from opds_server.state import Services, utc_now

JSON = "application/json; charset=utf-8"
UUID_PATTERN = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def json_response(value: object, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(content=msgspec.json.encode(value), status_code=status, media_type=JSON, headers=headers)


def decode_body(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidBodyError(f"the JSON body does not fit: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise InvalidBodyError(f"the body is not JSON: {exc}") from exc


async def provide_device(services: Services, token: str) -> DeviceRecord:
    epoch = await services.authenticator.current_epoch() or ""
    device = await anyio.to_thread.run_sync(partial(services.kobo_devices.find, token, epoch=epoch, now=utc_now()))
    if device is None:
        raise UnknownDeviceError("this Kobo token is not valid; register the device again")
    return device


def kobo_urls(request: Request[Any, Any, Any], services: Services, device_token: str) -> KoboUrls:
    return KoboUrls(public=public_base(request, services.settings.base_url), token=device_token)


def book_id_of(services: Services, entitlement: str) -> int | None:
    """Our book for an entitlement id; ``None`` for a well-formed id we do not have (a store book).

    Raises:
        InvalidBodyError: the id is not a UUID at all.
    """
    if not UUID_PATTERN.fullmatch(entitlement):
        raise InvalidBodyError(f"{entitlement[:60]!r} is not a book id (a UUID is expected)")
    return services.kobo_library.book_id(entitlement.lower())


def store_response(answer: StoreAnswer) -> Response[bytes]:
    return Response(content=answer.body, status_code=answer.status, headers=dict(answer.headers), media_type=None)


async def forward(
    request: Request[Any, Any, Any], services: Services, path: str, body: bytes = b""
) -> Response[bytes] | None:
    """The store's answer to this call when the proxy is on and the store answers; else ``None``."""
    store = services.kobo_store_api
    if store is None:
        return None
    answer = await store.forward(request, path, body)
    return store_response(answer) if answer is not None else None


async def forward_or(request: Request[Any, Any, Any], services: Services, token: str, local: object) -> Response[bytes]:
    """The store's answer when proxying and the store answers, else ``local`` (spec 5.11)."""
    body = await request.body()
    return await forward(request, services, after_token(request, token), body) or json_response(local)


def after_token(request: Request[Any, Any, Any], token: str) -> str:
    """The path after ``/kobo/<token>``, as the store knows it."""
    return request.url.path.split(f"/kobo/{token}", 1)[1] or "/"


async def known_book(services: Services, entitlement: str) -> int | None:
    return await anyio.to_thread.run_sync(book_id_of, services, entitlement)
