"""OPDS 1.2 (Atom) rendering of the catalogue model.

Built with lxml's ElementMaker bound to the namespaces of ``feeds.vocab``. Every function here takes
model Structs and returns bytes; nothing is looked up or read.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from lxml import etree
from lxml.builder import ElementMaker

from feeds import vocab
from feeds.model import Facet, Feed, Link, NavigationEntry, Publication

_E = ElementMaker(namespace=vocab.ATOM_NS, nsmap=vocab.ATOM_NSMAP)
_DC = ElementMaker(namespace=vocab.DC_NS, nsmap=vocab.ATOM_NSMAP)
_OS = ElementMaker(namespace=vocab.OPENSEARCH_NS, nsmap=vocab.ATOM_NSMAP)

_IMAGE_RELS = {"image": vocab.REL_IMAGE, "thumbnail": vocab.REL_THUMBNAIL}
_UNKNOWN_AUTHOR = "Unknown"


def _timestamp(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` (Atom section 3.3)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _issued(day: dt.date) -> str:
    """W3CDTF date; years before 1000 are zero-padded, as ISO 8601 wants."""
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}"


def _number(value: float) -> str:
    return f"{value:g}"


def _link_attributes(link: Link) -> dict[str, str]:
    attributes = {"href": link.href}
    if link.rel:
        attributes["rel"] = link.rel
    if link.type:
        attributes["type"] = link.type
    if link.title:
        attributes["title"] = link.title
    if link.length is not None:
        attributes["length"] = str(link.length)
    return attributes


def _link(link: Link) -> etree._Element:
    element: etree._Element = _E.link(**_link_attributes(link))
    return element


def _facet(facet: Facet) -> etree._Element:
    element: etree._Element = _E.link(rel=vocab.REL_FACET, href=facet.href, type=facet.type, title=facet.title)
    element.set(f"{{{vocab.OPDS_NS}}}facetGroup", facet.group)
    if facet.is_active:
        element.set(f"{{{vocab.OPDS_NS}}}activeFacet", "true")
    if facet.count is not None:
        element.set(f"{{{vocab.THR_NS}}}count", str(facet.count))
    return element


_ATOM = f"{{{vocab.ATOM_NS}}}"
_DCNS = f"{{{vocab.DC_NS}}}"


def _add(parent: etree._Element, tag: str, text: str | None = None, **attributes: str) -> etree._Element:
    """A child element (entries are built with SubElement: several times faster than ElementMaker,
    which matters at 50 entries a page)."""
    element = etree.SubElement(parent, tag, attributes or None)
    if text is not None:
        element.text = text
    return element


def _add_authors(entry: etree._Element, publication: Publication, *, joins_authors: bool) -> None:
    if joins_authors and len(publication.authors) > 1:
        author = _add(entry, _ATOM + "author")
        _add(author, _ATOM + "name", " & ".join(a.name for a in publication.authors))
        return
    for contributor in publication.authors:
        author = _add(entry, _ATOM + "author")
        _add(author, _ATOM + "name", contributor.name)
        if contributor.href:
            _add(author, _ATOM + "uri", contributor.href)
    if not publication.authors:
        _add(_add(entry, _ATOM + "author"), _ATOM + "name", _UNKNOWN_AUTHOR)


def _add_dublin_core(entry: etree._Element, publication: Publication) -> None:
    for identifier in publication.identifiers:
        _add(entry, _DCNS + "identifier", identifier)
    for language in publication.languages:
        _add(entry, _DCNS + "language", language)
    if publication.publisher:
        _add(entry, _DCNS + "publisher", publication.publisher)
    if publication.issued is not None:
        _add(entry, _DCNS + "issued", _issued(publication.issued))


def _add_link(parent: etree._Element, link: Link) -> None:
    _add(parent, _ATOM + "link", **_link_attributes(link))


def _add_publication_links(entry: etree._Element, publication: Publication) -> None:
    for link in publication.alternate:
        _add_link(entry, link)
    if publication.series and publication.series.href:
        title = f"Series: {publication.series.name}"
        _add_link(
            entry, Link(href=publication.series.href, rel=vocab.REL_RELATED, type=publication.series.type, title=title)
        )
    for image in publication.images:
        _add(entry, _ATOM + "link", rel=_IMAGE_RELS[image.rel], href=image.href, type=image.type)
    for acquisition in publication.acquisitions:
        attributes = {"rel": vocab.REL_ACQUISITION, "href": acquisition.href, "type": acquisition.type}
        if acquisition.length is not None:
            attributes["length"] = str(acquisition.length)
        if acquisition.title:
            attributes["title"] = acquisition.title
        _add(entry, _ATOM + "link", **attributes)
    if publication.page_stream is not None:
        stream = _add(
            entry, _ATOM + "link", rel=vocab.REL_PSE_STREAM, href=publication.page_stream.href,
            type=publication.page_stream.type,
        )  # fmt: skip
        stream.set(f"{{{vocab.PSE_NS}}}count", str(publication.page_stream.count))


def _publication_entry(
    publication: Publication, *, joins_authors: bool = False, parent: etree._Element | None = None
) -> etree._Element:
    """The entry of a publication, appended to ``parent`` (a feed) or standing alone."""
    if parent is None:
        entry: etree._Element = _E.entry()
    else:
        entry = etree.SubElement(parent, _ATOM + "entry")
    _add(entry, _ATOM + "title", publication.title)
    _add(entry, _ATOM + "id", publication.id)
    _add(entry, _ATOM + "updated", _timestamp(publication.updated))
    if publication.published is not None:
        _add(entry, _ATOM + "published", _timestamp(publication.published))
    _add_authors(entry, publication, joins_authors=joins_authors)
    _add_dublin_core(entry, publication)
    for subject in publication.subjects:
        _add(entry, _ATOM + "category", term=subject.term, label=subject.label)
    if publication.summary:
        _add(entry, _ATOM + "summary", publication.summary, type="text")
    if publication.content_html:
        _add(entry, _ATOM + "content", publication.content_html, type="html")
    _add_publication_links(entry, publication)
    return entry


def _navigation_entry(entry: NavigationEntry) -> etree._Element:
    link = _E.link(href=entry.href, type=entry.type, rel=entry.rel or vocab.REL_SUBSECTION)
    if entry.count is not None:
        link.set(f"{{{vocab.THR_NS}}}count", str(entry.count))
    parts: list[Any] = [
        _E.title(entry.title),
        _E.id(entry.id),
        _E.updated(_timestamp(entry.updated)),
    ]
    if entry.summary:
        parts.append(_E.content(entry.summary, type="text"))
    parts.append(link)
    element: etree._Element = _E.entry(*parts)
    return element


def _serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def render_feed_atom(feed: Feed, *, joins_authors: bool = False) -> bytes:
    """Render a navigation or acquisition feed as an OPDS 1.2 Atom document.

    Args:
        feed: the feed; its ``links`` are already typed for Atom.
        joins_authors: name all authors of an entry in one ``<author>`` (for parsers that keep
            only the last of repeated elements, such as KOReader's).

    Returns:
        The UTF-8 XML document.
    """
    parts: list[Any] = [
        _E.id(feed.id),
        _E.title(feed.title),
        _E.updated(_timestamp(feed.updated)),
        _E.author(_E.name(feed.author_name)),
    ]
    if feed.subtitle:
        parts.append(_E.subtitle(feed.subtitle))
    parts.extend(_link(link) for link in feed.links)
    parts.extend(_facet(facet) for facet in feed.facets)
    if feed.page is not None:
        parts.append(_OS.totalResults(str(feed.page.number_of_items)))
        parts.append(_OS.itemsPerPage(str(feed.page.items_per_page)))
        parts.append(_OS.startIndex(str(feed.page.start_index)))
    parts.extend(_navigation_entry(entry) for entry in feed.navigation)
    root: etree._Element = _E.feed(*parts)
    for publication in feed.publications:
        _publication_entry(publication, joins_authors=joins_authors, parent=root)
    return _serialize(root)


def render_entry_atom(publication: Publication, *, joins_authors: bool = False) -> bytes:
    """Render one publication as a standalone OPDS 1.2 catalog entry document.

    Args:
        publication: the complete entry, with its acquisition and image links.
        joins_authors: as for ``render_feed_atom``.

    Returns:
        The UTF-8 XML document (``application/atom+xml;type=entry;profile=opds-catalog``).
    """
    return _serialize(_publication_entry(publication, joins_authors=joins_authors))
