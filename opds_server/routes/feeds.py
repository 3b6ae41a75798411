"""OPDS feeds: the same handlers serve Atom under /opds and JSON under /opds/v2.

Handlers parse typed parameters (Litestar answers a malformed one with a 400 naming it), ask the
catalogue for the feed model in a worker thread, and render it. The ETag is derived from the
library generation, the representation and the full URL, so a revalidation costs one ``stat``.
A feed that depends on who asks (the root of a logged-in user, the personal feeds) adds the user
and their data to the ETag and drops ``Last-Modified``: their lists change without the library
changing, so only the ETag can tell a client its copy is stale.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Annotated, Any

import anyio.to_thread
import msgspec
from litestar import Request, Response, Router
from litestar.params import Parameter

from feeds import vocab
from feeds.authentication import render_authentication_document
from feeds.html import Choice, FormAction, SiteFrame, render_feed_html, render_publication_html
from feeds.model import Acquisition, Feed, FeedKind, Link, Publication
from feeds.opds1 import render_entry_atom, render_feed_atom
from feeds.opds2 import render_feed_json, render_publication_json
from feeds.opensearch import render_search_description
from opds_server.auth.principal import Principal
from opds_server.calibre.query import SortOrder
from opds_server.calibre.snapshot import LibrarySnapshot
from opds_server.catalog.hrefs import PREFIXES, Flavour, Hrefs
from opds_server.catalog.media import FORMAT_TYPES
from opds_server.catalog.navigation import CATEGORIES
from opds_server.catalog.service import BooksRequest
from opds_server.db.engine import DATABASE_DOWN
from opds_server.db.library import ShelfRecord
from opds_server.http import (
    COMPRESS_FROM,
    conditional,
    full_response,
    get_and_head,
    get_and_head_async,
    make_etag,
    not_modified,
    preferred_coding,
)
from opds_server.quirks import ClientProfile, client_profile
from opds_server.routes.params import BookIdParam, CalibreIdParam
from opds_server.state import Services

FEED_CACHE_CONTROL = "private, no-cache"
AfterParam = Annotated[str | None, Parameter(description="opaque cursor from a next/previous link", max_length=1024)]


def public_base(request: Request[Any, Any, Any], services: Services) -> str:
    """The URL prefix links are built on: OPDS_BASE_URL, or what the request itself came to."""
    if services.settings.base_url:
        return services.settings.base_url
    return str(request.base_url).rstrip("/")


class _Plan(msgspec.Struct, frozen=True, kw_only=True):
    """What a feed response needs before any rendering: its validators and how to render it."""

    etag: str
    last_modified: dt.datetime | None
    render: Callable[[], bytes]


def _plan(
    request: Request[Any, Any, Any],
    services: Services,
    snapshot: LibrarySnapshot,
    flavour: Flavour,
    render: Callable[[Hrefs, ClientProfile], bytes],
    personal: tuple[object, ...] | None,
) -> _Plan:
    base = public_base(request, services)
    profile = client_profile(request, is_page=flavour is Flavour.HTML)
    etag_parts = (snapshot.generation, flavour, base, profile, request.url.path, request.url.query)
    # Last-Modified has whole seconds: while the library's change is in the current second another
    # change may follow under the same value, and KOReader caches a feed by URL + Last-Modified
    # (spec B.1). Such a value is weak (RFC 9110 8.8.2.2), so it is left out; the ETag stays.
    is_settled = snapshot.updated < dt.datetime.now(tz=dt.UTC).replace(microsecond=0)
    return _Plan(
        etag=make_etag(*etag_parts, *(("user", *personal) if personal is not None else ()), weak=True),
        last_modified=snapshot.updated if personal is None and is_settled else None,
        render=lambda: render(Hrefs(base, flavour, has_raw_templates=profile.has_raw_templates), profile),
    )


def _vary(response: Response[bytes]) -> Response[bytes]:
    # The bytes depend on the client's User-Agent (see quirks) and on the codings it accepts.
    response.headers["Vary"] = "Accept-Encoding, User-Agent"
    return response


async def _respond_async(
    request: Request[Any, Any, Any],
    services: Services,
    flavour: Flavour,
    media_type: str,
    render: Callable[[Hrefs, ClientProfile], bytes],
) -> Response[bytes]:
    """The catalogue's fast path: on the event loop while metadata.db is unchanged and the bytes are
    in this process's cache (one ``stat`` and one lookup); everything else in a worker thread."""
    snapshot = services.library.current()
    if snapshot is None:
        snapshot = await anyio.to_thread.run_sync(services.catalog.snapshot)
    plan = _plan(request, services, snapshot, flavour, render, None)
    unchanged = not_modified(
        request,
        etag=plan.etag,
        last_modified=plan.last_modified,
        cache_control=FEED_CACHE_CONTROL,
        media_type=media_type,
    )
    if unchanged is not None:
        return _vary(unchanged)
    wanted = preferred_coding(request)
    cached = services.rendered.peek(plan.etag)
    if cached is not None:
        body, was_cached = cached, True
    else:
        body, was_cached = await anyio.to_thread.run_sync(services.rendered.read_or_render, plan.etag, plan.render)
    coding = wanted if len(body) >= COMPRESS_FROM else None
    if coding is not None:
        encoded = services.rendered.peek_encoded(plan.etag, coding)
        if encoded is None:
            encoded = await anyio.to_thread.run_sync(services.rendered.encoded, plan.etag, body, coding)
        body = encoded
    return _vary(
        full_response(
            body,
            was_cached=was_cached,
            etag=plan.etag,
            last_modified=plan.last_modified,
            cache_control=FEED_CACHE_CONTROL,
            media_type=media_type,
            coding=coding,
        )
    )


