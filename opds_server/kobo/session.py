"""One device's library sync, page by page (spec 7.4): snapshot, diff, materialise, token.

A session starts when a device sends a token without a snapshot in progress: if neither the
library's generation nor anything personal changed since the snapshot it completed, it gets an
empty page at once (the fast path); otherwise a new snapshot is frozen and the difference is sent
in pages. A page stops at ``page_size`` books, ``PAGE_BYTES`` of JSON or ``PAGE_SECONDS`` of
work, whichever comes first, so no response nears the device's 30 s limit or its ~286 KB limit
(calibre-web#1276). Pages are pure functions of the token, and one device's sessions run one at
a time (a lock per device), so two overlapping syncs of one URL queue up instead of interleaving.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence

import msgspec

from opds_server.calibre.model import Book
from opds_server.db.kobo import DeviceRecord, KoboStore
from opds_server.db.library import PersonalLibrary
from opds_server.kobo.library import KoboLibrary, build_entitlement, build_metadata, locate, removed_metadata
from opds_server.kobo.locks import DeviceLocks
from opds_server.kobo.urls import KoboUrls
from sync.kobo.model import (
    BookMetadata,
    DownloadUrl,
    Entitlement,
    ReadingState,
    ReadingStateChange,
    SyncItem,
    Tag,
    TagChange,
    TagItem,
)
from sync.kobo.snapshot import (
    BookEntry,
    ProgressEntry,
    Snapshot,
    SyncPlan,
    TagAction,
    TagEntry,
    build_snapshot,
    decode_snapshot,
    encode_snapshot,
    next_position,
    plan_sync,
)
from sync.kobo.state import OtherProgress, StoredState, progress_stamp, reading_state
from sync.kobo.timestamps import format_timestamp
from sync.kobo.token import SyncToken, decode_token, encode_token

PAGE_BYTES = 200_000
PAGE_SECONDS = 8.0
BATCH = 25
MAX_CACHED = 3
"""Decoded snapshots (and plans) kept per process: the two of a session in progress and one more
(a snapshot of 100,000 books is about 15 MB of objects)."""
PREPARE_LIMIT = 100
"""A session sending at most this many new or changed books converts their KEPUBs ahead; a first
sync of a large library does not convert everything (each book converts when downloaded)."""
_TAG_NAMESPACE = uuid.UUID("0b7f3f8e-5a0c-4f4e-8d59-3a7c2e1d9b64")

DownloadChooser = Callable[[Book, KoboUrls, bool], DownloadUrl | None]
"""``(book, urls, prepare)``: the download offered for a book; ``prepare`` converts it ahead."""


def tag_id(shelf_id: int, created: dt.datetime) -> str:
    """A shelf's collection id: stable for the shelf, new for a new shelf that reuses its row id."""
    return str(uuid.uuid5(_TAG_NAMESPACE, f"{shelf_id}:{created.timestamp():.6f}"))


