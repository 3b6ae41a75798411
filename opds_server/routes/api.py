"""What the JSON API's routers under ``/api`` share: the logged-in account, id limits, and how
their routers are built.

The API is split by subject: ``api_auth`` (tokens, the account, app passwords) and
``api_library`` (favourites, shelves, progress). Each builds its routers with ``api_router``, so
every one of them answers body errors the same way (``handle_api_http_exception``: the field, the
value received and what is accepted), caps request bodies at ``MAX_BODY_SIZE`` and documents the
bearer scheme in the OpenAPI document served at ``/schema``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Router
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi.spec import Components, SecurityScheme

from opds_server.auth.principal import Principal
from opds_server.errors import AuthenticationFailedError, handle_api_http_exception, problems

__all__ = ["problems"]  # the routers' modules take it from here

API_PATH = "/api"
MAX_BODY_SIZE = 1024 * 1024
"""Bytes; the largest legitimate body is a 64 KiB locator, which JSON escaping can grow sixfold."""
BEARER = "bearer"
SECURITY_COMPONENTS = Components(
    security_schemes={
        BEARER: SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="JWT",
            description="An access token from POST /api/auth/token (HTTP Basic with the account password works too)",
        )
    }
)
"""The OpenAPI components naming the scheme that ``api_router(..., is_public=False)`` requires."""


def provide_account(principal: Principal | None) -> Principal:
    """The logged-in account of an ``/api`` request.

    Raises:
        AuthenticationFailedError: nobody is logged in (the middleware normally answers first).
    """
    if principal is None:
        raise AuthenticationFailedError("a login is needed: send 'Authorization: Bearer <access token>'")
    return principal


def api_router(route_handlers: Sequence[Any], *, tags: Sequence[str], is_public: bool = False) -> Router:
    """A router under ``/api`` with the API's error rendering, body limit and security.

    Args:
        route_handlers: the handlers, with paths relative to ``/api``.
        tags: OpenAPI tags grouping these operations.
        is_public: the handlers need no login (the token endpoints); otherwise the OpenAPI
            document marks them as needing a bearer token.

    Returns:
        The router, ready for ``Litestar(route_handlers=...)``.
    """
    return Router(
        path=API_PATH,
        route_handlers=list(route_handlers),
        dependencies={"account": Provide(provide_account, sync_to_thread=False)},
        exception_handlers={HTTPException: handle_api_http_exception},
        request_max_body_size=MAX_BODY_SIZE,
        security=None if is_public else [{BEARER: []}],
        tags=list(tags),
    )
