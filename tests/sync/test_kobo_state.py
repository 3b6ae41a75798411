"""Reading states: a device's PUT is stored and echoed exactly; progress from elsewhere wins when newer
(spec 5.6, 6.4, 8)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import msgspec
import pytest

from sync.kobo.model import Bookmark, Location, ReadingState, ReadingStatesUpdate, ReadingStateUpdate, StatusInfo
from sync.kobo.state import (
    InvalidReadingStateError,
    OtherProgress,
    StoredState,
    apply_update,
    normalise_update,
    progress_of,
    progress_stamp,
    reading_state,
)

ENTITLEMENT = "0e6a7b4c-2f7c-4a59-9c1e-3f1e2d4c5b6a"
DEVICE = 7
BOOK = 42
DEVICE_STAMP = "2026-08-17T17:56:53.254Z"
CREATED = dt.datetime(2025, 1, 5, 8, 12, 44, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 8, 17, 18, 0, 0, tzinfo=dt.UTC)
PATH = "$.ReadingStates[0]"

DEVICE_PUT = b"""{
  "ReadingStates": [
    {
      "EntitlementId": "0e6a7b4c-2f7c-4a59-9c1e-3f1e2d4c5b6a",
      "LastModified": "2026-08-17T17:56:53.254Z",
      "CurrentBookmark": {
        "LastModified": "2026-08-17T17:56:53.254Z",
        "ProgressPercent": 48,
        "ContentSourceProgressPercent": 40,
        "Location": {"Source": "OEBPS/chapter-026.xhtml", "Type": "KoboSpan", "Value": "kobo.67.3"}
      },
      "Statistics": {
        "LastModified": "2026-08-17T17:56:53.254Z",
        "SpentReadingMinutes": 286,
        "RemainingTimeMinutes": 9541
      },
      "StatusInfo": {"LastModified": "2026-08-17T17:56:53.254Z", "Status": "Reading"}
    }
  ]
}"""
"""The real capture of spec 5.6 (new-usemame/Calibre-Web-NextGen#1706)."""


def decode_put(body: bytes) -> list[ReadingStateUpdate]:
    return msgspec.json.decode(body, type=ReadingStatesUpdate).reading_states


def put(body: dict[str, Any]) -> ReadingStateUpdate:
    """One normalised update from the JSON of one ``ReadingStates`` element."""
    raw = msgspec.json.encode({"ReadingStates": [{"EntitlementId": ENTITLEMENT, **body}]})
    return normalise_update(decode_put(raw)[0], PATH)


def store(
    update: ReadingStateUpdate, existing: StoredState | None = None, *, now: dt.datetime = NOW, device: int = DEVICE
) -> StoredState:
    return apply_update(existing, update, book_id=BOOK, device_id=device, now=now)


def sent(state: ReadingState) -> tuple[bytes, dict[str, Any]]:
    """The bytes a device gets, and their parsed form."""
    raw = msgspec.json.encode(state)
    parsed: dict[str, Any] = msgspec.json.decode(raw)
    return raw, parsed


def stored_from_device_put() -> StoredState:
    (update,) = decode_put(DEVICE_PUT)
    return store(normalise_update(update, PATH))


def bookmark(percent: float, stamp: str = DEVICE_STAMP, **extra: Any) -> dict[str, Any]:
    return {"LastModified": stamp, "ProgressPercent": percent, **extra}


# The real device PUT, stored and sent back.


def test_device_put_comes_back_exactly() -> None:
    raw, state = sent(reading_state(ENTITLEMENT, stored_from_device_put(), None, created=CREATED))

    assert b'"ProgressPercent":48,' in raw or b'"ProgressPercent":48}' in raw
    assert b"48.0" not in raw
    assert b'"ContentSourceProgressPercent":40' in raw
    assert state["EntitlementId"] == ENTITLEMENT
    assert state["LastModified"] == DEVICE_STAMP
    assert state["PriorityTimestamp"] == DEVICE_STAMP
    assert state["Created"] == "2026-08-17T18:00:00Z"
    assert state["CurrentBookmark"] == {
        "LastModified": DEVICE_STAMP,
        "ProgressPercent": 48,
        "ContentSourceProgressPercent": 40,
        "Location": {"Value": "kobo.67.3", "Type": "KoboSpan", "Source": "OEBPS/chapter-026.xhtml"},
    }
    assert isinstance(state["CurrentBookmark"]["ProgressPercent"], int)
    assert state["Statistics"] == {
        "LastModified": DEVICE_STAMP,
        "SpentReadingMinutes": 286,
        "RemainingTimeMinutes": 9541,
    }
    assert state["StatusInfo"]["Status"] == "Reading"
    assert state["StatusInfo"]["LastModified"] == DEVICE_STAMP
    assert "+00:00" not in raw.decode()


def test_stored_state_keeps_the_device_time_not_now() -> None:
    stored = stored_from_device_put()

    assert stored.last_modified == dt.datetime(2026, 8, 17, 17, 56, 53, 254_000, tzinfo=dt.UTC)
    assert stored.received_at == NOW
    assert stored.created == NOW
    assert stored.origin_device == DEVICE
    assert stored.book_id == BOOK


@pytest.mark.parametrize(
    ("percent", "expected"),
    [
        (0, b'"ProgressPercent":0'),
        (33.5, b'"ProgressPercent":33.5'),
        (100, b'"ProgressPercent":100'),
        (1, b'"ProgressPercent":1'),
    ],
)
def test_percent_keeps_its_json_type(percent: float, expected: bytes) -> None:
    stored = store(put({"LastModified": DEVICE_STAMP, "CurrentBookmark": bookmark(percent)}))

    raw, state = sent(reading_state(ENTITLEMENT, stored, None, created=CREATED))

    assert expected + b"," in raw or expected + b"}" in raw
    assert state["CurrentBookmark"]["ProgressPercent"] == percent
    assert type(state["CurrentBookmark"]["ProgressPercent"]) is type(percent)


def test_zero_content_source_percent_is_not_dropped() -> None:
    stored = store(put({"CurrentBookmark": bookmark(0, ContentSourceProgressPercent=0)}))

    _, state = sent(reading_state(ENTITLEMENT, stored, None, created=CREATED))

    assert state["CurrentBookmark"]["ContentSourceProgressPercent"] == 0
    assert state["CurrentBookmark"]["ProgressPercent"] == 0


def test_location_round_trips_all_three_fields() -> None:
    location = {"Value": "kobo.1.1", "Type": "KoboSpan", "Source": "Text/part0003_split_001.html#p12"}
    stored = store(put({"CurrentBookmark": bookmark(12.25, Location=location)}))

    _, state = sent(reading_state(ENTITLEMENT, stored, None, created=CREATED))

    assert state["CurrentBookmark"]["Location"] == location


def test_device_offset_stamp_is_sent_back_in_utc_with_z() -> None:
    stored = store(put({"LastModified": "2026-08-17T19:56:53.254+02:00", "CurrentBookmark": bookmark(5)}))

    _, state = sent(reading_state(ENTITLEMENT, stored, None, created=CREATED))

    assert state["LastModified"] == DEVICE_STAMP
    assert state["PriorityTimestamp"] == DEVICE_STAMP


def test_without_a_top_level_stamp_the_newest_part_counts() -> None:
    stored = store(
        put(
            {
                "CurrentBookmark": bookmark(5, "2026-08-17T17:00:00Z"),
                "Statistics": {"LastModified": "2026-08-17T17:30:00.500Z", "SpentReadingMinutes": 3},
            }
        )
    )

    assert stored.last_modified == dt.datetime(2026, 8, 17, 17, 30, 0, 500_000, tzinfo=dt.UTC)


def test_without_any_stamp_now_counts() -> None:
    stored = store(put({"Statistics": {"SpentReadingMinutes": 3}}))

    assert stored.last_modified == NOW


# Partial updates.


def test_only_statistics_keeps_bookmark_and_status() -> None:
    first = stored_from_device_put()
    later = "2026-08-17T18:10:00.001Z"

    second = store(
        put({"LastModified": later, "Statistics": {"LastModified": later, "SpentReadingMinutes": 300}}),
        first,
        now=NOW + dt.timedelta(minutes=10),
    )

    assert second.bookmark == first.bookmark
    assert second.status_info == first.status_info
    assert second.statistics is not None
    assert second.statistics.spent_reading_minutes == 300
    assert second.statistics.remaining_time_minutes is None
    assert second.created == first.created
    assert second.last_modified == dt.datetime(2026, 8, 17, 18, 10, 0, 1_000, tzinfo=dt.UTC)
    _, state = sent(reading_state(ENTITLEMENT, second, None, created=CREATED))
    assert state["CurrentBookmark"]["ProgressPercent"] == 48
    assert state["CurrentBookmark"]["Location"]["Value"] == "kobo.67.3"
    assert state["LastModified"] == later


def test_null_bookmark_keeps_the_stored_one() -> None:
    first = stored_from_device_put()

    second = store(
        put({"LastModified": "2026-08-17T18:10:00Z", "CurrentBookmark": None, "StatusInfo": None, "Statistics": None}),
        first,
    )

    assert second.bookmark == first.bookmark
    assert second.statistics == first.statistics
    assert second.status_info == first.status_info


def test_bookmark_without_location_is_accepted_and_keeps_the_other_parts() -> None:
    first = stored_from_device_put()

    second = store(put({"LastModified": "2026-08-17T18:10:00Z", "CurrentBookmark": bookmark(50)}), first)

    assert second.bookmark is not None
    assert second.bookmark.progress_percent == 50
    # The new position has no known location: the old one would point at the wrong place.
    assert second.bookmark.location is None
    assert second.statistics == first.statistics
    assert second.status_info == first.status_info
    _, state = sent(reading_state(ENTITLEMENT, second, None, created=CREATED))
    assert "Location" not in state["CurrentBookmark"]


def test_empty_update_is_accepted() -> None:
    stored = store(put({}))

    assert stored.bookmark is None
    assert stored.statistics is None
    assert stored.status_info is None
    _, state = sent(reading_state(ENTITLEMENT, stored, None, created=CREATED))
    assert state["StatusInfo"]["Status"] == "ReadyToRead"
    assert state["CurrentBookmark"] == {"LastModified": "2026-08-17T18:00:00Z"}


# Values the device could not have meant.


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"CurrentBookmark": bookmark(-1)}, "$.ReadingStates[3].CurrentBookmark.ProgressPercent"),
        ({"CurrentBookmark": bookmark(100.5)}, "$.ReadingStates[3].CurrentBookmark.ProgressPercent"),
        (
            {"CurrentBookmark": bookmark(5, ContentSourceProgressPercent=101)},
            "$.ReadingStates[3].CurrentBookmark.ContentSourceProgressPercent",
        ),
        ({"Statistics": {"SpentReadingMinutes": -5}}, "$.ReadingStates[3].Statistics.SpentReadingMinutes"),
        ({"Statistics": {"RemainingTimeMinutes": -5}}, "$.ReadingStates[3].Statistics.RemainingTimeMinutes"),
        (
            {"StatusInfo": {"Status": "Reading", "TimesStartedReading": -1}},
            "$.ReadingStates[3].StatusInfo.TimesStartedReading",
        ),
        ({"LastModified": "yesterday"}, "$.ReadingStates[3].LastModified"),
        ({"CurrentBookmark": bookmark(5, "2026-13-01T00:00:00Z")}, "$.ReadingStates[3].CurrentBookmark.LastModified"),
        (
            {"Statistics": {"LastModified": "17:56", "SpentReadingMinutes": 1}},
            "$.ReadingStates[3].Statistics.LastModified",
        ),
        ({"StatusInfo": {"LastModified": "soon", "Status": "Reading"}}, "$.ReadingStates[3].StatusInfo.LastModified"),
        (
            {"StatusInfo": {"Status": "Reading", "LastTimeStartedReading": "2026-02-30T00:00:00Z"}},
            "$.ReadingStates[3].StatusInfo.LastTimeStartedReading",
        ),
        (
            {"StatusInfo": {"Status": "Finished", "LastTimeFinished": "never"}},
            "$.ReadingStates[3].StatusInfo.LastTimeFinished",
        ),
    ],
)
def test_invalid_values_name_their_json_path(body: dict[str, Any], path: str) -> None:
    raw = msgspec.json.encode({"ReadingStates": [{"EntitlementId": ENTITLEMENT, **body}]})
    (update,) = decode_put(raw)

    with pytest.raises(InvalidReadingStateError) as caught:
        normalise_update(update, "$.ReadingStates[3]")

    assert re.match(re.escape(path) + "[ :]", str(caught.value)), str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_bad_timestamp_message_has_the_value() -> None:
    (update,) = decode_put(b'{"ReadingStates": [{"LastModified": "half past five"}]}')

    with pytest.raises(InvalidReadingStateError, match=r"\$\.ReadingStates\[0\]\.LastModified: 'half past five'"):
        normalise_update(update, PATH)


