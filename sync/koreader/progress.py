"""The kosync wire format and the rules that turn one reader's positions into what each reader is
sent (spec A.6, A.7, C.3).

KOReader sends a percentage (a 0-1 fraction, truncated to 4 decimals) and a locator: a CREngine
XPointer for reflowable books, the page number for paged ones. A record is echoed back exactly
(``device`` and ``device_id`` too: KOReader ignores a record from itself by comparing them), with
the time we received it in integer seconds (milliseconds would always look newer). A position made
elsewhere (a Kobo, the API) is sent as a coarse pointer to the start of its chapter,
``/body/DocFragment[N].0`` with N the 1-based spine index, under a ``device`` and ``device_id``
that are not the requesting device's; KOReader leaves the reader where it is on a pointer it
cannot resolve.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Annotated

import msgspec

MAX_FIELD = 4096
FINISHED_AT = 0.99
"""A fraction at or past which a book counts as finished (KOReader sends no status)."""
SERVER_DEVICE_ID = "SERVER"
_DOC_FRAGMENT = re.compile(r"^/body/DocFragment\[(\d+)\]")
_TOC_FRAGMENT = re.compile(r"#_doc_fragment_(\d+)")

Field = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_FIELD)]
Document = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^:]+$")]
"""A document key: KOReader's partial MD5 or a file name's MD5; no ``:`` (the reference server's rule)."""


class DocumentMetadata(msgspec.Struct, frozen=True, kw_only=True):
    filename: Annotated[str, msgspec.Meta(max_length=MAX_FIELD)] | None = None
    title: Annotated[str, msgspec.Meta(max_length=MAX_FIELD)] | None = None
    authors: Annotated[str, msgspec.Meta(max_length=MAX_FIELD)] | None = None


class ProgressUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """``PUT /syncs/progress`` (spec A.6)."""

    document: Document
    progress: Field
    percentage: Annotated[float, msgspec.Meta(ge=0, le=1)]
    device: Field
    device_id: Annotated[str, msgspec.Meta(max_length=MAX_FIELD)] | None = None
    metadata: DocumentMetadata | None = None


class Registration(msgspec.Struct, frozen=True, kw_only=True):
    username: Field
    password: Field


class ProgressRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``GET /syncs/progress/{document}`` (spec A.7); ``device_id`` left out when never sent."""

    document: str
    percentage: float
    progress: str
    device: str
    device_id: str | None = None
    timestamp: int


def seconds(moment: dt.datetime) -> int:
    """Integer Unix seconds, as KOReader compares them with its own clock."""
    return int(moment.timestamp())


def truncate(fraction: float) -> float:
    """A fraction cut (not rounded) to 4 decimals, as KOReader writes it (``Math.roundPercent``)."""
    return math.floor(max(0.0, min(1.0, fraction)) * 10_000) / 10_000


def chapter_of(progress: str) -> int | None:
    """The 1-based spine index an XPointer points into; ``None`` for a page number or anything else.

    ``/body/DocFragment[12]/body/p[3]/text().0`` -> 12; ``#_doc_fragment_11_...`` (after a TOC
    link; 0-based) -> 12.
    """
    found = _DOC_FRAGMENT.match(progress)
    if found:
        return int(found[1]) if int(found[1]) > 0 else None
    found = _TOC_FRAGMENT.search(progress)
    return int(found[1]) + 1 if found else None


def chapter_pointer(chapter: int) -> str:
    """The start of a spine item as an XPointer KOReader can jump to."""
    return f"/body/DocFragment[{chapter}].0"


def chapter_at(sizes: list[int], fraction: float) -> int:
    """The 1-based spine item holding ``fraction`` of the book, by the items' sizes."""
    total = sum(sizes)
    if not sizes or total <= 0:
        return 1
    target = fraction * total
    running = 0
    for index, size in enumerate(sizes, 1):
        running += size
        if running > target:
            return index
    return len(sizes)


def is_finished(fraction: float) -> bool:
    return fraction >= FINISHED_AT
