"""Snapshots of what a device should have, and the diff between two of them (spec 7.4).

A snapshot is frozen when a sync session starts: every book the device should hold with one
version number that changes with its metadata, files or cover; the reading states' stamps; the
synced collections. A session sends the difference between the snapshot the device completed
(``from``) and the new one (``to``). Because both are frozen, a page is a pure function of
``(from, to, phase, after)``: a page the device asks for again comes out the same, and nothing is
marked "sent" while paging (the race calibre-web-automated#1345 removed). Deletions, a format
added later, a book that became visible through a shelf: all are differences between two sets,
which a timestamp cursor misses (calibre-web#3069, #2992).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from sync.kobo.token import PHASES, Phase


class BookEntry(msgspec.Struct, frozen=True, array_like=True):
    id: int
    uuid: str
    version: int
    """Changes whenever the metadata, the file sent or the cover changes."""


class ProgressEntry(msgspec.Struct, frozen=True, array_like=True):
    book: int
    stamp: int
    """Changes whenever the reader's position changes (milliseconds of the last change)."""
    origin: int
    """The Kobo device that made the change, 0 for anything else (API, KOReader)."""


class TagEntry(msgspec.Struct, frozen=True, array_like=True):
    id: str
    version: int
    """Changes with the collection's name and members."""


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    books: tuple[BookEntry, ...] = ()
    """Sorted by id."""
    progress: tuple[ProgressEntry, ...] = ()
    tags: tuple[TagEntry, ...] = ()
    tombstones: tuple[int, ...] = ()
    """Books the device itself deleted (``DELETE /v1/library/{id}``): not sent, and not removed."""


class TagAction(msgspec.Struct, frozen=True, array_like=True):
    kind: str
    """``new``, ``changed`` or ``deleted``."""
    tag: TagEntry


class SyncPlan(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one session sends, phase by phase, each in a fixed order."""

    new: tuple[BookEntry, ...] = ()
    changed: tuple[BookEntry, ...] = ()
    removed: tuple[BookEntry, ...] = ()
    progress: tuple[BookEntry, ...] = ()
    tags: tuple[TagAction, ...] = ()

    def items(self, phase: Phase) -> Sequence[BookEntry] | Sequence[TagAction]:
        found: Sequence[BookEntry] | Sequence[TagAction] = getattr(self, phase)
        return found

    @property
    def total(self) -> int:
        return sum(len(self.items(phase)) for phase in PHASES)


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Snapshot)


def encode_snapshot(snapshot: Snapshot) -> bytes:
    return _ENCODER.encode(snapshot)


def decode_snapshot(data: bytes) -> Snapshot:
    """Raises: msgspec.DecodeError for bytes that are not a snapshot."""
    return _DECODER.decode(data)


def build_snapshot(
    books: Iterable[BookEntry],
    *,
    progress: Iterable[ProgressEntry] = (),
    tags: Iterable[TagEntry] = (),
    tombstones: Iterable[int] = (),
) -> Snapshot:
    """A snapshot in canonical order (books and progress by id, tags by id)."""
    dead = frozenset(tombstones)
    kept = sorted((b for b in books if b.id not in dead), key=lambda b: b.id)
    present = {b.id for b in kept}
    return Snapshot(
        books=tuple(kept),
        progress=tuple(sorted((p for p in progress if p.book in present), key=lambda p: p.book)),
        tags=tuple(sorted(tags, key=lambda t: t.id)),
        tombstones=tuple(sorted(dead)),
    )


def plan_sync(previous: Snapshot | None, current: Snapshot, *, device_id: int) -> SyncPlan:
    """What a device that has ``previous`` must be sent to have ``current``.

    Args:
        previous: the snapshot the device completed, ``None`` for a first (or forgotten) sync.
        current: the snapshot of this session.
        device_id: the device syncing; progress it made itself is not echoed back to it (8.1).

    Returns:
        Books new to the device (``NewEntitlement`` with their reading state); changed books
        (``NewEntitlement`` + ``ChangedProductMetadata`` + ``ChangedReadingState``); books gone
        (``ChangedEntitlement`` with ``IsRemoved``), except those the device deleted itself;
        books whose reading state alone changed elsewhere (``ChangedReadingState``); and
        collections new, changed or gone.
    """
    before = {b.id: b for b in previous.books} if previous else {}
    now_ids = {b.id for b in current.books}
    new = tuple(b for b in current.books if b.id not in before)
    changed = tuple(b for b in current.books if b.id in before and before[b.id].version != b.version)
    dead = set(current.tombstones)
    removed = tuple(b for b in (previous.books if previous else ()) if b.id not in now_ids and b.id not in dead)

    progress: tuple[BookEntry, ...] = ()
    if previous is not None:
        stamps_before = {p.book: p.stamp for p in previous.progress}
        stamps_now = {p.book: p for p in current.progress}
        moved = {b for b in set(stamps_before) | set(stamps_now) if b in before and b in now_ids}
        changed_ids = {b.id for b in changed}
        progress = tuple(
            b
            for b in current.books
            if b.id in moved
            and b.id not in changed_ids
            and _progress_moved(stamps_before.get(b.id), stamps_now.get(b.id), device_id)
        )

    tags_before = {t.id: t for t in previous.tags} if previous else {}
    tags_now = {t.id for t in current.tags}
    tags = [
        TagAction(kind="new" if t.id not in tags_before else "changed", tag=t)
        for t in current.tags
        if t.id not in tags_before or tags_before[t.id].version != t.version
    ]
    tags += [TagAction(kind="deleted", tag=t) for t in tags_before.values() if t.id not in tags_now]
    return SyncPlan(new=new, changed=changed, removed=removed, progress=progress, tags=tuple(tags))


def _progress_moved(before: int | None, now: ProgressEntry | None, device_id: int) -> bool:
    if now is None:
        return before is not None  # the state was reset elsewhere: send the default one
    if before == now.stamp:
        return False
    return now.origin != device_id  # the device's own change: it has it already


def next_position(plan: SyncPlan, phase: Phase, after: int) -> tuple[Phase, int] | None:
    """The first item not yet sent at or after ``(phase, after)``; ``None`` when all are sent."""
    for name in PHASES[PHASES.index(phase) :]:
        start = after if name == phase else 0
        if start < len(plan.items(name)):
            return name, start
    return None
