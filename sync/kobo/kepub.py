"""KEPUB conversion: an EPUB rewritten the way Kobo's own store delivers books, done in-process.

Owns reading an EPUB's layout (reflowable, fixed or already a KEPUB) and writing the KEPUB: every
spine XHTML document gets ``<span class="koboSpan" id="kobo.P.S">`` around each sentence and its
body wrapped in ``div#book-columns > div#book-inner``, and the OPF marks its EPUB 2 cover with
``properties="cover-image"``. Kobo firmware reads its reading position, highlights and page
statistics from those spans; a plain EPUB opens in the older, slower Adobe renderer instead
(``shared/specs/kobo-sync.md`` section 13). The rules follow kepubify (pgaskin/kepubify,
``kepub/transform.go``), which were matched against books from Kobo's store.

Pure: it reads and writes the binary file objects it is handed and nothing else. It must not open
paths, cache results, log, or import ``opds_server``, ``feeds``, ``sqlite3`` or PIL; the server's
``opds_server.storage.kepub`` decides when to convert and where the result is kept.
"""

from __future__ import annotations

import posixpath
import re
import shutil
import zipfile
import zlib
from collections.abc import Iterator
from html.entities import html5
from typing import BinaryIO, Literal, NamedTuple
from urllib.parse import unquote

from lxml import etree

Layout = Literal["reflowable", "fixed", "kepub"]

XHTML_MEDIA_TYPE = "application/xhtml+xml"
EPUB_MIMETYPE = b"application/epub+zip"

_CONTAINER = "META-INF/container.xml"
_ENCRYPTION = "META-INF/encryption.xml"
_APPLE_OPTIONS = "META-INF/com.apple.ibooks.display-options.xml"
# Font obfuscation (IDPF and Adobe's older scheme) hides fonts, not text: such books convert fine.
_FONT_OBFUSCATION = frozenset({"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"})

# Elements whose text is not reading text, or must keep its exact layout of nodes (kepubify skips
# script, style, audio and video; svg and math are other vocabularies, so are all foreign elements).
_UNTOUCHED = frozenset({"script", "style", "audio", "video", "svg", "math", "object", "iframe", "canvas", "textarea"})
# Elements that start a new paragraph number: text before, inside and after one never shares it.
_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "div", "dl", "dt",
    "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li",
    "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "td", "tfoot", "th", "thead",
    "tr", "ul",
})  # fmt: skip

# A sentence ends at . ! ? : … or the Arabic question mark (plus closing quotes or brackets) followed
# by whitespace other than a no-break space ("Mr.\u00a0Smith" stays whole), or at a CJK full stop,
# which needs none. kepubify splits at the same marks, but also where no space follows ("e.g.").
_SENTENCE_END = re.compile(r"""[.!?:…؟]['"’”»)\]]*[^\S\u00a0\u2007\u202f]+|[。！？][’”」』）]*""")
_KOBO_SPAN = re.compile(rb"""\bclass\s*=\s*["'][^"']*\bkoboSpan\b|\bid\s*=\s*["']kobo\.\d+\.\d+["']""")
_XML_DECLARATION = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*(<\?xml\s[^>]*\?>)")
_DECLARED_ENCODING = re.compile(rb"""(encoding\s*=\s*)(["'])([^"']*)\2""")
# Comments and CDATA sections are matched only so that an entity-like string inside them is kept.
_ENTITY_OR_LITERAL = re.compile(rb"<!--.*?-->|<!\[CDATA\[.*?\]\]>|&([A-Za-z][A-Za-z0-9]*);", re.DOTALL)
_ENTITY_DECLARATION = re.compile(rb"<!ENTITY\s+([^\s%]+)")
_XML_ENTITIES = frozenset({b"amp", b"lt", b"gt", b"quot", b"apos"})


class KepubError(ValueError):
    """The EPUB cannot be converted; the message says why."""


class _Package(NamedTuple):
    """What the conversion needs from the OPF."""

    path: str
    data: bytes
    root: etree._Element
    spine: tuple[str, ...]  # zip names of the spine's XHTML documents, in reading order


