"""Process resources, built once in ``create_app`` and handed to handlers by ``provide_*``."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
from functools import partial
from typing import Any

from litestar import Request
from litestar.datastructures import State
from sqlalchemy.exc import SQLAlchemyError

from feeds import vocab
from feeds.model import AuthenticationDocument, Link
from opds_server.auth.epoch import CredentialEpoch, Epoch, FileEpoch, StoreEpoch
from opds_server.auth.passwords import Passwords
from opds_server.auth.principal import Principal
from opds_server.auth.secret import load_secret
from opds_server.auth.service import Authenticator
from opds_server.auth.tokens import Tokens
from opds_server.bus import LibraryBus
from opds_server.cache.rendered import RenderedCache
from opds_server.cache.store import MemoryStore, RedisStore, Store, wait_for_redis
from opds_server.calibre.database import CalibreDatabase
from opds_server.calibre.index import index_path
from opds_server.calibre.snapshot import Library
from opds_server.catalog.hrefs import Flavour, Hrefs
from opds_server.catalog.service import Catalog
from opds_server.config import DRIVE_FOLDER, Settings, SettingsError
from opds_server.db.document_keys import DocumentKeyStore
from opds_server.db.engine import database_url, make_engine, migrate, wait_for
from opds_server.db.kobo import KoboStore
from opds_server.db.kosync import KosyncStore
from opds_server.db.library import PersonalLibrary
from opds_server.db.users import UserStore, read_credential_epoch
from opds_server.errors import LibraryUnavailableError
from opds_server.kobo.covers import KoboCovers
from opds_server.kobo.devices import DeviceDirectory
from opds_server.kobo.kepubs import KepubService
from opds_server.kobo.library import KoboLibrary
from opds_server.kobo.locks import DeviceLocks
from opds_server.kobo.personal import KoboPersonal
from opds_server.kobo.session import KoboSync
from opds_server.kobo.store import KoboStore as KoboStoreApi
from opds_server.koreader.accounts import KosyncAccounts
from opds_server.koreader.keys import DocumentKeyIndexer
from opds_server.koreader.refresh import ThrottledRefresh
from opds_server.koreader.sync import KoreaderSync
from opds_server.leases import Lease
from opds_server.storage.covers import CoverDelivery
from opds_server.storage.derived import PlaceholderStore, ThumbnailStore
from opds_server.storage.drive import DriveFiles, FileMapCache, MapCache, RedisMapCache
from opds_server.storage.drive_api import DriveApi
from opds_server.storage.files import LibraryFiles, LocalFiles
from opds_server.storage.kepub import KepubStore
from opds_server.storage.s3 import CoverBucket
from opds_server.watcher import LibraryWatcher

log = logging.getLogger(__name__)


KEY_LEASE_SECONDS = 3600
"""How long a crashed instance can keep others from refreshing the keys (a first refresh of 100,000
books takes minutes; later ones seconds)."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(tz=dt.UTC)


