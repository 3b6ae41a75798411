"""Opaque page cursors: the page number and the keyset position to continue after.

A cursor is base64url of a compact JSON array ``[page, scope, key..., id]``. ``scope`` is a short
digest of the feed the cursor belongs to (its order and filters), so a cursor carried over to
another feed is refused instead of silently paging the wrong list. It is checked on the way in,
so a forged or truncated one is a 400 that says what is wrong, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence

import msgspec

from opds_server.calibre.query import KeyValue
from opds_server.errors import InvalidCursorError

MAX_CURSOR_LENGTH = 1024
_DECODER = msgspec.json.Decoder(list[str | int | float | None])


class Cursor(msgspec.Struct, frozen=True, kw_only=True):
    """Page ``page`` starts right after the row whose sort keys and id are ``keys``."""

    page: int
    keys: tuple[KeyValue, ...]


def cursor_scope(*parts: object) -> str:
    """The digest naming a feed, from whatever defines its rows and their order."""
    return hashlib.blake2s(repr(parts).encode(), digest_size=4).hexdigest()


def encode_cursor(page: int, scope: str, keys: Sequence[KeyValue]) -> str:
    raw = msgspec.json.encode([page, scope, *keys])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(text: str, *, scope: str, key_count: int) -> Cursor:
    """Parse a cursor made by ``encode_cursor`` holding ``key_count`` keys (the id included).

    Raises:
        InvalidCursorError: the text is not such a cursor.
    """
    problem = f"after={text[:40]!r} is not a page cursor this feed gave out; follow the feed's next link instead"
    if len(text) > MAX_CURSOR_LENGTH:
        raise InvalidCursorError(problem)
    try:
        values = _DECODER.decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise InvalidCursorError(problem) from exc
    if len(values) != key_count + 2:
        raise InvalidCursorError(problem)
    page, found_scope, *keys = values
    if not isinstance(page, int) or isinstance(page, bool) or page < 2:
        raise InvalidCursorError(problem)
    if found_scope != scope:
        raise InvalidCursorError(
            f"after={text[:40]!r} is a cursor of another feed (another order or filter);"
            " start from this feed's first page"
        )
    return Cursor(page=page, keys=tuple(keys))
