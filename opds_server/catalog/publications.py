"""A Calibre book as a ``feeds.model.Publication``, with its links for one representation."""

from __future__ import annotations

import html
from collections.abc import Callable

from feeds import vocab
from feeds.model import Acquisition, Contributor, Image, Link, PageStream, Publication, Series, Subject
from opds_server.calibre.books import stars
from opds_server.calibre.comments import plain_text, sanitise_html, shorten
from opds_server.calibre.model import Book
from opds_server.calibre.snapshot import language_tag
from opds_server.catalog.hrefs import Hrefs
from opds_server.catalog.media import identifier_uris, media_type

SUMMARY_LIMIT = 600
COVER_TYPE = "image/jpeg"
PageCounter = Callable[[Book], int | None]


def _details_html(book: Book) -> str:
    """Series, rating and custom columns as a definition list, for the complete entry."""
    rows: list[tuple[str, str]] = []
    if book.series:
        rows.append(("Series", f"{book.series.name} #{book.series.index:g}"))
    if book.rating:
        rows.append(("Rating", stars(book.rating)))
    rows.extend((value.name, value.display) for value in book.custom)
    if not rows:
        return ""
    items = "".join(f"<dt>{html.escape(name)}</dt><dd>{html.escape(value)}</dd>" for name, value in rows)
    return f"<dl>{items}</dl>"


def build_publication(
    book: Book,
    hrefs: Hrefs,
    *,
    is_complete: bool,
    count_pages: PageCounter,
) -> Publication:
    """Map a book onto the catalogue model.

    A partial entry (in a feed) carries a shortened plain-text summary; the complete entry adds
    the sanitised HTML comments with series, rating and custom columns.
    """
    text = plain_text(book.comments) if book.comments else ""
    content = ""
    if is_complete:
        content = (sanitise_html(book.comments) if book.comments else "") + _details_html(book)
    # A book without a cover gets one drawn for it (``/covers/<id>`` serves either).
    images = (
        Image(href=hrefs.cover(book.id), type=COVER_TYPE, rel="image"),
        Image(href=hrefs.thumbnail(book.id), type=COVER_TYPE, rel="thumbnail"),
    )
    page_stream = None
    if any(f.format == "CBZ" for f in book.formats) and (pages := count_pages(book)):
        page_stream = PageStream(href=hrefs.page_stream(book.id), type=COVER_TYPE, count=pages)
    other = hrefs.other()
    alternate: list[Link] = []
    if not is_complete and hrefs.flavour == "atom":
        alternate.append(Link(href=hrefs.book(book.id), rel=vocab.REL_ALTERNATE, type=hrefs.book_type))
    opds = hrefs.opds() if hrefs.flavour == "html" else (other,)
    alternate.extend(Link(href=o.book(book.id), rel=vocab.REL_ALTERNATE, type=o.book_type) for o in opds)
    return Publication(
        id=f"urn:uuid:{book.uuid}",
        title=book.title,
        sort_as=book.sort if book.sort != book.title else None,
        updated=book.last_modified,
        published=book.timestamp,
        issued=book.pubdate,
        authors=tuple(
            Contributor(
                name=a.name,
                sort_as=a.sort,
                href=hrefs.feed("/books", {"author": a.id}),
                type=hrefs.feed_type("acquisition"),
            )
            for a in book.authors
        ),
        languages=tuple(language_tag(code) for code in book.languages),
        identifiers=identifier_uris(book.identifiers),
        publisher=book.publisher.name if book.publisher else None,
        summary=(text if is_complete else shorten(text, SUMMARY_LIMIT)) or None,
        content_html=content or None,
        subjects=tuple(
            Subject(
                term=tag,
                label=tag,
                href=hrefs.feed("/books", {"tag": tag}),
                type=hrefs.feed_type("acquisition"),
            )
            for tag in book.tags
        ),
        series=Series(
            name=book.series.name,
            position=book.series.index,
            href=hrefs.feed("/books", {"series": book.series.id}),
            type=hrefs.feed_type("acquisition"),
        )
        if book.series
        else None,
        rating=book.rating / 2 if book.rating else None,
        acquisitions=tuple(
            Acquisition(
                href=hrefs.download(book.id, f.format),
                type=media_type(f.format),
                length=f.size,
                title=f.format,
            )
            for f in book.formats
        ),
        images=images,
        page_stream=page_stream,
        self_href=hrefs.book(book.id),
        alternate=tuple(alternate),
    )
