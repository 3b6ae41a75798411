"""How Calibre's stored values are read: dates, initials, comments, identifiers."""

from __future__ import annotations

import datetime as dt

import pytest

from opds_server.calibre.books import parse_pubdate, parse_timestamp, stars
from opds_server.calibre.comments import plain_text, sanitise_html, shorten
from opds_server.calibre.database import initial_of
from opds_server.catalog.media import identifier_uris, media_type, valid_isbn


@pytest.mark.parametrize(
    ("stored", "day"),
    [
        ("1605-01-16 00:00:00+00:00", dt.date(1605, 1, 16)),
        ("1862-04-02 22:00:00+00:00", dt.date(1862, 4, 3)),  # local midnight at +02:00
        ("2020-06-01 12:00:00+00:00", dt.date(2020, 6, 1)),  # calibredb's noon
        ("2008-02-29 00:00:00+00:00", dt.date(2008, 2, 29)),
        ("0101-01-01 00:00:00+00:00", None),  # calibre's UNDEFINED_DATE
        ("", None),
        ("not a date", None),
    ],
)
def test_pubdate_is_the_day_calibre_meant(stored: str, day: dt.date | None) -> None:
    assert parse_pubdate(stored) == day


def test_timestamps_with_microseconds_are_utc() -> None:
    assert parse_timestamp("2026-11-28 13:17:27.654073+00:00") == dt.datetime(
        2026, 11, 28, 13, 17, 27, 654073, tzinfo=dt.UTC
    )


@pytest.mark.parametrize(
    ("name", "initial"),
    [("Whitby, Eleanor", "W"), ("Éditions de la Mer", "E"), ("  ada", "A"), ("1984", "#"), ("🚀 Space", "#"),
     ("夏目漱石", "夏"), ("", "#")],
)  # fmt: skip
def test_names_group_under_their_folded_initial(name: str, initial: str) -> None:
    assert initial_of(name) == initial


def test_hostile_comments_lose_everything_that_runs() -> None:
    hostile = (
        "<p>Intro.</p><script>alert('x')</script><img src=x onerror=alert(1)>"
        '<a href="javascript:alert(2)">click</a><iframe src="http://example.invalid/"></iframe>'
        '<p style="color:red" onclick="alert(3)">styled</p>'
    )
    cleaned = sanitise_html(hostile)
    for forbidden in ("<script", "onerror", "javascript:", "<iframe", "style=", "onclick", "<img"):
        assert forbidden not in cleaned
    assert "<p>Intro.</p>" in cleaned


def test_plain_text_keeps_one_line_per_block_and_decodes_entities() -> None:
    assert plain_text("<h3>About</h3><p>Maps &amp; tides&nbsp;€</p><ul><li>one</li><li>two</li></ul>") == (
        "About\nMaps & tides €\none\ntwo"
    )


def test_shorten_cuts_at_a_word_with_an_ellipsis() -> None:
    assert shorten("The lamps keep more than the dark away", 20) == "The lamps keep more…"
    assert shorten("short", 20) == "short"


@pytest.mark.parametrize(
    ("isbn", "valid"),
    [("9780306406157", "9780306406157"), ("978-0-306-40615-7", "9780306406157"), ("9780306406158", None),
     ("0306406152", "0306406152"), ("080442957X", "080442957X"), ("12345", None)],
)  # fmt: skip
def test_isbn_check_digits(isbn: str, valid: str | None) -> None:
    assert valid_isbn(isbn) == valid


def test_only_identifiers_with_a_uri_form_are_published() -> None:
    identifiers = (("isbn", "9780306406157"), ("goodreads", "1000001"), ("doi", "10.1000/182"), ("isbn", "123"))
    assert identifier_uris(identifiers) == ("urn:isbn:9780306406157", "https://doi.org/10.1000/182")


def test_ratings_are_stars_with_halves() -> None:
    assert stars(7) == "★★★½"
    assert stars(10) == "★★★★★"


@pytest.mark.parametrize(
    ("book_format", "expected"),
    [("epub", "application/epub+zip"), ("CBZ", "application/vnd.comicbook+zip"), ("XYZ", "application/octet-stream")],
)
def test_formats_map_to_media_types(book_format: str, expected: str) -> None:
    assert media_type(book_format) == expected
