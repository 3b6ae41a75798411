"""KOReader progress sync for one reader: store what the plugin pushes, answer what it pulls, and
meet the Kobo and the API in the middle (spec C.2, C.3).

A push is stored as sent, under its document key, and linked to a book when the key index (or,
failing that, the metadata the plugin may send) names exactly one; a linked push is also the
reader's progress on the ``koreader`` device kind, which the feeds, the API and Kobos read. A pull
answers the newest of: the record of that document, a KOReader record of another file of the same
book (the EPUB and our KEPUB have different keys but the same spine), a Kobo's state, progress
saved through the API. Newest by the time we received it; each keeps its own locator, the others
get the percentage and the start of the chapter (from the Kobo's file name or, failing that, the
spine's sizes).
"""

from __future__ import annotations

import datetime as dt

import msgspec

from opds_server.calibre.books import book_file_name
from opds_server.calibre.snapshot import Library
from opds_server.db.document_keys import DocumentKeyStore
from opds_server.db.kobo import KOBO_DEVICE_KIND, KoboStore
from opds_server.db.kosync import KosyncRecord, KosyncStore
from opds_server.db.library import PersonalLibrary
from opds_server.koreader.spine import Spine, read_spine
from sync.kobo.state import progress_of
from sync.koreader.keys import filename_key
from sync.koreader.progress import (
    SERVER_DEVICE_ID,
    DocumentMetadata,
    ProgressRecord,
    ProgressUpdate,
    chapter_at,
    chapter_pointer,
    is_finished,
    seconds,
    truncate,
)

KOREADER_DEVICE_KIND = "koreader"
_EPUB_FORMATS = ("KEPUB", "EPUB")


class _Elsewhere(msgspec.Struct, frozen=True, kw_only=True):
    moment: dt.datetime
    fraction: float
    device: str
    chapter_source: str | None = None


