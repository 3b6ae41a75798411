"""The catalogue model every renderer reads: frozen Structs, hrefs ready-made, times in UTC.

One model serves OPDS 1.2 Atom, OPDS 2.0 JSON and the HTML view. A field that only one
representation can express (OPDS 2 ``groups``, OPDS-PSE page streaming) is simply ignored by the
others.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import msgspec

FeedKind = Literal["navigation", "acquisition"]
ImageRel = Literal["image", "thumbnail"]


class Link(msgspec.Struct, frozen=True, kw_only=True):
    """A typed link; ``type`` is the media type of what ``href`` leads to."""

    href: str
    rel: str | None = None
    type: str | None = None
    title: str | None = None
    length: int | None = None
    is_templated: bool = False


class Facet(msgspec.Struct, frozen=True, kw_only=True):
    """One choice of a facet group (OPDS 1.2 section 4.3; OPDS 2.0 ``facets``)."""

    group: str
    title: str
    href: str
    type: str
    is_active: bool = False
    count: int | None = None


class Contributor(msgspec.Struct, frozen=True, kw_only=True):
    """An author: display name, sort name and the feed of their books."""

    name: str
    sort_as: str | None = None
    href: str | None = None
    type: str | None = None


class Series(msgspec.Struct, frozen=True, kw_only=True):
    """Membership in a series; ``position`` may be fractional (1.5)."""

    name: str
    position: float | None = None
    href: str | None = None
    type: str | None = None


class Subject(msgspec.Struct, frozen=True, kw_only=True):
    """A category (a Calibre tag); ``term`` is the full hierarchical name."""

    term: str
    label: str
    href: str | None = None
    type: str | None = None


class Image(msgspec.Struct, frozen=True, kw_only=True):
    """A cover or thumbnail."""

    href: str
    type: str
    rel: ImageRel
    width: int | None = None
    height: int | None = None


class Acquisition(msgspec.Struct, frozen=True, kw_only=True):
    """One downloadable format of a publication."""

    href: str
    type: str
    length: int | None = None
    title: str | None = None


class PageStream(msgspec.Struct, frozen=True, kw_only=True):
    """OPDS-PSE 1.2 page streaming of a comic: ``href`` holds ``{pageNumber}`` and ``{maxWidth}``."""

    href: str
    type: str
    count: int


class Publication(msgspec.Struct, frozen=True, kw_only=True):
    """A book as a catalogue entry.

    ``id`` is a stable URN (``urn:uuid:...``). ``issued`` is the publication date (a date only,
    ``None`` when unknown); ``published`` is when the book entered the library. ``summary`` is
    plain text; ``content_html`` is sanitised HTML ready to embed.
    """

    id: str
    title: str
    updated: dt.datetime
    sort_as: str | None = None
    published: dt.datetime | None = None
    issued: dt.date | None = None
    authors: tuple[Contributor, ...] = ()
    languages: tuple[str, ...] = ()
    identifiers: tuple[str, ...] = ()
    publisher: str | None = None
    summary: str | None = None
    content_html: str | None = None
    subjects: tuple[Subject, ...] = ()
    series: Series | None = None
    rating: float | None = None
    acquisitions: tuple[Acquisition, ...] = ()
    images: tuple[Image, ...] = ()
    page_stream: PageStream | None = None
    self_href: str | None = None
    alternate: tuple[Link, ...] = ()


class NavigationEntry(msgspec.Struct, frozen=True, kw_only=True):
    """An entry of a navigation feed leading to another feed."""

    id: str
    title: str
    href: str
    type: str
    updated: dt.datetime
    rel: str | None = None
    summary: str | None = None
    count: int | None = None


class Page(msgspec.Struct, frozen=True, kw_only=True):
    """Where a paged feed stands: ``start_index`` is 1-based."""

    number_of_items: int
    items_per_page: int
    current_page: int
    start_index: int


class Group(msgspec.Struct, frozen=True, kw_only=True):
    """An OPDS 2.0 group: a titled run of publications or navigation links with a 'more' link."""

    title: str
    href: str | None = None
    type: str | None = None
    publications: tuple[Publication, ...] = ()
    navigation: tuple[NavigationEntry, ...] = ()


class Feed(msgspec.Struct, frozen=True, kw_only=True):
    """A navigation or acquisition feed.

    ``links`` carries self, start, up, search, pagination and alternate links, already typed for
    the representation being rendered.
    """

    id: str
    title: str
    updated: dt.datetime
    kind: FeedKind
    author_name: str
    links: tuple[Link, ...] = ()
    navigation: tuple[NavigationEntry, ...] = ()
    publications: tuple[Publication, ...] = ()
    facets: tuple[Facet, ...] = ()
    groups: tuple[Group, ...] = ()
    page: Page | None = None
    subtitle: str | None = None


class SearchDescription(msgspec.Struct, frozen=True, kw_only=True):
    """An OpenSearch 1.1 description document."""

    short_name: str
    description: str
    template: str
    type: str
    icon_href: str | None = None


class AuthenticationDocument(msgspec.Struct, frozen=True, kw_only=True):
    """An OPDS Authentication Document offering HTTP Basic (Authentication for OPDS 1.0)."""

    id: str
    title: str
    description: str | None = None
    links: tuple[Link, ...] = ()
    username_label: str = "User name"
    password_label: str = "Password"  # noqa: S105 - a form label
