"""Authentication for every route: who is asking, and whether they may.

Routes are public (``/health``, covers, the OpenSearch and authentication documents, token
endpoints), or need a scope: ``account`` for ``/api``, ``sync`` for the device protocols, ``catalog``
for everything else. A login is required only once a user exists, and catalogue routes stay open
when the operator turns on anonymous browsing.

Covers and the OpenSearch description are public because Moon+ Reader and other clients fetch
them without the credentials they send for feeds; they reveal nothing a feed listing would not.
A 401 carries ``WWW-Authenticate: Basic`` (and ``Bearer`` for the API) and, for OPDS paths, an
OPDS Authentication Document as its body, which is how Thorium learns to show a login form.
"""

from __future__ import annotations

import logging
import re
from typing import Any, cast
from urllib.parse import urlencode

import msgspec
from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

from feeds import vocab
from feeds.authentication import render_authentication_document
from opds_server.auth.principal import Principal
from opds_server.auth.principal import Scope as AccessScope
from opds_server.auth.service import AuthenticationError, RateLimitedError
from opds_server.cache.store import StoreUnavailableError
from opds_server.db.engine import DATABASE_DOWN
from opds_server.errors import DATABASE_DOWN_DETAIL, PROBLEM_TYPE, Problem, first_line

log = logging.getLogger(__name__)

_PUBLIC = re.compile(
    r"^/(health|metrics|schema(/.*)?|covers/.*|opds/opensearch\.xml|opds/auth|api/auth/(token|refresh)|login|logout)$"
)
_ACCOUNT = re.compile(r"^/api(/|$)")
_SYNC = re.compile(r"^/(kobo|kosync)(/|$)")
# A Kobo's credential is the token in its path (routes/kobo.py checks it), KOReader's sync plugin
# sends its own x-auth-* headers (routes/kosync.py checks them), and the reading-services
# calls at the site root carry only the bearer token we made up for the device: neither goes
# through Basic or JWT authentication, which would refuse them.
_DEVICE = re.compile(r"^/(kobo/|kosync(/|$)|api/v3/content/|api/UserStorage(/|$)|api/internal/notebooks(/|$))")
_BROWSER_NEVER = re.compile(r"^/(opds|api|kobo|kosync)(/|$)")
"""Paths whose 401 stays a 401 even for a browser: OPDS and device protocols, the JSON API."""
_PERSONAL = re.compile(r"^(/opds(/v2)?)?/(favourites|shelves|reading|finished)(/|$)")


def required_scope(path: str) -> AccessScope | None:
    """The scope a path needs; ``None`` for public paths."""
    if _PUBLIC.match(path):
        return None
    if _ACCOUNT.match(path):
        return AccessScope.ACCOUNT
    if _SYNC.match(path):
        return AccessScope.SYNC
    return AccessScope.CATALOG


_UNAVAILABLE: tuple[type[Exception], ...] = (StoreUnavailableError, *DATABASE_DOWN)
"""What makes a login unanswerable for now: 503 with Retry-After."""


