"""``/kobo/<token>/...``: what a Kobo calls, as ``shared/specs/kobo-sync.md`` describes.

The token in the path is the device's only credential (spec 3): an unknown or revoked one gets a
401 that says no more than that. Everything else a device calls gets a 2xx (spec 4.2), except what
a device cannot send by mistake: a malformed body, an impossible percentage, an edited sync token
(400), a file or cover we do not have (404). This module holds the library's routes (sync,
metadata, reading state, collections, files, covers); ``kobo_store`` the calls around them;
``kobo_common`` what both share. No cookies (spec 3).
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any
from urllib.parse import quote

import anyio.to_thread
import msgspec
from litestar import Request, Response, Router, delete, get, post, put
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect

from opds_server.db.kobo import DeviceRecord
from opds_server.errors import (
    BookNotFoundError,
    CoverNotFoundError,
    FormatNotFoundError,
    InvalidBodyError,
    SyncBusyError,
    pure_error,
)
from opds_server.http import get_and_head
from opds_server.kobo.library import book_uuid_of, kobo_file
from opds_server.kobo.locks import DeviceBusyError
from opds_server.kobo.session import SyncPage
from opds_server.kobo.store import CDN, forwarded_headers
from opds_server.observability import KOBO_ITEMS, KOBO_PAGES
from opds_server.routes.files import (
    DOWNLOAD_CACHE_CONTROL,
    content_disposition,
    send_local,
    send_made_kepub,
    send_stored,
)
from opds_server.routes.kobo_common import (
    JSON,
    UUID_PATTERN,
    after_token,
    book_id_of,
    decode_body,
    forward,
    json_response,
    known_book,
    kobo_urls,
    provide_device,
)
from opds_server.routes.kobo_store import (
    catch_all,
    device_auth,
    get_tests,
    initialization,
    loyalty_benefits,
    next_read,
    oauth,
    series_products,
    top_level,
    user_profile,
)
from opds_server.state import Services, utc_now
from sync.kobo.model import (
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

_STATES = msgspec.json.Decoder(ReadingStatesUpdate)
_TAG_CREATE = msgspec.json.Decoder(TagCreate)
_TAG_RENAME = msgspec.json.Decoder(TagRename)
_TAG_ITEMS = msgspec.json.Decoder(TagItems)


# Library sync (5.4)


@get("/v1/library/sync")
async def library_sync(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str
) -> Response[bytes]:
    urls = kobo_urls(request, services, token)
    try:
        page = await anyio.to_thread.run_sync(
            partial(services.kobo.sync, device, request.headers.get("x-kobo-synctoken"), urls, now=utc_now())
        )
    except ForgedSyncTokenError as exc:
        raise pure_error(exc) from exc
    except DeviceBusyError as exc:
        raise SyncBusyError(str(exc)) from exc
    KOBO_PAGES.inc()
    KOBO_ITEMS.inc(page.items)
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
    book_ids = [b for b in [await known_book(services, e) for e in wanted] if b is not None]
    if not book_ids:
        forwarded = await forward(request, services, after_token(request, token))
        if forwarded is not None:
            return forwarded
    urls = kobo_urls(request, services, token)

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
    book_id = await known_book(services, entitlement)
    if book_id is None:  # a store book: the store's, or nothing of ours (spec 5.6)
        return await forward(request, services, after_token(request, token)) or json_response([])

    def found() -> list[ReadingState]:
        book = services.kobo_library.books([book_id]).get(book_id)
        return [services.kobo_personal.state_of(device, book)] if book is not None else []

    return json_response(await anyio.to_thread.run_sync(found))


@put("/v1/library/{entitlement:str}/state", status_code=200)
async def save_state(
    request: Request[Any, Any, Any], body: bytes, services: Services, device: DeviceRecord, token: str, entitlement: str
) -> Response[bytes]:
    update = decode_body(_STATES, body)
    book_id = await known_book(services, entitlement)
    if book_id is None:
        forwarded = await forward(request, services, after_token(request, token), body)
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
    return json_response(UpdateResponse(update_results=results))


@delete("/v1/library/{entitlement:str}", status_code=200)  # the answer sets 204 itself
async def remove_from_device(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str, entitlement: str
) -> Response[bytes]:
    book_id = await known_book(services, entitlement)
    if book_id is None:
        return await forward(request, services, after_token(request, token)) or Response(content=b"", status_code=204)
    await anyio.to_thread.run_sync(partial(services.kobo_personal.forget_book, device, book_id, now=utc_now()))
    return Response(content=b"", status_code=204)


# Collections (5.8): every outcome a 2xx, the device retries failures forever (bookorbit#1005).


@post("/v1/library/tags", sync_to_thread=True, status_code=201)
def create_tag(body: bytes, services: Services, device: DeviceRecord) -> Response[bytes]:
    data = decode_body(_TAG_CREATE, body)
    created = services.kobo_personal.create_collection(
        device, data.name, [i.revision_id for i in data.items], now=utc_now()
    )
    return json_response(created, status=201)


async def _not_our_tag(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str, tag: str, body: bytes
) -> Response[bytes] | None:
    """The store's answer for a collection that is not one of our shelves, when proxying."""
    if services.kobo_store_api is None:
        return None
    if await anyio.to_thread.run_sync(services.kobo_personal.has_collection, device, tag):
        return None
    return await forward(request, services, after_token(request, token), body)