@pytest.mark.parametrize("percent", [0, 0.0, 100, 100.0, 99.999])
def test_percent_bounds_are_inclusive(percent: float) -> None:
    update = put({"CurrentBookmark": bookmark(percent, ContentSourceProgressPercent=percent)})

    assert update.current_bookmark is not None
    assert update.current_bookmark.progress_percent == percent


def test_normalise_writes_every_stamp_our_way() -> None:
    update = put(
        {
            "LastModified": "2026-08-17 19:56:53.254+02:00",
            "CurrentBookmark": bookmark(5, "2026-08-17T17:56:53.2540000"),
            "Statistics": {"LastModified": "2026-08-17T17:56:53.254z"},
            "StatusInfo": {
                "LastModified": "2026-08-17T12:26:53.254-0530",
                "Status": "Finished",
                "LastTimeStartedReading": "2026-08-10T20:00:00",
                "LastTimeFinished": "2026-08-17T17:56:53.254Z",
            },
        }
    )

    assert update.last_modified == DEVICE_STAMP
    assert update.current_bookmark is not None
    assert update.current_bookmark.last_modified == DEVICE_STAMP
    assert update.statistics is not None
    assert update.statistics.last_modified == DEVICE_STAMP
    assert update.status_info == StatusInfo(
        last_modified=DEVICE_STAMP,
        status="Finished",
        last_time_started_reading="2026-08-10T20:00:00Z",
        last_time_finished=DEVICE_STAMP,
    )


