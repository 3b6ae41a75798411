"""Where links point: one ``Hrefs`` per representation (Atom under /opds, JSON under /opds/v2).

Every href is absolute, built from the public base URL (``OPDS_BASE_URL`` or the request's own),
so links stay right behind a reverse proxy on a sub-path. Query parameters are written in sorted
order, so the same page always has the same URL (pagination links are compared literally by
clients and by the conformance checker).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from enum import StrEnum
from urllib.parse import quote, urlencode

from feeds import vocab
from feeds.model import FeedKind

ParamValue = str | int | None

ATOM_PREFIX = "/opds"
JSON_PREFIX = "/opds/v2"
HTML_PREFIX = ""
HTML_TYPE = vocab.HTML_TYPE


class Flavour(StrEnum):
    ATOM = "atom"
    JSON = "json"
    HTML = "html"
    """The browser view at the site root: the same feeds as pages."""


PREFIXES = {Flavour.ATOM: ATOM_PREFIX, Flavour.JSON: JSON_PREFIX, Flavour.HTML: HTML_PREFIX}


@functools.lru_cache(maxsize=16384)
def _query_string(items: tuple[tuple[str, str], ...]) -> str:
    """Memoised: every entry links its authors, series and tags, and the same ones recur."""
    return urlencode(items, quote_via=quote)


class Hrefs:
    """Absolute links for one representation of the catalogue."""

    def __init__(self, base_url: str, flavour: Flavour, *, has_raw_templates: bool = False) -> None:
        self.base_url = base_url.rstrip("/")
        self.flavour = flavour
        self.has_raw_templates = has_raw_templates
        self.prefix = self.base_url + PREFIXES[flavour]

    def other(self) -> Hrefs:
        """The same catalogue in the other OPDS representation (Atom, for JSON and for HTML)."""
        flavour = Flavour.JSON if self.flavour is Flavour.ATOM else Flavour.ATOM
        return Hrefs(self.base_url, flavour, has_raw_templates=self.has_raw_templates)

    def opds(self) -> tuple[Hrefs, Hrefs]:
        """The catalogue's two OPDS representations, Atom then JSON (what a page links to)."""
        return Hrefs(self.base_url, Flavour.ATOM), Hrefs(self.base_url, Flavour.JSON)

    def feed(self, path: str = "", params: Mapping[str, ParamValue] | None = None) -> str:
        """A feed URL: ``path`` is relative to the representation's root (``""``, ``"/books"``)."""
        query = tuple(sorted((k, str(v)) for k, v in (params or {}).items() if v is not None and v != ""))
        if self.flavour is Flavour.HTML and not path:
            path = "/"
        return self.prefix + path + ("?" + _query_string(query) if query else "")

    def feed_type(self, kind: FeedKind) -> str:
        if self.flavour is Flavour.HTML:
            return HTML_TYPE
        if self.flavour is Flavour.JSON:
            return vocab.OPDS2_FEED_TYPE
        return vocab.NAVIGATION_TYPE if kind == "navigation" else vocab.ACQUISITION_TYPE

    def book(self, book_id: int) -> str:
        """The complete entry (Atom) or publication document (JSON) of a book."""
        return f"{self.prefix}/books/{book_id}"

    @property
    def book_type(self) -> str:
        if self.flavour is Flavour.HTML:
            return HTML_TYPE
        return vocab.ENTRY_TYPE if self.flavour is Flavour.ATOM else vocab.OPDS2_PUBLICATION_TYPE

    def kepub(self, book_id: int) -> str:
        """A Kobo's KEPUB made from the book's EPUB (what a Kobo's browser is offered)."""
        return f"{self.base_url}/download/{book_id}/{book_id}.kepub.epub"

    def download(self, book_id: int, book_format: str) -> str:
        """A stable URL ending in the format's extension: KOReader takes the file type from it,
        and its catalogue sync recognises books it already has by this href."""
        return f"{self.base_url}/download/{book_id}/{book_id}.{quote(book_format.lower())}"

    def cover(self, book_id: int) -> str:
        return f"{self.base_url}/covers/{book_id}"

    def thumbnail(self, book_id: int) -> str:
        return f"{self.base_url}/covers/{book_id}/thumbnail"

    def page_stream(self, book_id: int) -> str:
        """OPDS-PSE 1.2 template: the client substitutes ``{pageNumber}`` (0-based) and ``{maxWidth}``.

        The OPDS 1.2 grammar forbids ``{`` and ``}`` in any href, while PSE clients replace the
        literal ``{pageNumber}``; so only clients known to stream pages get raw braces (see
        ``opds_server.quirks``), everyone else a valid URI with the braces percent-encoded.
        """
        template = f"{self.base_url}/pse/{book_id}/{{pageNumber}}?maxWidth={{maxWidth}}"
        if self.has_raw_templates:
            return template
        return template.replace("{", "%7B").replace("}", "%7D")

    def authentication(self) -> str:
        """The OPDS Authentication Document (public; Thorium reads it to show a login form)."""
        return f"{self.base_url}{ATOM_PREFIX}/auth"

    def search_description(self) -> str:
        return f"{self.base_url}{ATOM_PREFIX}/opensearch.xml"

    def search_template(self) -> str:
        """Atom: the OpenSearch ``Url`` template; JSON: the templated ``search`` link."""
        if self.flavour is not Flavour.JSON:
            return f"{self.prefix}/books?query={{searchTerms}}"
        return f"{self.prefix}/books{{?query}}"
