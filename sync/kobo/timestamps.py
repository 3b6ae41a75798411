"""Kobo timestamps: parsed leniently, written one way (spec 4.3).

Devices send milliseconds (firmware 5.10: ``2026-08-17T17:56:53.254Z``), other clients whole
seconds, .NET-style seven digits or an offset; a strict parser turned every reading-state PUT into
a 400 for calibre-web. We accept 0-9 fractional digits, ``Z`` or an offset, and read a value
without a zone as UTC. We always write UTC with ``Z``, never ``+00:00`` and never a naive value.
"""

from __future__ import annotations

import datetime as dt
import re

_TIMESTAMP = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?"
    r"\s*(?P<zone>[Zz]|[+-]\d{2}(?::?\d{2})?)?"
)


class InvalidTimestampError(ValueError):
    """A timestamp that is not ISO 8601 date and time."""


def parse_timestamp(text: str) -> dt.datetime:
    """An aware UTC datetime from a Kobo timestamp.

    Args:
        text: ``2026-08-17T17:56:53.254Z``, ``2026-08-17T17:56:53Z``, ``2026-08-17T19:56:53+02:00``,
            ``2026-08-17T17:56:53.2540000`` (no zone: UTC)...

    Returns:
        The moment, in UTC, to the microsecond (digits past the sixth are dropped).

    Raises:
        InvalidTimestampError: the text is not a date and time.
    """
    match = _TIMESTAMP.fullmatch(text.strip())
    if match is None:
        raise InvalidTimestampError(f"{text[:40]!r} is not an ISO 8601 timestamp such as 2026-08-17T17:56:53.254Z")
    fraction = (match["fraction"] or "").ljust(6, "0")[:6]
    zone = match["zone"]
    offset = dt.timedelta(0)
    if zone and zone not in {"Z", "z"}:
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
        if hours > 23 or minutes > 59:  # the clock's own limits
            raise InvalidTimestampError(f"{text[:40]!r} has an impossible UTC offset {zone}")
        offset = dt.timedelta(hours=hours, minutes=minutes)
        if zone[0] == "-":
            offset = -offset
    try:
        moment = dt.datetime.fromisoformat(
            f"{match['date']}T{match['hour']}:{match['minute']}:{match['second'] or '00'}.{fraction}"
        ).replace(tzinfo=dt.timezone(offset))
        return moment.astimezone(dt.UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidTimestampError(f"{text[:40]!r} is not a valid date and time: {exc}") from exc


def format_timestamp(moment: dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS[.fff]Z`` in UTC: milliseconds when the moment has them (so a device's
    ``.254Z`` comes back as ``.254Z``), microseconds only when it has finer digits.

    Raises:
        ValueError: ``moment`` is naive.
    """
    if moment.tzinfo is None:
        msg = "naive datetimes have no place on the wire; pass an aware one"
        raise ValueError(msg)
    utc = moment.astimezone(dt.UTC)
    text = utc.replace(microsecond=0, tzinfo=None).isoformat()  # zero-padded years, unlike strftime
    if utc.microsecond:
        text += f".{utc.microsecond // 1000:03d}" if utc.microsecond % 1000 == 0 else f".{utc.microsecond:06d}"
    return text + "Z"