@put("/v1/library/tags/{tag:str}", status_code=200)
async def rename_tag(
    request: Request[Any, Any, Any], body: bytes, services: Services, device: DeviceRecord, token: str, tag: str
) -> Response[bytes]:
    data = decode_body(_TAG_RENAME, body)
    if (forwarded := await _not_our_tag(request, services, device, token, tag, body)) is not None:
        return forwarded
    await anyio.to_thread.run_sync(
        partial(services.kobo_personal.rename_collection, device, tag, data.name, now=utc_now())
    )
    return json_response({})


@delete("/v1/library/tags/{tag:str}", status_code=200)
async def delete_tag(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str, tag: str
) -> Response[bytes]:
    if (forwarded := await _not_our_tag(request, services, device, token, tag, b"")) is not None:
        return forwarded
    await anyio.to_thread.run_sync(services.kobo_personal.delete_collection, device, tag)
    return json_response({})


@post(["/v1/library/tags/{tag:str}/items", "/v1/library/tags/{tag:str}/Items"], status_code=201)
async def add_tag_items(
    request: Request[Any, Any, Any], body: bytes, services: Services, device: DeviceRecord, token: str, tag: str
) -> Response[bytes]:
    data = decode_body(_TAG_ITEMS, body)
    if (forwarded := await _not_our_tag(request, services, device, token, tag, body)) is not None:
        return forwarded
    books = [i.revision_id for i in data.items if i.type == "ProductRevisionTagItem"]
    await anyio.to_thread.run_sync(partial(services.kobo_personal.add_to_collection, device, tag, books, now=utc_now()))
    return json_response({}, status=201)


@post(["/v1/library/tags/{tag:str}/items/delete", "/v1/library/tags/{tag:str}/Items/delete"], status_code=200)
async def remove_tag_items(
    request: Request[Any, Any, Any], body: bytes, services: Services, device: DeviceRecord, token: str, tag: str
) -> Response[bytes]:
    data = decode_body(_TAG_ITEMS, body)
    if (forwarded := await _not_our_tag(request, services, device, token, tag, body)) is not None:
        return forwarded
    books = [i.revision_id for i in data.items]
    await anyio.to_thread.run_sync(
        partial(services.kobo_personal.remove_from_collection, device, tag, books, now=utc_now())
    )
    return json_response({})


# Files and covers: spec sections 5.9 and 5.10


@get_and_head("/v1/books/{entitlement:str}/file/{book_format:str}")
def download(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, entitlement: str, book_format: str
) -> Response[bytes]:
    if book_format.lower() not in {"epub", "kepub"}:  # the two our DownloadUrls name
        raise FormatNotFoundError(f"a Kobo downloads 'epub' or 'kepub', not {book_format[:20]!r}")
    book_id = book_id_of(services, entitlement)
    book = services.kobo_library.books([book_id]).get(book_id) if book_id is not None else None
    source = kobo_file(services.kobo_library.files, book) if book is not None else None
    if book is None or source is None:
        raise BookNotFoundError(f"no book {entitlement[:60]!r} with an EPUB or KEPUB file in this library")
    headers = {"Content-Disposition": content_disposition(source.file_name)}
    if book_format.lower() == "kepub" and source.format == "EPUB":
        converted = services.kepubs.wait_for(book.id, source.stored)
        if converted is not None:
            return send_made_kepub(
                request, book.id, converted, source.file_name, media="application/epub+zip", etag_tag="kobo"
            )
    return send_stored(
        request,
        source.stored,
        services.kobo_library.files,
        media="application/epub+zip",
        cache_control=DOWNLOAD_CACHE_CONTROL,
        extra_headers=headers,
        etag_parts=(book.id, "kobo", source.file_name),
    )


_SIZE = Annotated[int, Parameter(ge=1, le=100_000)]


def _cover(
    request: Request[Any, Any, Any], services: Services, image_id: str, width: int, height: int, greyscale: str
) -> Response[bytes]:
    book_uuid = book_uuid_of(image_id)
    book_id = services.kobo_library.book_id(book_uuid.lower()) if UUID_PATTERN.fullmatch(book_uuid) else None
    if book_id is None:
        if services.kobo_store_api is not None:  # a store book's cover (spec 5.10)
            return Redirect(f"{CDN}/{quote(image_id, safe='')}/{width}/{height}/false/image.jpg", status_code=307)
        raise CoverNotFoundError(f"no cover {image_id[:60]!r} in this library")
    redirect = services.covers.redirect_kobo(book_id, height)
    if redirect is not None:
        return redirect
    path = services.kobo_covers.read(book_id, width, height, is_greyscale=greyscale.lower() == "true")
    return send_local(
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