class Services:
    """Everything a request may need beyond itself."""

    def __init__(self, settings: Settings) -> None:
        if settings.library is None:
            msg = "settings.library must be resolved before the app is built"
            raise ValueError(msg)
        self.settings = settings
        self.drive = _drive_files(settings)
        self.files: LibraryFiles = self.drive or LocalFiles(settings.library)
        self.files_are_local = self.drive is None
        self.library = Library(
            CalibreDatabase(settings.library, files=self.files), index_path(settings.data_dir, settings.library)
        )
        self.catalog = Catalog(self.library, settings)
        self.watcher = LibraryWatcher(settings.library, self.refresh_library)
        self.bus = (
            LibraryBus(settings.redis_url, f"{settings.redis_prefix}library", self.refresh_library)
            if settings.redis_url
            else None
        )
        if self.bus is not None:
            bus = self.bus
            self.library.on_new_generation = lambda _snapshot: bus.announce()
        self.thumbnails = ThumbnailStore(settings.data_dir / "thumbnails", settings.thumbnail_width)
        self.placeholders = PlaceholderStore(settings.data_dir / "placeholders")
        self.engine = make_engine(database_url(settings.database_url, settings.data_dir))
        if settings.database_url:  # a server of its own, maybe still starting; SQLite is a file
            wait_for(self.engine)
        migrate(self.engine)
        self.users = UserStore(self.engine)
        self.personal = PersonalLibrary(self.engine)
        self.passwords = Passwords()
        self.secret = load_secret(settings)
        self.tokens = Tokens(self.secret)
        if settings.redis_url:
            wait_for_redis(settings.redis_url)
        self.store: Store = (
            RedisStore(settings.redis_url, prefix=settings.redis_prefix) if settings.redis_url else MemoryStore()
        )
        self.rendered = RenderedCache(redis_url=settings.redis_url, prefix=settings.redis_prefix)
        self.kobo_store = KoboStore(self.engine)
        self.kobo_library = KoboLibrary(self.library)
        self.kobo_devices = DeviceDirectory(self.kobo_store)
        self.kepubs = KepubService(
            KepubStore(settings.data_dir / "kepub"), self.library.db.files, is_enabled=settings.kobo_kepub
        )
        self.kobo = KoboSync(
            store=self.kobo_store,
            library=self.kobo_library,
            personal=self.personal,
            choose_download=self.kepubs.choose,
            page_size=settings.kobo_page_size,
            locks=DeviceLocks(settings.data_dir / "locks", redis_url=settings.redis_url, prefix=settings.redis_prefix),
        )
        self.kobo_personal = KoboPersonal(store=self.kobo_store, library=self.kobo_library, personal=self.personal)
        self.kobo_store_api = KoboStoreApi(settings.kobo_store_url) if settings.kobo_store_proxy else None
        self.kobo_covers = KoboCovers(settings.data_dir / "kobo-covers", self.catalog, self.placeholders)
        self.covers = CoverDelivery(
            CoverBucket(settings) if settings.s3_bucket else None,
            catalog=self.catalog,
            placeholders=self.placeholders,
            thumbnails=self.thumbnails,
            kobo_covers=self.kobo_covers,
            lock_file=settings.data_dir / "locks" / "cover-push.lock",
            redis_url=settings.redis_url,
            redis_prefix=settings.redis_prefix,
        )
        self.document_keys = DocumentKeyIndexer(
            self.library, DocumentKeyStore(self.engine), settings.data_dir / "kepub"
        )
        self.koreader = KoreaderSync(
            store=KosyncStore(self.engine),
            keys=self.document_keys.store,
            kobo=self.kobo_store,
            personal=self.personal,
            library=self.library,
        )
        self.kosync_accounts = KosyncAccounts(self.users, self.passwords)
        self.key_lease = Lease(
            settings.data_dir / "locks" / "document-keys.lock",
            redis_url=settings.redis_url,
            key=f"{settings.redis_prefix}koreader:keys",
            seconds=KEY_LEASE_SECONDS,
        )
        self.key_refresh = ThrottledRefresh(self.refresh_keys)
        fast: Epoch = StoreEpoch(self.store) if settings.redis_url else FileEpoch(settings.data_dir / "auth-epoch")
        epoch = CredentialEpoch(fast, partial(read_credential_epoch, self.engine))
        self.authenticator = Authenticator(
            users=self.users,
            passwords=self.passwords,
            tokens=self.tokens,
            store=self.store,
            epoch=epoch,
            secret=self.secret,
            clock=utc_now,
        )

    def auth_document(self, base_url: str) -> AuthenticationDocument:
        """The OPDS Authentication Document: how to log in to this catalogue."""
        hrefs = Hrefs(base_url, Flavour.ATOM)
        return AuthenticationDocument(
            id=hrefs.authentication(),
            title=self.settings.library_name,
            description="Log in with your user name and password, or an app password made for this device.",
            links=(
                Link(href=hrefs.authentication(), rel=vocab.REL_SELF, type=vocab.AUTHENTICATION_TYPE),
                Link(href=hrefs.feed(), rel=vocab.REL_START, type=vocab.NAVIGATION_TYPE),
            ),
        )

    def refresh_library(self) -> None:
        """Bring the index and the snapshot up to date now (the watcher's callback; also run once
        at start-up so the first reader does not pay for it)."""
        try:
            self.library.snapshot()
            self.files.request_refresh()  # files Calibre just wrote reach Drive soon after
            self.covers.request_push()
            self.key_refresh.request()
            self.library.fill_search()
            self.library.writer.merge_search()
        except (LibraryUnavailableError, sqlite3.Error, SQLAlchemyError, OSError) as exc:
            log.warning("library refresh failed: %s", exc)

    def refresh_keys(self) -> int:
        """Bring KOReader's document keys up to date, unless another worker or instance is doing it
        now (the keys live in the shared database: its refresh serves everyone); files hashed."""
        with self.key_lease.held() as is_ours:
            if not is_ours:
                log.info("document keys: another worker or instance is refreshing them")
                return 0
            return self.document_keys.refresh()

    def files_changed(self) -> None:
        """Files in the storage changed on their own (Drive's changes feed): covers to push, KOReader
        keys to compute. The catalogue notices by itself (``LibraryFiles.generation``); the other
        instances hear of it now rather than at their next poll."""
        self.covers.request_push()
        self.key_refresh.request()
        if self.bus is not None:
            self.bus.announce()

    def start(self) -> None:
        """Start the background work: the first refresh, then the watcher."""
        if self.drive is not None:
            self.drive.on_change = self.files_changed
            self.drive.start()
        self.covers.start()
        self.watcher.start()
        if self.bus is not None:
            self.bus.start()
        threading.Thread(target=self.refresh_library, name="library-refresh", daemon=True).start()

    async def close(self) -> None:
        self.watcher.stop()
        if self.bus is not None:
            self.bus.close()
        self.covers.close()
        self.files.close()
        self.kepubs.close()
        self.key_refresh.cancel()
        self.key_lease.close()
        self.kobo.locks.close()
        if self.kobo_store_api is not None:
            await self.kobo_store_api.close()
        self.library.close()
        await self.store.close()
        self.rendered.close()
        self.engine.dispose()


def _drive_files(settings: Settings) -> DriveFiles | None:
    """The library's files in Google Drive, when the settings say so."""
    if settings.google_drive_credentials is None or settings.google_drive_folder_id is None:
        return None
    try:
        api = DriveApi(settings.google_drive_credentials, settings.google_drive_api_url)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    folder = settings.google_drive_folder_id
    cache: MapCache = (
        RedisMapCache(settings.redis_url, f"{settings.redis_prefix}drive-map:{folder}")
        if settings.redis_url
        else FileMapCache(settings.data_dir / "drive" / f"map-{folder}.msgpack")
    )
    mirror = settings.data_dir / DRIVE_FOLDER
    return DriveFiles(
        api,
        folder,
        cache,
        settings.data_dir,
        poll_seconds=settings.google_drive_poll_seconds,
        mirror=mirror / "metadata.db" if settings.library == mirror else None,
    )


def provide_services(state: State) -> Services:
    services: Services = state.services
    return services


def provide_principal(request: Request[Any, Any, Any]) -> Principal | None:
    """The logged-in user, or ``None`` where the route does not need one."""
    principal: Principal | None = request.scope.get("user")  # set by AuthenticationMiddleware
    return principal