def _respond(
    request: Request[Any, Any, Any],
    services: Services,
    flavour: Flavour,
    media_type: str,
    render: Callable[[Hrefs, ClientProfile], bytes],
    *,
    personal: tuple[object, ...] | None = None,
) -> Response[bytes]:
    """In a worker thread. ``personal``: the user id and a digest of their data, when the bytes
    depend on them."""
    plan = _plan(request, services, services.catalog.snapshot(), flavour, render, personal)
    return _vary(
        conditional(
            request,
            etag=plan.etag,
            last_modified=plan.last_modified,
            cache_control=FEED_CACHE_CONTROL,
            media_type=media_type,
            render=plan.render,
            cache=services.rendered,
        )
    )


def site_frame(services: Services, hrefs: Hrefs, profile: ClientProfile) -> SiteFrame:
    """What every HTML page shows around its content, for this reader."""
    account: tuple[Link, ...]
    if profile.is_logged_in:
        account = (
            Link(href=hrefs.feed("/favourites"), title="Favourites"),
            Link(href=hrefs.feed("/shelves"), title="Shelves"),
            Link(href=hrefs.feed("/reading"), title="Reading"),
            Link(href=f"{hrefs.base_url}/logout", title="Log out"),
        )
    else:
        account = (Link(href=f"{hrefs.base_url}/login", title="Log in"),)
    return SiteFrame(
        library_name=services.settings.library_name,
        home_href=hrefs.feed(),
        search_href=hrefs.feed("/books"),
        account_links=account,
        search_description_href=hrefs.search_description(),
    )


def _with_kepub(publication: Publication, hrefs: Hrefs) -> Publication:
    """A Kobo browser's book page offers the KEPUB Kobo sync would send, made from the EPUB."""
    if any(a.type == FORMAT_TYPES["KEPUB"] for a in publication.acquisitions):
        return publication
    kepubs = [
        Acquisition(
            href=a.href.removesuffix(".epub") + ".kepub.epub", type=FORMAT_TYPES["KEPUB"], title="KEPUB for Kobo"
        )
        for a in publication.acquisitions
        if a.type == FORMAT_TYPES["EPUB"]
        and a.href.startswith(f"{hrefs.base_url}/download/")
        and a.href.endswith(".epub")
    ]
    return msgspec.structs.replace(publication, acquisitions=(*kepubs, *publication.acquisitions))


