"""The sync token: what a device hands back on its next ``/v1/library/sync`` (spec 7.2).

Ours is standard base64 of compact JSON, no prefix and no dot (a ``PX.`` prefix made a Libra
Colour reject the sync, bookorbit/bookorbit#1175; a dot would make it look like a store token):
the store's own token to forward, the snapshot the device has (``from``), the one being sent
(``to``), and where in it the last page ended. It is signed with the device's own key, so a
token edited by hand is refused with a 400 instead of steering the server to another device's
snapshots; the key lives with the device, so a changed server secret never strands a Kobo.

A token we did not make is never an error: the store's ``xxx.yyy`` token is kept to forward and
the device is treated as never synced with us; calibre-web's token gives up its store token the
same way; anything else means a full sync.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Literal

import msgspec

TOKEN_VERSION = 1
MAX_STORE_TOKEN = 6000

Phase = Literal["new", "changed", "removed", "progress", "tags"]
PHASES: tuple[Phase, ...] = ("new", "changed", "removed", "progress", "tags")


class ForgedSyncTokenError(ValueError):
    """A token in our format whose signature does not match: edited, or made for another device."""


class SyncToken(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Where a device's sync stands.

    ``from_`` is the snapshot the device has completely; ``to`` the snapshot being sent, with
    ``phase`` and ``after`` (items of that phase already sent) saying where the next page starts.
    """

    v: int = TOKEN_VERSION
    store: str = ""
    from_: int | None = msgspec.field(default=None, name="from")
    to: int | None = None
    phase: Phase | None = None
    after: int = 0
    sig: str = ""


class _Ours(msgspec.Struct, frozen=True):
    """Every token we make has a signature; nobody else's has a ``sig`` key."""

    sig: str


class _CalibreWebData(msgspec.Struct, frozen=True):
    raw_kobo_store_token: str = ""


class _CalibreWeb(msgspec.Struct, frozen=True):
    data: _CalibreWebData


_DECODER = msgspec.json.Decoder(SyncToken)


def _signature(token: SyncToken, key: bytes) -> str:
    unsigned = msgspec.json.encode(msgspec.structs.replace(token, sig=""))
    return hmac.new(key, unsigned, hashlib.sha256).hexdigest()[:20]


def encode_token(token: SyncToken, key: bytes) -> str:
    """The header value for ``token``, signed with the device's ``key``."""
    signed = msgspec.structs.replace(token, sig=_signature(token, key))
    return base64.b64encode(msgspec.json.encode(signed)).decode("ascii")


def decode_token(header: str | None, key: bytes) -> SyncToken:
    """The token a device sent, or a fresh one (full sync) when it sent none or not ours.

    Args:
        header: the ``x-kobo-synctoken`` request header.
        key: the device's signing key.

    Raises:
        ForgedSyncTokenError: the token is in our format but its signature does not match.
    """
    text = (header or "").strip()
    if not text:
        return SyncToken()
    if "." in text:  # the Kobo store's token: keep it to forward, start from nothing
        return SyncToken(store=text[:MAX_STORE_TOKEN])
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return SyncToken()
    try:
        msgspec.json.decode(raw, type=_Ours)
    except msgspec.DecodeError:
        try:
            store = msgspec.json.decode(raw, type=_CalibreWeb).data.raw_kobo_store_token
        except msgspec.DecodeError:
            return SyncToken()
        return SyncToken(store=store[:MAX_STORE_TOKEN])
    try:
        token = _DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise ForgedSyncTokenError(f"the sync token is not one this server made: {exc}") from exc
    if token.v != TOKEN_VERSION or not hmac.compare_digest(token.sig.encode(), _signature(token, key).encode()):
        raise ForgedSyncTokenError("the sync token was not made by this server for this device")
    return token
