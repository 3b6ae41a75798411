"""KEPUB conversion: every fixture EPUB converts to a valid KEPUB with its text intact, and small
hand-made EPUBs pin down the span rules, the layouts and the errors."""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pytest
from lxml import etree

from sync.kobo.kepub import KepubError, convert_to_kepub, read_layout
from tests.conftest import FIXTURE_LIBRARY

XHTML = "http://www.w3.org/1999/xhtml"
NS = {"x": XHTML}
KOBO_ID = re.compile(r"kobo\.\d+\.\d+")
CONTAINER = """<?xml version="1.0"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles>
</container>"""
FIXTURE_EPUBS = sorted(path.relative_to(FIXTURE_LIBRARY) for path in FIXTURE_LIBRARY.rglob("*.epub"))


def page(body: str, *, head: str = "") -> str:
    """A spine document in the XHTML namespace, with an XML declaration and an HTML5 DOCTYPE."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html>\n'
        f'<html xmlns="{XHTML}" xmlns:epub="http://www.idpf.org/2007/ops">'
        f"<head><title>t</title>{head}</head><body>{body}</body></html>"
    )


def build_epub(
    documents: Mapping[str, str],
    *,
    metadata: str = "",
    manifest: str = "",
    extra: Mapping[str, bytes] | None = None,
) -> bytes:
    """An EPUB whose spine is ``documents`` (names relative to OEBPS/), in order."""
    items = "".join(
        f'<item id="d{index}" href="{name}" media-type="application/xhtml+xml"/>'
        for index, name in enumerate(documents)
    )
    spine = "".join(f'<itemref idref="d{index}"/>' for index in range(len(documents)))
    opf = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:identifier id="id">x</dc:identifier>'
        f"<dc:title>T</dc:title><dc:language>en</dc:language>{metadata}</metadata>"
        f"<manifest>{items}{manifest}</manifest><spine>{spine}</spine></package>"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        archive.writestr("META-INF/container.xml", CONTAINER)
        archive.writestr("OEBPS/content.opf", opf)
        for name, text in documents.items():
            archive.writestr(f"OEBPS/{name}", text)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def kepub_of(epub: bytes) -> zipfile.ZipFile:
    out = io.BytesIO()
    convert_to_kepub(io.BytesIO(epub), out)
    return zipfile.ZipFile(io.BytesIO(out.getvalue()))


def converted_body(body: str) -> etree._Element:
    """The ``div#book-inner`` of a document with this body after conversion, parsed strictly."""
    root = etree.fromstring(kepub_of(build_epub({"a.xhtml": page(body)})).read("OEBPS/a.xhtml"))
    inner = root.find("x:body/x:div[@id='book-columns']/x:div[@id='book-inner']", NS)
    assert inner is not None
    return inner


def spans(element: etree._Element) -> list[tuple[str, str]]:
    """(id, text with descendants) of every koboSpan, in document order."""
    return [(span.get("id", ""), text_of(span)) for span in element.iterfind(".//x:span[@class='koboSpan']", NS)]


def package_and_spine(archive: zipfile.ZipFile) -> tuple[str, etree._Element, list[str]]:
    container = etree.fromstring(archive.read("META-INF/container.xml"))
    path = container.find(".//{*}rootfile").get("full-path", "")  # type: ignore[union-attr]  # asserted by the parse
    opf = etree.fromstring(archive.read(path))
    items = {item.get("id"): item for item in opf.iterfind("{*}manifest/{*}item")}
    spine = []
    for itemref in opf.iterfind("{*}spine/{*}itemref"):
        item = items[itemref.get("idref")]
        if item.get("media-type") == "application/xhtml+xml":
            spine.append(posixpath.normpath(posixpath.join(posixpath.dirname(path), item.get("href", ""))))
    return path, opf, spine


def text_of(element: etree._Element) -> str:
    """All the text inside ``element``, joined."""
    return "".join(text for text in element.itertext() if isinstance(text, str))


def body_text(document: bytes) -> str:
    body = etree.fromstring(document).find("x:body", NS)
    assert body is not None
    return " ".join(text_of(body).split())


# --- every EPUB of the fixture library ---


@pytest.fixture(scope="module")
def fixture_kepubs(fixture_library: Path) -> dict[Path, tuple[zipfile.ZipFile, zipfile.ZipFile]]:
    """(EPUB, KEPUB) for every EPUB of the fixture library, converted once."""
    pairs = {}
    for relative in FIXTURE_EPUBS:
        epub = (fixture_library / relative).read_bytes()
        pairs[relative] = (zipfile.ZipFile(io.BytesIO(epub)), kepub_of(epub))
    return pairs


