"""``/kobo/<token>/...``: what a Kobo calls, as ``shared/specs/kobo-sync.md`` describes.

The token in the path is the device's only credential (spec 3): an unknown or revoked one gets a
401 that says no more than that. Everything else a device calls gets a 2xx (spec 4.2: a 404 on
``gettests`` or a 400 on ``assets`` aborts the whole sync), except what a device cannot send by
mistake: a malformed body, an impossible percentage, an edited sync token (400), a file or cover
we do not have (404). Store calls are answered locally; annotations are never answered in a way
that could wipe the device's highlights (we never send any). No cookies (spec 3).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from functools import partial
from typing import Annotated, Any
from urllib.parse import quote

import anyio.to_thread
import msgspec
from litestar import Request, Response, Router, delete, get, post, put, route
from litestar.di import Provide
from litestar.enums import HttpMethod
from litestar.exceptions import HTTPException
from litestar.params import Parameter
from litestar.response import Redirect

from opds_server.db.kobo import DeviceRecord
from opds_server.errors import (
    BookNotFoundError,
    CoverNotFoundError,
    InvalidBodyError,
    SyncBusyError,
    UnknownDeviceError,
    handle_app_error,
    handle_http_exception,
    pure_error,
)
from opds_server.http import get_and_head
from opds_server.kobo.library import book_uuid_of, kobo_file
from opds_server.kobo.locks import DeviceBusyError
from opds_server.kobo.session import SyncPage
from opds_server.kobo.store import CDN, ForwardedResponse, StoreAnswer, forwarded_headers
from opds_server.kobo.urls import KoboUrls, public_base
from opds_server.routes.files import DOWNLOAD_CACHE_CONTROL, _send_file, content_disposition
from opds_server.state import Services, utc_now
from sync.kobo import resources
from sync.kobo.model import (
    DeviceAuth,
    ReadingState,
    ReadingStatesUpdate,
    Result,
    TagCreate,
    TagItems,
    TagRename,
    UpdateResponse,
    UpdateResult,
)
from sync.kobo.state import InvalidReadingStateError, normalise_update
from sync.kobo.timestamps import format_timestamp
from sync.kobo.token import ForgedSyncTokenError

JSON = "application/json; charset=utf-8"
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_STATES = msgspec.json.Decoder(ReadingStatesUpdate)
_TAG_CREATE = msgspec.json.Decoder(TagCreate)
_TAG_RENAME = msgspec.json.Decoder(TagRename)
_TAG_ITEMS = msgspec.json.Decoder(TagItems)


def _json(value: object, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(content=msgspec.json.encode(value), status_code=status, media_type=JSON, headers=headers)


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
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


def _urls(request: Request[Any, Any, Any], services: Services, device_token: str) -> KoboUrls:
    return KoboUrls(public=public_base(request, services.settings.base_url), token=device_token)


def _book_id(services: Services, entitlement: str) -> int | None:
    """Our book for an entitlement id; ``None`` for a well-formed id we do not have (a store book).

    Raises:
        InvalidBodyError: the id is not a UUID at all.
    """
    if not _UUID.fullmatch(entitlement):
        raise InvalidBodyError(f"{entitlement[:60]!r} is not a book id (a UUID is expected)")
    return services.kobo_library.book_id(entitlement.lower())


def _store_response(answer: StoreAnswer) -> Response[bytes]:
    return Response(content=answer.body, status_code=answer.status, headers=dict(answer.headers), media_type=None)


async def _forward(
    request: Request[Any, Any, Any], services: Services, path: str, body: bytes = b""
) -> Response[bytes] | None:
    """The store's answer to this call when the proxy is on and the store answers; else ``None``."""
    store = services.kobo_store_api
    if store is None:
        return None
    answer = await store.forward(request, path, body)
    return _store_response(answer) if answer is not None else None


async def _forward_or(
    request: Request[Any, Any, Any], services: Services, token: str, local: object
) -> Response[bytes]:
    """The store's answer when proxying and the store answers, else ``local`` (spec 5.11)."""
    body = await request.body()
    return await _forward(request, services, _after_token(request, token), body) or _json(local)


