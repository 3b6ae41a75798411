"""Each reader's own feeds, Atom under /opds, JSON under /opds/v2 and pages at the root: favourites,
shelves, reading, finished.

The authentication middleware lets no request reach these paths without a login, so every
handler has a ``Principal``. A handler reads the user's list first (one user-database query),
because the ETag must change with it: it carries the user id and a digest of the list, on top of
what every feed's ETag carries. With ``Cache-Control: private`` and no ``Last-Modified``, neither a
shared cache nor a revalidation can hand one user's feed to another, or a stale list to anyone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from litestar import Request, Response, Router
from litestar.params import Parameter

from feeds.html import FormAction
from feeds.model import Feed
from opds_server.auth.principal import Principal
from opds_server.catalog.hrefs import PREFIXES, Flavour, Hrefs
from opds_server.catalog.personal import SHELVES_PATH, BookList, ListKind, PersonalCatalog
from opds_server.http import get_and_head
from opds_server.routes.feeds import AfterParam, ItemActions, feed_response
from opds_server.routes.params import ShelfIdParam
from opds_server.state import Services

LimitParam = Annotated[int | None, Parameter(ge=1, le=200, description="books per page")]


def _personal_catalog(services: Services) -> PersonalCatalog:
    return PersonalCatalog(
        services.library,
        services.personal,
        count_pages=services.catalog.count_pages,
        page_size=services.settings.page_size,
    )


def _removals(shelf_id: int) -> ItemActions:
    """A shelf's page: a button under each book that takes it off the shelf."""

    def actions(hrefs: Hrefs, feed: Feed) -> Mapping[str, Sequence[FormAction]]:
        found: dict[str, Sequence[FormAction]] = {}
        for publication in feed.publications:
            book_id = (publication.self_href or "").rpartition("/books/")[2]
            if book_id.isdigit():
                action = f"{hrefs.base_url}/shelves/{shelf_id}/remove"
                fields = (("book_id", book_id),)
                found[publication.self_href or ""] = (
                    FormAction(label="Remove from shelf", action=action, fields=fields),
                )
        return found

    return actions


def personal_router(flavour: Flavour) -> Router:
    """The personal feeds in one representation."""

    def respond_list(
        request: Request[Any, Any, Any],
        services: Services,
        books: BookList,
        *,
        after: str | None,
        limit: int | None,
        shelf_id: int | None = None,
    ) -> Response[bytes]:
        catalog = _personal_catalog(services)
        return feed_response(
            request,
            services,
            flavour,
            "acquisition",
            lambda hrefs: catalog.list_feed(hrefs, books, after=after, limit=limit),
            personal=(books.user_id, books.state),
            item_actions=_removals(shelf_id) if shelf_id is not None and flavour is Flavour.HTML else None,
        )

    def list_handler(kind: ListKind) -> Any:
        @get_and_head(f"/{kind.value}", name=f"{flavour}-{kind.value}")
        def personal_list(
            request: Request[Any, Any, Any],
            services: Services,
            principal: Principal,
            limit: LimitParam = None,
            after: AfterParam = None,
        ) -> Response[bytes]:
            books = _personal_catalog(services).read_list(principal.user_id, kind)
            return respond_list(request, services, books, after=after, limit=limit)

        return personal_list

    @get_and_head(SHELVES_PATH, name=f"{flavour}-shelves")
    def shelves(request: Request[Any, Any, Any], services: Services, principal: Principal) -> Response[bytes]:
        catalog = _personal_catalog(services)
        lists = catalog.read_shelves(principal.user_id)
        return feed_response(
            request,
            services,
            flavour,
            "navigation",
            lambda hrefs: catalog.shelves_feed(hrefs, principal.user_id, lists),
            personal=(principal.user_id, *(shelf.state for shelf in lists)),
        )

    @get_and_head(f"{SHELVES_PATH}/{{shelf_id:int}}", name=f"{flavour}-shelf")
    def shelf(
        request: Request[Any, Any, Any],
        services: Services,
        principal: Principal,
        shelf_id: ShelfIdParam,
        limit: LimitParam = None,
        after: AfterParam = None,
    ) -> Response[bytes]:
        books = _personal_catalog(services).read_shelf(principal.user_id, shelf_id)
        return respond_list(request, services, books, after=after, limit=limit, shelf_id=shelf_id)

    return Router(
        path=PREFIXES[flavour] or "/",
        route_handlers=[*(list_handler(kind) for kind in ListKind), shelves, shelf],
    )
