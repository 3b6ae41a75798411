"""Reading both representations of the catalogue in tests: Atom with lxml, OPDS 2 with msgspec.

The HTTP tests share these readers and the fixture library's facts (which books are offered).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import msgspec
from lxml import etree

Flavour = Literal["atom", "json"]
Document = etree._Element | dict[str, Any]
NS = {
    "a": "http://www.w3.org/2005/Atom",
    "dc": "http://purl.org/dc/terms/",
    "os": "http://a9.com/-/spec/opensearch/1.1/",
    "thr": "http://purl.org/syndication/thread/1.0",
    "pse": "http://vaemendis.net/opds-pse/ns",
}
ENTRY_TYPE = "application/atom+xml;type=entry;profile=opds-catalog"
NOT_OFFERED = frozenset({16, 17})  # 16 has no formats, 17's only file is gone
VISIBLE = frozenset(range(1, 41)) - NOT_OFFERED
PAGE_LINKS = ("self", "first", "previous", "next")
LIMIT = 7


# --- reading both representations ----------------------------------------------------------------------------


def prefix(flavour: Flavour) -> str:
    return "/opds" if flavour == "atom" else "/opds/v2"


def get_ok(client: httpx.Client, url: str) -> httpx.Response:
    response = client.get(url)
    assert response.status_code == 200, f"GET {url}: {response.status_code} {response.text[:300]}"
    return response


def atom_at(client: httpx.Client, url: str) -> etree._Element:
    return etree.fromstring(get_ok(client, url).content)


def json_at(client: httpx.Client, url: str) -> dict[str, Any]:
    return msgspec.json.decode(get_ok(client, url).content, type=dict[str, Any])


def fetch(client: httpx.Client, flavour: Flavour, url: str) -> Document:
    return atom_at(client, url) if flavour == "atom" else json_at(client, url)


def strings(node: etree._Element, path: str) -> list[str]:
    found = node.xpath(path, namespaces=NS)
    assert isinstance(found, list)
    return [str(item) for item in found]


def elements(node: etree._Element, path: str) -> list[etree._Element]:
    found = node.xpath(path, namespaces=NS)
    assert isinstance(found, list)
    return [item for item in found if isinstance(item, etree._Element)]


def one(node: etree._Element, path: str) -> str | None:
    found = strings(node, path)
    assert len(found) <= 1, f"{path}: {found}"
    return found[0] if found else None


def book_id_of(href: str) -> int:
    return int(httpx.URL(href).path.rsplit("/", 1)[1])


def books_in(document: Document) -> list[int]:
    """The books of an acquisition feed, in feed order."""
    if isinstance(document, dict):
        publications = document.get("publications", [])
        return [book_id_of(link["href"]) for p in publications for link in p["links"] if link.get("rel") == "self"]
    return [book_id_of(href) for href in strings(document, f"a:entry/a:link[@type='{ENTRY_TYPE}']/@href")]


def book_ids(client: httpx.Client, flavour: Flavour, url: str) -> list[int]:
    return books_in(fetch(client, flavour, url))


def books_url(flavour: Flavour, query: str) -> str:
    return f"{prefix(flavour)}/books?{query}"


@dataclass(frozen=True)
class NavItem:
    """An entry of a navigation feed; ``summary`` is Atom's text content."""

    title: str
    href: str
    count: int | None
    summary: str | None = None


def items_in(document: Document) -> list[NavItem]:
    if isinstance(document, dict):
        return [
            NavItem(n["title"], n["href"], n.get("properties", {}).get("numberOfItems"))
            for n in document.get("navigation", [])
        ]
    items = []
    for entry in elements(document, "a:entry"):
        (link,) = elements(entry, "a:link")
        count = link.get(f"{{{NS['thr']}}}count")
        title, summary = one(entry, "a:title/text()") or "", one(entry, "a:content/text()")
        items.append(NavItem(title, link.get("href", ""), int(count) if count else None, summary))
    return items


def nav_items(client: httpx.Client, flavour: Flavour, url: str) -> list[NavItem]:
    return items_in(fetch(client, flavour, url))


def nav_item(client: httpx.Client, flavour: Flavour, url: str, title: str) -> NavItem:
    (item,) = [item for item in nav_items(client, flavour, url) if item.title == title]
    return item


# --- walking pages --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page of a feed: its URL, paging links, counts, and books or navigation items."""

    url: str
    links: dict[str, str]
    total: int | None
    per_page: int | None
    position: int | None  # Atom opensearch:startIndex, OPDS 2 currentPage
    books: list[int]
    items: list[NavItem]


def read_page(client: httpx.Client, flavour: Flavour, url: str) -> Page:
    document = fetch(client, flavour, url)
    counts: list[int | None]
    if isinstance(document, dict):
        links = [(link.get("rel", ""), link["href"]) for link in document["links"]]
        counts = [document["metadata"].get(name) for name in ("numberOfItems", "itemsPerPage", "currentPage")]
    else:
        links = [(link.get("rel", ""), link.get("href", "")) for link in elements(document, "a:link")]
        texts = [one(document, f"os:{name}/text()") for name in ("totalResults", "itemsPerPage", "startIndex")]
        counts = [int(text) if text is not None else None for text in texts]
    paging = [(rel, href) for rel, href in links if rel in PAGE_LINKS]
    assert len(paging) == len(dict(paging)), f"{url}: a paging relation appears twice: {paging}"
    books = books_in(document)
    total, per_page, position = counts
    return Page(url, dict(paging), total, per_page, position, books, [] if books else items_in(document))


def walk(client: httpx.Client, flavour: Flavour, url: str) -> list[Page]:
    """Every page from ``url`` on, by following ``next`` links."""
    pages = [read_page(client, flavour, url)]
    while "next" in pages[-1].links:
        assert len(pages) < 50, "next links never end"
        pages.append(read_page(client, flavour, pages[-1].links["next"]))
    return pages


def assert_paged_consistently(pages: list[Page], flavour: Flavour, *, per_page: int, total: int) -> None:
    """Links chain both ways, the first page has no previous, the last no next, and the counts are right."""
    first = pages[0]
    assert first.links["self"] == first.url
    assert "previous" not in first.links
    assert first.links.get("first", first.url) == first.url
    for before, page in pairwise(pages):
        assert before.links["next"] == page.url
        assert page.links["self"] == page.url
        assert page.links["previous"] == before.url
        assert page.links["first"] == first.url
    assert "next" not in pages[-1].links
    assert len(pages) == math.ceil(total / per_page)
    for index, page in enumerate(pages):
        assert (page.total, page.per_page) == (total, per_page), page.url
        assert page.position == (index * per_page + 1 if flavour == "atom" else index + 1), page.url
        shown = len(page.books or [item for item in page.items if item.count is not None])
        assert shown == min(per_page, total - index * per_page), page.url


def page_one(client: httpx.Client, flavour: Flavour, path: str, params: dict[str, str]) -> str:
    """The first page's URL as the server writes it: absolute, parameters in sorted order."""
    query = urlencode(sorted(params.items()))
    return f"{str(client.base_url).rstrip('/')}{prefix(flavour)}{path}" + (f"?{query}" if query else "")


def params_of(query: str) -> dict[str, str]:
    return dict(httpx.QueryParams(query))