def _after_token(request: Request[Any, Any, Any], token: str) -> str:
    """The path after ``/kobo/<token>``, as the store knows it."""
    return request.url.path.split(f"/kobo/{token}", 1)[1] or "/"


async def _known_book(services: Services, entitlement: str) -> int | None:
    return await anyio.to_thread.run_sync(_book_id, services, entitlement)


# The device's start-up calls (spec 5.1-5.3, 5.12)


@get("/")
async def top_level(device: DeviceRecord) -> Response[bytes]:
    return _json({})


@get("/v1/initialization")
async def initialization(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str
) -> Response[bytes]:
    urls = _urls(request, services, token)
    native: Mapping[str, object] = resources.NATIVE_RESOURCES
    is_local = True
    if services.kobo_store_api is not None:
        answer = await services.kobo_store_api.call("GET", "/v1/initialization", headers=forwarded_headers(request))
        store_map = _store_resources(answer)
        if answer is not None and (answer.status == 401 or _is_expired(answer)):
            return _store_response(answer)  # the device must authenticate with the store again
        if store_map is not None:
            native, is_local = store_map, False
    mapped = resources.build_resources(native, base=urls.base, public=urls.public, site=urls.site, is_local=is_local)
    objects = resources.NATIVE_OBJECT_RESOURCES if is_local else {}
    return _json({"Resources": {**mapped, **objects}}, headers={"x-kobo-apitoken": "e30="})


def _store_resources(answer: StoreAnswer | None) -> dict[str, object] | None:
    if answer is None or answer.status != 200:
        return None
    try:
        found = answer.json().get("Resources")
    except (msgspec.DecodeError, AttributeError):
        return None
    return found if isinstance(found, dict) and found else None


def _is_expired(answer: StoreAnswer) -> bool:
    try:
        status = answer.json().get("ResponseStatus") or {}
    except (msgspec.DecodeError, AttributeError):
        return False
    return isinstance(status, dict) and status.get("ErrorCode") == "ExpiredToken"


@post(["/v1/auth/device", "/v1/auth/refresh"], status_code=200)
async def device_auth(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str
) -> Response[bytes]:
    body = await request.body()
    forwarded = await _forward(request, services, _after_token(request, token), body)
    if forwarded is not None and (forwarded.status_code or 500) < 300:
        return forwarded
    user_key = ""
    try:
        sent = msgspec.json.decode(body or b"{}")
        if isinstance(sent, dict) and isinstance(sent.get("UserKey"), str):
            user_key = sent["UserKey"][:200]
    except msgspec.DecodeError:
        pass  # the device's own auth body: nothing of it matters locally
    answer = DeviceAuth(
        access_token=device.access_token,
        refresh_token=device.access_token,
        tracking_id=str(uuid.uuid4()),
        user_key=user_key,
    )
    return _json(answer)


@route(
    ["/oauth/{rest:path}"],
    http_method=[HttpMethod.GET, HttpMethod.POST],
    status_code=200,
)
async def oauth(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str, rest: str
) -> Response[bytes]:
    if rest.strip("/") == ".well-known/openid-configuration":
        return _json(resources.oidc_configuration(_urls(request, services, token).base))
    return _json(
        {
            "access_token": device.access_token,
            "refresh_token": device.access_token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "AccessToken": device.access_token,
            "RefreshToken": device.access_token,
            "TokenType": "Bearer",
        }
    )


# Library sync (5.4)


@get("/v1/library/sync")
async def library_sync(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str
) -> Response[bytes]:
    urls = _urls(request, services, token)
    try:
        page = await anyio.to_thread.run_sync(
            partial(services.kobo.sync, device, request.headers.get("x-kobo-synctoken"), urls, now=utc_now())
        )
    except ForgedSyncTokenError as exc:
        raise pure_error(exc) from exc
    except DeviceBusyError as exc:
        raise SyncBusyError(str(exc)) from exc
    headers = {"x-kobo-synctoken": page.token}
    body = page.body
    if page.has_more:
        headers["x-kobo-sync"] = "continue"
    elif services.kobo_store_api is not None:
        body = await _merge_store(request, services, device, page, headers)
    return Response(content=body, media_type=JSON, headers=headers)