ItemActions = Callable[[Hrefs, Feed], Mapping[str, Sequence[FormAction]]]


def _render_feed(
    services: Services,
    flavour: Flavour,
    feed: Feed,
    hrefs: Hrefs,
    profile: ClientProfile,
    item_actions: ItemActions | None = None,
) -> bytes:
    if flavour is Flavour.HTML:
        actions = item_actions(hrefs, feed) if item_actions is not None else None
        return render_feed_html(feed, site_frame(services, hrefs, profile), actions)
    if flavour is Flavour.ATOM:
        return render_feed_atom(feed, joins_authors=profile.joins_authors)
    return render_feed_json(feed)


def _render_publication(
    services: Services,
    flavour: Flavour,
    book_id: int,
    hrefs: Hrefs,
    profile: ClientProfile,
    shelves: Sequence[ShelfRecord] = (),
) -> bytes:
    publication = services.catalog.publication(hrefs, book_id)
    if flavour is Flavour.HTML:
        if profile.is_kobo_browser and services.settings.kobo_kepub:
            publication = _with_kepub(publication, hrefs)
        actions: tuple[FormAction, ...] = ()
        if profile.is_logged_in:  # the same buttons for every reader: the page stays cacheable
            actions = (
                FormAction(label="Add to favourites", action=f"{hrefs.base_url}/favourites/{book_id}"),
                FormAction(label="Remove from favourites", action=f"{hrefs.base_url}/favourites/{book_id}/remove"),
            )
            book = (("book_id", str(book_id)),)
            if shelves:
                options = tuple((str(shelf.id), shelf.name) for shelf in shelves)
                choice = Choice(name="shelf_id", label="Shelf", options=options)
                actions += (
                    FormAction(
                        label="Add to shelf", action=f"{hrefs.base_url}/shelves/add", fields=book, choice=choice
                    ),
                )
            new_shelf = Choice(name="name", label="New shelf")
            actions += (
                FormAction(label="Create", action=f"{hrefs.base_url}/shelves/new", fields=book, choice=new_shelf),
            )
        return render_publication_html(publication, site_frame(services, hrefs, profile), actions)
    if flavour is Flavour.ATOM:
        return render_entry_atom(publication, joins_authors=profile.joins_authors)
    return render_publication_json(publication)


def feed_response(
    request: Request[Any, Any, Any],
    services: Services,
    flavour: Flavour,
    kind: FeedKind,
    build: Callable[[Hrefs], Feed],
    *,
    personal: tuple[object, ...] | None = None,
    item_actions: ItemActions | None = None,
) -> Response[bytes]:
    """A feed in one representation, built and rendered only when the client's copy is stale."""
    media_type = Hrefs("", flavour).feed_type(kind)
    return _respond(
        request,
        services,
        flavour,
        media_type,
        lambda hrefs, profile: _render_feed(services, flavour, build(hrefs), hrefs, profile, item_actions),
        personal=personal,
    )


