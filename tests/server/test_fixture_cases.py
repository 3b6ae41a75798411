"""Every special case of the fixture library (``shared/fixtures/README.md``), seen through both representations.

Each row of the README's "Special cases" table and of its "Other facts" is checked on the live server as
OPDS 1.2 Atom (lxml XPath) and as OPDS 2.0 JSON (``msgspec``): exact Unicode and XML specials, dates,
languages, identifiers, formats and sizes, covers, sanitised comments, custom columns, series, sort orders,
and the two books with no file to offer (the tag hierarchy, ratings and languages lists are checked in
``test_pagination``, whose readers this module shares). Expected values are written out from the README;
only uuids, timestamps and files are read from the session's copy of the library.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from lxml import etree
from lxml import html as lxml_html
from PIL import Image

from tests.conftest import LiveServer
from tests.server.reading import (
    ENTRY_TYPE,
    NOT_OFFERED,
    NS,
    VISIBLE,
    Flavour,
    atom_at,
    book_id_of,
    book_ids,
    books_url,
    elements,
    get_ok,
    json_at,
    nav_item,
    one,
    prefix,
    strings,
)

ACQUISITION = "http://opds-spec.org/acquisition"
COVER_REL, THUMBNAIL_REL = "http://opds-spec.org/image", "http://opds-spec.org/image/thumbnail"
EVERYTHING = "sort=new&limit=200"


def as_list(value: Any) -> list[Any]:
    """RWPM allows a single value where an array is expected."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def name_of(value: Any) -> str:
    """A contributor, publisher, subject or series: a string or an object with a ``name``."""
    return value if isinstance(value, str) else str(value["name"])


@dataclass(frozen=True)
class Seen:
    """What a client learns about a book from one representation."""

    title: str
    authors: tuple[str, ...]
    languages: tuple[str, ...]
    publisher: str | None
    issued: str | None
    tags: frozenset[str]
    series: str | None
    identifiers: frozenset[str]
    acquisitions: tuple[tuple[str, int, str], ...]  # (media type, length, href)
    cover: str | None
    thumbnail: str | None
    summary: str | None


def seen_in_atom(entry: etree._Element) -> Seen:
    series = one(entry, "a:link[@rel='related']/@title")
    return Seen(
        title=one(entry, "a:title/text()") or "",
        authors=tuple(strings(entry, "a:author/a:name/text()")),
        languages=tuple(strings(entry, "dc:language/text()")),
        publisher=one(entry, "dc:publisher/text()"),
        issued=one(entry, "dc:issued/text()"),
        tags=frozenset(strings(entry, "a:category/@term")),
        series=series.removeprefix("Series: ") if series else None,
        identifiers=frozenset(strings(entry, "dc:identifier/text()")),
        acquisitions=tuple(
            (link.get("type", ""), int(link.get("length", "-1")), link.get("href", ""))
            for link in elements(entry, f"a:link[@rel='{ACQUISITION}']")
        ),
        cover=one(entry, f"a:link[@rel='{COVER_REL}']/@href"),
        thumbnail=one(entry, f"a:link[@rel='{THUMBNAIL_REL}']/@href"),
        summary=one(entry, "a:summary/text()"),
    )


def seen_in_json(publication: dict[str, Any]) -> Seen:
    meta = publication["metadata"]
    series = as_list(meta.get("belongsTo", {}).get("series"))
    identifiers = [meta.get("identifier"), *as_list(meta.get("altIdentifier"))]
    uris = {i if isinstance(i, str) else str(i["value"]) for i in identifiers if i}
    images = [image["href"] for image in publication.get("images", [])]
    return Seen(
        title=meta["title"],
        authors=tuple(name_of(a) for a in as_list(meta.get("author"))),
        languages=tuple(as_list(meta.get("language"))),
        publisher=", ".join(name_of(p) for p in as_list(meta.get("publisher"))) or None,
        issued=meta.get("published"),
        tags=frozenset(name_of(s) for s in as_list(meta.get("subject"))),
        series=name_of(series[0]) if series else None,
        identifiers=frozenset(uri for uri in uris if not uri.startswith("urn:uuid:")),
        acquisitions=tuple(
            (link["type"], int(link.get("length", -1)), link["href"])
            for link in publication["links"]
            if link.get("rel") == ACQUISITION
        ),
        cover=images[0] if images else None,
        thumbnail=images[-1] if len(images) > 1 else None,
        summary=meta.get("description"),
    )


