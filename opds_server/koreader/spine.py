"""An EPUB's spine (reading order) with each item's size: how a chapter number in KOReader's
XPointer (``DocFragment[N]``) and a file name in a Kobo bookmark (``Location.Source``) name the
same place. Read from the zip's directory and the OPF only, kept per file version."""

from __future__ import annotations

import functools
import posixpath
import zipfile
from urllib.parse import unquote

import msgspec
from lxml import etree

from opds_server.storage.files import LibraryFiles, StorageError, StoredFile

_CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"
_OPF = "{http://www.idpf.org/2007/opf}"


class Spine(msgspec.Struct, frozen=True, kw_only=True):
    hrefs: tuple[str, ...]
    """Each spine item's path inside the zip (``OEBPS/chapter-026.xhtml``), in reading order."""
    sizes: tuple[int, ...]

    def chapter_of(self, source: str) -> int | None:
        """The 1-based spine index of a document path (a Kobo ``Location.Source``)."""
        wanted = unquote(source).lstrip("/")
        for index, href in enumerate(self.hrefs, 1):
            if href == wanted or href.endswith("/" + wanted) or wanted.endswith("/" + href):
                return index
        return None


def read_spine(files: LibraryFiles, stored: StoredFile) -> Spine | None:
    """The spine of an EPUB (or KEPUB) in the storage; ``None`` when it cannot be read."""
    return _spine(files, stored)


@functools.lru_cache(maxsize=256)
def _spine(files: LibraryFiles, stored: StoredFile) -> Spine | None:
    try:
        with files.open(stored) as handle, zipfile.ZipFile(handle) as epub:
            container = etree.fromstring(epub.read("META-INF/container.xml"))
            rootfile = container.find(f".//{_CONTAINER}rootfile")
            if rootfile is None:
                return None
            opf_path = str(rootfile.get("full-path", ""))
            opf = etree.fromstring(epub.read(opf_path))
            base = posixpath.dirname(opf_path)
            manifest = {
                item.get("id"): posixpath.normpath(posixpath.join(base, unquote(str(item.get("href", "")))))
                for item in opf.iter(f"{_OPF}item")
            }
            hrefs = [manifest[ref] for item in opf.iter(f"{_OPF}itemref") if (ref := item.get("idref")) in manifest]
            sizes = {info.filename: info.file_size for info in epub.infolist()}
    except (OSError, StorageError, KeyError, zipfile.BadZipFile, etree.XMLSyntaxError):
        return None
    return Spine(hrefs=tuple(hrefs), sizes=tuple(sizes.get(h, 0) for h in hrefs))