def book_id(relative: Path) -> str:
    found = re.search(r"\((\d+)\)$", relative.parent.name)
    return f"book-{found.group(1)}" if found else str(relative)


def test_the_fixture_library_has_its_epubs() -> None:
    assert len(FIXTURE_EPUBS) == 33  # 34 EPUBs in metadata.db, book 17's is missing on disk


@pytest.mark.parametrize("relative", FIXTURE_EPUBS, ids=book_id)
def test_fixture_kepub_is_a_valid_epub_zip(
    relative: Path, fixture_kepubs: dict[Path, tuple[zipfile.ZipFile, zipfile.ZipFile]]
) -> None:
    _, kepub = fixture_kepubs[relative]
    first = kepub.infolist()[0]
    assert (first.filename, first.compress_type) == ("mimetype", zipfile.ZIP_STORED)
    assert kepub.read("mimetype") == b"application/epub+zip"
    assert kepub.namelist().count("mimetype") == 1
    assert kepub.testzip() is None
    assert {info.compress_type for info in kepub.infolist()[1:] if not info.is_dir()} == {zipfile.ZIP_DEFLATED}
    _, opf, spine = package_and_spine(kepub)
    assert etree.QName(opf).localname == "package"
    assert spine


@pytest.mark.parametrize("relative", FIXTURE_EPUBS, ids=book_id)
def test_fixture_spine_documents_get_unique_kobo_spans_and_keep_their_text(
    relative: Path, fixture_kepubs: dict[Path, tuple[zipfile.ZipFile, zipfile.ZipFile]]
) -> None:
    epub, kepub = fixture_kepubs[relative]
    _, _, spine = package_and_spine(kepub)
    documents_with_text = 0
    for name in spine:
        root = etree.fromstring(kepub.read(name))  # strict: no recover
        ids = [span.get("id", "") for span in root.iterfind(".//x:span[@class='koboSpan']", NS)]
        assert all(KOBO_ID.fullmatch(span_id) for span_id in ids), name
        every_id = [element.get("id") for element in root.iter() if element.get("id") is not None]
        assert len(every_id) == len(set(every_id)), name
        assert root.find("x:body/x:div[@id='book-columns']/x:div[@id='book-inner']", NS) is not None
        assert body_text(kepub.read(name)) == body_text(epub.read(name)), name
        if body_text(epub.read(name)):
            documents_with_text += 1
            assert ids, name
            assert ids[0] == "kobo.1.1", name
    assert documents_with_text > 0


@pytest.mark.parametrize("relative", FIXTURE_EPUBS, ids=book_id)
def test_fixture_entries_other_than_the_spine_and_opf_are_byte_identical(
    relative: Path, fixture_kepubs: dict[Path, tuple[zipfile.ZipFile, zipfile.ZipFile]]
) -> None:
    epub, kepub = fixture_kepubs[relative]
    opf_path, _, spine = package_and_spine(epub)
    assert kepub.namelist() == epub.namelist()
    for name in epub.namelist():
        if name not in {*spine, opf_path}:
            assert kepub.read(name) == epub.read(name), name


@pytest.mark.parametrize("relative", FIXTURE_EPUBS, ids=book_id)
def test_fixture_opf_changes_only_by_the_cover_image_property(
    relative: Path, fixture_kepubs: dict[Path, tuple[zipfile.ZipFile, zipfile.ZipFile]]
) -> None:
    epub, kepub = fixture_kepubs[relative]
    _, before, _ = package_and_spine(epub)
    _, after, _ = package_and_spine(kepub)
    cover = before.find("{*}metadata/{*}meta[@name='cover']")
    for item in after.iterfind("{*}manifest/{*}item"):
        is_cover = cover is not None and item.get("id") == cover.get("content")
        assert ("cover-image" in (item.get("properties") or "").split()) == is_cover
        item.attrib.pop("properties", "")
    assert etree.tostring(after) == etree.tostring(before)


def test_the_fixture_with_an_epub_cover_gets_it_marked(
    fixture_kepubs: dict[Path, tuple[zipfile.ZipFile, zipfile.ZipFile]],
) -> None:
    painted_sail = next(path for path in FIXTURE_EPUBS if path.parent.name == "The Painted Sail (32)")
    _, opf, _ = package_and_spine(fixture_kepubs[painted_sail][1])
    marked = opf.findall("{*}manifest/{*}item[@properties='cover-image']")
    assert [(item.get("id"), item.get("href")) for item in marked] == [("cover", "cover.jpg")]


