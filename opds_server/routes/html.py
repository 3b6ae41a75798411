"""The HTML view's forms: log in and out with a session cookie, add and remove favourites.

The pages themselves are the catalogue's feeds rendered as HTML (``feed_router(Flavour.HTML)``);
this module answers what a browser posts.

* **Favourites and shelves**: a book's page adds it to favourites, to one of the reader's shelves or
  to a new one; a shelf's page takes books off it.
* **Login** takes a user name and a password (or an app password), checked as HTTP Basic is (same
  rate limits), and sets ``opds_session``: a signed token (30 days) in an ``HttpOnly``,
  ``SameSite=Lax`` cookie, ``Secure`` over HTTPS. Logging out ends the session on every instance
  (``Authenticator.end_session``); a password change or ``users disable`` ends it too.
* **CSRF.** Every POST must come from one of our own pages: its ``Origin`` (or, from browsers that
  send none, its ``Referer``) must be this server's. The login form also carries a double-submit
  token (a random value signed with the server secret, in a cookie and in the form), since it is
  the one form posted before there is a session. With the ``SameSite`` cookie that makes three
  defences; a post failing them is a 403 page, never a change.
* ``next`` only ever leads back into this site (a path, never a URL or ``//host``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Annotated, Any
from urllib.parse import urlsplit

import anyio.to_thread
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body

from feeds.html import FormAction, SiteFrame, render_login_html, render_message_html
from opds_server.auth.middleware import SESSION_COOKIE, session_cookie
from opds_server.auth.principal import Principal
from opds_server.auth.service import AuthenticationError, RateLimitedError
from opds_server.auth.tokens import SESSION_LIFETIME
from opds_server.catalog.hrefs import Flavour, Hrefs
from opds_server.db.library import ShelfNameError
from opds_server.errors import InvalidBodyError, ShelfNotFoundError
from opds_server.quirks import ClientProfile
from opds_server.routes.feeds import public_base, site_frame
from opds_server.routes.params import BookIdParam, ShelfIdParam
from opds_server.state import Services, utc_now

CSRF_COOKIE = "opds_csrf"
PAGE_TYPE = "text/html"  # Litestar adds "; charset=utf-8"
NO_STORE = "no-store"


class LoginForm(msgspec.Struct, kw_only=True):
    username: str = ""
    password: str = ""
    csrf: str = ""
    next: str = "/"


def _frame(request: Request[Any, Any, Any], services: Services, *, is_logged_in: bool) -> SiteFrame:
    hrefs = Hrefs(public_base(request, services), Flavour.HTML)
    return site_frame(services, hrefs, ClientProfile(is_logged_in=is_logged_in))


def _page(body: bytes, status: int = 200) -> Response[bytes]:
    return Response(content=body, status_code=status, media_type=PAGE_TYPE, headers={"Cache-Control": NO_STORE})


def _see_other(
    request: Request[Any, Any, Any], services: Services, path: str, *, cookie: str | None = None
) -> Response[bytes]:
    """A 303 to a page of this site after a form (``path`` from the root), setting ``cookie`` if given."""
    response: Response[bytes] = Response(
        content=b"",
        status_code=303,
        headers={"Location": public_base(request, services) + path, "Cache-Control": NO_STORE},
    )
    if cookie is not None:
        response.headers["Set-Cookie"] = cookie
    return response


def _safe_next(value: str) -> str:
    """Where to go after logging in: a path of this site, or its root."""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _csrf_token(secret: bytes) -> str:
    nonce = secrets.token_urlsafe(18)
    signature = hmac.new(secret, f"csrf:{nonce}".encode(), hashlib.sha256).digest()
    return f"{nonce}.{base64.urlsafe_b64encode(signature[:18]).decode()}"


def _csrf_valid(secret: bytes, token: str) -> bool:
    nonce, _, signature = token.partition(".")
    if not nonce or not signature:
        return False
    expected = hmac.new(secret, f"csrf:{nonce}".encode(), hashlib.sha256).digest()
    return hmac.compare_digest(signature, base64.urlsafe_b64encode(expected[:18]).decode())


def _is_same_origin(request: Request[Any, Any, Any], services: Services) -> bool:
    """The post came from one of our pages: its Origin, else its Referer, is this server."""
    ours = urlsplit(public_base(request, services))
    for header in ("origin", "referer"):
        value = request.headers.get(header)
        if value and value != "null":
            theirs = urlsplit(value)
            return (theirs.scheme, theirs.netloc) == (ours.scheme, ours.netloc)
    return False


def _cookie(name: str, value: str, request: Request[Any, Any, Any], *, max_age: int, http_only: bool = True) -> str:
    parts = [f"{name}={value}", "Path=/", f"Max-Age={max_age}", "SameSite=Lax"]
    if http_only:
        parts.append("HttpOnly")
    if request.url.scheme == "https":
        parts.append("Secure")
    return "; ".join(parts)


def _forbidden(request: Request[Any, Any, Any], services: Services, principal: Principal | None) -> Response[bytes]:
    body = render_message_html(
        _frame(request, services, is_logged_in=principal is not None),
        "Not allowed",
        "This form was not sent from this site's own page, so nothing was changed. Go back, reload the page"
        " and try again.",
    )
    return _page(body, status=403)


@get("/login", name="html-login", sync_to_thread=False)
def login_page(request: Request[Any, Any, Any], services: Services) -> Response[bytes]:
    token = request.cookies.get(CSRF_COOKIE, "")
    if not _csrf_valid(services.secret, token):
        token = _csrf_token(services.secret)
    target = _safe_next(request.query_params.get("next", "/"))
    body = render_login_html(
        _frame(request, services, is_logged_in=False),
        action=f"{public_base(request, services)}/login",
        next_href=target,
        csrf=token,
    )
    response = _page(body)
    response.headers["Set-Cookie"] = _cookie(CSRF_COOKIE, token, request, max_age=3600)
    return response


@post("/login", name="html-login-post", status_code=303)
async def login(
    request: Request[Any, Any, Any],
    services: Services,
    data: Annotated[LoginForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Response[bytes]:
    frame = _frame(request, services, is_logged_in=False)
    action = f"{public_base(request, services)}/login"
    target = _safe_next(data.next)
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if (
        not _is_same_origin(request, services)
        or not data.csrf
        or cookie != data.csrf
        or not _csrf_valid(services.secret, cookie)
    ):
        return _forbidden(request, services, None)

    def again(message: str, status: int) -> Response[bytes]:
        body = render_login_html(
            frame, action=action, next_href=target, csrf=cookie, error=message, user_name=data.username
        )
        return _page(body, status=status)

    credentials = base64.b64encode(f"{data.username}:{data.password}".encode()).decode()
    client = request.client.host if request.client else "unknown"
    try:
        principal = await services.authenticator.basic(f"Basic {credentials}", client)
    except RateLimitedError as exc:
        return again(f"Too many attempts: try again in {exc.retry_after} seconds.", 429)
    except AuthenticationError:
        return again("That user name and password do not match.", 401)
    token, _claims = services.tokens.issue_session(principal.user_id, principal.token_version, now=utc_now())
    cookie = _cookie(SESSION_COOKIE, token, request, max_age=int(SESSION_LIFETIME.total_seconds()))
    return _see_other(request, services, target, cookie=cookie)


@get("/logout", name="html-logout", sync_to_thread=False)
def logout_page(request: Request[Any, Any, Any], services: Services, principal: Principal | None) -> Response[bytes]:
    base = public_base(request, services)
    if principal is None:
        return _see_other(request, services, "/")
    body = render_message_html(
        _frame(request, services, is_logged_in=True),
        "Log out",
        f"You are logged in as {principal.name}.",
        (FormAction(label="Log out", action=f"{base}/logout"),),
    )
    return _page(body)


@post("/logout", name="html-logout-post", status_code=303)
async def logout(request: Request[Any, Any, Any], services: Services, principal: Principal | None) -> Response[bytes]:
    if not _is_same_origin(request, services):
        return _forbidden(request, services, principal)
    token = session_cookie(request.scope)
    if token is not None:
        await services.authenticator.end_session(token)
    return _see_other(request, services, "/", cookie=_cookie(SESSION_COOKIE, "", request, max_age=0))


async def _change_favourite(
    request: Request[Any, Any, Any], services: Services, principal: Principal, book_id: int, *, add: bool
) -> Response[bytes]:
    if not _is_same_origin(request, services):
        return _forbidden(request, services, principal)
    await anyio.to_thread.run_sync(services.catalog.book, book_id)  # BookNotFoundError: a 404 page
    if add:
        await anyio.to_thread.run_sync(
            lambda: services.personal.add_favourite(principal.user_id, book_id, now=utc_now())
        )
    else:
        await anyio.to_thread.run_sync(services.personal.remove_favourite, principal.user_id, book_id)
    return _see_other(request, services, "/favourites" if add else f"/books/{book_id}")


@post("/favourites/{book_id:int}", name="html-favourite-add", status_code=303)
async def add_favourite(
    request: Request[Any, Any, Any], services: Services, principal: Principal, book_id: BookIdParam
) -> Response[bytes]:
    return await _change_favourite(request, services, principal, book_id, add=True)


@post("/favourites/{book_id:int}/remove", name="html-favourite-remove", status_code=303)
async def remove_favourite(
    request: Request[Any, Any, Any], services: Services, principal: Principal, book_id: BookIdParam
) -> Response[bytes]:
    return await _change_favourite(request, services, principal, book_id, add=False)


class ShelfForm(msgspec.Struct, kw_only=True):
    book_id: str = ""
    shelf_id: str = ""
    name: str = ""


def _number(value: str, field: str) -> int:
    """A form's id field as a number.

    Raises:
        InvalidBodyError: it is not one.
    """
    if not value.isdigit() or len(value) > 12:
        raise InvalidBodyError(
            f"{field}={value[:40]!r} is not accepted: a book or shelf id (a whole number) is expected"
        )
    return int(value)


def _to_shelf(request: Request[Any, Any, Any], services: Services, shelf_id: int) -> Response[bytes]:
    return _see_other(request, services, f"/shelves/{shelf_id}")


@post("/shelves/add", name="html-shelf-add", status_code=303)
async def add_to_shelf(
    request: Request[Any, Any, Any],
    services: Services,
    principal: Principal,
    data: Annotated[ShelfForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Response[bytes]:
    if not _is_same_origin(request, services):
        return _forbidden(request, services, principal)
    book_id, shelf_id = _number(data.book_id, "book_id"), _number(data.shelf_id, "shelf_id")
    await anyio.to_thread.run_sync(services.catalog.book, book_id)  # BookNotFoundError: a 404 page
    added = await anyio.to_thread.run_sync(
        lambda: services.personal.add_to_shelf(principal.user_id, shelf_id, book_id, now=utc_now())
    )
    if not added and await anyio.to_thread.run_sync(services.personal.shelf, principal.user_id, shelf_id) is None:
        raise ShelfNotFoundError(f"you have no shelf {shelf_id}")
    return _to_shelf(request, services, shelf_id)


@post("/shelves/new", name="html-shelf-new", status_code=303)
async def new_shelf(
    request: Request[Any, Any, Any],
    services: Services,
    principal: Principal,
    data: Annotated[ShelfForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Response[bytes]:
    if not _is_same_origin(request, services):
        return _forbidden(request, services, principal)
    book_id = _number(data.book_id, "book_id")
    await anyio.to_thread.run_sync(services.catalog.book, book_id)
    try:
        shelf = await anyio.to_thread.run_sync(
            lambda: services.personal.create_shelf(principal.user_id, data.name, now=utc_now())
        )
    except ShelfNameError as exc:
        raise InvalidBodyError(str(exc)) from exc
    await anyio.to_thread.run_sync(
        lambda: services.personal.add_to_shelf(principal.user_id, shelf.id, book_id, now=utc_now())
    )
    return _to_shelf(request, services, shelf.id)


@post("/shelves/{shelf_id:int}/remove", name="html-shelf-remove", status_code=303)
async def remove_from_shelf(
    request: Request[Any, Any, Any],
    services: Services,
    principal: Principal,
    shelf_id: ShelfIdParam,
    data: Annotated[ShelfForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Response[bytes]:
    if not _is_same_origin(request, services):
        return _forbidden(request, services, principal)
    book_id = _number(data.book_id, "book_id")
    await anyio.to_thread.run_sync(
        lambda: services.personal.remove_from_shelf(principal.user_id, shelf_id, book_id, now=utc_now())
    )
    return _to_shelf(request, services, shelf_id)


html_forms_router = Router(
    path="/",
    route_handlers=[
        login_page,
        login,
        logout_page,
        logout,
        add_favourite,
        remove_favourite,
        add_to_shelf,
        new_shelf,
        remove_from_shelf,
    ],
    include_in_schema=False,
)
