"""``/health``: whether the pieces the server needs answer, checked now, not remembered.

``calibre``: metadata.db can be read; ``database``: the user database answers; ``cache``: the store
(Redis, or the in-process one) answers; ``storage``: the library's files can be found (always, on
local disk; with Google Drive, once the path map is loaded). Without Calibre nothing can be served
(``unhealthy``, 503); without the user database or the cache the catalogue still works for
anonymous browsing and cached logins, and without the storage's map it lists no book yet, so the
server is ``degraded`` but answers 200.
"""

from __future__ import annotations

from typing import Literal

import anyio.to_thread
import msgspec
from litestar import Response, get
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from opds_server.cache.store import StoreUnavailableError
from opds_server.errors import LibraryUnavailableError
from opds_server.state import Services


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["healthy", "degraded", "unhealthy"]
    cache: bool
    database: bool
    calibre: bool
    storage: bool


def _calibre_answers(services: Services) -> bool:
    try:
        # A snapshot loaded earlier keeps serving categories while the file is damaged, but feeds
        # cannot page through a library that cannot be read: read it now.
        services.catalog.snapshot()
        services.library.db.fetch("SELECT id FROM books LIMIT 1")
    except LibraryUnavailableError:
        return False
    return True


def _database_answers(services: Services) -> bool:
    try:
        with services.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return False
    return True


async def _cache_answers(services: Services) -> bool:
    try:
        await services.store.get("health")
    except StoreUnavailableError:
        return False
    return True


@get("/health")
async def health(services: Services) -> Response[bytes]:
    calibre = await anyio.to_thread.run_sync(_calibre_answers, services)
    database = await anyio.to_thread.run_sync(_database_answers, services)
    cache = await _cache_answers(services)
    storage = services.drive is None or services.drive.is_loaded
    status: Literal["healthy", "degraded", "unhealthy"] = "healthy"
    if not calibre:
        status = "unhealthy"
    elif not (database and cache and storage):
        status = "degraded"
    report = Health(status=status, cache=cache, database=database, calibre=calibre, storage=storage)
    return Response(
        content=msgspec.json.encode(report),
        status_code=503 if status == "unhealthy" else 200,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
