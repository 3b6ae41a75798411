"""KOReader's document keys: how a device names the book it is reading (shared/specs/koreader-sync.md A.9).

A device identifies a document by one of two keys, chosen by the user's "Document matching method":

* **Binary** (the default): ``partial_md5`` of the file's bytes, KOReader's ``util.partialMD5``.
  It samples at most twelve 1 KiB windows, so it costs a few reads however large the file is, and
  it depends on the exact bytes the device downloaded.
* **Filename**: ``filename_key`` of the file's base name on the device. A download made through
  KOReader's OPDS browser is named, by default, ``koreader_file_name``; predicting it is best effort
  (spec A.9.2), so a filename key is a weak link to a book.

Pure: the caller opens the file; nothing here touches the file system.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import BinaryIO

SAMPLE_SIZE = 1024
"""Bytes read at each sample position."""

SAMPLE_OFFSETS: tuple[int, ...] = (0, *(1024 << (2 * step) for step in range(11)))
"""0, then 1 KiB, 4 KiB, 16 KiB ... 1 GiB (1024 * 4**k for k = 0..10). KOReader writes the loop as
``lshift(1024, 2*i)`` for i = -1..10; LuaJIT takes the shift by -2 modulo 32, which overflows the
32-bit value to 0: hence the sample at offset 0."""

MAX_BYTES_READ = SAMPLE_SIZE * len(SAMPLE_OFFSETS)
"""12 KiB: the most ``partial_md5`` reads from one file."""

NAME_LIMIT_BYTES = 240
"""``util.getSafeFilename`` keeps at most this many bytes of a name (without its extension), then
drops a UTF-8 sequence the cut left incomplete; VFAT allows 255 UCS-2 characters."""

UNKNOWN_AUTHOR = "Unknown"
"""The author our Atom feeds name for a book without one (``feeds.opds1``)."""

UNKNOWN_TITLE = "Unknown"
"""KOReader's own title for an entry whose ``<title>`` is empty (in an English user interface)."""

AUTHOR_SEPARATOR = " & "
"""How our Atom feeds join a book's authors into the one ``<author>`` KOReader keeps
(``opds_server.quirks``, ``joins_authors``)."""

# util.replaceAllInvalidChars: the Lua character class '[\\,%/,:,%*,%?,%",%<,%>,%|]' was meant as a
# list of \/:*?"<>| but, being a set, also holds the commas written between them: "Doe, Jane"
# becomes "Doe_ Jane" on the device.
_INVALID_CHARACTERS = re.compile(r'[\\/:*?"<>|,]')


def partial_md5(source: BinaryIO) -> str:
    """KOReader's partial MD5 of a file (``util.partialMD5``; spec A.9.1).

    Visits offset 0, then 1024 * 4**k for k = 0..10. At each it reads up to 1024 bytes and feeds
    exactly the bytes read into one MD5 digest; the first position at or past the end of the file
    ends the walk. A file under 1 KiB therefore hashes to its plain MD5, and bytes between the
    samples never change the key.

    Args:
        source: the file's bytes, open for reading and seekable. Its position is left wherever the
            last read ended.

    Returns:
        The key: 32 lowercase hexadecimal characters.
    """
    digest = hashlib.md5(usedforsecurity=False)  # KOReader's choice of hash, not a security measure
    for offset in SAMPLE_OFFSETS:
        source.seek(offset)
        sample = _read_up_to(source, SAMPLE_SIZE)
        if not sample:
            break
        digest.update(sample)
    return digest.hexdigest()


def _read_up_to(source: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes, short only at the end of the file, as Lua's ``file:read(n)`` (C
    ``fread``) returns them; a raw stream may return less per call."""
    sample = source.read(size)
    while sample and len(sample) < size:
        more = source.read(size - len(sample))
        if not more:
            break
        sample += more
    return sample


def filename_key(file_name: str) -> str:
    """The document key of the "Filename" matching method (kosync ``getFileNameDigest``; spec A.9.2).

    Args:
        file_name: the file's name on the device; a path is cut at its last ``/``, as KOReader's
            ``util.splitFilePathName`` does, and only the base name counts.

    Returns:
        The MD5 of the base name (extension included) as UTF-8: 32 lowercase hexadecimal characters.
    """
    base_name = file_name.rpartition("/")[2]
    return hashlib.md5(base_name.encode(errors="surrogatepass"), usedforsecurity=False).hexdigest()


def koreader_file_name(authors: Sequence[str], title: str, extension: str) -> str:
    """The name KOReader's OPDS browser gives a download by default: ``"<author> - <title>.<ext>"``.

    Best effort (spec A.9.2, B.3). KOReader builds the name from the Atom entry as parsed (entities
    decoded) in ``OPDSBrowser:getFileName``: the author, ``" - "``, the title, each of
    ``\\/:*?"<>|`` and ``,`` replaced by ``_``. ``getLocalDownloadPath`` appends ``"." ..
    filetype:lower()`` and passes it through ``util.getSafeFilename``, which cuts the name before the
    extension to 240 bytes (dropping a UTF-8 sequence left incomplete) and replaces the same
    characters again, which changes nothing the first pass left. Not predicted: a name the user
    edits in the download dialog, "Use server filenames" (the name then comes from our
    ``Content-Disposition``), a title that holds HTML-escaped tags (``&lt;b&gt;`` as text, which
    ``getSafeFilename`` turns into plain text), and KOReader builds or forks that change any of this.

    Args:
        authors: the book's authors in Calibre's order; our Atom feeds give KOReader one
            ``<author>`` naming them all, joined by ``" & "`` (``"Unknown"`` when there are none).
        title: the book's title, as in the entry's ``<title>``.
        extension: the file type KOReader picks: the extension ending the acquisition href (ours
            end in the format, ``/download/12/12.epub``), lower-cased.

    Returns:
        The file's base name on the device.
    """
    author = AUTHOR_SEPARATOR.join(authors) or UNKNOWN_AUTHOR
    name = _INVALID_CHARACTERS.sub("_", f"{author} - {title or UNKNOWN_TITLE}")
    name = name.encode(errors="surrogatepass")[:NAME_LIMIT_BYTES].decode(errors="ignore")
    return f"{name}.{_INVALID_CHARACTERS.sub('_', extension.lower())}"
