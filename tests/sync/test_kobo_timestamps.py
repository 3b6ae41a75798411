"""Kobo timestamps: read leniently, written one way, UTC with ``Z`` (spec 4.3)."""

from __future__ import annotations

import datetime as dt
import os
import random

import pytest

from sync.kobo.timestamps import InvalidTimestampError, format_timestamp, parse_timestamp

DEVICE_STAMP = "2026-08-17T17:56:53.254Z"
"""What firmware 5.10 sends (new-usemame/Calibre-Web-NextGen#1706)."""
MOMENT = dt.datetime(2026, 8, 17, 17, 56, 53, tzinfo=dt.UTC)
SEED = int(os.environ.get("KOBO_SYNC_SEED", "20260817"))


@pytest.mark.parametrize(
    "stamp",
    [DEVICE_STAMP, "2026-08-17T17:56:53Z", "2026-08-17T17:56:53.001Z", "2026-08-17T17:56:53.254123Z"],
)
def test_device_stamps_round_trip_exactly(stamp: str) -> None:
    assert format_timestamp(parse_timestamp(stamp)) == stamp


def test_device_milliseconds_are_kept() -> None:
    assert parse_timestamp(DEVICE_STAMP) == MOMENT.replace(microsecond=254_000)


@pytest.mark.parametrize("digits", range(10))
def test_zero_to_nine_fractional_digits(digits: int) -> None:
    fraction = "123456789"[:digits]
    text = f"2026-08-17T17:56:53{'.' + fraction if fraction else ''}Z"

    moment = parse_timestamp(text)

    # Digits past the sixth (microseconds) are dropped, not rounded.
    assert moment == MOMENT.replace(microsecond=int(fraction.ljust(6, "0")[:6]))


def test_dotnet_seven_digits_without_zone() -> None:
    assert parse_timestamp("2026-08-17T17:56:53.2540000") == MOMENT.replace(microsecond=254_000)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-08-17T17:56:53Z", MOMENT),
        ("2026-08-17T17:56:53z", MOMENT),
        ("2026-08-17T19:56:53+02:00", MOMENT),
        ("2026-08-17T12:26:53-0530", MOMENT),
        ("2026-08-17T19:56:53+02", MOMENT),
        ("2026-08-17T17:56:53+00:00", MOMENT),
        ("2026-08-17T17:56:53-00:00", MOMENT),
        ("2026-08-17T17:56:53", MOMENT),
        ("2026-08-17 17:56:53", MOMENT),
        ("2026-08-17 19:56:53.254+02:00", MOMENT.replace(microsecond=254_000)),
        ("2026-08-17T17:56Z", MOMENT.replace(second=0)),
        ("  2026-08-17T17:56:53Z\n", MOMENT),
        ("2026-08-18T01:26:53+07:30", MOMENT),
    ],
)
def test_zones_and_separators(text: str, expected: dt.datetime) -> None:
    moment = parse_timestamp(text)

    assert moment == expected
    assert moment.utcoffset() == dt.timedelta(0)
    assert moment.tzinfo is dt.UTC


def test_offset_crossing_midnight_changes_the_date() -> None:
    assert parse_timestamp("2026-08-17T01:00:00+02:00") == dt.datetime(2026, 8, 16, 23, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-08-17T24:00:00Z",
        "2026-08-17T17:60:00Z",
        "2026-08-17T17:56:60Z",
        "2026-08-17",
        "2026-08-17T17:56:53.Z",
        "2026-08-17T17:56:53.1234567890Z",
        "2026/08/17 17:56:53",
        "17:56:53",
        "2026-08-17T17:56:53Q",
        "2026-08-17T17:56:53+25:00",
        "1755453413254",
    ],
)
def test_garbage_and_impossible_dates_raise_with_the_value(text: str) -> None:
    with pytest.raises(InvalidTimestampError) as caught:
        parse_timestamp(text)

    assert repr(text) in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_long_bad_value_is_cut_in_the_message() -> None:
    text = "x" * 10_000

    with pytest.raises(InvalidTimestampError) as caught:
        parse_timestamp(text)

    assert repr("x" * 40) in str(caught.value)
    assert len(str(caught.value)) < 200


def test_offset_minutes_past_59_are_refused() -> None:
    with pytest.raises(InvalidTimestampError):
        parse_timestamp("2026-08-17T17:56:53+02:99")


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_offset_pushing_out_of_range_raises_invalid_timestamp(text: str) -> None:
    with pytest.raises(InvalidTimestampError):
        parse_timestamp(text)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (MOMENT, "2026-08-17T17:56:53Z"),
        (MOMENT.replace(microsecond=254_000), "2026-08-17T17:56:53.254Z"),
        (MOMENT.replace(microsecond=1_000), "2026-08-17T17:56:53.001Z"),
        (MOMENT.replace(microsecond=254_123), "2026-08-17T17:56:53.254123Z"),
        (MOMENT.replace(microsecond=7), "2026-08-17T17:56:53.000007Z"),
        (dt.datetime(2026, 8, 17, tzinfo=dt.UTC), "2026-08-17T00:00:00Z"),
        (dt.datetime(999, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "0999-01-02T03:04:05Z"),
        (dt.datetime(1, 1, 1, tzinfo=dt.UTC), "0001-01-01T00:00:00Z"),
        (dt.datetime(2026, 8, 17, 19, 56, 53, tzinfo=dt.timezone(dt.timedelta(hours=2))), "2026-08-17T17:56:53Z"),
        (dt.datetime(2026, 8, 16, 20, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))), "2026-08-17T01:00:00Z"),
    ],
)
def test_format(moment: dt.datetime, expected: str) -> None:
    assert format_timestamp(moment) == expected


@pytest.mark.parametrize("hours", [-12, -5.5, 0, 2, 14])
def test_format_never_emits_an_offset(hours: float) -> None:
    zone = dt.timezone(dt.timedelta(hours=hours))

    text = format_timestamp(MOMENT.astimezone(zone))

    assert text == "2026-08-17T17:56:53Z"
    assert "+" not in text
    assert text.count("-") == 2


def test_format_refuses_naive_datetimes() -> None:
    naive = MOMENT.replace(tzinfo=None)

    with pytest.raises(ValueError, match="naive"):
        format_timestamp(naive)


def test_random_moments_survive_format_then_parse() -> None:
    print(f"KOBO_SYNC_SEED={SEED}")
    rand = random.Random(SEED)
    start = dt.datetime(1000, 1, 1, tzinfo=dt.UTC)
    span = int((dt.datetime(9999, 1, 1, tzinfo=dt.UTC) - start).total_seconds())
    for _ in range(2000):
        moment = start + dt.timedelta(
            seconds=rand.randrange(span), microseconds=rand.choice([0, 1000, 1]) * rand.randrange(1000)
        )
        zone = dt.timezone(dt.timedelta(minutes=rand.randrange(-14 * 60, 14 * 60 + 1, 15)))
        text = format_timestamp(moment.astimezone(zone))

        assert parse_timestamp(text) == moment, f"seed {SEED}: {moment!r} -> {text}"
        assert text.endswith("Z")
        assert len(text) in {20, 24, 27}, text
