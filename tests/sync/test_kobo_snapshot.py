"""Snapshots and the diff a sync session sends, with its paging (spec 7.4)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterable

import msgspec
import pytest

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
from sync.kobo.token import PHASES, Phase

DEVICE = 7
OTHER_DEVICE = 8
SEED = int(os.environ.get("KOBO_SYNC_SEED", "20260817"))

Item = BookEntry | TagAction
Page = tuple[tuple[Phase, int], list[tuple[Phase, Item]]]


def book(book_id: int, version: int = 1) -> BookEntry:
    return BookEntry(id=book_id, uuid=f"00000000-0000-4000-8000-{book_id:012d}", version=version)


def progress(book_id: int, stamp: int, origin: int = 0) -> ProgressEntry:
    return ProgressEntry(book=book_id, stamp=stamp, origin=origin)


def tag(tag_id: str, version: int = 1) -> TagEntry:
    return TagEntry(id=tag_id, version=version)


def ids(entries: Iterable[BookEntry]) -> list[int]:
    return [entry.id for entry in entries]


def snapshot(
    books: Iterable[BookEntry],
    *,
    progress: Iterable[ProgressEntry] = (),
    tags: Iterable[TagEntry] = (),
    tombstones: Iterable[int] = (),
) -> Snapshot:
    return build_snapshot(books, progress=progress, tags=tags, tombstones=tombstones)


LIBRARY = snapshot(
    [book(3), book(1), book(2)],
    progress=[progress(2, 1_000, DEVICE), progress(1, 2_000, 0)],
    tags=[tag("b"), tag("a")],
)


# First sync and no change.


def test_first_sync_sends_every_book_as_new_and_every_tag_as_new() -> None:
    plan = plan_sync(None, LIBRARY, device_id=DEVICE)

    assert plan.new == (book(1), book(2), book(3))
    assert plan.changed == ()
    assert plan.removed == ()
    assert plan.progress == ()
    assert plan.tags == (TagAction(kind="new", tag=tag("a")), TagAction(kind="new", tag=tag("b")))
    assert plan.total == 5


def test_first_sync_of_an_empty_library_is_empty() -> None:
    plan = plan_sync(None, Snapshot(), device_id=DEVICE)

    assert plan == SyncPlan()
    assert plan.total == 0


def test_unchanged_snapshot_gives_an_empty_plan() -> None:
    same = snapshot(
        [book(1), book(2), book(3)],
        progress=[progress(1, 2_000, 0), progress(2, 1_000, DEVICE)],
        tags=[tag("a"), tag("b")],
    )

    plan = plan_sync(LIBRARY, same, device_id=DEVICE)

    assert plan == SyncPlan()
    assert plan.total == 0


# Books.


def test_changed_version_is_changed_with_the_new_entry() -> None:
    current = snapshot([book(1), book(2, version=5), book(3)], progress=LIBRARY.progress, tags=LIBRARY.tags)

    plan = plan_sync(LIBRARY, current, device_id=DEVICE)

    assert plan.changed == (book(2, version=5),)
    assert plan.new == ()
    assert plan.removed == ()
    assert plan.progress == ()
    assert plan.tags == ()
    assert plan.total == 1


def test_new_book_is_new() -> None:
    current = snapshot([*LIBRARY.books, book(9)], progress=LIBRARY.progress, tags=LIBRARY.tags)

    plan = plan_sync(LIBRARY, current, device_id=DEVICE)

    assert plan == SyncPlan(new=(book(9),))


def test_book_gone_is_removed_with_its_uuid() -> None:
    current = snapshot([book(1), book(3)], progress=[progress(1, 2_000, 0)], tags=LIBRARY.tags)

    plan = plan_sync(LIBRARY, current, device_id=DEVICE)

    assert plan == SyncPlan(removed=(book(2),))
    assert plan.removed[0].uuid == "00000000-0000-4000-8000-000000000002"


def test_book_the_device_deleted_itself_is_not_removed() -> None:
    current = snapshot(LIBRARY.books, progress=LIBRARY.progress, tags=LIBRARY.tags, tombstones=[2])

    plan = plan_sync(LIBRARY, current, device_id=DEVICE)

    assert ids(current.books) == [1, 3]
    assert plan == SyncPlan()


def test_book_restored_after_a_tombstone_is_new_again() -> None:
    deleted = snapshot(LIBRARY.books, tags=LIBRARY.tags, tombstones=[2])
    restored = snapshot(LIBRARY.books, tags=LIBRARY.tags)

    plan = plan_sync(deleted, restored, device_id=DEVICE)

    assert plan == SyncPlan(new=(book(2),))


# Reading progress.


def test_progress_changed_elsewhere_is_sent() -> None:
    current = snapshot(LIBRARY.books, progress=[progress(1, 3_000, 0), progress(2, 1_000, DEVICE)], tags=LIBRARY.tags)

    plan = plan_sync(LIBRARY, current, device_id=DEVICE)

    assert plan == SyncPlan(progress=(book(1),))


def test_progress_changed_by_another_kobo_is_sent() -> None:
    current = snapshot(
        LIBRARY.books, progress=[progress(1, 2_000, 0), progress(2, 5_000, OTHER_DEVICE)], tags=LIBRARY.tags
    )

    plan = plan_sync(LIBRARY, current, device_id=DEVICE)

    assert plan == SyncPlan(progress=(book(2),))


def test_progress_the_device_made_itself_is_not_echoed() -> None:
    current = snapshot(
        LIBRARY.books, progress=[progress(1, 3_000, DEVICE), progress(2, 5_000, DEVICE)], tags=LIBRARY.tags
    )

    plan = plan_sync(LIBRARY, current, device_id=DEVICE)

    assert plan == SyncPlan()
    # ...but the same snapshot does reach another Kobo.
    assert plan_sync(LIBRARY, current, device_id=OTHER_DEVICE).progress == (book(1), book(2))


def test_progress_appearing_elsewhere_is_sent() -> None:
    current = snapshot(LIBRARY.books, progress=[*LIBRARY.progress, progress(3, 9_000, 0)], tags=LIBRARY.tags)

    plan = plan_sync(LIBRARY, current, device_id=DEVICE)

    assert plan == SyncPlan(progress=(book(3),))


def test_progress_that_disappeared_is_sent() -> None:
    current = snapshot(LIBRARY.books, progress=[progress(2, 1_000, DEVICE)], tags=LIBRARY.tags)

    plan = plan_sync(LIBRARY, current, device_id=DEVICE)

    assert plan == SyncPlan(progress=(book(1),))


def test_progress_of_a_changed_book_is_not_repeated() -> None:
    current = snapshot(
        [book(1, version=2), book(2), book(3)],
        progress=[progress(1, 3_000, 0), progress(2, 1_000, DEVICE)],
        tags=LIBRARY.tags,
    )

    plan = plan_sync(LIBRARY, current, device_id=DEVICE)

    assert plan == SyncPlan(changed=(book(1, version=2),))


def test_progress_of_new_and_removed_books_is_not_in_the_progress_phase() -> None:
    current = snapshot(
        [book(1), book(3), book(4)], progress=[progress(1, 2_000, 0), progress(4, 1, 0)], tags=LIBRARY.tags
    )

    plan = plan_sync(LIBRARY, current, device_id=DEVICE)

    assert plan == SyncPlan(new=(book(4),), removed=(book(2),))


# Tags.


def test_tags_new_changed_and_deleted() -> None:
    current = snapshot(LIBRARY.books, progress=LIBRARY.progress, tags=[tag("b", version=2), tag("c")])

    plan = plan_sync(LIBRARY, current, device_id=DEVICE)

    assert plan == SyncPlan(
        tags=(
            TagAction(kind="changed", tag=tag("b", version=2)),
            TagAction(kind="new", tag=tag("c")),
            TagAction(kind="deleted", tag=tag("a")),
        )
    )


# build_snapshot and its storage.


def test_build_snapshot_drops_tombstoned_books_and_their_progress_and_sorts() -> None:
    built = build_snapshot(
        [book(5), book(2), book(9), book(1)],
        progress=[progress(9, 3), progress(5, 1), progress(2, 2), progress(77, 4)],
        tags=[tag("z"), tag("a"), tag("m")],
        tombstones=[9, 4, 2],
    )

    assert built == Snapshot(
        books=(book(1), book(5)),
        progress=(progress(5, 1),),
        tags=(tag("a"), tag("m"), tag("z")),
        tombstones=(2, 4, 9),
    )


def test_build_snapshot_order_does_not_depend_on_input_order() -> None:
    books = [book(i, version=i % 3) for i in range(1, 20)]
    marks = [progress(i, i * 10, i % 2) for i in range(1, 20, 2)]
    tags = [tag(f"t{i}") for i in range(7)]

    forward = build_snapshot(books, progress=marks, tags=tags, tombstones=[4, 6])
    backward = build_snapshot(books[::-1], progress=marks[::-1], tags=tags[::-1], tombstones=[6, 4])

    assert forward == backward
    assert encode_snapshot(forward) == encode_snapshot(backward)


def test_encode_decode_round_trip() -> None:
    built = build_snapshot(
        [book(1, version=3), book(2**40)],
        progress=[progress(1, 1_755_453_413_254, DEVICE)],
        tags=[tag("shelf-1", version=4)],
        tombstones=[3],
    )

    data = encode_snapshot(built)

    assert isinstance(data, bytes)
    assert decode_snapshot(data) == built
    assert decode_snapshot(encode_snapshot(Snapshot())) == Snapshot()


@pytest.mark.parametrize("data", [b"", b"\xc1", b"not msgpack", msgspec.msgpack.encode({"books": [[1, 2]]})])
def test_decode_refuses_bytes_that_are_not_a_snapshot(data: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_snapshot(data)


# Paging.

PLAN = SyncPlan(
    new=(book(1), book(2)),
    removed=(book(3),),
    tags=(TagAction(kind="new", tag=tag("a")),),
)


@pytest.mark.parametrize(
    ("phase", "after", "expected"),
    [
        ("new", 0, ("new", 0)),
        ("new", 1, ("new", 1)),
        ("new", 2, ("removed", 0)),
        ("changed", 0, ("removed", 0)),
        ("removed", 0, ("removed", 0)),
        ("removed", 1, ("tags", 0)),
        ("progress", 0, ("tags", 0)),
        ("progress", 5, ("tags", 0)),
        ("tags", 0, ("tags", 0)),
        ("tags", 1, None),
        ("tags", 99, None),
    ],
)
def test_next_position_walks_the_phases_in_order(phase: Phase, after: int, expected: tuple[Phase, int] | None) -> None:
    assert next_position(PLAN, phase, after) == expected


def test_next_position_of_an_empty_plan_is_none() -> None:
    assert all(next_position(SyncPlan(), phase, 0) is None for phase in PHASES)


def test_phases_are_in_the_spec_order() -> None:
    assert PHASES == ("new", "changed", "removed", "progress", "tags")


def walk(plan: SyncPlan, size: int, start: tuple[Phase, int] = (PHASES[0], 0)) -> list[Page]:
    """Every page the device is sent from ``start``, ``size`` items at most, the way a sync request
    fills one, each with the position its token pointed at."""
    result: list[Page] = []
    position = next_position(plan, *start)
    while position is not None:
        requested = position
        items: list[tuple[Phase, Item]] = []
        while position is not None and len(items) < size:
            phase, first = position
            taken = plan.items(phase)[first : first + size - len(items)]
            items.extend((phase, item) for item in taken)
            position = next_position(plan, phase, first + len(taken))
        result.append((requested, items))
    return result


def pages(plan: SyncPlan, size: int) -> list[list[tuple[Phase, Item]]]:
    return [items for _, items in walk(plan, size)]


def test_paging_crosses_phases() -> None:
    assert pages(PLAN, 2) == [
        [("new", book(1)), ("new", book(2))],
        [("removed", book(3)), ("tags", TagAction(kind="new", tag=tag("a")))],
    ]
    assert pages(SyncPlan(), 3) == []


# Random pairs of snapshots.


def random_library(rand: random.Random, previous: Snapshot | None) -> Snapshot:
    """A snapshot; with ``previous``, a plausible next one (some books gone, changed, added, deleted)."""
    universe = range(1, 41)
    if previous is None:
        books = [book(i, rand.randrange(3)) for i in universe if rand.random() < 0.5]
        tags = [tag(f"t{i}", rand.randrange(3)) for i in range(8) if rand.random() < 0.5]
    else:
        books = [book(b.id, b.version + (rand.random() < 0.2)) for b in previous.books if rand.random() < 0.8]
        books += [book(i, rand.randrange(3)) for i in universe if rand.random() < 0.15]
        tags = [tag(t.id, t.version + (rand.random() < 0.3)) for t in previous.tags if rand.random() < 0.8]
        tags += [tag(f"t{i}", 0) for i in range(8, 12) if rand.random() < 0.2]
    unique_books = list({b.id: b for b in books}.values())
    unique_tags = list({t.id: t for t in tags}.values())
    origins = [0, DEVICE, OTHER_DEVICE]
    marks: list[ProgressEntry] = []
    before = {p.book: p for p in previous.progress} if previous else {}
    for b in unique_books:
        kept = before.get(b.id)
        if kept is not None and rand.random() < 0.6:
            marks.append(kept)
        elif rand.random() < 0.6:
            marks.append(progress(b.id, rand.randrange(1, 6), rand.choice(origins)))
    tombstones = [i for i in universe if rand.random() < 0.08]
    return build_snapshot(unique_books, progress=marks, tags=unique_tags, tombstones=tombstones)


def expected_progress(previous: Snapshot, current: Snapshot, changed: set[int]) -> set[int]:
    before = {p.book: p.stamp for p in previous.progress}
    now = {p.book: p for p in current.progress}
    kept = {b.id for b in previous.books} & {b.id for b in current.books}
    result = set()
    for book_id in kept - changed:
        mark = now.get(book_id)
        if mark is None:
            if book_id in before:
                result.add(book_id)
        elif before.get(book_id) != mark.stamp and mark.origin != DEVICE:
            result.add(book_id)
    return result


def check_plan(previous: Snapshot | None, current: Snapshot, plan: SyncPlan) -> None:
    before = {b.id: b for b in previous.books} if previous else {}
    now = {b.id: b for b in current.books}
    tombstones = set(current.tombstones)
    new, changed, removed, moved = (set(ids(part)) for part in (plan.new, plan.changed, plan.removed, plan.progress))

    # The device ends up with exactly the current books.
    assert (set(before) | new) - removed - tombstones == set(now)
    # Each book is in one phase at most, once.
    sent = [*ids(plan.new), *ids(plan.changed), *ids(plan.removed), *ids(plan.progress)]
    assert len(sent) == len(set(sent))
    # Each phase is exactly what it should be, in id order.
    assert new == set(now) - set(before)
    assert changed == {i for i in set(now) & set(before) if now[i].version != before[i].version}
    assert removed == set(before) - set(now) - tombstones
    assert all(entry == now[entry.id] for entry in (*plan.new, *plan.changed))
    assert all(entry == before[entry.id] for entry in plan.removed)
    if previous is None:
        assert moved == set()
    else:
        assert moved == expected_progress(previous, current, changed)
    for part in (plan.new, plan.changed, plan.removed, plan.progress):
        assert ids(part) == sorted(ids(part))
    # Tags.
    tags_before = {t.id: t for t in previous.tags} if previous else {}
    tags_now = {t.id: t for t in current.tags}
    actions = {(action.kind, action.tag) for action in plan.tags}
    assert len(actions) == len(plan.tags)
    assert actions == (
        {("new", tags_now[i]) for i in set(tags_now) - set(tags_before)}
        | {("changed", tags_now[i]) for i in set(tags_now) & set(tags_before) if tags_now[i] != tags_before[i]}
        | {("deleted", tags_before[i]) for i in set(tags_before) - set(tags_now)}
    )


def check_paging(plan: SyncPlan, size: int) -> None:
    everything = [(phase, item) for phase in PHASES for item in plan.items(phase)]
    walked = pages(plan, size)

    assert [entry for page in walked for entry in page] == everything
    assert len(everything) == plan.total
    assert all(len(page) == size for page in walked[:-1])
    assert all(0 < len(page) <= size for page in walked)
    assert len(walked) == -(-len(everything) // size)


def test_random_snapshot_pairs() -> None:
    print(f"KOBO_SYNC_SEED={SEED}")
    rand = random.Random(SEED)
    for round_ in range(300):
        previous = random_library(rand, None) if rand.random() < 0.9 else None
        current = random_library(rand, previous)

        plan = plan_sync(previous, current, device_id=DEVICE)

        context = f"seed {SEED}, round {round_}"
        assert plan == plan_sync(previous, current, device_id=DEVICE), context
        assert plan.total == sum(len(plan.items(phase)) for phase in PHASES), context
        try:
            check_plan(previous, current, plan)
            for size in range(1, 8):
                check_paging(plan, size)
        except AssertionError as exc:
            raise AssertionError(f"{context}: {previous!r} -> {current!r}") from exc
        # A snapshot compared with itself sends nothing.
        assert plan_sync(current, current, device_id=DEVICE) == SyncPlan(), context


def test_a_resent_token_reproduces_the_page() -> None:
    """Pages are a pure function of (from, to, phase, after): a token sent again, with the plan made
    again from the stored snapshots, gives the same page and the same pages after it."""
    print(f"KOBO_SYNC_SEED={SEED}")
    rand = random.Random(SEED + 1)
    previous = random_library(rand, None)
    current = random_library(rand, previous)
    walked = walk(plan_sync(previous, current, device_id=DEVICE), 3)
    assert len(walked) > 2, f"seed {SEED}: too few pages to test"

    for index, (position, _) in enumerate(walked):
        again = plan_sync(
            decode_snapshot(encode_snapshot(previous)), decode_snapshot(encode_snapshot(current)), device_id=DEVICE
        )
        assert walk(again, 3, position) == walked[index:]
