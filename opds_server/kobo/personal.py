"""What a Kobo changes in its reader's account: reading states, books it deleted, collections.

A reading state is stored exactly as the device sent it (``sync.kobo.state``) and also recorded
as the reader's progress on the ``kobo`` device kind, so ``Finished`` on the Kobo marks the book
read in the feeds and the API. Collections made or changed on the device become shelves (a
same-named shelf of the reader is reused, spec 11); an unknown collection id is a no-op with a
2xx, because the device retries failed tag calls forever (bookorbit#1005).
"""

from __future__ import annotations

import datetime as dt
import logging

import msgspec

from opds_server.calibre.model import Book
from opds_server.db.kobo import KOBO_DEVICE_KIND, DeviceRecord, KoboStore
from opds_server.db.library import PersonalLibrary, ShelfNameError, ShelfRecord
from opds_server.kobo.library import KoboLibrary, locate
from opds_server.kobo.session import tag_id
from sync.kobo.model import ReadingState, ReadingStateUpdate
from sync.kobo.state import StoredState, apply_update, progress_of, reading_state

log = logging.getLogger(__name__)


class KoboPersonal:
    def __init__(self, *, store: KoboStore, library: KoboLibrary, personal: PersonalLibrary) -> None:
        self.store = store
        self.library = library
        self.personal = personal

    # Reading states

    def state_of(self, device: DeviceRecord, book: Book) -> ReadingState:
        stored = self.store.kobo_states(device.user_id, [book.id]).get(book.id)
        other = locate(self.library.files, book, self.store.other_progress(device.user_id, [book.id]).get(book.id))
        return reading_state(book.uuid, stored, other, created=book.timestamp)

    def save_state(
        self, device: DeviceRecord, book_id: int, update: ReadingStateUpdate, *, now: dt.datetime
    ) -> StoredState:
        """Store a (normalised) update and the progress it means."""
        existing = self.store.kobo_states(device.user_id, [book_id]).get(book_id)
        stored = apply_update(existing, update, book_id=book_id, device_id=device.id, now=now)
        self.store.save_kobo_state(device.user_id, stored)
        percentage, is_finished = progress_of(stored)
        location = stored.bookmark.location if stored.bookmark else None
        self.personal.save_progress(
            device.user_id,
            book_id,
            device_kind=KOBO_DEVICE_KIND,
            percentage=percentage,
            locator=msgspec.json.encode(location).decode() if location else None,
            is_finished=is_finished,
            now=now,
        )
        return stored

    def forget_book(self, device: DeviceRecord, book_id: int, *, now: dt.datetime) -> None:
        """The device deleted a book: do not send it again until it changes (spec 5.7)."""
        entries = self.library.entries(only=[book_id])
        if entries:
            self.store.add_tombstone(device.id, book_id, version=entries[0].version, now=now)

    # Collections

    def _shelf(self, device: DeviceRecord, tag: str) -> ShelfRecord | None:
        return next((s for s in self.personal.shelves(device.user_id) if tag_id(s.id, s.created_at) == tag), None)

    def has_collection(self, device: DeviceRecord, tag: str) -> bool:
        return self._shelf(device, tag) is not None

    def _books(self, revision_ids: list[str]) -> list[int]:
        found = (self.library.book_id(r.lower()) for r in dict.fromkeys(revision_ids) if len(r) == 36)
        return [b for b in found if b is not None]

    def create_collection(self, device: DeviceRecord, name: str, revision_ids: list[str], *, now: dt.datetime) -> str:
        """A shelf for a collection made on the device (or the reader's shelf of that name)."""
        key = " ".join(name.split()).casefold()
        shelf = next((s for s in self.personal.shelves(device.user_id) if s.name.casefold() == key), None)
        if shelf is None:
            try:
                shelf = self.personal.create_shelf(device.user_id, name, now=now)
            except ShelfNameError as exc:
                log.info("collection %r from device %d not kept: %s", name[:60], device.id, exc)
                return tag_id(0, now)
        for book_id in self._books(revision_ids):
            self.personal.add_to_shelf(device.user_id, shelf.id, book_id, now=now)
        current = self.store.device(device.user_id, device.id)
        if current is not None and current.shelves_only:
            self.store.add_device_shelf(device.id, shelf.id)
        return tag_id(shelf.id, shelf.created_at)

    def rename_collection(self, device: DeviceRecord, tag: str, name: str, *, now: dt.datetime) -> None:
        shelf = self._shelf(device, tag)
        if shelf is None:
            return
        try:
            self.personal.rename_shelf(device.user_id, shelf.id, name, now=now)
        except ShelfNameError as exc:
            log.info("collection rename from device %d not kept: %s", device.id, exc)

    def delete_collection(self, device: DeviceRecord, tag: str) -> None:
        shelf = self._shelf(device, tag)
        if shelf is not None:
            self.personal.delete_shelf(device.user_id, shelf.id)

    def add_to_collection(self, device: DeviceRecord, tag: str, revision_ids: list[str], *, now: dt.datetime) -> None:
        shelf = self._shelf(device, tag)
        if shelf is not None:
            for book_id in self._books(revision_ids):
                self.personal.add_to_shelf(device.user_id, shelf.id, book_id, now=now)

    def remove_from_collection(
        self, device: DeviceRecord, tag: str, revision_ids: list[str], *, now: dt.datetime
    ) -> None:
        shelf = self._shelf(device, tag)
        if shelf is not None:
            for book_id in self._books(revision_ids):
                self.personal.remove_from_shelf(device.user_id, shelf.id, book_id, now=now)