class KoreaderSync:
    def __init__(
        self,
        *,
        store: KosyncStore,
        keys: DocumentKeyStore,
        kobo: KoboStore,
        personal: PersonalLibrary,
        library: Library,
    ) -> None:
        self.store = store
        self.keys = keys
        self.kobo = kobo
        self.personal = personal
        self.library = library

    # Matching (C.2)

    def resolve(self, document: str, metadata: DocumentMetadata | None = None) -> int | None:
        """The one book a document key (or its metadata) names; ``None`` for none or several."""
        books = self.keys.books_for(document, limit=2)
        if len(books) == 1:
            return books[0]
        if books or metadata is None:
            return None
        if metadata.filename:
            named = self.keys.books_for(filename_key(metadata.filename), limit=2)
            if len(named) == 1:
                return named[0]
        if metadata.title:
            return self._by_title(metadata.title, metadata.authors)
        return None

    def _by_title(self, title: str, authors: str | None) -> int | None:
        self.library.snapshot()
        rows = self.library.db.fetch(
            "SELECT b.id, group_concat(a.name, ' & ') FROM books b"
            " LEFT JOIN books_authors_link l ON l.book = b.id LEFT JOIN authors a ON a.id = l.author"
            " WHERE b.title = ? COLLATE NOCASE GROUP BY b.id",
            (title,),
        )
        if authors:
            wanted = {part.strip().casefold() for part in authors.replace("\n", "&").split("&") if part.strip()}
            rows = [r for r in rows if wanted <= {a.strip().casefold() for a in str(r[1] or "").split("&")}]
        return int(str(rows[0][0])) if len(rows) == 1 else None

    # Push (A.6)

    def push(self, user_id: int, update: ProgressUpdate, *, now: dt.datetime) -> int:
        """Store a push; the receive time in Unix seconds."""
        book_id = self.resolve(update.document, update.metadata)
        record = KosyncRecord(
            document=update.document,
            progress=update.progress,
            percentage=update.percentage,
            device=update.device,
            device_id=update.device_id,
            updated_at=now,
            book_id=book_id,
        )
        metadata = msgspec.json.encode(update.metadata).decode() if update.metadata else None
        self.store.save(user_id, record, metadata_json=metadata)
        if book_id is not None:
            self.personal.save_progress(
                user_id,
                book_id,
                device_kind=KOREADER_DEVICE_KIND,
                percentage=round(update.percentage * 100, 2),
                locator=update.progress,
                is_finished=is_finished(update.percentage),
                now=now,
            )
        return seconds(now)

    # Pull (A.7, C.3)

    def pull(self, user_id: int, document: str) -> ProgressRecord | None:
        """What KOReader is sent for a document: ``None`` means ``{}`` (nothing known)."""
        raw = self.store.find(user_id, document)
        book_id = raw.book_id if raw is not None else None
        if book_id is None:
            book_id = self.resolve(document)
            if book_id is not None and raw is not None:
                self.store.link(user_id, document, book_id)  # a key indexed since the push
        newest = raw
        if book_id is not None:
            sibling = self.store.newest_for_book(user_id, book_id)
            if sibling is not None and (newest is None or sibling.updated_at > newest.updated_at):
                newest = sibling
            elsewhere = self._elsewhere(user_id, book_id)
            if elsewhere is not None and (newest is None or elsewhere.moment > newest.updated_at):
                return self._derived(document, book_id, elsewhere)
        if newest is None:
            return None
        return ProgressRecord(
            document=document,
            percentage=newest.percentage,
            progress=newest.progress,
            device=newest.device,
            device_id=newest.device_id,
            timestamp=seconds(newest.updated_at),
        )

    def _elsewhere(self, user_id: int, book_id: int) -> _Elsewhere | None:
        """The newest position of the book recorded by anything but KOReader."""
        found: list[_Elsewhere] = []
        state = self.kobo.kobo_states(user_id, [book_id]).get(book_id)
        if state is not None:
            percent, finished = progress_of(state)
            location = state.bookmark.location if state.bookmark else None
            found.append(
                _Elsewhere(
                    moment=state.received_at,
                    fraction=1.0 if finished else percent / 100,
                    device="Kobo",
                    chapter_source=location.source if location and not finished else None,
                )
            )
        for record in self.personal.progress(user_id, book_id):
            if record.device_kind in {KOBO_DEVICE_KIND, KOREADER_DEVICE_KIND}:
                continue
            fraction = 1.0 if record.is_finished else record.percentage / 100
            found.append(_Elsewhere(moment=record.updated_at, fraction=fraction, device=record.device_kind))
            break  # newest first
        return max(found, key=lambda e: e.moment, default=None)

    def _derived(self, document: str, book_id: int, elsewhere: _Elsewhere) -> ProgressRecord:
        spine = self._spine(book_id)
        chapter = spine.chapter_of(elsewhere.chapter_source) if spine and elsewhere.chapter_source else None
        if chapter is None and spine is not None:
            chapter = chapter_at(list(spine.sizes), elsewhere.fraction)
        return ProgressRecord(
            document=document,
            percentage=truncate(elsewhere.fraction),
            progress=chapter_pointer(chapter or 1),
            device=elsewhere.device,
            device_id=SERVER_DEVICE_ID,
            timestamp=seconds(elsewhere.moment),
        )

    def _spine(self, book_id: int) -> Spine | None:
        self.library.snapshot()
        rows = self.library.db.fetch(
            "SELECT b.path, d.name, d.format FROM books b JOIN data d ON d.book = b.id WHERE b.id = ?", (book_id,)
        )
        storage = self.library.db.files
        files = {str(fmt).upper(): f"{path}/{book_file_name(name, fmt)}" for path, name, fmt in rows}
        for wanted in _EPUB_FORMATS:
            stored = storage.stat(files[wanted]) if wanted in files else None
            if stored is not None:
                return read_spine(storage, stored)
        return None
