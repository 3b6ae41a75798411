"""``create_app(settings) -> Litestar``: the one place things are wired.

granian imports ``opds_server.app:create_app`` as a factory; without arguments it reads the
settings from the environment (the CLI has already resolved the library there).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from litestar import Litestar
from litestar.config.compression import CompressionConfig
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from opds_server import __version__
from opds_server.auth.middleware import AuthenticationMiddleware
from opds_server.cache.store import StoreUnavailableError
from opds_server.catalog.hrefs import Flavour
from opds_server.config import Settings, settings_from_env
from opds_server.db.engine import DATABASE_DOWN
from opds_server.errors import (
    AppError,
    handle_app_error,
    handle_database_down,
    handle_http_exception,
    handle_storage_error,
    handle_store_unavailable,
    handle_unexpected,
)
from opds_server.fastpath import FastPathMiddleware
from opds_server.http import AcceptEncodingMiddleware, HeadMiddleware
from opds_server.observability import RequestContextMiddleware, configure_logging
from opds_server.routes.api import SECURITY_COMPONENTS
from opds_server.routes.api_auth import auth_routers
from opds_server.routes.api_kobo import kobo_api_router
from opds_server.routes.api_library import library_router
from opds_server.routes.feeds import feed_router
from opds_server.routes.files import files_router
from opds_server.routes.health import health
from opds_server.routes.html import html_forms_router
from opds_server.routes.kobo import kobo_router
from opds_server.routes.kobo_store import handle_unmatched, reading_services_router
from opds_server.routes.kosync import kosync_router
from opds_server.routes.metrics import metrics
from opds_server.routes.personal import personal_router
from opds_server.state import Services, provide_principal, provide_services
from opds_server.storage.files import StorageError

WORKER_THREADS = 4
MAX_BODY_BYTES = 1024 * 1024
"""The largest request body accepted (a 413 beyond): Kobo states, progress and API bodies are a few KB."""
HTML_FEED_PATHS = (
    r"^/($|books|authors|series|tags|languages|publishers|ratings|titles|formats|favourites|shelves|reading|finished)"
)


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the ASGI application for these settings (from the environment when omitted)."""
    resolved = settings or settings_from_env(os.environ)
    services = Services(resolved)

    @asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        # Blocking work (rendering, SQLite, argon2) is CPU-bound under one GIL: a few threads do it
        # as fast as forty and hold a tenth of the SQLite page caches and malloc arenas.
        anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
        services.start()
        try:
            yield
        finally:
            await services.close()

    app = Litestar(
        route_handlers=[
            feed_router(Flavour.ATOM),
            feed_router(Flavour.JSON),
            feed_router(Flavour.HTML),
            personal_router(Flavour.ATOM),
            personal_router(Flavour.JSON),
            personal_router(Flavour.HTML),
            html_forms_router,
            files_router,
            health,
            metrics,
            kobo_router(),
            kosync_router(),
            reading_services_router,
            *auth_routers(),
            library_router(),
            kobo_api_router(),
        ],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        exception_handlers={
            AppError: handle_app_error,
            StoreUnavailableError: handle_store_unavailable,
            **dict.fromkeys(DATABASE_DOWN, handle_database_down),
            StorageError: handle_storage_error,
            HTTPException: handle_http_exception,
            NotFoundException: handle_unmatched,
            MethodNotAllowedException: handle_unmatched,
            Exception: handle_unexpected,
        },
        middleware=[
            RequestContextMiddleware,
            FastPathMiddleware,
            HeadMiddleware,
            AuthenticationMiddleware,
            AcceptEncodingMiddleware,
        ],
        request_max_body_size=MAX_BODY_BYTES,
        cors_config=CORSConfig(allow_origins=list(resolved.cors_origins), allow_credentials=True)
        if resolved.cors_origins
        else None,
        compression_config=CompressionConfig(
            backend="brotli",
            brotli_gzip_fallback=True,
            minimum_size=512,
            # Feeds and their pages are compressed once and cached compressed (routes/feeds.py); files
            # are sent as they are.
            exclude=["/opds", "/download", "/covers", "/pse", "^/kobo/[^/]+/v1/books/", HTML_FEED_PATHS],
        ),
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(
            title="opds-server",
            version=__version__,
            description="The JSON API under /api: tokens, the account, favourites, shelves and reading progress.",
            path="/schema",
            components=SECURITY_COMPONENTS,
            render_plugins=[JsonRenderPlugin()],  # /schema and /schema/openapi.json: the document, no UI
        ),
        logging_config=None,
    )
    app.state.services = services
    configure_logging()
    return app
