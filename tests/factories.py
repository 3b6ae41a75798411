"""Plain ``make_*`` functions building ``feeds.model`` Structs with explicit arguments and times."""

from __future__ import annotations

import datetime as dt
import zlib

from feeds import vocab
from feeds.model import (
    Acquisition,
    Contributor,
    Facet,
    Feed,
    FeedKind,
    Image,
    Link,
    NavigationEntry,
    Page,
    PageStream,
    Publication,
    Series,
    Subject,
)

BASE = "http://catalog.test"
WHEN = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def make_publication(
    number: int,
    *,
    title: str = "Moby-Dick",
    authors: tuple[str, ...] = ("Herman Melville",),
    issued: dt.date | None = dt.date(1851, 10, 18),
    languages: tuple[str, ...] = ("en",),
    identifiers: tuple[str, ...] = ("urn:isbn:9780306406157",),
    series: Series | None = None,
    page_stream: PageStream | None = None,
    content_html: str | None = None,
    updated: dt.datetime = WHEN,
) -> Publication:
    return Publication(
        id=f"urn:uuid:00000000-0000-4000-8000-{number:012d}",
        title=title,
        updated=updated,
        published=updated - dt.timedelta(days=number),
        issued=issued,
        authors=tuple(Contributor(name=a, sort_as=a.split()[-1]) for a in authors),
        languages=languages,
        identifiers=identifiers,
        publisher="Harper & Brothers",
        summary=f"Summary of {title}.",
        content_html=content_html,
        subjects=(Subject(term="Fiction.Sea", label="Fiction.Sea"),),
        series=series,
        acquisitions=(Acquisition(href=f"{BASE}/download/{number}/epub", type="application/epub+zip", length=1234),),
        images=(
            Image(href=f"{BASE}/covers/{number}", type="image/jpeg", rel="image"),
            Image(href=f"{BASE}/covers/{number}/thumbnail", type="image/jpeg", rel="thumbnail"),
        ),
        page_stream=page_stream,
        self_href=f"{BASE}/opds/books/{number}",
    )


def make_feed(
    kind: FeedKind,
    *,
    self_href: str,
    feed_type: str,
    title: str = "Catalogue",
    publications: tuple[Publication, ...] = (),
    navigation: tuple[NavigationEntry, ...] = (),
    facets: tuple[Facet, ...] = (),
    extra_links: tuple[Link, ...] = (),
    page: Page | None = None,
) -> Feed:
    return Feed(
        id=f"urn:uuid:00000000-0000-4000-9000-{zlib.crc32(self_href.encode()):012d}",
        title=title,
        updated=WHEN,
        kind=kind,
        author_name="Test Library",
        links=(Link(href=self_href, rel=vocab.REL_SELF, type=feed_type), *extra_links),
        navigation=navigation,
        publications=publications,
        facets=facets,
        page=page,
    )


def make_navigation_entry(
    number: int, *, title: str, href: str, feed_type: str, count: int | None = None
) -> NavigationEntry:
    return NavigationEntry(
        id=f"urn:uuid:00000000-0000-4000-a000-{number:012d}",
        title=title,
        href=href,
        type=feed_type,
        updated=WHEN,
        summary=f"{count} books" if count is not None else None,
        count=count,
    )
