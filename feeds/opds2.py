"""OPDS 2.0 (JSON) rendering of the catalogue model.

The wire Structs below mirror the OPDS 2.0 and Readium Web Publication Manifest specs field for
field; ``build_*`` functions map ``feeds.model`` onto them and ``render_*`` encode them with one
deterministic encoder.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from feeds import vocab
from feeds.model import Facet, Feed, Link, NavigationEntry, Publication

_ENCODER = msgspec.json.Encoder(order="deterministic")
_BOOK_TYPE = "http://schema.org/Book"


class LinkProperties(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    number_of_items: int | None = None


class WireLink(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    href: str
    type: str | None = None
    rel: str | None = None
    title: str | None = None
    templated: bool = False
    properties: LinkProperties | None = None
    width: int | None = None
    height: int | None = None
    length: int | None = None


class WireContributor(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    name: str
    sort_as: str | None = None
    links: tuple[WireLink, ...] = ()


class WireSeries(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    name: str
    position: float | None = None
    links: tuple[WireLink, ...] = ()


class WireBelongsTo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    series: tuple[WireSeries, ...] = ()


class WireSubject(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    name: str
    code: str | None = None
    links: tuple[WireLink, ...] = ()


class PublicationMetadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    type: str = msgspec.field(name="@type")
    title: str
    sort_as: str | None = None
    identifier: str | None = None
    alt_identifier: tuple[str, ...] = ()
    author: tuple[WireContributor, ...] = ()
    language: tuple[str, ...] = ()
    publisher: str | None = None
    published: str | None = None
    modified: str | None = None
    description: str | None = None
    subject: tuple[WireSubject, ...] = ()
    belongs_to: WireBelongsTo | None = None


class WirePublication(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    metadata: PublicationMetadata
    links: tuple[WireLink, ...]
    images: tuple[WireLink, ...] = ()


class FeedMetadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    title: str
    subtitle: str | None = None
    modified: str | None = None
    number_of_items: int | None = None
    items_per_page: int | None = None
    current_page: int | None = None


class GroupMetadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    title: str
    number_of_items: int | None = None


class WireFacet(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    metadata: GroupMetadata
    links: tuple[WireLink, ...]


class WireGroup(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    metadata: GroupMetadata
    links: tuple[WireLink, ...] = ()
    publications: tuple[WirePublication, ...] = ()
    navigation: tuple[WireLink, ...] = ()


class WireFeed(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    metadata: FeedMetadata
    links: tuple[WireLink, ...]
    navigation: tuple[WireLink, ...] = ()
    publications: tuple[WirePublication, ...] = ()
    facets: tuple[WireFacet, ...] = ()
    groups: tuple[WireGroup, ...] = ()


def _timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _link(link: Link) -> WireLink:
    return WireLink(
        href=link.href,
        type=link.type,
        rel=link.rel,
        title=link.title,
        templated=link.is_templated,
        length=link.length,
    )


def _typed_link(href: str | None, media_type: str | None) -> tuple[WireLink, ...]:
    return (WireLink(href=href, type=media_type),) if href else ()


def build_publication(publication: Publication) -> WirePublication:
    """Map a publication onto its OPDS 2.0 wire form.

    Args:
        publication: the publication; ``self_href`` becomes its ``self`` link.

    Returns:
        The wire Struct, ready for ``msgspec`` encoding.
    """
    metadata = PublicationMetadata(
        type=_BOOK_TYPE,
        title=publication.title,
        sort_as=publication.sort_as,
        identifier=publication.id,
        alt_identifier=publication.identifiers,
        author=tuple(
            WireContributor(name=a.name, sort_as=a.sort_as, links=_typed_link(a.href, a.type))
            for a in publication.authors
        ),
        language=publication.languages,
        publisher=publication.publisher,
        published=publication.issued.isoformat() if publication.issued else None,
        modified=_timestamp(publication.updated),
        description=publication.summary,
        subject=tuple(
            WireSubject(name=s.label, code=s.term, links=_typed_link(s.href, s.type)) for s in publication.subjects
        ),
        belongs_to=WireBelongsTo(
            series=(
                WireSeries(
                    name=publication.series.name,
                    position=publication.series.position,
                    links=_typed_link(publication.series.href, publication.series.type),
                ),
            )
        )
        if publication.series
        else None,
    )
    links: list[WireLink] = []
    if publication.self_href:
        links.append(WireLink(rel=vocab.REL_SELF, href=publication.self_href, type=vocab.OPDS2_PUBLICATION_TYPE))
    links.extend(_link(link) for link in publication.alternate)
    links.extend(
        WireLink(rel=vocab.REL_ACQUISITION, href=a.href, type=a.type, length=a.length, title=a.title)
        for a in publication.acquisitions
    )
    images = tuple(
        WireLink(href=i.href, type=i.type, width=i.width, height=i.height)
        for i in sorted(publication.images, key=lambda image: image.rel != "image")
    )
    return WirePublication(metadata=metadata, links=tuple(links), images=images)


def _navigation(entry: NavigationEntry) -> WireLink:
    properties = LinkProperties(number_of_items=entry.count) if entry.count is not None else None
    return WireLink(href=entry.href, type=entry.type, title=entry.title, rel=entry.rel, properties=properties)


def _facets(facets: tuple[Facet, ...]) -> tuple[WireFacet, ...]:
    groups: dict[str, list[WireLink]] = {}
    for facet in facets:
        properties = LinkProperties(number_of_items=facet.count) if facet.count is not None else None
        rel = vocab.REL_SELF if facet.is_active else None
        link = WireLink(href=facet.href, type=facet.type, title=facet.title, rel=rel, properties=properties)
        groups.setdefault(facet.group, []).append(link)
    return tuple(WireFacet(metadata=GroupMetadata(title=title), links=tuple(links)) for title, links in groups.items())


def build_feed(feed: Feed) -> WireFeed:
    """Map a feed onto its OPDS 2.0 wire form.

    Args:
        feed: the feed; its ``links`` are already typed for OPDS 2.0.

    Returns:
        The wire Struct, ready for ``msgspec`` encoding.
    """
    page = feed.page
    metadata = FeedMetadata(
        title=feed.title,
        subtitle=feed.subtitle,
        modified=_timestamp(feed.updated),
        number_of_items=page.number_of_items if page else None,
        items_per_page=page.items_per_page if page else None,
        current_page=page.current_page if page else None,
    )
    groups = tuple(
        WireGroup(
            metadata=GroupMetadata(title=group.title),
            links=(WireLink(rel=vocab.REL_SELF, href=group.href, type=group.type),) if group.href else (),
            publications=tuple(build_publication(p) for p in group.publications),
            navigation=tuple(_navigation(n) for n in group.navigation),
        )
        for group in feed.groups
    )
    return WireFeed(
        metadata=metadata,
        links=tuple(_link(link) for link in feed.links),
        navigation=tuple(_navigation(entry) for entry in feed.navigation),
        publications=tuple(build_publication(p) for p in feed.publications),
        facets=_facets(feed.facets),
        groups=groups,
    )


def render_feed_json(feed: Feed) -> bytes:
    """Render a feed as an OPDS 2.0 document (``application/opds+json``).

    Args:
        feed: the feed.

    Returns:
        The UTF-8 JSON document.
    """
    return _ENCODER.encode(build_feed(feed))


def render_publication_json(publication: Publication) -> bytes:
    """Render one publication as an OPDS 2.0 publication document.

    Args:
        publication: the publication.

    Returns:
        The UTF-8 JSON document (``application/opds-publication+json``).
    """
    return _ENCODER.encode(build_publication(publication))
