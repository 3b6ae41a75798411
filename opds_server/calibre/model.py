"""What the server reads from a Calibre library, as frozen Structs.

These never leave ``opds_server``: the catalogue module maps them onto ``feeds.model``.
"""

from __future__ import annotations

import datetime as dt
from typing import NewType

import msgspec

BookId = NewType("BookId", int)
AuthorId = NewType("AuthorId", int)
SeriesId = NewType("SeriesId", int)
PublisherId = NewType("PublisherId", int)


class AuthorRef(msgspec.Struct, frozen=True, kw_only=True):
    id: AuthorId
    name: str
    sort: str


class SeriesRef(msgspec.Struct, frozen=True, kw_only=True):
    id: SeriesId
    name: str
    index: float


class PublisherRef(msgspec.Struct, frozen=True, kw_only=True):
    id: PublisherId
    name: str


class BookFile(msgspec.Struct, frozen=True, kw_only=True):
    """One format of a book; ``file_name`` is relative to the book's folder."""

    format: str
    size: int
    file_name: str


class CustomValue(msgspec.Struct, frozen=True, kw_only=True):
    """A custom column's value, already formatted for display (``★★★½``, ``yes``, ``A, B``)."""

    label: str
    name: str
    display: str


class Book(msgspec.Struct, frozen=True, kw_only=True):
    """A book as Calibre's ``metadata.db`` describes it.

    ``pubdate`` is ``None`` when Calibre's UNDEFINED_DATE (year 101) is stored; ``rating`` is
    Calibre's 0-10 scale (half stars); ``formats`` lists only files that exist on disk.
    """

    id: BookId
    uuid: str
    title: str
    sort: str
    author_sort: str
    authors: tuple[AuthorRef, ...]
    series: SeriesRef | None
    tags: tuple[str, ...]
    languages: tuple[str, ...]
    publisher: PublisherRef | None
    pubdate: dt.date | None
    timestamp: dt.datetime
    last_modified: dt.datetime
    rating: int | None
    identifiers: tuple[tuple[str, str], ...]
    comments: str | None
    formats: tuple[BookFile, ...]
    has_cover: bool
    path: str
    custom: tuple[CustomValue, ...] = ()


class Category(msgspec.Struct, frozen=True, kw_only=True):
    """An item of a category list (an author, a series, a tag node, a language...)."""

    key: str
    name: str
    sort: str
    count: int
    initial: str
    has_children: bool = False
