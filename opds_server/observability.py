"""What the server says about itself: JSON logs with a request id, and Prometheus metrics.

**Logs.** One JSON object a line on stderr: ``time``, ``level``, ``logger``, ``message`` and the
``request_id`` of the request being answered (from a sane ``X-Request-Id`` the proxy sent, else
made here, and sent back in the answer). Every message goes through ``scrub``: a Kobo's path token,
``Basic``/``Bearer`` credentials, session cookies, KOReader's ``x-auth-key`` and ``password=``
pairs never reach a log, whatever a caller formatted into it.

**Metrics** (``/metrics``, Prometheus text format). Per route family (``opds``, ``html``,
``kobo``, ``kosync``, ``api``, ``downloads``, ``covers``, ``other``): a latency histogram and a
request counter by status class; the rendered-feed cache's hits and misses (the ``X-Cache`` of each
answer); Kobo sync pages and items sent; login failures by kind; and, read when scraped, the
library's book count, its generation (as a label of an info metric) and how far the served
snapshot lags behind ``metadata.db``'s last write. Under granian's worker processes the CLI sets
``PROMETHEUS_MULTIPROC_DIR`` and every worker's counters are summed in one answer
(``prometheus_client``'s multiprocess mode).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import secrets
import sys
import time
from typing import Any, cast

from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
from prometheus_client import Counter, Histogram

from opds_server.errors import redact
from opds_server.http import security_headers

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_FAMILIES = (
    ("kobo", re.compile(r"^/kobo/")),
    ("kosync", re.compile(r"^/kosync(/|$)")),
    ("api", re.compile(r"^/api/")),
    ("opds", re.compile(r"^/opds(/|$)")),
    ("downloads", re.compile(r"^/(download|pse)/")),
    ("covers", re.compile(r"^/covers/")),
    ("other", re.compile(r"^/(health|metrics|schema)(/|$)")),
)
_SECRETS = (
    (re.compile(r"(?i)\b(Basic|Bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 <redacted>"),
    (re.compile(r"(?i)(opds_session|opds_csrf)=[^;\s\"']+"), r"\1=<redacted>"),
    (re.compile(r"(?i)(x-auth-key|password|secret|token)([\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]+"), r"\1\2<redacted>"),
)

REQUESTS = Counter("opds_http_requests", "Requests answered, by route family and status class", ["family", "status"])
LATENCY = Histogram(
    "opds_http_request_duration_seconds",
    "Time to answer a request (headers and body sent), by route family",
    ["family"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
FEED_CACHE = Counter("opds_feed_cache", "Feeds and pages answered from the rendered cache or rendered", ["result"])
KOBO_PAGES = Counter("opds_kobo_sync_pages", "Kobo library-sync pages sent")
KOBO_ITEMS = Counter("opds_kobo_sync_items", "Items (books, states, collections) in the Kobo sync pages sent")
LIBRARY_NEWS = Counter(
    "opds_library_news", "Library-change news between instances (Redis pub/sub), sent and heard", ["direction"]
)
LOGIN_FAILURES = Counter("opds_login_failures", "Failed logins, by credential kind", ["kind"])
FEED_HITS = FEED_CACHE.labels(result="hit")
FEED_MISSES = FEED_CACHE.labels(result="miss")
FAMILY_NAMES = (*(name for name, _ in _FAMILIES), "html")


def scrub(text: str) -> str:
    """``text`` without credentials: Kobo path tokens, Basic/Bearer values, session cookies, keys."""
    text = redact(text)  # a Kobo's path token
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def family_of(path: str) -> str:
    """The route family a path belongs to, for metrics; pages of the HTML view are ``html``."""
    for name, pattern in _FAMILIES:
        if pattern.match(path):
            return name
    return "html"


class JsonFormatter(logging.Formatter):
    """One JSON object a line, scrubbed of credentials, with the request id."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
            "request_id": REQUEST_ID.get(),
        }
        if record.exc_info:
            entry["error"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr for our loggers and the servers' (idempotent: one handler)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("opds_server").setLevel(level)


class RequestContextMiddleware:
    """Gives each request an id (logs, ``X-Request-Id``), times and counts it for ``/metrics``, and
    adds the security headers every answer carries (``opds_server.http.security_headers``): one
    wrapper around the application, not three (it runs on every request, fast path included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._latency = {name: LATENCY.labels(family=name) for name in FAMILY_NAMES}
        self._requests: dict[tuple[str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if str(scope["type"]) != "http":
            await self.app(scope, receive, send)
            return
        http = cast("HTTPScope", scope)
        given = next((v.decode("latin-1") for k, v in http["headers"] if k == b"x-request-id"), "")
        request_id = given if _SANE_ID.match(given) else secrets.token_hex(8)
        token = REQUEST_ID.set(request_id)
        family = family_of(http["path"])
        started = time.perf_counter()
        status = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                start = cast("dict[str, Any]", message)
                status[0] = int(start["status"])
                headers: list[tuple[bytes, bytes]] = list(start.get("headers", ()))
                cached = next((bytes(v) for k, v in headers if k == b"x-cache"), None)
                if cached is not None:
                    (FEED_HITS if cached == b"hit" else FEED_MISSES).inc()
                headers.append((b"x-request-id", request_id.encode()))
                security_headers(headers)
                message = cast("Message", {**message, "headers": headers})
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._latency[family].observe(time.perf_counter() - started)
            key = (family, status[0] // 100)
            counter = self._requests.get(key)
            if counter is None:
                counter = self._requests[key] = REQUESTS.labels(family=family, status=f"{key[1]}xx")
            counter.inc()
            REQUEST_ID.reset(token)