@pytest.mark.parametrize("relative", FIXTURE_EPUBS, ids=book_id)
def test_fixture_layouts_are_reflowable_and_their_kepubs_are_kepubs(relative: Path, fixture_library: Path) -> None:
    epub = (fixture_library / relative).read_bytes()
    assert read_layout(io.BytesIO(epub)) == "reflowable"
    out = io.BytesIO()
    convert_to_kepub(io.BytesIO(epub), out)
    assert read_layout(io.BytesIO(out.getvalue())) == "kepub"


def test_converting_a_kepub_again_leaves_its_documents_as_they_are(fixture_library: Path) -> None:
    once = io.BytesIO()
    convert_to_kepub(io.BytesIO((fixture_library / FIXTURE_EPUBS[0]).read_bytes()), once)
    twice = io.BytesIO()
    convert_to_kepub(io.BytesIO(once.getvalue()), twice)
    first, second = zipfile.ZipFile(once), zipfile.ZipFile(twice)
    assert first.namelist() == second.namelist()
    for name in first.namelist():
        assert first.read(name) == second.read(name), name


# --- spans ---


def test_sentences_are_split_after_punctuation_and_whitespace() -> None:
    inner = converted_body('<p>One. Two!  Three? "Four." Five: six… Mr.\u00a0Smith went e.g.there</p>')
    assert spans(inner) == [
        ("kobo.1.1", "One. "),
        ("kobo.1.2", "Two!  "),
        ("kobo.1.3", "Three? "),
        ("kobo.1.4", '"Four." '),
        ("kobo.1.5", "Five: "),
        ("kobo.1.6", "six… "),
        ("kobo.1.7", "Mr.\u00a0Smith went e.g.there"),
    ]


def test_paragraphs_count_from_one_and_segments_restart_in_each() -> None:
    inner = converted_body("<h1>Title</h1><p>A. B.</p><div>Before <p>inside.</p> after.</div>")
    assert [span_id for span_id, _ in spans(inner)] == [
        "kobo.1.1",
        "kobo.2.1",
        "kobo.2.2",
        "kobo.3.1",
        "kobo.4.1",
        "kobo.5.1",
    ]


def test_each_document_counts_from_one() -> None:
    kepub = kepub_of(build_epub({"a.xhtml": page("<p>A.</p><p>B.</p>"), "b.xhtml": page("<p>C.</p>")}))
    second = etree.fromstring(kepub.read("OEBPS/b.xhtml"))
    assert spans(second) == [("kobo.1.1", "C.")]


def test_nested_inline_text_gets_spans_inside_its_element() -> None:
    inner = converted_body("<p>He said <em>very <b>loudly</b> indeed.</em> Then left.</p>")
    paragraph = inner.find("x:p", NS)
    assert paragraph is not None
    assert spans(paragraph) == [
        ("kobo.1.1", "He said"),
        ("kobo.1.2", "very"),
        ("kobo.1.3", "loudly"),
        ("kobo.1.4", "indeed."),
        ("kobo.1.5", "Then left."),
    ]
    emphasis = paragraph.find("x:em", NS)
    assert emphasis is not None
    assert [etree.QName(child).localname for child in emphasis] == ["span", "b", "span"]
    assert text_of(paragraph) == "He said very loudly indeed. Then left."


def test_an_image_paragraph_gets_one_span_around_the_image() -> None:
    inner = converted_body('<p>Text.</p><p><img src="a.png" alt="a"/></p><p>More.</p>')
    image_paragraph = inner.findall("x:p", NS)[1]
    (span,) = list(image_paragraph)
    assert (span.get("class"), span.get("id")) == ("koboSpan", "kobo.2.1")
    assert [child.get("src") for child in span] == ["a.png"]
    assert spans(inner)[-1] == ("kobo.3.1", "More.")


def test_html_entities_become_characters() -> None:
    inner = converted_body("<p>cr&egrave;me&nbsp;br&ucirc;l&eacute;e &amp; &lt;b&gt; &mdash; &#8230;</p>")
    assert text_of(inner) == "crème\u00a0brûlée & <b> — …"


