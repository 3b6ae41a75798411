"""The Kobo's calls around a sync that are not about our books (spec 5.1-5.3, 5.11-5.13): start-up,
device authentication, OAuth, store calls, the catch-all, and the reading services at the site
root. Without the store proxy each gets a local 2xx (a 404 on ``gettests`` or a 400 on ``assets``
aborts the whole sync on the device: bookorbit#697, komga#2083); with it, the store's answer.
Annotation calls are answered "none, nothing changed", which never wipes the device's highlights.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post, route
from litestar.enums import HttpMethod
from litestar.exceptions import HTTPException

from opds_server.db.kobo import DeviceRecord
from opds_server.errors import (
    UnknownDeviceError,
    handle_app_error,
    handle_http_exception,
)
from opds_server.kobo.store import ForwardedResponse, StoreAnswer, forwarded_headers
from opds_server.routes.kobo_common import (
    after_token,
    forward,
    forward_or,
    json_response,
    kobo_urls,
    store_response,
)
from opds_server.state import Services, utc_now
from sync.kobo import resources
from sync.kobo.model import (
    DeviceAuth,
)

# The device's start-up calls (spec 5.1-5.3, 5.12)


@get("/")
async def top_level(device: DeviceRecord) -> Response[bytes]:
    return json_response({})


@get("/v1/initialization")
async def initialization(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str
) -> Response[bytes]:
    urls = kobo_urls(request, services, token)
    native: Mapping[str, object] = resources.NATIVE_RESOURCES
    is_local = True
    if services.kobo_store_api is not None:
        answer = await services.kobo_store_api.call("GET", "/v1/initialization", headers=forwarded_headers(request))
        store_map = _store_resources(answer)
        if answer is not None and (answer.status == 401 or _is_expired(answer)):
            return store_response(answer)  # the device must authenticate with the store again
        if store_map is not None:
            native, is_local = store_map, False
    mapped = resources.build_resources(native, base=urls.base, public=urls.public, site=urls.site, is_local=is_local)
    objects = resources.NATIVE_OBJECT_RESOURCES if is_local else {}
    return json_response({"Resources": {**mapped, **objects}}, headers={"x-kobo-apitoken": "e30="})


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
    forwarded = await forward(request, services, after_token(request, token), body)
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
    return json_response(answer)


@route(
    ["/oauth/{rest:path}"],
    http_method=[HttpMethod.GET, HttpMethod.POST],
    status_code=200,
)
async def oauth(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str, rest: str
) -> Response[bytes]:
    if rest.strip("/") == ".well-known/openid-configuration":
        return json_response(resources.oidc_configuration(kobo_urls(request, services, token).base))
    return json_response(
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


# Store calls answered locally (5.11, 5.13)


@route("/v1/user/profile", http_method=[HttpMethod.GET, HttpMethod.POST], status_code=200)
async def user_profile(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str
) -> Response[bytes]:
    return await forward_or(request, services, token, {})


@get("/v1/user/loyalty/benefits")
async def loyalty_benefits(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str
) -> Response[bytes]:
    return await forward_or(request, services, token, {"Benefits": {}})


@route("/v1/analytics/gettests", http_method=[HttpMethod.GET, HttpMethod.POST], status_code=200)
async def get_tests(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str
) -> Response[bytes]:
    local = {"Result": "Success", "TestKey": request.headers.get("x-kobo-userkey", "")[:200], "Tests": {}}
    return await forward_or(request, services, token, local)


@get("/v1/products/{product:str}/nextread")
async def next_read(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str, product: str
) -> Response[bytes]:
    return await forward_or(request, services, token, [])


@get("/v1/products/books/series/{series:str}")
async def series_products(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str, series: str
) -> Response[bytes]:
    return await forward_or(request, services, token, {"TotalResultCount": 0, "SearchResults": []})


_ANY = [HttpMethod.GET, HttpMethod.POST, HttpMethod.PUT, HttpMethod.DELETE, HttpMethod.PATCH]


@route("/{rest:path}", http_method=_ANY, status_code=200)
async def catch_all(
    request: Request[Any, Any, Any], services: Services, device: DeviceRecord, token: str, rest: str
) -> Response[bytes]:
    body = await request.body()  # read it either way: the device expects its POST to be read
    return await forward(request, services, after_token(request, token), body) or json_response({})


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
        return ForwardedResponse(services.kobo_store_api, after_token(request, found["token"]))
    return json_response({})


# Reading services at the site root (5.12): the device keeps only scheme and host of
# ``reading_services_host`` and sends our bearer token. Answered with "nothing here, nothing
# changed"; an empty annotation list with no change marker never deletes the device's highlights.

_ROOT_ANY = [HttpMethod.GET, HttpMethod.POST, HttpMethod.PUT, HttpMethod.PATCH, HttpMethod.DELETE]


@get("/api/v3/content/checkforchanges")
async def check_for_changes() -> Response[bytes]:
    return json_response([])


@route("/api/v3/content/{content:str}/annotations", http_method=_ROOT_ANY, status_code=200)
async def content_annotations(request: Request[Any, Any, Any], content: str) -> Response[bytes]:
    await request.body()
    return json_response({"data": [], "totalResults": 0})


@route(["/api/UserStorage", "/api/UserStorage/{rest:path}"], http_method=_ROOT_ANY, status_code=200)
async def user_storage(request: Request[Any, Any, Any]) -> Response[bytes]:
    await request.body()
    return json_response({})


@route(
    ["/api/internal/notebooks", "/api/internal/notebooks/{rest:path}"],
    http_method=_ROOT_ANY,
    status_code=200,
)
async def notebooks(request: Request[Any, Any, Any]) -> Response[bytes]:
    await request.body()
    return json_response({"data": [], "totalResults": 0})


reading_services_router = Router(
    path="/", route_handlers=[check_for_changes, content_annotations, user_storage, notebooks], include_in_schema=False
)