def feed_router(flavour: Flavour) -> Router:
    """The catalogue's routes in one representation."""

    async def respond_feed(
        request: Request[Any, Any, Any], services: Services, kind: FeedKind, build: Callable[[Hrefs], Feed]
    ) -> Response[bytes]:
        media_type = Hrefs("", flavour).feed_type(kind)
        return await _respond_async(
            request,
            services,
            flavour,
            media_type,
            lambda hrefs, profile: _render_feed(services, flavour, build(hrefs), hrefs, profile),
        )

    @get_and_head("/", name=f"{flavour}-root")
    def root(request: Request[Any, Any, Any], services: Services, principal: Principal | None) -> Response[bytes]:
        # A logged-in user's root leads to their own feeds: never the same bytes as anyone else's.
        user_id = principal.user_id if principal is not None else None
        return feed_response(
            request,
            services,
            flavour,
            "navigation",
            lambda hrefs: services.catalog.root(hrefs, user_id=user_id),
            personal=(user_id,) if user_id is not None else None,
        )

    @get_and_head_async("/books", name=f"{flavour}-books")
    async def books(
        request: Request[Any, Any, Any],
        services: Services,
        sort: SortOrder | None = None,
        author: CalibreIdParam = None,
        series: CalibreIdParam = None,
        publisher: CalibreIdParam = None,
        tag: Annotated[str | None, Parameter(max_length=512)] = None,
        language: Annotated[str | None, Parameter(max_length=16)] = None,
        rating: Annotated[int | None, Parameter(ge=0, le=10)] = None,
        book_format: Annotated[str | None, Parameter(query="format", max_length=16)] = None,
        initial: Annotated[str | None, Parameter(min_length=1, max_length=1)] = None,
        search: Annotated[str | None, Parameter(query="query", max_length=1024)] = None,
        limit: Annotated[int | None, Parameter(ge=1, le=200)] = None,
        after: AfterParam = None,
    ) -> Response[bytes]:
        parsed = BooksRequest(
            sort=sort,
            author=author,
            series=series,
            publisher=publisher,
            tag=tag,
            language=language,
            rating=rating,
            format=book_format,
            initial=initial,
            query=search,
            limit=limit,
        )
        return await respond_feed(
            request, services, "acquisition", lambda hrefs: services.catalog.books(hrefs, parsed, after=after)
        )

    @get_and_head_async("/books/{book_id:int}", name=f"{flavour}-book")
    async def book(
        request: Request[Any, Any, Any], services: Services, principal: Principal | None, book_id: BookIdParam
    ) -> Response[bytes]:
        media_type = Hrefs("", flavour).book_type
        if flavour is Flavour.HTML and principal is not None:
            # The page offers the reader's own shelves: their bytes are theirs, like a personal feed's.
            try:
                shelves = await anyio.to_thread.run_sync(services.personal.shelves, principal.user_id)
            except DATABASE_DOWN:  # the book itself is still shown, without the shelf choice
                shelves = []
            state = tuple((shelf.id, shelf.name) for shelf in shelves)
            return await anyio.to_thread.run_sync(
                partial(
                    _respond,
                    request,
                    services,
                    flavour,
                    media_type,
                    lambda hrefs, profile: _render_publication(services, flavour, book_id, hrefs, profile, shelves),
                    personal=(principal.user_id, state),
                )
            )
        return await _respond_async(
            request,
            services,
            flavour,
            media_type,
            lambda hrefs, profile: _render_publication(services, flavour, book_id, hrefs, profile),
        )

    def category_handler(name: str) -> Any:
        @get_and_head_async(f"/{name}", name=f"{flavour}-{name}")
        async def category(
            request: Request[Any, Any, Any],
            services: Services,
            initial: Annotated[str | None, Parameter(min_length=1, max_length=1)] = None,
            parent: Annotated[str | None, Parameter(max_length=512)] = None,
            after: AfterParam = None,
        ) -> Response[bytes]:
            return await respond_feed(
                request,
                services,
                "navigation",
                lambda hrefs: services.catalog.category(hrefs, name, initial=initial, parent=parent, after=after),
            )

        return category

    handlers: list[Any] = [root, books, book, *(category_handler(name) for name in CATEGORIES)]
    if flavour is Flavour.ATOM:

        @get_and_head_async("/opensearch.xml", name="opensearch")
        async def opensearch(request: Request[Any, Any, Any], services: Services) -> Response[bytes]:
            return await _respond_async(
                request,
                services,
                flavour,
                vocab.OPENSEARCH_TYPE,
                lambda hrefs, _profile: render_search_description(services.catalog.search_description(hrefs)),
            )

        @get_and_head("/auth", name="authentication-document")
        def authentication(request: Request[Any, Any, Any], services: Services) -> Response[bytes]:
            document = render_authentication_document(services.auth_document(public_base(request, services)))
            return Response(
                content=document,
                media_type=vocab.AUTHENTICATION_TYPE,
                headers={"Cache-Control": "public, max-age=3600"},
            )

        handlers.extend((opensearch, authentication))
    return Router(path=PREFIXES[flavour] or "/", route_handlers=handlers)