def complete(client: httpx.Client, flavour: Flavour, book_id: int) -> Seen:
    """The book's complete entry (Atom) or publication document (OPDS 2)."""
    if flavour == "atom":
        return seen_in_atom(atom_at(client, f"/opds/books/{book_id}"))
    return seen_in_json(json_at(client, f"/opds/v2/books/{book_id}"))


def feed_entries(client: httpx.Client, flavour: Flavour, query: str) -> dict[int, Seen]:
    url = books_url(flavour, query)
    if flavour == "atom":
        entries = elements(atom_at(client, url), "a:entry")
        return {book_id_of(one(e, f"a:link[@type='{ENTRY_TYPE}']/@href") or ""): seen_in_atom(e) for e in entries}
    publications = json_at(client, url)["publications"]
    return {
        book_id_of(next(k["href"] for k in p["links"] if k.get("rel") == "self")): seen_in_json(p) for p in publications
    }


def atom_content(client: httpx.Client, book_id: int) -> lxml_html.HtmlElement:
    """The complete Atom entry's ``content type="html"``, parsed as HTML."""
    entry = atom_at(client, f"/opds/books/{book_id}")
    assert one(entry, "a:content/@type") == "html"
    return lxml_html.fragment_fromstring(one(entry, "a:content/text()") or "", create_parent="div")


def details(client: httpx.Client, book_id: int) -> dict[str, str]:
    """The ``<dl>`` of series, rating and custom columns in a complete Atom entry."""
    content = atom_content(client, book_id)
    names, values = content.findall(".//dt"), content.findall(".//dd")
    return dict(zip((n.text_content() for n in names), (v.text_content() for v in values), strict=True))


def media_type(value: str) -> str:
    return value.split(";", maxsplit=1)[0].strip().lower()


def format_of(href: str) -> str:
    return httpx.URL(href).path.rsplit("/", 1)[1].rpartition(".")[2].upper()


@pytest.fixture(scope="module")
def db(live_server: LiveServer) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(f"{(live_server.library / 'metadata.db').as_uri()}?mode=ro", uri=True)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def book_files(live_server: LiveServer, db: sqlite3.Connection) -> dict[int, dict[str, Path]]:
    """Each book's files by format, where Calibre's ``books.path`` and ``data.name`` put them."""
    files: dict[int, dict[str, Path]] = {}
    for book, folder, name, fmt in db.execute(
        "SELECT b.id, b.path, d.name, d.format FROM books b JOIN data d ON d.book = b.id"
    ):
        files.setdefault(book, {})[fmt] = live_server.library / folder / f"{name}.{fmt.lower()}"
    return files


# --- metadata, exactly as Calibre holds it ---------------------------------------------------------------------

