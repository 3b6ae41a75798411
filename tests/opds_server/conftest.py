"""Fixtures of the server-side tests that need an indexed copy of the fixture library."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from opds_server.calibre.database import CalibreDatabase
from opds_server.calibre.snapshot import Library
from opds_server.db.document_keys import DocumentKeyStore
from opds_server.koreader.keys import DocumentKeyIndexer
from tests.conftest import copy_fixture_library


@dataclass(frozen=True)
class Indexed:
    folder: Path
    kepubs: Path
    library: Library
    store: DocumentKeyStore
    indexer: DocumentKeyIndexer


@pytest.fixture
def indexed(tmp_path: Path, engine: Engine) -> Iterator[Indexed]:
    """A private, writable copy of the fixture library, indexed, with an empty key store."""
    folder = copy_fixture_library(tmp_path / "library")
    for path in (folder, *folder.rglob("*")):  # the fixture is read-only; these tests rewrite files
        path.chmod(path.stat().st_mode | 0o200)
    library = Library(CalibreDatabase(folder), tmp_path / "data" / "index.sqlite3")
    library.snapshot()
    store = DocumentKeyStore(engine)
    kepubs = tmp_path / "data" / "kepub"
    yield Indexed(folder, kepubs, library, store, DocumentKeyIndexer(library, store, kepubs))
    library.close()