async def _merge_store(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, page: SyncPage, headers: dict[str, str]
) -> bytes:
    """Our last page followed by the store's delta (spec 10): its ``continue``, its sync headers,
    and its new token kept inside ours."""
    assert services.kobo_store_api is not None
    answer = await services.kobo_store_api.call(
        "GET",
        "/v1/library/sync",
        headers=forwarded_headers(request, sync_token=page.store_token or None),
        query=request.url.query,
    )
    if answer is None or answer.status != 200:
        return page.body
    try:
        store_items = answer.json()
    except msgspec.DecodeError:
        return page.body
    if not isinstance(store_items, list):
        return page.body
    for name in ("x-kobo-sync", "x-kobo-sync-mode", "x-kobo-recent-reads"):
        value = answer.header(name)
        if value:
            headers[name] = value
    store_token = answer.header("x-kobo-synctoken")
    if store_token:
        headers["x-kobo-synctoken"] = services.kobo.with_store_token(device, page.token, store_token)
    ours = msgspec.json.decode(page.body)
    return msgspec.json.encode([*ours, *store_items])


@get("/v1/library/{ids:str}/metadata")
async def library_metadata(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str, ids: str
) -> Response[bytes]:
    wanted = [part.strip() for part in ids.split(",") if part.strip()][:100]
    book_ids = [b for b in [await _known_book(services, e) for e in wanted] if b is not None]
    if not book_ids:
        forwarded = await _forward(request, services, _after_token(request, token))
        if forwarded is not None:
            return forwarded
    urls = _urls(request, services, token)

    def found() -> bytes:
        books = services.kobo_library.books(book_ids)
        listed = [services.kobo.metadata(books[b], urls) for b in book_ids if b in books]
        return b"[" + b",".join(msgspec.json.encode(m) for m in listed) + b"]"

    return Response(content=await anyio.to_thread.run_sync(found), media_type=JSON)


# Reading state (5.6, 8)


@get("/v1/library/{entitlement:str}/state")
async def read_state(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str, entitlement: str
) -> Response[bytes]:
    book_id = await _known_book(services, entitlement)
    if book_id is None:  # a store book: the store's, or nothing of ours (spec 5.6)
        return await _forward(request, services, _after_token(request, token)) or _json([])

    def found() -> list[ReadingState]:
        book = services.kobo_library.books([book_id]).get(book_id)
        return [services.kobo_personal.state_of(device, book)] if book is not None else []

    return _json(await anyio.to_thread.run_sync(found))


@put("/v1/library/{entitlement:str}/state", status_code=200)
async def save_state(
    request: Request[Any, Any, Any], body: bytes, services: Services, device: DeviceRecord, token: str, entitlement: str
) -> Response[bytes]:
    update = _decode(_STATES, body)
    book_id = await _known_book(services, entitlement)
    if book_id is None:
        forwarded = await _forward(request, services, _after_token(request, token), body)
        if forwarded is not None:
            return forwarded
    return await anyio.to_thread.run_sync(_save_states, services, device, entitlement, book_id, update)