def test_script_style_svg_math_and_whitespace_stay_untouched() -> None:
    script = "var x = 1; if (x) { y(); } // one. two. three."
    inner = converted_body(
        f"<p>Text.</p>\n  <script>{script}</script><style>p {{ margin: 0; }}</style>"
        '<svg xmlns="http://www.w3.org/2000/svg"><text>Drawn. Text.</text></svg>'
        '<math xmlns="http://www.w3.org/1998/Math/MathML"><mi>x</mi></math><p>   </p>'
    )
    assert spans(inner) == [("kobo.1.1", "Text.")]
    scripts = inner.findall("x:script", NS)
    assert [element.text for element in scripts] == [script]
    assert [len(element) for element in scripts] == [0]
    paragraphs = inner.findall("x:p", NS)
    assert (paragraphs[1].text, len(paragraphs[1])) == ("   ", 0)
    assert inner.find(".//{http://www.w3.org/2000/svg}text").text == "Drawn. Text."  # type: ignore[union-attr]


def test_preformatted_text_is_one_span() -> None:
    inner = converted_body("<pre>first line.\nsecond line.\n</pre>")
    assert spans(inner) == [("kobo.1.1", "first line.\nsecond line.\n")]


def test_leading_and_trailing_whitespace_stays_outside_the_spans() -> None:
    inner = converted_body("<p>\n   A sentence. Another.  \n</p>")
    paragraph = inner.find("x:p", NS)
    assert paragraph is not None
    assert paragraph.text == "\n   "
    assert paragraph[-1].tail == "  \n"
    assert spans(paragraph) == [("kobo.1.1", "A sentence. "), ("kobo.1.2", "Another.")]


def test_text_directly_in_the_body_is_wrapped() -> None:
    inner = converted_body("Loose text. <br/>More")
    assert spans(inner) == [("kobo.1.1", "Loose text."), ("kobo.1.2", "More")]


def test_declaration_doctype_and_namespaces_are_kept() -> None:
    document = (
        '<?xml version="1.0" encoding="ISO-8859-1" standalone="no"?>\n'
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN" "http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">\n'
        f'<html xmlns="{XHTML}" xmlns:epub="http://www.idpf.org/2007/ops"><head><title>t</title></head>'
        '<body><p epub:type="z">Cr\xe8me.</p></body></html>'
    ).encode("iso-8859-1")
    epub = build_epub({})
    with zipfile.ZipFile(io.BytesIO(epub)) as source:
        entries = {name: source.read(name) for name in source.namelist()}
    opf = entries["OEBPS/content.opf"].replace(
        b"<manifest>", b'<manifest><item id="a" href="a.xhtml" media-type="application/xhtml+xml"/>'
    )
    entries["OEBPS/content.opf"] = opf.replace(b"<spine>", b'<spine><itemref idref="a"/>')
    entries["OEBPS/a.xhtml"] = document
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    converted = kepub_of(buffer.getvalue()).read("OEBPS/a.xhtml")
    assert converted.startswith(
        b'<?xml version="1.0" encoding="utf-8" standalone="no"?>\n'
        b'<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN" "http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">\n'
    )
    root = etree.fromstring(converted)
    assert root.nsmap == {None: XHTML, "epub": "http://www.idpf.org/2007/ops"}
    assert spans(root) == [("kobo.1.1", "Crème.")]


def test_a_document_with_kobo_spans_keeps_them() -> None:
    document = page(
        '<div id="book-columns"><div id="book-inner"><p><span class="koboSpan" id="kobo.7.1">Done.</span></p>'
        "</div></div>"
    )
    kepub = kepub_of(build_epub({"a.xhtml": document}))
    assert kepub.read("OEBPS/a.xhtml") == document.encode()


# --- the OPF ---


def test_the_epub2_cover_gets_cover_image_and_keeps_its_properties() -> None:
    epub = build_epub(
        {"a.xhtml": page("<p>A.</p>")},
        metadata='<meta name="cover" content="pic"/>',
        manifest='<item id="pic" href="c.jpg" media-type="image/jpeg" properties="custom"/>'
        '<item id="other" href="o.jpg" media-type="image/jpeg"/>',
        extra={"OEBPS/c.jpg": b"\xff\xd8jpeg", "OEBPS/o.jpg": b"\xff\xd8jpeg"},
    )
    kepub = kepub_of(epub)
    opf = etree.fromstring(kepub.read("OEBPS/content.opf"))
    properties = {item.get("id"): item.get("properties") for item in opf.iterfind("{*}manifest/{*}item")}
    assert properties["pic"] == "custom cover-image"
    assert properties["other"] is None
    assert kepub.read("OEBPS/c.jpg") == b"\xff\xd8jpeg"