LONG_TITLE = (  # book 14: 308 characters, cut to 96 in its folder name and 42 in its file name
    "An Exceedingly Long and Meticulously Detailed Account of the Voyage of the Merchant Brig Persistence"
    " from the Port of Bristol to the Spice Islands and Back Again, Together with Observations on the Weather,"
    " the Stars, the Customs of Distant Harbours, and Sundry Other Matters of Interest to the Curious Reader"
)
LANTERN = "The Lantern Chronicles"
EXACT: dict[int, dict[str, object]] = {
    1: {"title": "The Lantern Keeper", "series": LANTERN, "publisher": "Harbor House", "languages": ("en",)},
    4: {"title": "Winter of Glass", "authors": ("Eleanor Whitby",), "series": LANTERN},
    5: {"authors": ("Jane Doe", "John Roe"), "series": "Harbor Tales", "issued": "2010-05-05"},  # stored at noon
    6: {"authors": ("John Roe", "Jane Doe", "Ada Quill"), "series": "Harbor Tales"},
    7: {"title": "Don Quixote", "authors": ("Miguel de Cervantes",), "issued": "1605-01-16", "languages": ("es",)},
    8: {"title": "Les Misérables", "issued": "1862-04-03", "languages": ("fr",), "publisher": "Éditions de la Mer"},
    9: {"title": "Vingt mille lieues sous les mers", "series": "Voyages extraordinaires", "languages": ("fr",)},
    10: {"title": "吾輩は猫である", "authors": ("夏目漱石",), "tags": frozenset({"Fiction.Classics", "日本文学"}),
         "publisher": "大倉書店", "languages": ("ja",)},
    11: {"title": "ألف ليلة وليلة", "authors": ("مؤلف مجهول",), "tags": frozenset({"Fiction.Classics", "حكايات"}),
         "publisher": "دار الحكايات", "languages": ("ar",), "issued": None},
    12: {"title": "Rocket 🚀 Stories for Small Readers ✨", "tags": frozenset({"Children", "🚀 Space"})},
    13: {"title": "Tom & Jerry <The \"Complete\"> 'Edition'", "authors": ("Flann O'Brien",),
         "series": 'Cats & Dogs "Collected" <Set>', "tags": frozenset({"Q&A", "<b>bold</b>", "Humour"}),
         "publisher": "Smith & Sons <Ltd>"},
    14: {"title": LONG_TITLE, "authors": ("Bartholomew Ashcombe-Fairweather",)},
    15: {"title": "Two Tongues / Deux langues", "languages": ("en", "fr"), "issued": "2008-02-29"},
    21: {"title": "Captain Comet and the Moon Pirates", "languages": ()},
    23: {"issued": None},
    24: {"issued": None},
    26: {"tags": frozenset({"Fiction.Historical", "Sea", "Non-Fiction.History.Maritime", "Fiction.Literary", "Ships",
                           "Family", "Saga", "Victorian", "Bristol", "Award Winner", "Book Club", "Ficción"})},
    27: {"authors": ("Marguerite de la Fontaine",), "languages": ("fr",)},
    31: {"title": "Winter of Glass", "authors": ("Tobias Marsh",), "series": None},
    36: {"issued": None},
    39: {"authors": ("Ines Calder", "Tobias Marsh")},  # codespell:ignore
    40: {"issued": "2024-10-01", "publisher": "Harbor House", "tags": frozenset({"Fiction.Fantasy"})},  # not in its OPF
}  # fmt: skip


@pytest.mark.parametrize("book_id", sorted(EXACT))
def test_complete_entry_serves_calibre_metadata_exactly(client: httpx.Client, flavour: Flavour, book_id: int) -> None:
    seen = complete(client, flavour, book_id)
    expected = EXACT[book_id]
    assert {field: getattr(seen, field) for field in expected} == expected


def test_feed_entries_agree_with_complete_entries(client: httpx.Client, flavour: Flavour) -> None:
    entries = feed_entries(client, flavour, EVERYTHING)
    assert set(entries) == VISIBLE
    for book_id, seen in entries.items():
        assert None not in {seen.cover, seen.thumbnail}, book_id  # a drawn cover when Calibre has none
        assert replace(seen, summary=None) == replace(complete(client, flavour, book_id), summary=None), book_id


SEARCHES = [("misérables", [8]), ("MISÉRABLES", [8]), ("éditions", [8, 9]), ("🚀", [12]), ("Q&A", [13])]


@pytest.mark.parametrize(("words", "books"), SEARCHES, ids=["accent", "accent-upper", "publisher", "emoji", "xml"])
def test_search_finds_accents_emoji_and_xml_specials_in_any_case(
    client: httpx.Client, flavour: Flavour, words: str, books: list[int]
) -> None:
    assert sorted(book_ids(client, flavour, books_url(flavour, urlencode({"query": words})))) == books


SORT_NAMES: dict[int, tuple[str | None, tuple[str, ...]]] = {  # title sortAs, authors' sortAs
    2: ("Bridge of Embers, A", ("Whitby, Eleanor",)),
    28: ("Atlas of Clouds, An", ("Calder, Ines",)),  # codespell:ignore
    6: (None, ("Roe, John", "Doe, Jane", "Quill, Ada")),
    7: (None, ("Cervantes Saavedra, Miguel de",)),  # explicit: calibre's automatic one is "Cervantes, Miguel de"
    10: (None, ("Natsume, Sōseki",)),
    11: (None, ("Anonymous",)),
    27: (None, ("La Fontaine, Marguerite de",)),
}


