"""Reading states: what a device PUTs, what we store, and what a GET or a sync sends back (spec 8).

The device's own state comes back exactly as it sent it: the same numbers in the same JSON type
(``48`` stays ``48``, ``0`` stays ``0``), its ``Location`` untouched, and its own ``LastModified``
as both ``LastModified`` and ``PriorityTimestamp``. A server-side "now" or ``48.0`` makes the
device think the state is newer than its own and ask "Return to last page read?" for nothing
(calibre-web#3585, #3601, #3607). Progress recorded elsewhere (the API, another reader) uses
the time we received it, so there the popup is what the reader wants.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from sync.kobo.model import Bookmark, Location, ReadingState, ReadingStateUpdate, Statistics, Status, StatusInfo
from sync.kobo.timestamps import InvalidTimestampError, format_timestamp, parse_timestamp

MAX_MINUTES = 10_000_000


class InvalidReadingStateError(ValueError):
    """A reading state the device could not have meant; the message names the field."""


class StoredState(msgspec.Struct, frozen=True, kw_only=True):
    """A Kobo reading state as kept for one reader and book."""

    book_id: int
    created: dt.datetime
    last_modified: dt.datetime
    """The device's own ``LastModified`` (also its ``PriorityTimestamp``)."""
    bookmark: Bookmark | None = None
    statistics: Statistics | None = None
    status_info: StatusInfo | None = None
    received_at: dt.datetime
    """When we stored it: compared with progress from elsewhere."""
    origin_device: int
    """The device that sent it."""


class OtherProgress(msgspec.Struct, frozen=True, kw_only=True):
    """The newest position recorded by anything but a Kobo (API, KOReader, web reader)."""

    percentage: float
    is_finished: bool
    updated_at: dt.datetime
    locator: str | None = None
    """The reader's own position (a KOReader XPointer, a page number...)."""
    source: str | None = None
    """The spine document that position is in, when known: the Kobo bookmark's ``Location.Source``."""


