"""Device quirks, each named and documented in one place; ``client_profile`` reads them off a request.

* ``has_raw_templates``: OPDS-PSE page-streaming clients substitute the literal text
  ``{pageNumber}`` in a link's href (KOReader's ``opdspse.lua`` does
  ``gsub("{pageNumber}", ...)``), but the OPDS 1.2 RELAX NG grammar rejects ``{`` and ``}`` in an
  href. Clients known to stream pages get raw braces; every other client gets a valid URI with the
  braces percent-encoded, which a client that decodes the href before substituting understands.
* ``joins_authors``: KOReader's flattening Atom parser keeps only the last of repeated elements,
  so of several ``<author>`` elements it shows the last author only (shared/specs/koreader-sync.md
  B.2). KOReader gets one ``<author>`` naming them all ("Jane Doe & John Roe"); other clients get
  one element per author, as Atom means it.
* ``is_kobo_browser``: a Kobo's web browser (its User-Agent names the Kobo) is offered, on a book's
  page, the KEPUB made from the EPUB as Kobo sync sends it, which keeps positions and statistics.

The HTML pages also depend on whether the reader is logged in (``is_logged_in``: their links differ).

The feed ETag records the profile, and feeds say ``Vary: User-Agent``.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request

_PAGE_STREAMING_CLIENTS = re.compile(r"koreader|chunky|panels|librera|tachiyomi|mihon|kybook", re.IGNORECASE)
_KOREADER = re.compile(r"koreader", re.IGNORECASE)
_KOBO_BROWSER = re.compile(r"\bKobo\b")


class ClientProfile(msgspec.Struct, frozen=True, kw_only=True):
    """How a client's feeds must differ from the standard form."""

    has_raw_templates: bool = False
    joins_authors: bool = False
    is_kobo_browser: bool = False
    is_logged_in: bool = False


def client_profile(request: Request[Any, Any, Any], *, is_page: bool = False) -> ClientProfile:
    """The quirks the requesting client needs, from its User-Agent; for an HTML page (``is_page``)
    also whether the reader is logged in."""
    agent = request.headers.get("user-agent", "")
    if is_page:
        return ClientProfile(
            is_kobo_browser=bool(_KOBO_BROWSER.search(agent)), is_logged_in=request.scope.get("user") is not None
        )
    return ClientProfile(
        has_raw_templates=bool(_PAGE_STREAMING_CLIENTS.search(agent)),
        joins_authors=bool(_KOREADER.search(agent)),
    )
