"""Process resources, built once in ``create_app`` and handed to handlers by ``provide_services``."""

from __future__ import annotations

from litestar.datastructures import State

from opds_server.calibre.database import CalibreDatabase
from opds_server.calibre.snapshot import Library
from opds_server.catalog.service import Catalog
from opds_server.config import Settings
from opds_server.storage.derived import PlaceholderStore, ThumbnailStore


class Services:
    """Everything a request may need beyond itself."""

    def __init__(self, settings: Settings) -> None:
        if settings.library is None:
            msg = "settings.library must be resolved before the app is built"
            raise ValueError(msg)
        self.settings = settings
        self.library = Library(CalibreDatabase(settings.library))
        self.catalog = Catalog(self.library, settings)
        self.thumbnails = ThumbnailStore(settings.data_dir / "thumbnails", settings.thumbnail_width)
        self.placeholders = PlaceholderStore(settings.data_dir / "placeholders")

    def close(self) -> None:
        self.library.db.close()


def provide_services(state: State) -> Services:
    services: Services = state.services
    return services
