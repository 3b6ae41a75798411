"""KOReader's document keys: the partial MD5 against spec A.9.1's vectors, file names as KOReader makes them.

Expected partial-MD5 keys are either the spec's literal vectors or the MD5 of the sampled windows,
cut out of the bytes here by slicing, never by the code under test. Titles are the fixture
library's tricky ones (``shared/fixtures/README.md``), written out literally.
"""

from __future__ import annotations

import hashlib
import io

import pytest

from sync.koreader.keys import (
    MAX_BYTES_READ,
    NAME_LIMIT_BYTES,
    SAMPLE_OFFSETS,
    filename_key,
    koreader_file_name,
    partial_md5,
)

KIB = 1024
MIB = 1024 * KIB


def counting(size: int) -> bytes:
    """Byte i is i mod 256 (the spec's synthetic inputs)."""
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


def key_of(data: bytes) -> str:
    return partial_md5(io.BytesIO(data))


def windows_md5(data: bytes, offsets: list[int]) -> str:
    """MD5 of the 1 KiB windows at these offsets, each cut short by the end of the data."""
    return hashlib.md5(b"".join(data[offset : offset + KIB] for offset in offsets)).hexdigest()


class Trickle(io.BytesIO):
    """A stream that hands out at most 100 bytes per read, as a raw stream or a pipe may."""

    def read(self, size: int | None = -1, /) -> bytes:
        return super().read(100 if size is None or size < 0 else min(size, 100))


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "d41d8cd98f00b204e9800998ecf8427e"),
        (1500, "e0a857a2aba6c24d8fb580f0b272077f"),
        (5000, "5a9755b76558380bf7d2ec689ac72f47"),
        (20000, "2bcd3c4de20c918e19fab5c36249c70d"),
        (100000, "cdf42aa40dd5d52b504e8a068136b905"),
    ],
)
def test_partial_md5_matches_the_spec_vectors(size: int, expected: str) -> None:
    assert key_of(counting(size)) == expected


def test_a_file_under_one_kib_hashes_to_its_plain_md5() -> None:
    data = counting(1000)
    assert key_of(data) == hashlib.md5(data).hexdigest()


def test_a_short_last_sample_feeds_only_the_bytes_read() -> None:
    # 5,000 bytes: the third sample holds the 904 bytes from 4,096 on; a padded buffer would differ.
    data = counting(5000)
    assert key_of(data) == windows_md5(data, [0, 1024, 4096])
    padded = data[:2048] + data[4096:] + bytes(KIB - 904)
    assert key_of(data) != hashlib.md5(padded).hexdigest()


def test_a_file_ending_exactly_at_a_sample_offset_stops_there() -> None:
    at_boundary = counting(4096)
    assert key_of(at_boundary) == windows_md5(at_boundary, [0, 1024])
    one_more = counting(4097)
    assert key_of(one_more) == windows_md5(one_more, [0, 1024, 4096])
    assert key_of(one_more) != key_of(at_boundary)