def _timestamp(value: str | None, path: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except InvalidTimestampError as exc:
        raise InvalidReadingStateError(f"{path}: {exc}") from exc


def _stamp(value: str | None, path: str) -> str | None:
    moment = _timestamp(value, path)
    return format_timestamp(moment) if moment else None


def _percent(value: float | None, path: str) -> None:
    if value is not None and not 0 <= value <= 100:  # a percentage
        raise InvalidReadingStateError(f"{path} is {value}; a percentage from 0 to 100 is expected")


def _minutes(value: int | None, path: str) -> None:
    if value is not None and not 0 <= value <= MAX_MINUTES:
        raise InvalidReadingStateError(f"{path} is {value}; minutes from 0 to {MAX_MINUTES} are expected")


def normalise_update(update: ReadingStateUpdate, path: str) -> ReadingStateUpdate:
    """Check an update's values and write its timestamps our way (UTC, ``Z``).

    Args:
        update: one element of a PUT's ``ReadingStates``.
        path: where it was in the body, for messages (``$.ReadingStates[0]``).

    Raises:
        InvalidReadingStateError: a percentage outside 0-100, negative minutes, a timestamp that is
            not one; the message names the field.
    """
    bookmark = update.current_bookmark
    if bookmark is not None:
        _percent(bookmark.progress_percent, f"{path}.CurrentBookmark.ProgressPercent")
        _percent(bookmark.content_source_progress_percent, f"{path}.CurrentBookmark.ContentSourceProgressPercent")
        bookmark = msgspec.structs.replace(
            bookmark, last_modified=_stamp(bookmark.last_modified, f"{path}.CurrentBookmark.LastModified")
        )
    statistics = update.statistics
    if statistics is not None:
        _minutes(statistics.spent_reading_minutes, f"{path}.Statistics.SpentReadingMinutes")
        _minutes(statistics.remaining_time_minutes, f"{path}.Statistics.RemainingTimeMinutes")
        statistics = msgspec.structs.replace(
            statistics, last_modified=_stamp(statistics.last_modified, f"{path}.Statistics.LastModified")
        )
    status = update.status_info
    if status is not None:
        if status.times_started_reading is not None and status.times_started_reading < 0:
            raise InvalidReadingStateError(f"{path}.StatusInfo.TimesStartedReading must not be negative")
        status = msgspec.structs.replace(
            status,
            last_modified=_stamp(status.last_modified, f"{path}.StatusInfo.LastModified"),
            last_time_started_reading=_stamp(
                status.last_time_started_reading, f"{path}.StatusInfo.LastTimeStartedReading"
            ),
            last_time_finished=_stamp(status.last_time_finished, f"{path}.StatusInfo.LastTimeFinished"),
        )
    return msgspec.structs.replace(
        update,
        last_modified=_stamp(update.last_modified, f"{path}.LastModified"),
        current_bookmark=bookmark,
        statistics=statistics,
        status_info=status,
    )


def apply_update(
    existing: StoredState | None, update: ReadingStateUpdate, *, book_id: int, device_id: int, now: dt.datetime
) -> StoredState:
    """The state after a (normalised) update: only the parts present replace what was stored.

    The state's ``LastModified`` is the device's (or, when it sent none, the newest of its parts',
    or ``now``). Entering ``Reading`` counts a start when the device does not count itself.
    """
    parts = (update.current_bookmark, update.statistics, update.status_info)
    stamps = [parse_timestamp(p.last_modified) for p in parts if p is not None and p.last_modified]
    last_modified = parse_timestamp(update.last_modified) if update.last_modified else max(stamps, default=now)
    status = update.status_info
    previous_status = existing.status_info if existing else None
    if status is not None:
        status = _count_starts(status, previous_status, last_modified)
    return StoredState(
        book_id=book_id,
        created=existing.created if existing else now,
        last_modified=last_modified,
        bookmark=update.current_bookmark
        if update.current_bookmark is not None
        else (existing.bookmark if existing else None),
        statistics=update.statistics if update.statistics is not None else (existing.statistics if existing else None),
        status_info=status if status is not None else (existing.status_info if existing else None),
        received_at=now,
        origin_device=device_id,
    )


def _count_starts(status: StatusInfo, previous: StatusInfo | None, moment: dt.datetime) -> StatusInfo:
    """The device's status with the start counters it left out: kept from the stored status, and
    one more start when the status enters ``Reading``."""
    started = status.times_started_reading
    last_started = status.last_time_started_reading
    if started is None:
        started = (previous.times_started_reading or 0) if previous else 0
        if status.status == "Reading" and (previous is None or previous.status != "Reading"):
            started += 1
            last_started = last_started or format_timestamp(moment)
    if last_started is None and previous is not None:
        last_started = previous.last_time_started_reading
    return msgspec.structs.replace(status, times_started_reading=started, last_time_started_reading=last_started)


def progress_of(state: StoredState) -> tuple[float, bool]:
    """The whole-book percentage and whether it is finished, for the reader's progress elsewhere.

    A ``Finished`` book is at 100 %: the bookmark the device sends with it points at the first
    content file, not the last (spec 8.1).
    """
    status = state.status_info.status if state.status_info else None
    if status == "Finished":
        return 100.0, True
    percent = state.bookmark.progress_percent if state.bookmark else None
    return float(percent or 0), False


def _whole(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def reading_state(
    entitlement_id: str,
    stored: StoredState | None,
    other: OtherProgress | None,
    *,
    created: dt.datetime,
) -> ReadingState:
    """The state a device is sent for a book: its own when it is the newest, else one derived from
    progress made elsewhere, else ``ReadyToRead`` at 0 %.

    Args:
        entitlement_id: the book's entitlement id.
        stored: the last state a Kobo sent.
        other: the newest position recorded by anything else.
        created: when the book entered the library (the default state's ``Created``).
    """
    if stored is not None and (other is None or other.updated_at <= stored.received_at):
        stamp = format_timestamp(stored.last_modified)
        return ReadingState(
            entitlement_id=entitlement_id,
            created=format_timestamp(stored.created),
            last_modified=stamp,
            priority_timestamp=stamp,
            status_info=stored.status_info or StatusInfo(last_modified=stamp, status="ReadyToRead"),
            statistics=stored.statistics,
            current_bookmark=stored.bookmark or Bookmark(last_modified=stamp),
        )
    if other is not None:
        stamp = format_timestamp(other.updated_at)
        status: Status = "Finished" if other.is_finished else ("Reading" if other.percentage > 0 else "ReadyToRead")
        percent = 100.0 if other.is_finished else other.percentage
        return ReadingState(
            entitlement_id=entitlement_id,
            created=format_timestamp(stored.created if stored else created),
            last_modified=stamp,
            priority_timestamp=stamp,
            status_info=StatusInfo(
                last_modified=stamp,
                status=status,
                times_started_reading=1 if status != "ReadyToRead" else 0,
            ),
            current_bookmark=Bookmark(
                last_modified=stamp,
                progress_percent=_whole(percent),
                content_source_progress_percent=0,
                # The start of the chapter: a bookmark without a kobospan lands there anyway (8.3).
                location=Location(source=other.source, type="KoboSpan", value="kobo.1.1") if other.source else None,
            ),
        )
    stamp = format_timestamp(created)
    return ReadingState(
        entitlement_id=entitlement_id,
        created=stamp,
        last_modified=stamp,
        priority_timestamp=stamp,
        status_info=StatusInfo(last_modified=stamp, status="ReadyToRead", times_started_reading=0),
        current_bookmark=Bookmark(last_modified=stamp, progress_percent=0),
    )


def progress_stamp(stored: StoredState | None, other: OtherProgress | None) -> tuple[int, int] | None:
    """``(stamp, origin)`` of a book's newest position for snapshots; ``None`` when it has none."""
    candidates: list[tuple[dt.datetime, int]] = []
    if stored is not None:
        candidates.append((stored.received_at, stored.origin_device))
    if other is not None:
        candidates.append((other.updated_at, 0))
    if not candidates:
        return None
    moment, origin = max(candidates, key=lambda c: (c[0], c[1] == 0))
    return int(moment.timestamp() * 1000), origin