# Status and progress.


def test_finished_is_at_100_whatever_the_bookmark_says() -> None:
    stored = store(
        put(
            {
                "CurrentBookmark": bookmark(3, Location={"Value": "kobo.1.1", "Type": "KoboSpan", "Source": "a.xhtml"}),
                "StatusInfo": {"LastModified": DEVICE_STAMP, "Status": "Finished"},
            }
        )
    )

    assert progress_of(stored) == (100.0, True)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"CurrentBookmark": bookmark(48), "StatusInfo": {"Status": "Reading"}}, (48.0, False)),
        ({"CurrentBookmark": bookmark(33.5)}, (33.5, False)),
        ({"CurrentBookmark": bookmark(0)}, (0.0, False)),
        ({"Statistics": {"SpentReadingMinutes": 1}}, (0.0, False)),
        ({"StatusInfo": {"Status": "ReadyToRead"}}, (0.0, False)),
    ],
)
def test_progress_of(body: dict[str, Any], expected: tuple[float, bool]) -> None:
    percent, finished = progress_of(store(put(body)))

    assert (percent, finished) == expected
    assert isinstance(percent, float)


def test_entering_reading_counts_a_start() -> None:
    stamp = "2026-08-17T17:00:00.125Z"
    unread = store(put({"StatusInfo": {"LastModified": DEVICE_STAMP, "Status": "ReadyToRead"}}))

    reading = store(put({"LastModified": stamp, "StatusInfo": {"LastModified": stamp, "Status": "Reading"}}), unread)

    assert reading.status_info is not None
    assert reading.status_info.times_started_reading == 1
    assert reading.status_info.last_time_started_reading == stamp
    _, state = sent(reading_state(ENTITLEMENT, reading, None, created=CREATED))
    assert state["StatusInfo"]["TimesStartedReading"] == 1
    assert state["StatusInfo"]["LastTimeStartedReading"] == stamp


