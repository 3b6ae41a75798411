"""OPDS 1.2 Atom rendering: conformance, escaping, Dublin Core, facets and page streaming."""

from __future__ import annotations

import datetime as dt

from lxml import etree

from feeds import vocab
from feeds.model import Facet, Link, Page, PageStream, Series
from feeds.opds1 import render_entry_atom, render_feed_atom
from tests.factories import BASE, make_feed, make_navigation_entry, make_publication
from tests.feeds.conftest import Catalogue

NS = {"a": vocab.ATOM_NS, "dc": vocab.DC_NS, "opds": vocab.OPDS_NS, "os": vocab.OPENSEARCH_NS,
      "thr": vocab.THR_NS, "pse": vocab.PSE_NS}  # fmt: skip
ROOT = f"{BASE}/opds"
BOOKS = f"{BASE}/opds/books"


SEA_STORIES = Series(name="Sea Stories", position=1.5, href=f"{BOOKS}?series=1", type=vocab.ACQUISITION_TYPE)


def _acquisition_feed_bytes(
    *, title: str = "Moby-Dick", facets: tuple[Facet, ...] = (), series: Series | None = None
) -> bytes:
    publication = make_publication(1, title=title, series=series)
    feed = make_feed(
        "acquisition",
        self_href=BOOKS,
        feed_type=vocab.ACQUISITION_TYPE,
        publications=(publication,),
        facets=facets,
        extra_links=(Link(href=ROOT, rel=vocab.REL_START, type=vocab.NAVIGATION_TYPE),),
        page=Page(number_of_items=1, items_per_page=50, current_page=1, start_index=1),
    )
    return render_feed_atom(feed)


def _parse(body: bytes) -> etree._Element:
    return etree.fromstring(body)


def _links(element: etree._Element, rel: str) -> list[etree._Element]:
    return [link for link in element.iterfind("a:link", NS) if link.get("rel") == rel]


def test_navigation_and_acquisition_feeds_pass_the_checker(catalogue: Catalogue) -> None:
    root = make_feed(
        "navigation",
        self_href=ROOT,
        feed_type=vocab.NAVIGATION_TYPE,
        navigation=(
            make_navigation_entry(1, title="All books", href=BOOKS, feed_type=vocab.ACQUISITION_TYPE, count=1),
        ),
        extra_links=(Link(href=ROOT, rel=vocab.REL_START, type=vocab.NAVIGATION_TYPE),),
    )
    catalogue.add(ROOT, vocab.NAVIGATION_TYPE, render_feed_atom(root))
    catalogue.add(BOOKS, vocab.ACQUISITION_TYPE, _acquisition_feed_bytes())
    assert catalogue.check(ROOT) == []


def test_complete_entry_passes_the_checker(catalogue: Catalogue) -> None:
    entry = render_entry_atom(make_publication(1, content_html="<p>A <b>whale</b>.</p>"))
    catalogue.add(f"{BASE}/opds/books/1", vocab.ENTRY_TYPE, entry)
    assert catalogue.check(f"{BASE}/opds/books/1") == []


def test_xml_specials_round_trip_in_titles() -> None:
    title = "Tom & Jerry <The \"Complete\"> 'Edition'"
    entry = _parse(_acquisition_feed_bytes(title=title)).find("a:entry", NS)
    assert entry is not None
    assert entry.findtext("a:title", namespaces=NS) == title


def test_entry_has_dublin_core_identifier_language_publisher_and_issued() -> None:
    entry = _parse(render_entry_atom(make_publication(1, issued=dt.date(800, 3, 2))))
    assert entry.findtext("dc:identifier", namespaces=NS) == "urn:isbn:9780306406157"
    assert entry.findtext("dc:language", namespaces=NS) == "en"
    assert entry.findtext("dc:publisher", namespaces=NS) == "Harper & Brothers"
    assert entry.findtext("dc:issued", namespaces=NS) == "0800-03-02"


def test_entry_without_issued_date_has_no_dc_issued() -> None:
    entry = _parse(render_entry_atom(make_publication(1, issued=None)))
    assert entry.find("dc:issued", NS) is None


def test_entry_without_authors_still_names_one_as_atom_requires() -> None:
    entry = _parse(render_entry_atom(make_publication(1, authors=())))
    assert [name.text for name in entry.iterfind("a:author/a:name", NS)] == ["Unknown"]


def test_html_content_is_carried_as_escaped_text() -> None:
    entry = _parse(render_entry_atom(make_publication(1, content_html="<p>A <b>whale</b>.</p>")))
    content = entry.find("a:content", NS)
    assert content is not None
    assert content.get("type") == "html"
    assert content.text == "<p>A <b>whale</b>.</p>"


def test_series_is_a_related_link_to_its_feed() -> None:
    entry = _parse(_acquisition_feed_bytes(series=SEA_STORIES)).find("a:entry", NS)
    assert entry is not None
    related = _links(entry, "related")
    assert [(r.get("href"), r.get("title")) for r in related] == [(f"{BOOKS}?series=1", "Series: Sea Stories")]


def test_facets_carry_group_active_flag_and_count() -> None:
    facets = (
        Facet(group="Sort by", title="Title", href=f"{BOOKS}?sort=title", type=vocab.ACQUISITION_TYPE, is_active=True),
        Facet(group="Format", title="PDF", href=f"{BOOKS}?format=PDF", type=vocab.ACQUISITION_TYPE, count=3),
    )
    links = _links(_parse(_acquisition_feed_bytes(facets=facets)), vocab.REL_FACET)
    attributes = [
        (link.get(f"{{{vocab.OPDS_NS}}}facetGroup"), link.get(f"{{{vocab.OPDS_NS}}}activeFacet"),
         link.get(f"{{{vocab.THR_NS}}}count"))
        for link in links
    ]  # fmt: skip
    assert attributes == [("Sort by", "true", None), ("Format", None, "3")]


def test_page_metadata_is_opensearch_elements() -> None:
    feed = _parse(_acquisition_feed_bytes())
    assert feed.findtext("os:totalResults", namespaces=NS) == "1"
    assert feed.findtext("os:itemsPerPage", namespaces=NS) == "50"
    assert feed.findtext("os:startIndex", namespaces=NS) == "1"


def test_page_stream_link_has_count_and_template() -> None:
    stream = PageStream(href=f"{BASE}/pse/1/{{pageNumber}}?maxWidth={{maxWidth}}", type="image/jpeg", count=4)
    entry = _parse(render_entry_atom(make_publication(1, page_stream=stream)))
    (link,) = _links(entry, vocab.REL_PSE_STREAM)
    assert link.get(f"{{{vocab.PSE_NS}}}count") == "4"
    assert link.get("href") == stream.href


def test_timestamps_are_utc_with_z() -> None:
    other_zone = dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    entry = _parse(render_entry_atom(make_publication(1, updated=other_zone)))
    assert entry.findtext("a:updated", namespaces=NS) == "2024-05-01T12:00:00Z"
