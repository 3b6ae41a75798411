"""``/health``: whether the pieces the server needs answer."""

from __future__ import annotations

import msgspec
from litestar import Response, get

from opds_server.errors import LibraryUnavailableError
from opds_server.state import Services


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    cache: bool
    database: bool
    calibre: bool


@get("/health", sync_to_thread=True)
def health(services: Services) -> Response[bytes]:
    try:
        # Read metadata.db now: a snapshot loaded earlier keeps serving categories while the file
        # is damaged, but feeds cannot page through a library that cannot be read.
        services.catalog.snapshot()
        services.library.db.fetch("SELECT id FROM books LIMIT 1")
        calibre = True
    except LibraryUnavailableError:
        calibre = False
    # The cache and user database are in-process until the accounts issue brings them.
    report = Health(status="healthy" if calibre else "unhealthy", cache=True, database=True, calibre=calibre)
    return Response(
        content=msgspec.json.encode(report),
        status_code=200 if calibre else 503,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