def test_first_ever_state_entering_reading_counts_a_start() -> None:
    stored = stored_from_device_put()

    assert stored.status_info is not None
    assert stored.status_info.times_started_reading == 1
    assert stored.status_info.last_time_started_reading == DEVICE_STAMP


def test_device_count_is_kept_as_sent() -> None:
    stored = store(put({"StatusInfo": {"Status": "Reading", "TimesStartedReading": 5}}))

    assert stored.status_info is not None
    assert stored.status_info.times_started_reading == 5
    assert stored.status_info.last_time_started_reading is None


def test_finished_to_reading_counts_another_start() -> None:
    first = store(put({"StatusInfo": {"Status": "Finished", "TimesStartedReading": 2}}))

    again = store(put({"LastModified": DEVICE_STAMP, "StatusInfo": {"Status": "Reading"}}), first)

    assert again.status_info is not None
    assert again.status_info.times_started_reading == 3


def test_start_count_survives_later_puts() -> None:
    state = None
    counts = []
    for hour, status in enumerate(["Reading", "Reading", "Finished", "Reading"], start=10):
        stamp = f"2026-08-17T{hour}:00:00Z"
        update = put({"LastModified": stamp, "StatusInfo": {"LastModified": stamp, "Status": status}})
        state = store(update, state, now=NOW + dt.timedelta(hours=hour))
        assert state.status_info is not None
        counts.append(state.status_info.times_started_reading)

    assert counts == [1, 1, 1, 2]