def _version(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big") >> 1


class SyncPage(msgspec.Struct, frozen=True, kw_only=True):
    body: bytes
    token: str
    has_more: bool
    items: int
    store_token: str = ""
    """The Kobo store's own token, carried inside ours (spec 10)."""


class ShelfView(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    tag_id: str
    name: str
    created: dt.datetime
    updated: dt.datetime
    books: tuple[int, ...]


class KoboSync:
    """Library sync sessions for every device."""

    def __init__(
        self,
        *,
        store: KoboStore,
        library: KoboLibrary,
        personal: PersonalLibrary,
        choose_download: DownloadChooser,
        page_size: int,
        locks: DeviceLocks,
    ) -> None:
        self.store = store
        self.library = library
        self.personal = personal
        self.choose_download = choose_download
        self.page_size = page_size
        self.locks = locks
        self._snapshots: OrderedDict[tuple[int, int], Snapshot] = OrderedDict()
        self._plans: OrderedDict[tuple[int, int | None, int], SyncPlan] = OrderedDict()
        self._cache_lock = threading.Lock()

    # Snapshots

    def shelves(self, device: DeviceRecord, *, shelves_only: bool | None = None) -> list[ShelfView]:
        """The user's shelves that sync to this device as collections (``shelves_only``: the
        device's setting, when the caller has read it already)."""
        records = self.personal.shelves(device.user_id)
        if self._shelves_only(device) if shelves_only is None else shelves_only:
            chosen = set(self.store.device_shelves(device.id))
            records = [s for s in records if s.id in chosen]
        views = []
        for shelf in records:
            books = self.personal.shelf_books(device.user_id, shelf.id) or []
            views.append(
                ShelfView(
                    id=shelf.id,
                    tag_id=tag_id(shelf.id, shelf.created_at),
                    name=shelf.name,
                    created=shelf.created_at,
                    updated=shelf.updated_at,
                    books=tuple(books),
                )
            )
        return views

    def _shelves_only(self, device: DeviceRecord) -> bool:
        current = self.store.device(device.user_id, device.id)
        return bool(current and current.shelves_only)

    def build(self, device: DeviceRecord) -> Snapshot:
        """What this device should have now."""
        shelves_only = self._shelves_only(device)
        shelves = self.shelves(device, shelves_only=shelves_only)
        only = {b for s in shelves for b in s.books} if shelves_only else None
        entries = self.library.entries(only=only)
        tombstones = self.store.tombstones(device.id)
        dead = {e.id for e in entries if tombstones.get(e.id) == e.version}
        present = {e.id: e for e in entries if e.id not in dead}
        stored = self.store.kobo_states(device.user_id)
        others = self.store.other_progress(device.user_id)
        progress = []
        for book_id in (set(stored) | set(others)) & set(present):
            stamp = progress_stamp(stored.get(book_id), others.get(book_id))
            if stamp is not None:
                progress.append(ProgressEntry(book=book_id, stamp=stamp[0], origin=stamp[1]))
        tags = [
            TagEntry(
                id=s.tag_id,
                version=_version(s.name, tuple(present[b].uuid for b in s.books if b in present)),
            )
            for s in shelves
        ]
        return build_snapshot(present.values(), progress=progress, tags=tags, tombstones=dead)

    def _snapshot(self, device_id: int, snapshot_id: int | None) -> Snapshot | None:
        if snapshot_id is None:
            return None
        key = (device_id, snapshot_id)
        with self._cache_lock:
            found = self._snapshots.get(key)
            if found is not None:
                self._snapshots.move_to_end(key)
                return found
        record = self.store.snapshot(device_id, snapshot_id)
        if record is None:
            return None
        try:
            snapshot = decode_snapshot(record.body)
        except msgspec.DecodeError:
            return None
        with self._cache_lock:
            self._snapshots[key] = snapshot
            while len(self._snapshots) > MAX_CACHED:
                self._snapshots.popitem(last=False)
        return snapshot

    def _plan(self, device: DeviceRecord, token: SyncToken) -> SyncPlan | None:
        if token.to is None:
            return None
        key = (device.id, token.from_, token.to)
        with self._cache_lock:
            found = self._plans.get(key)
            if found is not None:
                return found
        current = self._snapshot(device.id, token.to)
        if current is None:
            return None
        previous = self._snapshot(device.id, token.from_)
        plan = plan_sync(previous, current, device_id=device.id)
        with self._cache_lock:
            self._plans[key] = plan
            while len(self._plans) > MAX_CACHED:
                self._plans.popitem(last=False)
        return plan

    def metadata(self, book: Book, urls: KoboUrls, *, prepare: bool = False) -> BookMetadata:
        """A book's ``BookMetadata`` as sync and ``/v1/library/{id}/metadata`` send it."""
        return build_metadata(book, files=self.library.files, download=self.choose_download(book, urls, prepare))

    # Sessions

    def sync(self, device: DeviceRecord, header: str | None, urls: KoboUrls, *, now: dt.datetime) -> SyncPage:
        """The next page for a device that sent ``header`` as its sync token.

        Raises:
            ForgedSyncTokenError: the token is ours but not for this device or edited.
        """
        key = device.sync_key.encode()
        token = decode_token(header, key)
        with self.locks.hold(device.id):
            plan = self._plan(device, token)
            if plan is None:
                token, plan = self._start(device, token, now=now)
                if plan is None:  # nothing changed since the last completed snapshot
                    return SyncPage(
                        body=b"[]", token=encode_token(token, key), has_more=False, items=0, store_token=token.store
                    )
            return self._page(device, token, plan, urls, key, now=now)

    @staticmethod
    def with_store_token(device: DeviceRecord, header: str, store_token: str) -> str:
        """Our token ``header`` (just made for ``device``) carrying the store's new token."""
        key = device.sync_key.encode()
        return encode_token(msgspec.structs.replace(decode_token(header, key), store=store_token), key)

    def _start(self, device: DeviceRecord, token: SyncToken, *, now: dt.datetime) -> tuple[SyncToken, SyncPlan | None]:
        previous_id = token.from_ if self._snapshot(device.id, token.from_) is not None else None
        generation = self.library.library.snapshot().generation
        stamp = f"{generation}:{self.store.personal_stamp(device)}"
        if previous_id is not None and self.store.snapshot_stamp(device.id, previous_id) == stamp:
            return SyncToken(store=token.store, from_=previous_id), None
        snapshot = self.build(device)
        snapshot_id = self.store.save_snapshot(device.id, stamp=stamp, body=encode_snapshot(snapshot), now=now)
        started = SyncToken(store=token.store, from_=previous_id, to=snapshot_id, phase="new", after=0)
        plan = self._plan(device, started)
        if plan is None:
            msg = f"snapshot {snapshot_id} of device {device.id} vanished as it was made"
            raise RuntimeError(msg)
        return started, plan

    def _page(
        self, device: DeviceRecord, token: SyncToken, plan: SyncPlan, urls: KoboUrls, key: bytes, *, now: dt.datetime
    ) -> SyncPage:
        started = time.monotonic()
        position = next_position(plan, token.phase or "new", token.after)
        chunks: list[bytes] = []
        size = 2
        count = 0
        current = self._snapshot(device.id, token.to) or Snapshot()
        prepare = len(plan.new) + len(plan.changed) <= PREPARE_LIMIT
        while position is not None and count < self.page_size:
            phase, index = position
            batch = plan.items(phase)[index : index + min(BATCH, self.page_size - count)]
            encoded = self._materialise(device, phase, batch, current, urls, prepare=prepare, now=now)
            taken = 0
            for pieces in encoded:
                piece_size = sum(len(p) + 1 for p in pieces)
                if count and size + piece_size > PAGE_BYTES:
                    break
                chunks.extend(pieces)
                size += piece_size
                count += 1
                taken += 1
            position = next_position(plan, phase, index + taken)
            if taken < len(batch) or time.monotonic() - started > PAGE_SECONDS:
                break
        body = b"[" + b",".join(chunks) + b"]"
        if position is None:
            assert token.to is not None  # a plan exists only for a session in progress
            self.store.complete_snapshot(device.id, token.to, previous=token.from_, now=now)
            following = SyncToken(store=token.store, from_=token.to)
            return SyncPage(
                body=body, token=encode_token(following, key), has_more=False, items=count, store_token=token.store
            )
        phase, index = position
        following = SyncToken(store=token.store, from_=token.from_, to=token.to, phase=phase, after=index)
        return SyncPage(
            body=body, token=encode_token(following, key), has_more=True, items=count, store_token=token.store
        )

    def _materialise(
        self,
        device: DeviceRecord,
        phase: str,
        batch: Sequence[BookEntry] | Sequence[TagAction],
        current: Snapshot,
        urls: KoboUrls,
        *,
        prepare: bool,
        now: dt.datetime,
    ) -> list[list[bytes]]:
        """Each action's JSON objects (one action may need several, see ``plan_sync``)."""
        encode = msgspec.json.encode
        if phase == "tags":
            return self._tags(device, [a for a in batch if isinstance(a, TagAction)], current, now=now)
        entries = [e for e in batch if isinstance(e, BookEntry)]
        ids = [e.id for e in entries]
        books = self.library.books(ids)
        stored = self.store.kobo_states(device.user_id, ids)
        others = self.store.other_progress(device.user_id, ids)
        out: list[list[bytes]] = []
        for entry in entries:
            book = books.get(entry.id)
            if phase == "removed":
                metadata = (
                    build_metadata(book, files=self.library.files, download=None)
                    if book
                    else removed_metadata(entry.uuid)
                )
                modified = book.last_modified if book else now
                entitlement = build_entitlement(
                    entry.uuid, created=book.timestamp if book else now, modified=modified, is_removed=True
                )
                out.append(
                    [
                        encode(
                            SyncItem(
                                changed_entitlement=Entitlement(book_entitlement=entitlement, book_metadata=metadata)
                            )
                        )
                    ]
                )
                continue
            if book is None:
                out.append([])  # deleted since the snapshot: the next session removes it
                continue
            state = self._state(book, stored.get(entry.id), locate(self.library.files, book, others.get(entry.id)))
            if phase == "progress":
                out.append([encode(SyncItem(changed_reading_state=ReadingStateChange(reading_state=state)))])
                continue
            entitlement = build_entitlement(book.uuid, created=book.timestamp, modified=book.last_modified)
            metadata = self.metadata(book, urls, prepare=prepare)
            item = Entitlement(book_entitlement=entitlement, book_metadata=metadata, reading_state=state)
            pieces = [encode(SyncItem(new_entitlement=item))]
            if phase == "changed":
                # The device ignores a state inside a changed entitlement (Komga): send both.
                plain = Entitlement(book_entitlement=entitlement, book_metadata=metadata)
                pieces.append(encode(SyncItem(changed_product_metadata=plain)))
                pieces.append(encode(SyncItem(changed_reading_state=ReadingStateChange(reading_state=state))))
            out.append(pieces)
        return out

    @staticmethod
    def _state(book: Book, stored: StoredState | None, other: OtherProgress | None) -> ReadingState:
        return reading_state(book.uuid, stored, other, created=book.timestamp)

    def _tags(
        self, device: DeviceRecord, actions: list[TagAction], current: Snapshot, *, now: dt.datetime
    ) -> list[list[bytes]]:
        out: list[list[bytes]] = []
        if not actions:
            return out
        present = {b.id: b.uuid for b in current.books}
        views: dict[str, ShelfView] = {}
        for action in actions:
            if action.kind == "deleted":
                tag = Tag(id=action.tag.id, last_modified=format_timestamp(now))
                out.append([msgspec.json.encode(SyncItem(deleted_tag=TagChange(tag=tag)))])
                continue
            if not views:
                views = {v.tag_id: v for v in self.shelves(device)}
            view = views.get(action.tag.id)
            if view is None:
                out.append([])  # the shelf went away since the snapshot: the next session deletes it
                continue
            tag = Tag(
                id=view.tag_id,
                name=view.name,
                type="UserTag",
                created=format_timestamp(view.created),
                last_modified=format_timestamp(view.updated),
                items=[TagItem(revision_id=present[b]) for b in view.books if b in present],
            )
            change = TagChange(tag=tag)
            item = SyncItem(new_tag=change) if action.kind == "new" else SyncItem(changed_tag=change)
            out.append([msgspec.json.encode(item)])
        return out