@pytest.mark.parametrize("book_id", sorted(SORT_NAMES))
def test_opds2_sort_names_are_calibres_title_sort_and_author_sort(client: httpx.Client, book_id: int) -> None:
    meta = json_at(client, f"/opds/v2/books/{book_id}")["metadata"]
    assert (meta.get("sortAs"), tuple(a.get("sortAs") for a in meta["author"])) == SORT_NAMES[book_id]


def test_sort_by_author_follows_the_books_author_sort(client: httpx.Client, flavour: Flavour) -> None:
    order = book_ids(client, flavour, books_url(flavour, "sort=author&limit=200"))
    assert order[0] == 11  # "Anonymous"
    for before, book, after in ((39, 7, 5), (21, 27, 29), (31, 10, 13), (36, 6, 12)):
        assert order.index(before) < order.index(book) < order.index(after), book


def test_titles_sort_by_title_sort_and_same_titles_stay_apart(client: httpx.Client, flavour: Flavour) -> None:
    assert book_ids(client, flavour, books_url(flavour, "sort=title&limit=200"))[:2] == [28, 2]
    assert book_ids(client, flavour, books_url(flavour, "initial=B")) == [2]  # "Bridge of Embers, A"
    assert book_ids(client, flavour, books_url(flavour, "initial=W")) == [4, 31]
    assert complete(client, flavour, 4).authors != complete(client, flavour, 31).authors


def test_newest_books_follow_date_added_not_ids(client: httpx.Client, db: sqlite3.Connection, flavour: Flavour) -> None:
    added = dict(db.execute("SELECT id, timestamp FROM books"))
    order = book_ids(client, flavour, books_url(flavour, EVERYTHING))
    assert order[:2] == [40, 39]
    assert order == sorted(VISIBLE, key=lambda book: added[book], reverse=True)
    assert order != sorted(VISIBLE, reverse=True)


def test_entries_are_identified_by_calibre_uuids(client: httpx.Client, db: sqlite3.Connection) -> None:
    uuids = {book: f"urn:uuid:{uuid}" for book, uuid in db.execute("SELECT id, uuid FROM books")}
    feed = atom_at(client, books_url("atom", EVERYTHING))
    for entry in elements(feed, "a:entry"):
        book = book_id_of(one(entry, f"a:link[@type='{ENTRY_TYPE}']/@href") or "")
        assert one(entry, "a:id/text()") == uuids[book]
        assert one(atom_at(client, f"/opds/books/{book}"), "a:id/text()") == uuids[book]
    assert json_at(client, "/opds/v2/books/30")["metadata"]["identifier"] == uuids[30]  # no ISBN: the uuid


IDENTIFIERS = {
    1: {"urn:isbn:9780306406157"},  # goodreads and amazon have no URI form
    18: {"urn:isbn:9780262033848", "https://doi.org/10.1000/182"},
    22: {"urn:isbn:9780747532699"},
    7: set(),
    30: set(),  # calibre's mobi-asin
}


@pytest.mark.parametrize("book_id", sorted(IDENTIFIERS))
def test_identifiers_become_uris(client: httpx.Client, flavour: Flavour, book_id: int) -> None:
    assert complete(client, flavour, book_id).identifiers == IDENTIFIERS[book_id]


# --- which books are offered, and how -------------------------------------------------------------------------


def test_books_without_a_file_are_never_offered(client: httpx.Client, flavour: Flavour) -> None:
    assert set(book_ids(client, flavour, books_url(flavour, EVERYTHING))) == VISIBLE
    for book in NOT_OFFERED:
        assert client.get(f"{prefix(flavour)}/books/{book}").status_code == 404
        assert client.get(f"/download/{book}/epub").status_code == 404
    marsh = nav_item(client, flavour, f"{prefix(flavour)}/authors", "Tobias Marsh")
    assert (marsh.count, set(book_ids(client, flavour, marsh.href))) == (3, {29, 31, 39})
    assert set(book_ids(client, flavour, books_url(flavour, "tag=Fiction.Mystery"))) == {31, 34, 35}
    for words in ("Vanishing", "Lost Manuscript"):
        assert book_ids(client, flavour, books_url(flavour, f"query={words}")) == []


