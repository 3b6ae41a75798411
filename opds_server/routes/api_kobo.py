"""``/api/kobo/devices``: a reader's Kobos, as ``opds-server kobo add-device`` makes them.

Registering returns the device's token once, inside the ``api_endpoint`` line to paste into
``Kobo eReader.conf``; only its hash is kept. Revoking takes effect on every instance at once
(the credential epoch moves). Each device syncs either the whole library or only chosen shelves.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import anyio.to_thread
import msgspec
from litestar import Request, Router, delete, get, post, put
from litestar.params import Parameter
from msgspec import Meta

from opds_server.auth.principal import Principal
from opds_server.db.kobo import DeviceRecord
from opds_server.errors import InvalidBodyError, NotFoundError
from opds_server.kobo.devices import MAX_LABEL, DeviceLabelError, endpoint_line, register_device
from opds_server.kobo.urls import public_base
from opds_server.routes.api import api_router, problems
from opds_server.routes.params import MAX_ID
from opds_server.state import Services, utc_now

DeviceIdParam = Annotated[int, Parameter(ge=1, le=MAX_ID, description="a device id from GET /api/kobo/devices")]


class DeviceNotFoundError(NotFoundError):
    title = "Device not found"
    slug = "device-not-found"


class NewDevice(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    label: Annotated[str, Meta(min_length=1, max_length=MAX_LABEL)] = "Kobo"
    """Which Kobo it is, e.g. 'Libra 2'."""


class SyncChoice(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    sync: Literal["library", "shelves"]
    """`library`: every book; `shelves`: only the books on `shelf_ids` (and those shelves as collections)."""
    shelf_ids: Annotated[list[Annotated[int, Meta(ge=1, le=MAX_ID)]], Meta(max_length=1000)] = msgspec.field(
        default_factory=list
    )


class Device(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    label: str
    sync: Literal["library", "shelves"]
    shelf_ids: list[int]
    created_at: dt.datetime
    last_seen_at: dt.datetime | None
    is_revoked: bool


class RegisteredDevice(Device, frozen=True, kw_only=True):
    api_endpoint: str
    """Paste as `api_endpoint=<this>` under `[OneStoreServices]` in `.kobo/Kobo/Kobo eReader.conf`; shown once."""


def _device(services: Services, record: DeviceRecord) -> Device:
    return Device(
        id=record.id,
        label=record.label,
        sync="shelves" if record.shelves_only else "library",
        shelf_ids=services.kobo_store.device_shelves(record.id),
        created_at=record.created_at,
        last_seen_at=record.last_seen_at,
        is_revoked=record.revoked_at is not None,
    )


def _mine(services: Services, account: Principal, device_id: int) -> DeviceRecord:
    record = services.kobo_store.device(account.user_id, device_id)
    if record is None:
        raise DeviceNotFoundError(f"you have no Kobo device {device_id}")
    return record


@get("/kobo/devices", sync_to_thread=True, summary="Your Kobo devices, oldest first", responses=problems(401))
def list_devices(services: Services, account: Principal) -> list[Device]:
    return [_device(services, record) for record in services.kobo_store.devices(account.user_id)]


@post(
    "/kobo/devices",
    sync_to_thread=True,
    summary="Register a Kobo; the answer holds its api_endpoint line, shown once",
    responses=problems(400, 401, 413),
)
def add_device(
    request: Request[Any, Any, Any], services: Services, account: Principal, data: NewDevice
) -> RegisteredDevice:
    try:
        record, token = register_device(services.kobo_store, account.user_id, data.label, now=utc_now())
    except DeviceLabelError as exc:
        raise InvalidBodyError(f"body field 'label' = {data.label[:60]!r}: {exc}") from exc
    line = endpoint_line(public_base(request, services.settings.base_url), token)
    return RegisteredDevice(**msgspec.structs.asdict(_device(services, record)), api_endpoint=line.partition("=")[2])


@put(
    "/kobo/devices/{device_id:int}/sync",
    sync_to_thread=True,
    summary="Choose what a device syncs: the whole library or only some shelves",
    responses=problems(400, 401, 404, 413),
)
def choose_sync(services: Services, account: Principal, device_id: DeviceIdParam, data: SyncChoice) -> Device:
    _mine(services, account, device_id)
    mine = {s.id for s in services.personal.shelves(account.user_id)}
    strangers = [s for s in data.shelf_ids if s not in mine]
    if strangers:
        raise InvalidBodyError(f"body field 'shelf_ids': {', '.join(map(str, strangers[:10]))} are not your shelves")
    services.kobo_store.set_shelves(
        account.user_id, device_id, shelves_only=data.sync == "shelves", shelf_ids=data.shelf_ids
    )
    return _device(services, _mine(services, account, device_id))


@post(
    "/kobo/devices/{device_id:int}/resync",
    status_code=204,
    sync_to_thread=True,
    summary="Send the device everything again on its next sync (books it deleted too)",
    responses=problems(400, 401, 404),
)
def resync(services: Services, account: Principal, device_id: DeviceIdParam) -> None:
    _mine(services, account, device_id)
    services.kobo_store.forget_sync(device_id)


@delete(
    "/kobo/devices/{device_id:int}",
    status_code=204,
    summary="Revoke a device: its token stops working at once, everywhere",
    responses=problems(400, 401, 404),
)
async def revoke_device(services: Services, account: Principal, device_id: DeviceIdParam) -> None:
    revoked = await anyio.to_thread.run_sync(
        lambda: services.kobo_store.revoke_device(account.user_id, device_id, now=utc_now())
    )
    if not revoked:
        raise DeviceNotFoundError(f"you have no active Kobo device {device_id}")
    await services.authenticator.changed()


def kobo_api_router() -> Router:
    return api_router([list_devices, add_device, choose_sync, resync, revoke_device], tags=["kobo"])
