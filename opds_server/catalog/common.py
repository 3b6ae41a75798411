"""What every feed shares: stable ids, the links to start, search and the other representation."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from feeds import vocab
from feeds.model import FeedKind, Link, NavigationEntry
from opds_server.calibre.snapshot import LibrarySnapshot
from opds_server.catalog.hrefs import Flavour, Hrefs, ParamValue


def stable_id(snapshot: LibrarySnapshot, *parts: object) -> str:
    """A ``urn:uuid`` that names the same feed or entry in every request, whatever the base URL."""
    return uuid.uuid5(snapshot.library_uuid, "/".join(str(p) for p in parts)).urn


def feed_links(
    hrefs: Hrefs,
    *,
    path: str,
    params: Mapping[str, ParamValue],
    kind: FeedKind,
    up: tuple[str, FeedKind] | None,
) -> list[Link]:
    """self, start, up, search and alternate links of a feed."""
    links = [
        Link(href=hrefs.feed(path, params), rel=vocab.REL_SELF, type=hrefs.feed_type(kind)),
        Link(href=hrefs.feed(), rel=vocab.REL_START, type=hrefs.feed_type("navigation")),
    ]
    if up is not None:
        links.append(Link(href=up[0], rel=vocab.REL_UP, type=hrefs.feed_type(up[1])))
    if hrefs.flavour is Flavour.ATOM:
        links.append(Link(href=hrefs.search_description(), rel=vocab.REL_SEARCH, type=vocab.OPENSEARCH_TYPE))
    else:
        links.append(
            Link(
                href=hrefs.search_template(),
                rel=vocab.REL_SEARCH,
                type=vocab.OPDS2_FEED_TYPE,
                is_templated=True,
            )
        )
    others = hrefs.opds() if hrefs.flavour is Flavour.HTML else (hrefs.other(),)
    links.extend(Link(href=o.feed(path, params), rel=vocab.REL_ALTERNATE, type=o.feed_type(kind)) for o in others)
    links.append(Link(href=hrefs.authentication(), rel=vocab.REL_AUTH_DOCUMENT, type=vocab.AUTHENTICATION_TYPE))
    return links


def when_empty(snapshot: LibrarySnapshot, hrefs: Hrefs, *id_parts: object, title: str) -> tuple[NavigationEntry, ...]:
    """What an empty acquisition feed offers in OPDS 2: a way on to the newest books.

    OPDS 2 cannot express an empty feed: its schema wants at least one publication, navigation
    link or group, and Readium's parser (Thorium) refuses a feed without one. An empty Atom feed
    is valid, so it stays empty.
    """
    if hrefs.flavour is not Flavour.JSON:
        return ()
    return (
        NavigationEntry(
            id=stable_id(snapshot, *id_parts, "empty"),
            title=title,
            href=hrefs.feed("/books", {"sort": "new"}),
            type=hrefs.feed_type("acquisition"),
            updated=snapshot.updated,
        ),
    )