def read_layout(source: BinaryIO) -> Layout:
    """Tell how a Kobo should get this EPUB.

    Args:
        source: the EPUB, a seekable binary file object; it is read, not closed.

    Returns:
        ``"fixed"`` for a pre-paginated book (EPUB 3 ``rendition:layout``, the older
        ``fixed-layout`` meta or Apple's display options), which Kobo renders as ``EPUB3FL``;
        ``"kepub"`` when a spine document already carries koboSpans; ``"reflowable"`` otherwise.

    Raises:
        KepubError: the file is not a zip, or has no readable container or OPF.
    """
    with _open_zip(source) as archive:
        package = _read_package(archive)
        if _is_fixed_layout(archive, package.root):
            return "fixed"
        for name in package.spine:
            if _has_kobo_spans(_read_entry(archive, name)):
                return "kepub"
    return "reflowable"


def convert_to_kepub(source: BinaryIO, target: BinaryIO) -> None:
    """Write the KEPUB of an EPUB.

    ``mimetype`` comes first and stored, every other entry follows deflated, in the original
    order and with unchanged bytes, except the spine's XHTML documents (spans and book divs added,
    text unchanged) and the OPF when its cover needs ``properties="cover-image"``. A spine
    document that already has koboSpans gets no new ones. Unlike kepubify, no style sheet is
    added, quotes are not made typographic, and no file is dropped.

    Args:
        source: the EPUB, a seekable binary file object; it is read, not closed.
        target: where the KEPUB's zip is written; it is not closed.

    Raises:
        KepubError: the EPUB is not a zip, lacks its container or OPF, is encrypted (DRM), or
            a spine document is not well-formed XML even after HTML entities are resolved.
            ``target`` then holds part of a zip and should be thrown away.
    """
    with _open_zip(source) as archive:
        _refuse_encrypted(archive)
        package = _read_package(archive)
        spine = set(package.spine)
        opf = _mark_cover_image(package)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
            out.writestr(zipfile.ZipInfo("mimetype", date_time=(1980, 1, 1, 0, 0, 0)), EPUB_MIMETYPE)
            for info in _entries(archive):
                if info.filename in spine:
                    out.writestr(_new_info(info), _convert_document(_read_entry(archive, info.filename), info.filename))
                elif info.filename == package.path and opf is not None:
                    out.writestr(_new_info(info), opf)
                else:
                    _copy(archive, out, info)


def _convert_document(data: bytes, name: str = "document") -> bytes:
    """Add koboSpans and the book divs to one XHTML document.

    Args:
        data: the document's bytes, in any encoding XML allows.
        name: the document's zip name, for error messages.

    Returns:
        The document as UTF-8, with its XML declaration (encoding set to UTF-8) and DOCTYPE;
        the original bytes when there is nothing to change.

    Raises:
        KepubError: the document is not well-formed XML, even after HTML named entities such as
            ``&nbsp;`` (undeclared in XML) are replaced by character references.
    """
    try:
        root = etree.XML(_replace_html_entities(data), _parser())
    except etree.XMLSyntaxError as exc:
        raise KepubError(f"{name} is not well-formed XHTML: {exc}") from exc
    namespace = _namespace(root)
    body = next((child for child in root if _local_name(child, namespace) == "body"), None)
    if body is None:
        return data
    has_spans = b"koboSpan" in data and _has_kobo_span_element(body)
    has_divs = _has_book_divs(body, namespace)
    if has_spans and has_divs:
        return data
    if not has_spans:
        _SpanWriter(root, namespace).write_children(body, is_pre=False)
    if not has_divs:
        _wrap_body(root, body, namespace)
    return _serialise(root, data)


# --- the archive ---


def _open_zip(source: BinaryIO) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise KepubError(f"not a zip file: {exc}") from exc