FORMATS = {
    18: {"EPUB": "application/epub+zip", "PDF": "application/pdf"},
    19: {"PDF": "application/pdf"},
    20: {"PDF": "application/pdf"},
    21: {"CBZ": "application/vnd.comicbook+zip"},
    29: {"TXT": "text/plain"},
    30: {"AZW3": "application/vnd.amazon.mobi8-ebook"},
}


@pytest.mark.parametrize("book_id", sorted(FORMATS))
def test_each_format_is_offered_with_its_type_and_size(
    client: httpx.Client, book_files: dict[int, dict[str, Path]], flavour: Flavour, book_id: int
) -> None:
    acquisitions = complete(client, flavour, book_id).acquisitions
    offered = {format_of(href): (media_type(kind), length) for kind, length, href in acquisitions}
    files = book_files[book_id]
    assert offered == {fmt: (kind, files[fmt].stat().st_size) for fmt, kind in FORMATS[book_id].items()}


@pytest.mark.parametrize("book_id", [5, 8, 10, 11, 12, 13, 14, 15, 18, 29, 39])
def test_downloads_serve_the_file_from_the_books_folder(
    client: httpx.Client, book_files: dict[int, dict[str, Path]], flavour: Flavour, book_id: int
) -> None:
    for kind, length, href in complete(client, flavour, book_id).acquisitions:
        response = get_ok(client, href)
        assert response.content == book_files[book_id][format_of(href)].read_bytes()
        assert len(response.content) == length
        content_type = response.headers["content-type"]
        assert media_type(content_type) == media_type(kind)
        names = [parameter.split("=", 1)[0].strip().lower() for parameter in content_type.split(";")[1:]]
        assert len(names) == len(set(names)), content_type  # a parameter given twice is ambiguous (RFC 2045)


def test_comic_streams_its_four_pages(client: httpx.Client) -> None:
    (stream,) = elements(atom_at(client, "/opds/books/21"), "a:link[@rel='http://vaemendis.net/opds-pse/stream']")
    assert stream.get(f"{{{NS['pse']}}}count") == "4"
    template = stream.get("href", "").replace("%7B", "{").replace("%7D", "}")
    for page in range(4):
        response = get_ok(client, template.format(pageNumber=page, maxWidth=200))
        assert Image.open(io.BytesIO(response.content)).width <= 200
    assert client.get(template.format(pageNumber=4, maxWidth=200)).status_code == 404


COVERS = {  # book: full size; books 4, 24, 29, 38, 39 have none in Calibre and get a drawn one
    **dict.fromkeys((1, 4, 24, 29, 32, 38, 39), (600, 900)), 19: (875, 1240), 20: (400, 600), 21: (480, 720),
    33: (1200, 1800), 34: (400, 600), 35: (900, 600), 36: (300, 300), 37: (100, 150),
}  # fmt: skip


def image_size(client: httpx.Client, href: str | None) -> tuple[int, int]:
    assert href is not None
    response = get_ok(client, href)
    assert media_type(response.headers["content-type"]) == "image/jpeg"
    return Image.open(io.BytesIO(response.content)).size


@pytest.mark.parametrize("book_id", sorted(COVERS))
def test_every_book_has_a_cover_and_a_thumbnail(client: httpx.Client, flavour: Flavour, book_id: int) -> None:
    seen = complete(client, flavour, book_id)
    width, height = COVERS[book_id]
    assert image_size(client, seen.cover) == (width, height)
    thumb_width, thumb_height = image_size(client, seen.thumbnail)
    assert thumb_width <= min(width, 300)
    assert abs(thumb_width / thumb_height - width / height) < 0.02


# --- comments and custom columns ------------------------------------------------------------------------------


def test_hostile_comments_lose_everything_that_runs(client: httpx.Client) -> None:
    content = atom_content(client, 24)
    assert content.findall(".//p")[0].text_content() == "Harmless intro."
    assert [e.tag for e in content.iter() if e.tag in {"script", "iframe", "img", "style", "object", "embed"}] == []
    for element in content.iter():
        for attribute, value in element.attrib.items():
            assert not attribute.startswith("on"), (element.tag, attribute)
            assert attribute != "style", element.tag
            assert not value.strip().lower().startswith("javascript:"), (element.tag, value)


