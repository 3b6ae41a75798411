"""Device quirks, each named and documented in one place.

``wants_raw_templates``: OPDS-PSE page-streaming clients substitute the literal text
``{pageNumber}`` in a link's href (KOReader's ``opdspse.lua`` does ``gsub("{pageNumber}", ...)``),
but the OPDS 1.2 RELAX NG grammar rejects ``{`` and ``}`` in an href. Clients known to stream
pages get raw braces; every other client gets a valid URI with the braces percent-encoded, which a
client that decodes the href before substituting also understands. The ETag of a feed records
which of the two it got.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request

_PAGE_STREAMING_CLIENTS = re.compile(r"koreader|chunky|panels|librera|tachiyomi|mihon|kybook", re.IGNORECASE)


def wants_raw_templates(request: Request[Any, Any, Any]) -> bool:
    """Whether the client is a page-streaming reader that needs literal ``{...}`` in hrefs."""
    return bool(_PAGE_STREAMING_CLIENTS.search(request.headers.get("user-agent", "")))