# What a device is sent when it has not sent anything, or when progress was made elsewhere.


def test_no_state_is_ready_to_read_at_zero() -> None:
    raw, state = sent(reading_state(ENTITLEMENT, None, None, created=CREATED))

    assert b'"ProgressPercent":0' in raw
    assert state == {
        "EntitlementId": ENTITLEMENT,
        "Created": "2025-01-05T08:12:44Z",
        "LastModified": "2025-01-05T08:12:44Z",
        "PriorityTimestamp": "2025-01-05T08:12:44Z",
        "StatusInfo": {"LastModified": "2025-01-05T08:12:44Z", "Status": "ReadyToRead", "TimesStartedReading": 0},
        "CurrentBookmark": {"LastModified": "2025-01-05T08:12:44Z", "ProgressPercent": 0},
    }


@pytest.mark.parametrize(
    ("percentage", "finished", "status", "expected"),
    [
        (62.0, False, "Reading", b'"ProgressPercent":62,'),
        (62.5, False, "Reading", b'"ProgressPercent":62.5,'),
        (0.0, False, "ReadyToRead", b'"ProgressPercent":0,'),
        (97.0, True, "Finished", b'"ProgressPercent":100,'),
    ],
)
def test_newer_progress_from_elsewhere_wins(percentage: float, finished: bool, status: str, expected: bytes) -> None:
    stored = stored_from_device_put()
    other_time = NOW + dt.timedelta(hours=1, milliseconds=500)
    other = OtherProgress(percentage=percentage, is_finished=finished, updated_at=other_time)

    raw, state = sent(reading_state(ENTITLEMENT, stored, other, created=CREATED))

    assert expected in raw
    assert b".0," not in raw
    assert state["LastModified"] == "2026-08-17T19:00:00.500Z"
    assert state["PriorityTimestamp"] == "2026-08-17T19:00:00.500Z"
    assert state["Created"] == "2026-08-17T18:00:00Z"
    assert state["StatusInfo"]["Status"] == status
    assert state["StatusInfo"]["LastModified"] == "2026-08-17T19:00:00.500Z"
    assert state["StatusInfo"]["TimesStartedReading"] == (0 if status == "ReadyToRead" else 1)
    assert state["CurrentBookmark"]["LastModified"] == "2026-08-17T19:00:00.500Z"
    assert state["CurrentBookmark"]["ContentSourceProgressPercent"] == 0
    assert "Location" not in state["CurrentBookmark"]
    assert "Statistics" not in state


