"""The OpenSearch description KOReader, Thorium and Moon+ read."""

from __future__ import annotations

from lxml import etree

from feeds import vocab
from feeds.model import SearchDescription
from feeds.opensearch import render_search_description

NS = {"os": vocab.OPENSEARCH_NS}


def test_description_has_short_name_and_a_search_terms_template() -> None:
    body = render_search_description(
        SearchDescription(
            short_name="A library with a very long name",
            description="Search it",
            template="http://catalog.test/opds/books?query={searchTerms}",
            type=vocab.ACQUISITION_TYPE,
        )
    )
    root = etree.fromstring(body)
    short_name = root.findtext("os:ShortName", namespaces=NS)
    assert short_name is not None
    assert len(short_name) <= 16  # OpenSearch 1.1: at most 16 characters
    (url,) = root.findall("os:Url", NS)
    assert url.get("type") == vocab.ACQUISITION_TYPE
    assert url.get("template") == "http://catalog.test/opds/books?query={searchTerms}"