def test_a_two_mib_file_is_sampled_up_to_one_mib() -> None:
    data = bytes((index * 7 + index // 4096) % 256 for index in range(2 * MIB))
    expected_offsets = [0, KIB, 4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, MIB]
    assert [offset for offset in SAMPLE_OFFSETS if offset < len(data)] == expected_offsets
    assert key_of(data) == windows_md5(data, expected_offsets)


def test_bytes_outside_the_sampled_windows_do_not_change_the_key() -> None:
    original = bytearray(counting(2 * MIB))
    changed = bytearray(original)
    for offset in (2048, 4095, 5120, 300 * KIB, MIB + KIB, 2 * MIB - 1):  # each outside every window
        changed[offset] ^= 0xFF
    assert changed != original
    assert key_of(bytes(changed)) == key_of(bytes(original))
    changed[MIB + KIB - 1] ^= 0xFF  # the last byte of the window at 1 MiB
    assert key_of(bytes(changed)) != key_of(bytes(original))


def test_short_reads_are_completed_before_hashing() -> None:
    data = counting(100000)
    assert partial_md5(Trickle(data)) == key_of(data) == "cdf42aa40dd5d52b504e8a068136b905"


def test_at_most_twelve_kib_are_read() -> None:
    class Counting(io.BytesIO):
        total = 0

        def read(self, size: int | None = -1, /) -> bytes:
            chunk = super().read(size)
            self.total += len(chunk)
            return chunk

    source = Counting(bytes(2 * MIB))
    partial_md5(source)
    assert source.total == 7 * KIB <= MAX_BYTES_READ == 12 * KIB


def test_filename_key_is_the_md5_of_the_base_name() -> None:
    assert filename_key("leaves.epub") == "f086cbeb952dd7911a6c677d87db5dcf"
    assert filename_key("/mnt/onboard/Books/leaves.epub") == filename_key("leaves.epub")
    name = "夏目漱石 - 吾輩は猫である.epub"
    assert filename_key(name) == "160c94c2b92ed6d1c8c70ffe83ace481" == hashlib.md5(name.encode()).hexdigest()


@pytest.mark.parametrize(
    ("authors", "title", "extension", "expected"),
    [
        # Book 13: XML specials. The feed's entities are decoded; " < > become _, & and ' stay.
        (
            ["Flann O'Brien"],
            "Tom & Jerry <The \"Complete\"> 'Edition'",
            "epub",
            "Flann O'Brien - Tom & Jerry _The _Complete__ 'Edition'.epub",
        ),
        # Book 12: emoji stay as they are.
        (
            ["Pip Sparrow"],
            "Rocket 🚀 Stories for Small Readers ✨",
            "epub",
            "Pip Sparrow - Rocket 🚀 Stories for Small Readers ✨.epub",
        ),
        # Book 15: a / in the title.
        (["Claire Dubois"], "Two Tongues / Deux langues", "epub", "Claire Dubois - Two Tongues _ Deux langues.epub"),
        # Book 10: Japanese title and author.
        (["夏目漱石"], "吾輩は猫である", "epub", "夏目漱石 - 吾輩は猫である.epub"),
        # Book 6: three authors in one <author>, as our feeds give them to KOReader.
        (
            ["John Roe", "Jane Doe", "Ada Quill"],
            "Second Tide",
            "epub",
            "John Roe & Jane Doe & Ada Quill - Second Tide.epub",
        ),
        # Book 18's PDF: the extension is lower-cased, the dot in "Dr." kept.
        (["Dr. Lena Okafor"], "Principles of Navigation", "PDF", "Dr. Lena Okafor - Principles of Navigation.pdf"),
        # The Lua character class of replaceAllInvalidChars also holds commas.
        (["Doe, Jane"], "A: B? C* D|E\\F", "txt", "Doe_ Jane - A_ B_ C_ D_E_F.txt"),
        # No author: our feeds name "Unknown".
        ([], "Untitled Notes", "cbz", "Unknown - Untitled Notes.cbz"),
    ],
)
def test_file_name_is_author_dash_title_with_invalid_characters_replaced(
    authors: list[str], title: str, extension: str, expected: str
) -> None:
    assert koreader_file_name(authors, title, extension) == expected


def test_a_long_name_is_cut_to_240_bytes_before_the_extension() -> None:
    # Book 14: a 308-character title with commas.
    title = (
        "An Exceedingly Long and Meticulously Detailed Account of the Voyage of the Merchant Brig Persistence"
        " from the Port of Bristol to the Spice Islands and Back Again, Together with Observations on the"
        " Weather, the Stars, the Customs of Distant Harbours, and Sundry Other Matters of Interest to the"
        " Curious Reader"
    )
    assert len(title) == 308
    name = koreader_file_name(["Bartholomew Ashcombe-Fairweather"], title, "epub")
    stem = ("Bartholomew Ashcombe-Fairweather - " + title.replace(",", "_"))[:NAME_LIMIT_BYTES]
    assert name == stem + ".epub"
    assert len(name.encode()) == 240 + len(".epub")


def test_a_cut_through_a_character_drops_the_incomplete_character() -> None:
    # "夏目漱石 - a" is 16 bytes; 74 three-byte characters reach 238, the 75th would end at 241.
    name = koreader_file_name(["夏目漱石"], "a" + "猫" * 100, "epub")
    assert name == "夏目漱石 - a" + "猫" * 74 + ".epub"
    assert len(name.removesuffix(".epub").encode()) == 238
