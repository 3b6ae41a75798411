"""The calls a Kobo makes to sync (spec 12.1), timed, for ``kobo.py``: the start-up calls, and a
sync session page by page with each page's figures (time, items, body and header bytes, token).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import msgspec

REQUEST_TIMEOUT = 120.0
"""Long enough to see how far past the device's 30 s a slow page goes."""
SYNC_PATH = "/v1/library/sync?Filter=ALL&DownloadUrlFilter=Generic,Android&PrioritizeRecentReads=true"
DEVICE_ID = "b3e8f1c2a4d5e6f708192a3b4c5d6e7f8091a2b3"
USER_KEY = "bench-user-key"
DEVICE_HEADERS = {
    "User-Agent": (
        "Mozilla/5.0 (Linux; U; Android 2.0; en-us;) AppleWebKit/538.1 (KHTML, like Gecko) Version/4.0"
        " Mobile Safari/538.1 (Kobo Touch 0393/4.44.23552)"
    ),
    "Accept": "application/json",
    "Accept-Encoding": "gzip",
    "x-kobo-deviceid": DEVICE_ID,
    "x-kobo-userkey": USER_KEY,
    "x-kobo-devicemodel": "Kobo Libra 2",
    "x-kobo-appversion": "4.44.23552",
    "x-kobo-platformid": "00000000-0000-0000-0000-000000000388",
}
"""What a Kobo sends on every call (spec 4.1); gzip, as a Kobo asks for it."""


def since(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()``)."""
    return (time.perf_counter() - started) * 1000


class Call(msgspec.Struct, frozen=True, kw_only=True):
    method: str
    path: str
    status: int
    ms: float


class Page(msgspec.Struct, frozen=True, kw_only=True):
    number: int
    status: int
    ms: float
    items: int
    kinds: dict[str, int]
    body_bytes: int
    """The JSON as decoded; ``wire_bytes`` is what was sent (gzip when the server compresses)."""
    wire_bytes: int
    header_bytes: int
    token_length: int
    has_continue: bool
    error: str | None = None


class Session(msgspec.Struct, frozen=True, kw_only=True):
    """One sync: pages until one has no ``continue``."""

    pages: list[Page]
    ms: float
    new_entitlements: int
    distinct_ids: int
    duplicate_ids: list[str]
    """At most 20 of them."""
    duplicates: int
    changed_states: int
    """Distinct books with a ``ChangedReadingState``."""


def handshake(client: httpx.Client) -> list[Call]:
    """Spec 12.1 steps 2-7, the calls that must all be 2xx before a sync. Sets the Bearer token."""
    calls: list[Call] = []

    def call(method: str, path: str, body: object | None = None) -> httpx.Response:
        started = time.perf_counter()
        content = msgspec.json.encode(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else {}
        response = client.request(method, path, content=content, headers=headers)
        calls.append(Call(method=method, path=path, status=response.status_code, ms=since(started)))
        return response

    call("GET", "/v1/initialization")
    auth = call(
        "POST",
        "/v1/auth/device",
        {
            "AffiliateName": "Kobo",
            "AppVersion": "4.44.23552",
            "ClientKey": "Ym9iYmVuY2g=",
            "DeviceId": DEVICE_ID,
            "PlatformId": DEVICE_HEADERS["x-kobo-platformid"],
            "UserKey": USER_KEY,
        },
    )
    try:
        access = msgspec.json.decode(auth.content, type=dict[str, Any]).get("AccessToken")
    except (msgspec.DecodeError, msgspec.ValidationError):
        access = None  # the check on the calls' statuses reports it
    if isinstance(access, str):
        client.headers["Authorization"] = f"Bearer {access}"
    call("GET", "/v1/user/profile")
    call("POST", "/v1/analytics/gettests", {"TestKey": USER_KEY})
    return calls


class _Identified(msgspec.Struct, rename="pascal"):
    id: str


class _Entitlement(msgspec.Struct, rename="pascal"):
    book_entitlement: _Identified


class _State(msgspec.Struct, rename="pascal"):
    entitlement_id: str


class _StateChange(msgspec.Struct, rename="pascal"):
    reading_state: _State


_ITEMS = msgspec.json.Decoder(list[dict[str, msgspec.Raw]])
_ENTITLEMENT = msgspec.json.Decoder(_Entitlement)
_STATE_CHANGE = msgspec.json.Decoder(_StateChange)


def read_page(number: int, response: httpx.Response, ms: float) -> tuple[Page, list[tuple[str, str]]]:
    """A page's figures and its items as (kind, book id), the id empty where the kind has none."""
    token = response.headers.get("x-kobo-synctoken", "")
    page = Page(
        number=number,
        status=response.status_code,
        ms=ms,
        items=0,
        kinds={},
        body_bytes=len(response.content),
        wire_bytes=response.num_bytes_downloaded,
        header_bytes=sum(len(name) + len(value) + 4 for name, value in response.headers.raw),
        token_length=len(token),
        has_continue=response.headers.get("x-kobo-sync", "").lower() == "continue",
    )
    if response.status_code != 200:
        return msgspec.structs.replace(page, error=response.text[:300]), []
    try:
        items: list[tuple[str, str]] = []
        for item in _ITEMS.decode(response.content):
            for kind, raw in item.items():
                book = ""
                if kind in {"NewEntitlement", "ChangedEntitlement"}:
                    book = _ENTITLEMENT.decode(raw).book_entitlement.id
                elif kind == "ChangedReadingState":
                    book = _STATE_CHANGE.decode(raw).reading_state.entitlement_id
                items.append((kind, book))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return msgspec.structs.replace(page, error=f"not a sync body: {exc}"), []
    kinds = Counter(kind for kind, _ in items)
    return msgspec.structs.replace(page, items=len(items), kinds=dict(kinds)), items


def sync(client: httpx.Client, token: str | None, *, max_pages: int) -> tuple[Session, str | None, list[str]]:
    """Pages until one has no ``continue`` (or fails, or ``max_pages``: an endless loop); returns the
    session, the last token and the ids of the ``NewEntitlement`` items in order."""
    pages: list[Page] = []
    new: list[str] = []
    changed: set[str] = set()
    started = time.perf_counter()
    while len(pages) < max_pages:
        headers = {"x-kobo-synctoken": token} if token else {}
        sent = time.perf_counter()
        response = client.get(SYNC_PATH, headers=headers)
        page, items = read_page(len(pages) + 1, response, since(sent))
        pages.append(page)
        new += [book for kind, book in items if kind == "NewEntitlement"]
        changed.update(book for kind, book in items if kind == "ChangedReadingState")
        token = response.headers.get("x-kobo-synctoken", token)
        if page.status != 200 or not page.has_continue:
            break
    repeated = [book for book, count in Counter(new).items() if count > 1]
    session = Session(
        pages=pages,
        ms=since(started),
        new_entitlements=len(new),
        distinct_ids=len(set(new)),
        duplicate_ids=repeated[:20],
        duplicates=len(repeated),
        changed_states=len(changed),
    )
    return session, token, list(dict.fromkeys(new))