def _save_states(
    services: Services, device: DeviceRecord, entitlement: str, book_id: int | None, update: ReadingStatesUpdate
) -> Response[bytes]:
    results = []
    now = utc_now()
    for index, sent in enumerate(update.reading_states):
        try:
            normalised = normalise_update(sent, f"$.ReadingStates[{index}]")
        except InvalidReadingStateError as exc:
            raise pure_error(exc) from exc
        target = sent.entitlement_id or entitlement
        if target.lower() != entitlement.lower():
            raise InvalidBodyError(
                f"$.ReadingStates[{index}].EntitlementId is {target[:60]!r} but the path names {entitlement[:60]!r}"
            )
        if book_id is None:
            outcome = Result(result="Ignored")
            results.append(
                UpdateResult(
                    entitlement_id=entitlement,
                    current_bookmark_result=outcome,
                    statistics_result=outcome,
                    status_info_result=outcome,
                )
            )
            continue
        stored = services.kobo_personal.save_state(device, book_id, normalised, now=now)
        stamp = format_timestamp(stored.last_modified)
        success = Result(result="Success")
        results.append(
            UpdateResult(
                entitlement_id=entitlement,
                current_bookmark_result=success,
                statistics_result=success,
                status_info_result=success,
                last_modified=stamp,
                priority_timestamp=stamp,
            )
        )
    return _json(UpdateResponse(update_results=results))


@delete("/v1/library/{entitlement:str}", status_code=200)  # the answer sets 204 itself
async def remove_from_device(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str, entitlement: str
) -> Response[bytes]:
    book_id = await _known_book(services, entitlement)
    if book_id is None:
        return await _forward(request, services, _after_token(request, token)) or Response(content=b"", status_code=204)
    await anyio.to_thread.run_sync(partial(services.kobo_personal.forget_book, device, book_id, now=utc_now()))
    return Response(content=b"", status_code=204)


# Collections (5.8): every outcome a 2xx, the device retries failures forever (bookorbit#1005).


@post("/v1/library/tags", sync_to_thread=True, status_code=201)
def create_tag(body: bytes, services: Services, device: DeviceRecord) -> Response[bytes]:
    data = _decode(_TAG_CREATE, body)
    created = services.kobo_personal.create_collection(
        device, data.name, [i.revision_id for i in data.items], now=utc_now()
    )
    return _json(created, status=201)


async def _not_our_tag(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str, tag: str, body: bytes
) -> Response[bytes] | None:
    """The store's answer for a collection that is not one of our shelves, when proxying."""
    if services.kobo_store_api is None:
        return None
    if await anyio.to_thread.run_sync(services.kobo_personal.has_collection, device, tag):
        return None
    return await _forward(request, services, _after_token(request, token), body)


@put("/v1/library/tags/{tag:str}", status_code=200)
async def rename_tag(
    request: Request[Any, Any, Any], body: bytes, services: Services, device: DeviceRecord, token: str, tag: str
) -> Response[bytes]:
    data = _decode(_TAG_RENAME, body)
    if (forwarded := await _not_our_tag(request, services, device, token, tag, body)) is not None:
        return forwarded
    await anyio.to_thread.run_sync(
        partial(services.kobo_personal.rename_collection, device, tag, data.name, now=utc_now())
    )
    return _json({})


@delete("/v1/library/tags/{tag:str}", status_code=200)
async def delete_tag(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str, tag: str
) -> Response[bytes]:
    if (forwarded := await _not_our_tag(request, services, device, token, tag, b"")) is not None:
        return forwarded
    await anyio.to_thread.run_sync(services.kobo_personal.delete_collection, device, tag)
    return _json({})


@post(["/v1/library/tags/{tag:str}/items", "/v1/library/tags/{tag:str}/Items"], status_code=201)
async def add_tag_items(
    request: Request[Any, Any, Any], body: bytes, services: Services, device: DeviceRecord, token: str, tag: str
) -> Response[bytes]:
    data = _decode(_TAG_ITEMS, body)
    if (forwarded := await _not_our_tag(request, services, device, token, tag, body)) is not None:
        return forwarded
    books = [i.revision_id for i in data.items if i.type == "ProductRevisionTagItem"]
    await anyio.to_thread.run_sync(partial(services.kobo_personal.add_to_collection, device, tag, books, now=utc_now()))
    return _json({}, status=201)


@post(["/v1/library/tags/{tag:str}/items/delete", "/v1/library/tags/{tag:str}/Items/delete"], status_code=200)
async def remove_tag_items(
    request: Request[Any, Any, Any], body: bytes, services: Services, device: DeviceRecord, token: str, tag: str
) -> Response[bytes]:
    data = _decode(_TAG_ITEMS, body)
    if (forwarded := await _not_our_tag(request, services, device, token, tag, body)) is not None:
        return forwarded
    books = [i.revision_id for i in data.items]
    await anyio.to_thread.run_sync(
        partial(services.kobo_personal.remove_from_collection, device, tag, books, now=utc_now())
    )
    return _json({})


