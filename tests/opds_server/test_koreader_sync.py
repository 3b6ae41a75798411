"""KOReader positions and the key index on SQLite and Postgres: a push of a file the index does not
know yet is kept, served back, and linked to its book once the key is indexed (spec C.2)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Engine

from opds_server.db.kobo import KoboStore
from opds_server.db.kosync import KosyncStore
from opds_server.db.library import PersonalLibrary
from opds_server.db.users import UserStore
from opds_server.koreader.sync import KoreaderSync
from sync.koreader.keys import partial_md5
from sync.koreader.progress import ProgressUpdate
from tests.opds_server.conftest import Indexed

NOW = dt.datetime(2026, 8, 17, 17, 56, 53, tzinfo=dt.UTC)
BOOK_1 = Path("Eleanor Whitby/The Lantern Keeper (1)/The Lantern Keeper - Eleanor Whitby.epub")


def test_an_unknown_document_is_kept_then_linked_when_its_key_is_indexed(indexed: Indexed, engine: Engine) -> None:
    user = UserStore(engine).create_user("ada", "not a hash", is_admin=False, now=NOW)
    personal = PersonalLibrary(engine)
    positions = KosyncStore(engine)
    sync = KoreaderSync(
        store=positions, keys=indexed.store, kobo=KoboStore(engine), personal=personal, library=indexed.library
    )
    with (indexed.folder / BOOK_1).open("rb") as source:
        document = partial_md5(source)
    update = ProgressUpdate(
        document=document, progress="/body/DocFragment[2].0", percentage=0.5, device="Libra", device_id="A" * 32
    )

    assert sync.push(user.id, update, now=NOW) == int(NOW.timestamp())
    stored = positions.find(user.id, document)
    assert stored is not None
    assert stored.book_id is None  # the index does not know the file yet
    assert personal.progress(user.id, 1) == []
    pulled = sync.pull(user.id, document)
    assert pulled is not None
    assert (pulled.percentage, pulled.device, pulled.device_id) == (0.5, "Libra", "A" * 32)

    assert indexed.indexer.refresh() > 0
    pulled = sync.pull(user.id, document)
    assert pulled is not None
    assert pulled.progress == "/body/DocFragment[2].0"
    linked = positions.find(user.id, document)
    assert linked is not None
    assert linked.book_id == 1
    assert positions.newest_for_book(user.id, 1) == linked