def _address(scope: HTTPScope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def _header(scope: HTTPScope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class AuthenticationMiddleware:
    """Sets ``scope["user"]`` to the ``Principal`` (or ``None``) and refuses what needs a login."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if str(scope["type"]) != "http" or _DEVICE.match(scope.get("path", "")):
            scope.setdefault("user", None)  # Litestar reads scope["user"]
            await self.app(scope, receive, send)
            return
        http = cast("HTTPScope", scope)
        services = http["app"].state.services
        path = http["path"]
        needed = required_scope(path)
        header = _header(http, b"authorization")
        principal: Principal | None = None
        try:
            if header is not None:
                principal = await services.authenticator.authenticate(header, _address(http))
            elif (cookie := session_cookie(http)) is not None and not _ACCOUNT.match(path):
                principal = await _session(services, cookie)
            if principal is None and needed is not None and await self._login_required(services, path, needed):
                await refuse(http, send, services, 401, "a login is needed")
                return
        except AuthenticationError as exc:
            if needed is not None or header is not None:
                await refuse(http, send, services, 401, str(exc))
                return
        except RateLimitedError as exc:
            await refuse(http, send, services, 429, str(exc), retry_after=exc.retry_after)
            return
        except _UNAVAILABLE as exc:
            if isinstance(exc, StoreUnavailableError):
                detail = "the credential store is unavailable"
            else:
                log.warning("%s %s: the database is unavailable: %s", http["method"], path, first_line(exc))
                detail = DATABASE_DOWN_DETAIL
            await refuse(http, send, services, 503, detail, retry_after=5)
            return
        if principal is not None and needed is not None and not principal.can(needed):
            await refuse(http, send, services, 403, f"this credential may not use {path} (needs '{needed}')")
            return
        http["user"] = principal  # Litestar reads scope["user"]
        await self.app(scope, receive, send)

    @staticmethod
    async def _login_required(services: Any, path: str, needed: AccessScope) -> bool:
        if needed is AccessScope.ACCOUNT or _PERSONAL.match(path):
            return True
        if needed is AccessScope.CATALOG and services.settings.anonymous_browsing:
            return False
        required: bool = await services.authenticator.is_required()
        return required


SESSION_COOKIE = "opds_session"


def session_cookie(scope: HTTPScope) -> str | None:
    """The browser session's token from the ``Cookie`` header (the HTML view's login)."""
    for key, value in scope["headers"]:
        if key != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            name, _, token = part.strip().partition("=")
            if name == SESSION_COOKIE and token:
                return token
    return None


async def _session(services: Any, token: str) -> Principal | None:
    """The session's principal; ``None`` for one that ended (the browser is then anonymous)."""
    try:
        principal: Principal = await services.authenticator.session(token)
    except AuthenticationError:
        return None
    return principal


def wants_page(scope: HTTPScope) -> bool:
    """A browser navigating (it asks for HTML), rather than an e-reader's OPDS client."""
    accept = _header(scope, b"accept") or ""
    return "text/html" in accept


def _base(scope: HTTPScope, services: Any) -> str:
    if services.settings.base_url:
        return str(services.settings.base_url)
    host = _header(scope, b"host") or "localhost"
    return f"{scope['scheme']}://{host}{scope.get('root_path', '')}"


async def refuse(
    scope: HTTPScope,
    send: Send,
    services: Any,
    status: int,
    detail: str,
    *,
    retry_after: int | None = None,
) -> None:
    """Answer with an error, as this middleware refuses: a 401 on OPDS paths carries the
    Authentication Document and a Basic (or Bearer) challenge, anything else a problem document."""
    path = scope["path"]
    if status == 401 and scope["method"] in {"GET", "HEAD"} and wants_page(scope) and not _BROWSER_NEVER.match(path):
        # A browser is sent to the login form, and brought back to what it asked for.
        target = path + (("?" + scope["query_string"].decode("latin-1")) if scope["query_string"] else "")
        location = f"{_base(scope, services)}/login?{urlencode({'next': target})}"
        log.info("%s %s -> 303 login: %s", scope["method"], path, detail)
        headers = [(b"location", location.encode()), (b"content-length", b"0"), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    realm = services.settings.library_name.replace('"', "'")
    headers = []
    if status == 401:
        challenge = f'Basic realm="{realm}", charset="UTF-8"'
        if _ACCOUNT.match(path):
            challenge = f'Bearer realm="{realm}", {challenge}'
        headers.append((b"www-authenticate", challenge.encode()))
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    if status == 401 and path.startswith("/opds"):
        body = render_authentication_document(services.auth_document(_base(scope, services)))
        media_type = vocab.AUTHENTICATION_TYPE
    else:
        titles = {401: "Login needed", 403: "Forbidden", 429: "Too many attempts", 503: "Unavailable"}
        slug = {401: "unauthorized", 403: "forbidden", 429: "rate-limited", 503: "unavailable"}[status]
        problem = Problem(type=f"about:blank#{slug}", title=titles[status], status=status, detail=detail, instance=path)
        body, media_type = msgspec.json.encode(problem), PROBLEM_TYPE
    log.info("%s %s -> %d: %s", scope["method"], path, status, detail)
    headers += [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body, "more_body": False})