# Files and covers: spec sections 5.9 and 5.10


@get_and_head("/v1/books/{entitlement:str}/file/{book_format:str}")
def download(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, entitlement: str, book_format: str
) -> Response[bytes]:
    book_id = _book_id(services, entitlement)
    book = services.kobo_library.books([book_id]).get(book_id) if book_id is not None else None
    source = kobo_file(services.kobo_library.root, book) if book is not None else None
    if book is None or source is None:
        raise BookNotFoundError(f"no book {entitlement[:60]!r} with an EPUB or KEPUB file in this library")
    path, name = source.path, source.file_name
    if book_format.lower() == "kepub" and source.format == "EPUB":
        converted = services.kepubs.wait_for(book.id, source.path)
        if converted is not None:
            path, name = converted, name.removesuffix(".epub") + ".kepub.epub"
    return _send_file(
        request,
        path,
        media="application/epub+zip",
        cache_control=DOWNLOAD_CACHE_CONTROL,
        extra_headers={"Content-Disposition": content_disposition(name)},
        etag_parts=(book.id, "kobo", path.name),
    )


_SIZE = Annotated[int, Parameter(ge=1, le=100_000)]


def _cover(
    request: Request[Any, Any, Any], services: Services, image_id: str, width: int, height: int, greyscale: str
) -> Response[bytes]:
    book_uuid = book_uuid_of(image_id)
    book_id = services.kobo_library.book_id(book_uuid.lower()) if _UUID.fullmatch(book_uuid) else None
    if book_id is None:
        if services.kobo_store_api is not None:  # a store book's cover (spec 5.10)
            return Redirect(f"{CDN}/{quote(image_id, safe='')}/{width}/{height}/false/image.jpg", status_code=307)
        raise CoverNotFoundError(f"no cover {image_id[:60]!r} in this library")
    path = services.kobo_covers.read(book_id, width, height, is_greyscale=greyscale.lower() == "true")
    return _send_file(
        request,
        path,
        media="image/jpeg",
        cache_control="public, max-age=86400",
        etag_parts=(image_id, width, height, greyscale),
    )


@get_and_head("/v1/books/{image_id:str}/thumbnail/{width:int}/{height:int}/{greyscale:str}/image.jpg")
def cover(
    request: Request[Any, Any, Any],
    services: Services,
    device: DeviceRecord,
    image_id: str,
    width: _SIZE,
    height: _SIZE,
    greyscale: str,
) -> Response[bytes]:
    return _cover(request, services, image_id, width, height, greyscale)


@get_and_head("/v1/books/{image_id:str}/thumbnail/{width:int}/{height:int}/{quality:str}/{greyscale:str}/image.jpg")
def cover_with_quality(
    request: Request[Any, Any, Any],
    services: Services,
    device: DeviceRecord,
    image_id: str,
    width: _SIZE,
    height: _SIZE,
    quality: str,
    greyscale: str,
) -> Response[bytes]:
    return _cover(request, services, image_id, width, height, greyscale)


# Store calls answered locally (5.11, 5.13)


@route("/v1/user/profile", http_method=[HttpMethod.GET, HttpMethod.POST], status_code=200)
async def user_profile(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str
) -> Response[bytes]:
    return await _forward_or(request, services, token, {})


@get("/v1/user/loyalty/benefits")
async def loyalty_benefits(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str
) -> Response[bytes]:
    return await _forward_or(request, services, token, {"Benefits": {}})


@route("/v1/analytics/gettests", http_method=[HttpMethod.GET, HttpMethod.POST], status_code=200)
async def get_tests(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str
) -> Response[bytes]:
    local = {"Result": "Success", "TestKey": request.headers.get("x-kobo-userkey", "")[:200], "Tests": {}}
    return await _forward_or(request, services, token, local)