def test_progress_from_elsewhere_without_a_kobo_state() -> None:
    other = OtherProgress(percentage=25.0, is_finished=False, updated_at=NOW)

    _, state = sent(reading_state(ENTITLEMENT, None, other, created=CREATED))

    assert state["Created"] == "2025-01-05T08:12:44Z"
    assert state["LastModified"] == "2026-08-17T18:00:00Z"
    assert state["CurrentBookmark"]["ProgressPercent"] == 25
    assert isinstance(state["CurrentBookmark"]["ProgressPercent"], int)


@pytest.mark.parametrize("delta", [dt.timedelta(0), dt.timedelta(seconds=-1)])
def test_older_or_same_time_progress_from_elsewhere_loses(delta: dt.timedelta) -> None:
    stored = stored_from_device_put()
    other = OtherProgress(percentage=90.0, is_finished=True, updated_at=stored.received_at + delta)

    _, state = sent(reading_state(ENTITLEMENT, stored, other, created=CREATED))

    assert state["LastModified"] == DEVICE_STAMP
    assert state["PriorityTimestamp"] == DEVICE_STAMP
    assert state["CurrentBookmark"]["ProgressPercent"] == 48
    assert state["StatusInfo"]["Status"] == "Reading"


def test_device_state_is_a_valid_reading_state_struct() -> None:
    raw, _ = sent(reading_state(ENTITLEMENT, stored_from_device_put(), None, created=CREATED))

    again = msgspec.json.decode(raw, type=ReadingState)

    assert again.current_bookmark == Bookmark(
        last_modified=DEVICE_STAMP,
        progress_percent=48,
        content_source_progress_percent=40,
        location=Location(value="kobo.67.3", type="KoboSpan", source="OEBPS/chapter-026.xhtml"),
    )


# Stamps for the snapshot.


def test_progress_stamp_without_anything_is_none() -> None:
    assert progress_stamp(None, None) is None


def test_progress_stamp_of_a_kobo_state() -> None:
    stored = stored_from_device_put()

    assert progress_stamp(stored, None) == (int(NOW.timestamp()) * 1000, DEVICE)


def test_progress_stamp_of_progress_elsewhere_has_origin_zero() -> None:
    other = OtherProgress(percentage=1.0, is_finished=False, updated_at=NOW + dt.timedelta(milliseconds=254))

    assert progress_stamp(None, other) == (int(NOW.timestamp()) * 1000 + 254, 0)


def test_progress_stamp_picks_the_newer() -> None:
    stored = stored_from_device_put()
    newer = OtherProgress(percentage=1.0, is_finished=False, updated_at=NOW + dt.timedelta(seconds=1))
    older = OtherProgress(percentage=1.0, is_finished=False, updated_at=NOW - dt.timedelta(seconds=1))

    assert progress_stamp(stored, newer) == (int(NOW.timestamp()) * 1000 + 1000, 0)
    assert progress_stamp(stored, older) == (int(NOW.timestamp()) * 1000, DEVICE)


def test_progress_stamp_changes_with_every_put() -> None:
    first = stored_from_device_put()
    second = store(put({"CurrentBookmark": bookmark(49)}), first, now=NOW + dt.timedelta(milliseconds=1))

    assert progress_stamp(first, None) != progress_stamp(second, None)
    assert progress_stamp(second, None) == (int(NOW.timestamp()) * 1000 + 1, DEVICE)
