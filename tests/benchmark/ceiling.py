"""The framework ceiling: the fastest any feed of ours could be served on this machine.

One Litestar GET handler returning fixed bytes, about the size of an OPDS acquisition page, as
``application/atom+xml``. Served by granian exactly as our server is, so the gap between this and a
real feed is our own work (auth, lookup, rendering), not the framework's or the transport's:

    granian --interface asgi --host 127.0.0.1 --port P --workers 1 tests.benchmark.ceiling:app
"""

from __future__ import annotations

from litestar import Litestar, Response, get

PAGE_BYTES = 20 * 1024
MEDIA_TYPE = "application/atom+xml;profile=opds-catalog;kind=acquisition"

_HEAD = b'<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">\n'
_ENTRY = b"<entry><title>A book</title><id>urn:uuid:00000000-0000-0000-0000-000000000000</id></entry>\n"
_TAIL = b"</feed>\n"
BODY = _HEAD + _ENTRY * ((PAGE_BYTES - len(_HEAD) - len(_TAIL)) // len(_ENTRY)) + _TAIL


@get("/", media_type=MEDIA_TYPE)
async def page() -> Response[bytes]:
    return Response(content=BODY, media_type=MEDIA_TYPE)


app = Litestar(route_handlers=[page], openapi_config=None)