def test_benign_comments_keep_their_formatting(client: httpx.Client) -> None:
    content = atom_content(client, 25)
    formatting = [(e.tag, e.text_content()) for e in content.iter("h3", "b", "i", "li")]
    assert formatting == [("h3", "About this book"), ("b", "practical"), ("i", "affectionate"),
                          ("li", "Forty lighthouses"), ("li", "Maps & tide tables")]  # fmt: skip
    links = [(a.get("href"), a.text_content()) for a in content.iter("a")]
    assert links == [("https://example.org/lights", "the companion site")]
    assert content.findall(".//p")[-1].text_content().endswith("Price: 12\xa0€ — “quoted”.")


SUMMARIES = {
    13: ["Fish & chips <not a tag> \"quotes\" 'apostrophes'"],
    24: ["Harmless intro.", "click", "styled"],
    25: ["About this book", "A practical and affectionate guide.", "Forty lighthouses", "Maps & tide tables",
         "See the companion site. Price: 12 € — “quoted”."],
}  # fmt: skip


@pytest.mark.parametrize("book_id", sorted(SUMMARIES))
def test_summaries_are_plain_text_with_entities_decoded(client: httpx.Client, flavour: Flavour, book_id: int) -> None:
    summary = complete(client, flavour, book_id).summary or ""
    assert summary.replace("\xa0", " ").splitlines() == SUMMARIES[book_id]


DETAILS = {
    1: {"Series": "The Lantern Chronicles #1", "Rating": "★★★★", "Read": "Yes", "My Rating": "★★★★★",
        "Shelf": "Favourites, Bedroom", "Location": "Living room", "Pages": "352"},
    2: {"Series": "The Lantern Chronicles #1.5", "Rating": "★★★½"},
    3: {"Read": "No"},
    13: {"Location": 'Shelf <A> & "B"'},
    22: {"Rating": "★★★★★", "Read": "Yes", "My Rating": "★★★½", "Shelf": "Favourites, To lend, Study",
         "Location": "Study", "Pages": "488"},
    40: {"Read": "No", "Shelf": "To read"},  # in metadata.db only: its metadata.opf is stale
}  # fmt: skip


@pytest.mark.parametrize("book_id", sorted(DETAILS))
def test_complete_entry_lists_series_rating_and_custom_columns(client: httpx.Client, book_id: int) -> None:
    shown = details(client, book_id)
    assert {name: shown.get(name) for name in DETAILS[book_id]} == DETAILS[book_id]


# --- navigation lists -----------------------------------------------------------------------------------------

SERIES = {
    LANTERN: [(1, 1.0), (2, 1.5), (3, 2.0), (4, 3.0)],
    "Harbor Tales": [(5, 1.0), (6, 2.0)],
    "Voyages extraordinaires": [(9, 6.0)],
    "Gull Point Mysteries": [(34, 1.0), (35, 2.0)],
}


def series_of(client: httpx.Client, flavour: Flavour, book_id: int) -> tuple[str, float, str]:
    """(name, position, feed) of a book's series; Atom shows the position only in the entry's "Name #1.5"."""
    if flavour == "atom":
        (link,) = elements(atom_at(client, f"/opds/books/{book_id}"), "a:link[@rel='related']")
        position = details(client, book_id)["Series"].rpartition(" #")[2]
        return link.get("title", "").removeprefix("Series: "), float(position), link.get("href", "")
    (series,) = as_list(json_at(client, f"/opds/v2/books/{book_id}")["metadata"]["belongsTo"]["series"])
    return series["name"], float(series["position"]), series["links"][0]["href"]


@pytest.mark.parametrize("name", sorted(SERIES))
def test_series_feed_lists_books_in_series_order(client: httpx.Client, flavour: Flavour, name: str) -> None:
    item = nav_item(client, flavour, f"{prefix(flavour)}/series", name)
    assert item.count == len(SERIES[name])
    for url in (item.href, f"{item.href}&sort=series"):
        order = book_ids(client, flavour, url)
        assert [(book, series_of(client, flavour, book)) for book in order] == [
            (book, (name, position, item.href)) for book, position in SERIES[name]
        ]
