"""OPDS 2.0 rendering: conformance, metadata mapping, facets, groups and stable bytes."""

from __future__ import annotations

from typing import Any

import msgspec

from feeds import vocab
from feeds.model import Facet, Group, Link, Page, Series
from feeds.opds2 import render_feed_json, render_publication_json
from tests.factories import BASE, make_feed, make_navigation_entry, make_publication
from tests.feeds.conftest import Catalogue

ROOT = f"{BASE}/opds/v2"
BOOKS = f"{BASE}/opds/v2/books"
START = Link(href=ROOT, rel=vocab.REL_START, type=vocab.OPDS2_FEED_TYPE)
SEARCH = Link(href=f"{BOOKS}{{?query}}", rel=vocab.REL_SEARCH, type=vocab.OPDS2_FEED_TYPE, is_templated=True)


def _decode(body: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(body)
    return decoded


def _books_feed(facets: tuple[Facet, ...] = ()) -> bytes:
    feed = make_feed(
        "acquisition",
        self_href=BOOKS,
        feed_type=vocab.OPDS2_FEED_TYPE,
        publications=(make_publication(1), make_publication(2, title="Billy Budd")),
        facets=facets,
        extra_links=(START,),
        page=Page(number_of_items=2, items_per_page=50, current_page=1, start_index=1),
    )
    return render_feed_json(feed)


def test_root_and_acquisition_feeds_pass_the_checker(catalogue: Catalogue) -> None:
    root = make_feed(
        "navigation",
        self_href=ROOT,
        feed_type=vocab.OPDS2_FEED_TYPE,
        navigation=(make_navigation_entry(1, title="All books", href=BOOKS, feed_type=vocab.OPDS2_FEED_TYPE, count=2),),
        extra_links=(START,),
    )
    catalogue.add(ROOT, vocab.OPDS2_FEED_TYPE, render_feed_json(root))
    catalogue.add(BOOKS, vocab.OPDS2_FEED_TYPE, _books_feed())
    for number in (1, 2):
        publication = make_publication(number, title="Billy Budd" if number == 2 else "Moby-Dick")
        catalogue.add(f"{BASE}/opds/books/{number}", vocab.OPDS2_PUBLICATION_TYPE, render_publication_json(publication))
    assert catalogue.check(ROOT) == []


def test_search_link_is_templated_with_query_variable() -> None:
    feed = make_feed("navigation", self_href=ROOT, feed_type=vocab.OPDS2_FEED_TYPE, extra_links=(SEARCH,))
    links = _decode(render_feed_json(feed))["links"]
    assert {"rel": "search", "href": f"{BOOKS}{{?query}}", "type": vocab.OPDS2_FEED_TYPE, "templated": True} in links


def test_publication_metadata_maps_series_authors_and_dates() -> None:
    series = Series(name="Sea Stories", position=1.5, href=f"{BOOKS}?series=1", type=vocab.OPDS2_FEED_TYPE)
    document = _decode(render_publication_json(make_publication(1, series=series, languages=("en", "fr"))))
    metadata = document["metadata"]
    assert metadata["@type"] == "http://schema.org/Book"
    assert metadata["identifier"] == "urn:uuid:00000000-0000-4000-8000-000000000001"
    assert metadata["published"] == "1851-10-18"
    assert metadata["language"] == ["en", "fr"]
    assert metadata["author"][0]["name"] == "Herman Melville"
    assert metadata["author"][0]["sortAs"] == "Melville"
    assert metadata["belongsTo"]["series"] == [
        {
            "name": "Sea Stories",
            "position": 1.5,
            "links": [{"href": f"{BOOKS}?series=1", "type": vocab.OPDS2_FEED_TYPE}],
        }
    ]
    assert document["images"][0]["href"] == f"{BASE}/covers/1"
    acquisition = [link for link in document["links"] if link.get("rel") == vocab.REL_ACQUISITION]
    assert acquisition == [
        {
            "href": f"{BASE}/download/1/epub",
            "type": "application/epub+zip",
            "rel": vocab.REL_ACQUISITION,
            "length": 1234,
        }
    ]


def test_active_facet_is_marked_self_and_counts_are_properties() -> None:
    facets = (
        Facet(group="Sort by", title="Title", href=f"{BOOKS}?sort=title", type=vocab.OPDS2_FEED_TYPE, is_active=True),
        Facet(group="Sort by", title="Newest", href=f"{BOOKS}?sort=new", type=vocab.OPDS2_FEED_TYPE),
        Facet(group="Format", title="PDF", href=f"{BOOKS}?format=PDF", type=vocab.OPDS2_FEED_TYPE, count=3),
    )
    groups = _decode(_books_feed(facets))["facets"]
    assert [group["metadata"]["title"] for group in groups] == ["Sort by", "Format"]
    assert [link.get("rel") for link in groups[0]["links"]] == ["self", None]
    assert groups[1]["links"][0]["properties"] == {"numberOfItems": 3}


def test_page_metadata_and_groups() -> None:
    feed = msgspec.structs.replace(
        make_feed("navigation", self_href=ROOT, feed_type=vocab.OPDS2_FEED_TYPE),
        groups=(Group(title="New", href=BOOKS, type=vocab.OPDS2_FEED_TYPE, publications=(make_publication(1),)),),
    )
    document = _decode(render_feed_json(feed))
    assert document["groups"][0]["metadata"] == {"title": "New"}
    assert document["groups"][0]["links"] == [{"rel": "self", "href": BOOKS, "type": vocab.OPDS2_FEED_TYPE}]
    assert len(document["groups"][0]["publications"]) == 1
    assert _decode(_books_feed())["metadata"]["numberOfItems"] == 2


def test_rendering_is_deterministic() -> None:
    assert _books_feed() == _books_feed()