def test_an_opf_without_an_epub2_cover_is_copied_unchanged() -> None:
    epub = build_epub({"a.xhtml": page("<p>A.</p>")})
    with zipfile.ZipFile(io.BytesIO(epub)) as source:
        assert kepub_of(epub).read("OEBPS/content.opf") == source.read("OEBPS/content.opf")


# --- layouts ---


@pytest.mark.parametrize(
    "metadata",
    [
        '<meta property="rendition:layout">pre-paginated</meta>',
        '<meta name="fixed-layout" content="true"/>',
    ],
    ids=["epub3", "old-meta"],
)
def test_a_pre_paginated_epub_is_fixed(metadata: str) -> None:
    assert read_layout(io.BytesIO(build_epub({"a.xhtml": page("<p>A.</p>")}, metadata=metadata))) == "fixed"


def test_apple_display_options_can_make_an_epub_fixed() -> None:
    options = (
        b'<display_options><platform name="*"><option name="fixed-layout">true</option></platform></display_options>'
    )
    epub = build_epub({"a.xhtml": page("<p>A.</p>")}, extra={"META-INF/com.apple.ibooks.display-options.xml": options})
    assert read_layout(io.BytesIO(epub)) == "fixed"


def test_a_layout_for_one_item_does_not_make_the_book_fixed() -> None:
    metadata = '<meta property="rendition:layout" refines="#d0">pre-paginated</meta>'
    assert read_layout(io.BytesIO(build_epub({"a.xhtml": page("<p>A.</p>")}, metadata=metadata))) == "reflowable"


def test_an_epub_with_kobo_spans_is_a_kepub() -> None:
    document = page('<p><span class="koboSpan" id="kobo.1.1">Already.</span></p>')
    epub = build_epub({"a.xhtml": page("<p>Plain.</p>"), "b.xhtml": document})
    assert read_layout(io.BytesIO(epub)) == "kepub"


# --- errors ---


@pytest.mark.parametrize("data", [b"", b"not a zip at all", b"PK\x03\x04" + b"\x00" * 40], ids=["empty", "text", "cut"])
def test_a_broken_zip_is_refused(data: bytes) -> None:
    with pytest.raises(KepubError, match="not a zip"):
        read_layout(io.BytesIO(data))
    with pytest.raises(KepubError, match="not a zip"):
        convert_to_kepub(io.BytesIO(data), io.BytesIO())


def test_a_malformed_spine_document_is_refused() -> None:
    epub = build_epub({"a.xhtml": page("<p>fine</p>"), "b.xhtml": page("<p>unclosed <em>tag</p>")})
    with pytest.raises(KepubError, match=r"OEBPS/b\.xhtml is not well-formed"):
        convert_to_kepub(io.BytesIO(epub), io.BytesIO())


def test_an_unknown_entity_is_refused() -> None:
    with pytest.raises(KepubError, match="not well-formed"):
        convert_to_kepub(io.BytesIO(build_epub({"a.xhtml": page("<p>&bogus;</p>")})), io.BytesIO())


def test_an_epub_without_a_container_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip")
        archive.writestr("a.xhtml", page("<p>A.</p>"))
    with pytest.raises(KepubError, match=r"META-INF/container\.xml"):
        read_layout(io.BytesIO(buffer.getvalue()))


def encryption(algorithm: str) -> bytes:
    return (
        '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
        'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>'
        f'<enc:EncryptionMethod Algorithm="{algorithm}"/>'
        '<enc:CipherData><enc:CipherReference URI="OEBPS/a.xhtml"/></enc:CipherData>'
        "</enc:EncryptedData></encryption>"
    ).encode()


def test_an_encrypted_epub_is_refused() -> None:
    epub = build_epub(
        {"a.xhtml": page("<p>A.</p>")},
        extra={"META-INF/encryption.xml": encryption("http://www.w3.org/2001/04/xmlenc#aes128-cbc")},
    )
    with pytest.raises(KepubError, match="encrypted"):
        convert_to_kepub(io.BytesIO(epub), io.BytesIO())


def test_obfuscated_fonts_are_not_drm() -> None:
    epub = build_epub(
        {"a.xhtml": page("<p>A.</p>")},
        extra={"META-INF/encryption.xml": encryption("http://www.idpf.org/2008/embedding")},
    )
    assert spans(etree.fromstring(kepub_of(epub).read("OEBPS/a.xhtml"))) == [("kobo.1.1", "A.")]