@get("/v1/products/{product:str}/nextread")
async def next_read(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str, product: str
) -> Response[bytes]:
    return await _forward_or(request, services, token, [])


@get("/v1/products/books/series/{series:str}")
async def series_products(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str, series: str
) -> Response[bytes]:
    return await _forward_or(request, services, token, {"TotalResultCount": 0, "SearchResults": []})


_ANY = [HttpMethod.GET, HttpMethod.POST, HttpMethod.PUT, HttpMethod.DELETE, HttpMethod.PATCH]


@route("/{rest:path}", http_method=_ANY, status_code=200)
async def catch_all(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str, rest: str
) -> Response[bytes]:
    body = await request.body()  # read it either way: the device expects its POST to be read
    return await _forward(request, services, _after_token(request, token), body) or _json({})


_DEVICE_PATH = re.compile(r"^/kobo/(?P<token>[^/]+)(/|$)")


def handle_unmatched(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """404 and 405 handler: a Kobo call we have no route for is a store call answered ``200 {}``
    (spec 5.13) once the token holds. Litestar's router does not backtrack, so ``/v1/assets``
    never reaches the ``{rest:path}`` catch-all once ``/v1/...`` routes exist; this is that
    catch-all for every such path."""
    found = _DEVICE_PATH.match(request.url.path)
    if found is None:
        return handle_http_exception(request, exc)
    services: Services = request.app.state.services
    if services.kobo_devices.find(found["token"], epoch=services.kobo_devices.last_epoch, now=utc_now()) is None:
        return handle_app_error(request, UnknownDeviceError("this Kobo token is not valid; register the device again"))
    if services.kobo_store_api is not None:
        return ForwardedResponse(services.kobo_store_api, _after_token(request, found["token"]))
    return _json({})


def kobo_router() -> Router:
    """Every device route under ``/kobo/{token}``."""
    return Router(
        path="/kobo/{token:str}",
        route_handlers=[
            top_level,
            initialization,
            device_auth,
            oauth,
            library_sync,
            library_metadata,
            read_state,
            save_state,
            remove_from_device,
            create_tag,
            rename_tag,
            delete_tag,
            add_tag_items,
            remove_tag_items,
            download,
            cover,
            cover_with_quality,
            user_profile,
            loyalty_benefits,
            get_tests,
            next_read,
            series_products,
            catch_all,
        ],
        dependencies={"device": Provide(provide_device)},
        include_in_schema=False,
    )


# Reading services at the site root (5.12): the device keeps only scheme and host of
# ``reading_services_host`` and sends our bearer token. Answered with "nothing here, nothing
# changed"; an empty annotation list with no change marker never deletes the device's highlights.

_ROOT_ANY = [HttpMethod.GET, HttpMethod.POST, HttpMethod.PUT, HttpMethod.PATCH, HttpMethod.DELETE]


@get("/api/v3/content/checkforchanges")
async def check_for_changes() -> Response[bytes]:
    return _json([])


@route("/api/v3/content/{content:str}/annotations", http_method=_ROOT_ANY, status_code=200)
async def content_annotations(request: Request[Any, Any, Any], content: str) -> Response[bytes]:
    await request.body()
    return _json({"data": [], "totalResults": 0})


@route(["/api/UserStorage", "/api/UserStorage/{rest:path}"], http_method=_ROOT_ANY, status_code=200)
async def user_storage(request: Request[Any, Any, Any]) -> Response[bytes]:
    await request.body()
    return _json({})


@route(
    ["/api/internal/notebooks", "/api/internal/notebooks/{rest:path}"],
    http_method=_ROOT_ANY,
    status_code=200,
)
async def notebooks(request: Request[Any, Any, Any]) -> Response[bytes]:
    await request.body()
    return _json({"data": [], "totalResults": 0})


reading_services_router = Router(
    path="/", route_handlers=[check_for_changes, content_annotations, user_storage, notebooks], include_in_schema=False
)
