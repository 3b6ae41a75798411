"""Media types of Calibre's formats, and the identifiers a catalogue may publish."""

from __future__ import annotations

from typing import Final

FORMAT_TYPES: Final = {
    "EPUB": "application/epub+zip",
    "KEPUB": "application/kepub+zip",
    "PDF": "application/pdf",
    "CBZ": "application/vnd.comicbook+zip",
    "CBR": "application/vnd.comicbook-rar",
    "CB7": "application/x-cb7",
    "AZW3": "application/vnd.amazon.mobi8-ebook",
    "AZW": "application/vnd.amazon.ebook",
    "MOBI": "application/x-mobipocket-ebook",
    "FB2": "application/x-fictionbook+xml",
    "DJVU": "image/vnd.djvu",
    "DOCX": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "RTF": "application/rtf",
    "TXT": "text/plain",
    "HTMLZ": "application/zip",
    "ZIP": "application/zip",
    "ODT": "application/vnd.oasis.opendocument.text",
}
OCTET_STREAM: Final = "application/octet-stream"


def media_type(book_format: str) -> str:
    """The media type a format is served and advertised with."""
    return FORMAT_TYPES.get(book_format.upper(), OCTET_STREAM)


def _isbn_digits(value: str) -> str:
    return "".join(c for c in value.upper() if c.isdigit() or c == "X")


def valid_isbn(value: str) -> str | None:
    """The ISBN's digits when its check digit is right (ISBN-10 or ISBN-13); ``None`` otherwise."""
    digits = _isbn_digits(value)
    if len(digits) == 13 and digits.isdigit():
        total = sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(digits))
        return digits if total % 10 == 0 else None
    if len(digits) == 10 and digits[:9].isdigit():
        values = [10 if d == "X" else int(d) for d in digits]
        if "X" in digits[:9]:
            return None
        return digits if sum((10 - i) * v for i, v in enumerate(values)) % 11 == 0 else None
    return None


def identifier_uris(identifiers: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """Calibre's identifiers that have a URI form: ISBN (checked), ISSN and DOI."""
    uris = []
    for kind, value in identifiers:
        if kind == "isbn" and (isbn := valid_isbn(value)):
            uris.append(f"urn:isbn:{isbn}")
        elif kind == "issn" and value.strip():
            uris.append(f"urn:issn:{value.strip()}")
        elif kind == "doi" and value.strip():
            uris.append(f"https://doi.org/{value.strip()}")
    return tuple(uris)