def _read_entry(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        return archive.read(name)
    except KeyError as exc:
        raise KepubError(f"the EPUB has no {name}") from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise KepubError(f"{name} cannot be unpacked: {exc}") from exc


def _entries(archive: zipfile.ZipFile) -> Iterator[zipfile.ZipInfo]:
    """Every entry once, in zip order, without ``mimetype`` (written first by us)."""
    seen = {"mimetype"}
    for info in archive.infolist():
        if info.filename not in seen:
            seen.add(info.filename)
            yield info


def _new_info(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
    copy = zipfile.ZipInfo(info.filename, date_time=info.date_time)
    copy.external_attr = info.external_attr
    copy.compress_type = zipfile.ZIP_STORED if info.is_dir() else zipfile.ZIP_DEFLATED
    return copy


def _copy(archive: zipfile.ZipFile, out: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Stream one entry across unchanged, so a large audio or image file is never held whole."""
    copy = _new_info(info)
    copy.file_size = info.file_size  # lets zipfile decide on ZIP64 before writing
    try:
        with archive.open(info) as reader, out.open(copy, "w") as writer:
            shutil.copyfileobj(reader, writer, 1 << 16)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise KepubError(f"{info.filename} cannot be unpacked: {exc}") from exc


def _refuse_encrypted(archive: zipfile.ZipFile) -> None:
    """DRM (Adobe ADEPT, Readium LCP...) encrypts the text: nothing to convert, and no right to."""
    if _ENCRYPTION not in archive.NameToInfo:
        return
    root = _parse_xml(_read_entry(archive, _ENCRYPTION), _ENCRYPTION)
    for method in root.iter("{*}EncryptionMethod"):
        algorithm = method.get("Algorithm", "")
        if algorithm not in _FONT_OBFUSCATION:
            raise KepubError(f"the EPUB is encrypted (DRM, {algorithm or 'no algorithm named'})")


# --- the package document ---


def _read_package(archive: zipfile.ZipFile) -> _Package:
    container = _parse_xml(_read_entry(archive, _CONTAINER), _CONTAINER)
    rootfiles = [
        rootfile.get("full-path", "")
        for rootfile in container.iter("{*}rootfile")
        if rootfile.get("media-type", "application/oebps-package+xml") == "application/oebps-package+xml"
    ]
    if not rootfiles or not rootfiles[0]:
        raise KepubError(f"{_CONTAINER} names no OPF package document")
    path = rootfiles[0]
    data = _read_entry(archive, path)
    root = _parse_xml(data, path)
    items = {
        item.get("id", ""): (item.get("href", ""), item.get("media-type", ""))
        for item in root.iterfind("{*}manifest/{*}item")
    }
    spine: list[str] = []
    for itemref in root.iterfind("{*}spine/{*}itemref"):
        href, media_type = items.get(itemref.get("idref", ""), ("", ""))
        name = _zip_name(archive, posixpath.dirname(path), href)
        if media_type == XHTML_MEDIA_TYPE and name is not None and name not in spine:
            spine.append(name)
    return _Package(path=path, data=data, root=root, spine=tuple(spine))


def _zip_name(archive: zipfile.ZipFile, folder: str, href: str) -> str | None:
    """The zip entry a manifest href points at: relative to the OPF, percent-encoded."""
    href = href.partition("#")[0]
    if not href:
        return None
    for candidate in (unquote(href), href):
        name = posixpath.normpath(posixpath.join(folder, candidate))
        if name in archive.NameToInfo:
            return name
    return None


def _is_fixed_layout(archive: zipfile.ZipFile, package: etree._Element) -> bool:
    for meta in package.iterfind("{*}metadata/{*}meta"):
        if meta.get("property") == "rendition:layout" and meta.get("refines") is None:
            if (meta.text or "").strip() == "pre-paginated":
                return True
        elif meta.get("name") == "fixed-layout" and meta.get("content", "").strip().lower() == "true":
            return True
    if _APPLE_OPTIONS in archive.NameToInfo:
        options = _parse_xml(_read_entry(archive, _APPLE_OPTIONS), _APPLE_OPTIONS)
        for option in options.iter("{*}option"):
            if option.get("name") == "fixed-layout" and (option.text or "").strip().lower() == "true":
                return True
    return False


def _mark_cover_image(package: _Package) -> bytes | None:
    """The OPF with its EPUB 2 cover image marked ``cover-image``, or None when nothing changes.

    Kobo looks for the cover by that EPUB 3 property only (kepubify, ``transformOPF2coverImage``).
    """
    cover = next((meta for meta in package.root.iterfind("{*}metadata/{*}meta") if meta.get("name") == "cover"), None)
    if cover is None or not cover.get("content"):
        return None
    for item in package.root.iterfind("{*}manifest/{*}item"):
        if item.get("id") == cover.get("content") and item.get("media-type", "").startswith("image/"):
            properties = (item.get("properties") or "").split()
            if "cover-image" in properties:
                return None
            item.set("properties", " ".join([*properties, "cover-image"]))
            return _serialise(package.root, package.data)
    return None


# --- one XHTML document ---


def _parser() -> etree.XMLParser:
    # No DTD, no network, no entity expansion: a book is untrusted input. A parser per call, since
    # lxml parsers are not meant to be shared between threads.
    return etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, strip_cdata=False)


def _parse_xml(data: bytes, name: str) -> etree._Element:
    try:
        return etree.XML(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise KepubError(f"{name} is not well-formed XML: {exc}") from exc


def _replace_html_entities(data: bytes) -> bytes:
    """Turn HTML named entities (``&nbsp;``, ``&mdash;``...) into character references.

    XHTML without its DTD declares none of them, and books use them anyway. The five XML entities,
    entities the document declares itself, and text in comments and CDATA sections stay as they are.
    An unknown name is left for the parser to reject.
    """
    if b"&" not in data:
        return data
    declared = set(_ENTITY_DECLARATION.findall(data)) if b"<!ENTITY" in data else set()

    def replace(match: re.Match[bytes]) -> bytes:
        name = match.group(1)
        if name is None or name in _XML_ENTITIES or name in declared:
            return match.group(0)
        text = html5.get(name.decode("ascii") + ";")
        if text is None:
            return match.group(0)
        return "".join(f"&#{ord(character)};" for character in text).encode("ascii")

    return _ENTITY_OR_LITERAL.sub(replace, data)


def _serialise(root: etree._Element, original: bytes) -> bytes:
    """The tree as UTF-8, after the original XML declaration (its encoding now UTF-8) if it had one."""
    document = etree.tostring(root.getroottree(), encoding="utf-8", xml_declaration=False)
    declaration = _XML_DECLARATION.match(original)
    if declaration is None:
        return document
    return _DECLARED_ENCODING.sub(_utf8_encoding, declaration.group(1)) + b"\n" + document


def _utf8_encoding(match: re.Match[bytes]) -> bytes:
    if match.group(3).lower() in {b"utf-8", b"utf8"}:
        return match.group(0)
    return match.group(1) + match.group(2) + b"utf-8" + match.group(2)


def _namespace(root: etree._Element) -> str | None:
    tag = root.tag
    return tag[1:].partition("}")[0] if tag.startswith("{") else None


def _local_name(element: etree._Element, namespace: str | None) -> str | None:
    """The element's name in the document's own namespace; None for comments, PIs and foreign elements."""
    tag: object = element.tag  # a function for comments, PIs and entity references
    if not isinstance(tag, str):
        return None
    if tag.startswith("{"):
        element_namespace, _, local = tag[1:].partition("}")
        return local if element_namespace == namespace else None
    return tag if namespace is None else None


def _has_kobo_spans(data: bytes) -> bool:
    return _KOBO_SPAN.search(data) is not None


def _has_kobo_span_element(body: etree._Element) -> bool:
    return any("koboSpan" in (element.get("class") or "").split() for element in body.iter())


def _has_book_divs(body: etree._Element, namespace: str | None) -> bool:
    outer = body[0] if len(body) == 1 else None
    return (
        outer is not None
        and outer.get("id") == "book-columns"
        and any(_local_name(inner, namespace) == "div" and inner.get("id") == "book-inner" for inner in outer)
    )


def _qualified(name: str, namespace: str | None) -> str:
    return f"{{{namespace}}}{name}" if namespace else name


def _wrap_body(root: etree._Element, body: etree._Element, namespace: str | None) -> None:
    """Move the body's content into ``div#book-columns > div#book-inner``, as Kobo's own books have it."""
    columns = root.makeelement(_qualified("div", namespace), {"id": "book-columns"})
    inner = root.makeelement(_qualified("div", namespace), {"id": "book-inner"})
    inner.text, body.text = body.text, None
    for child in list(body):
        inner.append(child)  # its tail moves with it
    columns.append(inner)
    body.append(columns)


def _split_sentences(text: str) -> tuple[str, list[str], str]:
    """Leading whitespace, the sentences (each with the whitespace after it), trailing whitespace."""
    core = text.strip()
    start = len(text) - len(text.lstrip())
    leading, trailing = text[:start], text[start + len(core) :]
    sentences: list[str] = []
    position = 0
    for match in _SENTENCE_END.finditer(core):
        sentences.append(core[position : match.end()])
        position = match.end()
    if position < len(core):
        sentences.append(core[position:])
    return leading, sentences, trailing


class _SpanWriter:
    """Numbers and inserts the koboSpans of one document, walking its body in reading order.

    ``kobo.P.S``: P counts paragraphs from 1 and moves on at every block element's start and end
    (and for every image); S counts the spans within a paragraph from 1. Only text that is not
    whitespace gets a span, so a paragraph number is used only when it has something in it.
    """

    def __init__(self, root: etree._Element, namespace: str | None) -> None:
        self.root = root
        self.namespace = namespace
        self.span_tag = _qualified("span", namespace)
        self.paragraph = 0
        self.segment = 0
        self.starts_paragraph = True

    def write_children(self, element: etree._Element, *, is_pre: bool) -> None:
        """Spans for the element's own text and everything inside it (not for its tail)."""
        children = list(element)
        text = element.text
        if text and not text.isspace():
            leading, spans = self._spans(text, is_pre=is_pre)
            element.text = leading or None
            for index, span in enumerate(spans):
                element.insert(index, span)
        for child in children:
            carrier = self._write_element(child, is_pre=is_pre)
            tail = carrier.tail
            if tail and not tail.isspace():
                leading, spans = self._spans(tail, is_pre=is_pre)
                carrier.tail = leading or None
                for span in spans:
                    carrier.addnext(span)
                    carrier = span

    def _write_element(self, element: etree._Element, *, is_pre: bool) -> etree._Element:
        """Spans inside one element; returns the node that now holds its tail."""
        name = _local_name(element, self.namespace)
        if name is None or name in _UNTOUCHED:
            return element
        if name == "img":
            return self._wrap_image(element)
        if "koboSpan" in (element.get("class") or "").split():
            return element
        if name in _BLOCKS:
            self.starts_paragraph = True
            self.write_children(element, is_pre=is_pre or name == "pre")
            self.starts_paragraph = True
        else:
            self.write_children(element, is_pre=is_pre)
        return element

    def _wrap_image(self, image: etree._Element) -> etree._Element:
        """An image is a paragraph of its own (kepubify); text after it continues that paragraph."""
        self.starts_paragraph = True
        span = self._span()
        span.tail, image.tail = image.tail, None
        image.addprevious(span)
        span.append(image)
        return span

    def _spans(self, text: str, *, is_pre: bool) -> tuple[str, list[etree._Element]]:
        """The whitespace that stays bare before the spans, and the spans; the last carries the rest."""
        if is_pre:  # preformatted text keeps its lines together: one span, no sentence split
            leading, sentences, trailing = "", [text], ""
        else:
            leading, sentences, trailing = _split_sentences(text)
        spans = []
        for sentence in sentences:
            span = self._span()
            span.text = sentence
            spans.append(span)
        spans[-1].tail = trailing or None
        return leading, spans

    def _span(self) -> etree._Element:
        if self.starts_paragraph:
            self.paragraph += 1
            self.segment = 0
            self.starts_paragraph = False
        self.segment += 1
        return self.root.makeelement(
            self.span_tag, {"class": "koboSpan", "id": f"kobo.{self.paragraph}.{self.segment}"}
        )
