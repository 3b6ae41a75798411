"""Range parsing, cursors and Content-Disposition: the parts of HTTP handling that take client input."""

from __future__ import annotations

import pytest

from opds_server.catalog.cursor import decode_cursor, encode_cursor
from opds_server.errors import InvalidCursorError, RangeNotSatisfiableError
from opds_server.http import parse_range
from opds_server.routes.files import content_disposition


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=990-5000", (990, 999)),
        ("bytes=0-0", (0, 0)),
        (None, None),
        ("bytes=0-1,5-9", None),  # several ranges: the whole file
        ("items=0-5", None),
        ("bytes=abc", None),
        ("bytes=-", None),
    ],
)
def test_single_ranges_are_understood_and_others_ignored(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0", "bytes=9-3"])
def test_unsatisfiable_ranges_say_the_size(header: str) -> None:
    with pytest.raises(RangeNotSatisfiableError) as caught:
        parse_range(header, 1000)
    assert caught.value.headers == {"Content-Range": "bytes */1000"}


def test_cursor_round_trips() -> None:
    cursor = decode_cursor(encode_cursor(3, "feed", ["2013-02-10 09:30:00+00:00", 17]), scope="feed", key_count=2)
    assert (cursor.page, cursor.keys) == (3, ("2013-02-10 09:30:00+00:00", 17))


@pytest.mark.parametrize(
    "text",
    [
        "garbage!",
        "",
        "W10",
        encode_cursor(2, "feed", ["a", 1])[:-3],
        encode_cursor(1, "feed", ["a", 1]),
        encode_cursor(2, "another", ["a", 1]),
        encode_cursor(2, "feed", [1]),
        "A" * 2000,
        "eyJhIjoxfQ",
    ],
)
def test_forged_cursors_are_rejected(text: str) -> None:
    with pytest.raises(InvalidCursorError, match="after="):
        decode_cursor(text, scope="feed", key_count=2)


def test_content_disposition_has_an_ascii_fallback_and_the_exact_name() -> None:
    header = content_disposition('吾輩は猫である - "Natsume".epub')
    assert header.startswith('attachment; filename="')
    fallback = header.split('filename="')[1].split('"')[0]
    assert fallback.isascii()
    assert fallback.endswith(".epub")
    assert header.endswith(
        "filename*=UTF-8''%E5%90%BE%E8%BC%A9%E3%81%AF%E7%8C%AB%E3%81%A7%E3%81%82%E3%82%8B%20-%20%22Natsume%22.epub"
    )
