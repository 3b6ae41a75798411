"""The ``x-kobo-synctoken`` header: ours round-trips and is signed; anyone else's never fails (spec 7.2)."""

from __future__ import annotations

import base64
import re

import msgspec
import pytest

from sync.kobo.token import MAX_STORE_TOKEN, PHASES, ForgedSyncTokenError, SyncToken, decode_token, encode_token

KEY = b"device-key-0123456789abcdef01234"
OTHER_KEY = b"device-key-fedcba9876543210fedcb"
STANDARD_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def store_token() -> str:
    """The Kobo store's two-part token (biblioverse/biblioteca#475)."""
    head = base64.b64encode(b'{"typ":1,"ver":null,"ptyp":"SyncToken"}').decode("ascii")
    body = base64.b64encode(b'{"InternalSyncToken":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"}').decode("ascii")
    return f"{head}.{body}"


def calibre_web_token(store: object) -> str:
    """calibre-web's ``SyncToken.py`` format."""
    payload = {
        "version": "1-1-0",
        "data": {
            "raw_kobo_store_token": store,
            "books_last_modified": 1755453413,
            "books_last_created": 1755453413,
            "archive_last_modified": 0,
            "reading_state_last_modified": 1755453413,
            "tags_last_modified": 0,
        },
    }
    return b64(msgspec.json.encode(payload))


def unsigned(token: SyncToken) -> SyncToken:
    return msgspec.structs.replace(token, sig="")


@pytest.mark.parametrize(
    "token",
    [
        SyncToken(),
        SyncToken(from_=12, to=13, phase="changed", after=100),
        SyncToken(store=store_token(), from_=None, to=4, phase="new", after=0),
        SyncToken(store="abc.def", from_=7, to=None),
        *(SyncToken(from_=1, to=2, phase=phase, after=250) for phase in PHASES),
    ],
)
def test_round_trip(token: SyncToken) -> None:
    header = encode_token(token, KEY)

    decoded = decode_token(header, KEY)

    assert unsigned(decoded) == token
    assert decoded.sig != ""
    assert encode_token(decoded, KEY) == header


def test_header_is_plain_standard_base64_of_compact_json() -> None:
    token = SyncToken(store="abc.def", from_=12, to=13, phase="progress", after=300)

    header = encode_token(token, KEY)

    assert STANDARD_BASE64.fullmatch(header), header
    assert "." not in header
    raw = base64.b64decode(header, validate=True)
    assert raw.startswith(b"{")
    assert b": " not in raw
    assert b", " not in raw
    fields = msgspec.json.decode(raw)
    assert fields["from"] == 12
    assert fields["to"] == 13
    assert fields["phase"] == "progress"
    assert fields["after"] == 300
    assert fields["store"] == "abc.def"
    assert isinstance(fields["sig"], str)
    assert fields["sig"]


def test_header_stays_short_without_a_store_token() -> None:
    token = SyncToken(from_=2**40, to=2**40 + 1, phase="changed", after=10**9)

    header = encode_token(token, KEY)

    assert len(header.encode("ascii")) < 300


def test_unpadded_header_is_accepted() -> None:
    token = SyncToken(from_=1, to=2, phase="new", after=3)
    headers = {encode_token(msgspec.structs.replace(token, after=after), KEY) for after in range(3, 6)}
    padded = [header for header in headers if header.endswith("=")]
    assert padded, "no test case with padding"

    for header in padded:
        assert unsigned(decode_token(header.rstrip("="), KEY)).from_ == 1


@pytest.mark.parametrize("header", [None, "", "   ", "\t\n"])
def test_no_header_is_a_fresh_token(header: str | None) -> None:
    assert decode_token(header, KEY) == SyncToken()


def test_store_token_is_kept_and_the_device_counts_as_never_synced() -> None:
    raw = store_token()

    token = decode_token(raw, KEY)

    assert token == SyncToken(store=raw)
    assert token.from_ is None
    assert token.to is None
    assert token.phase is None


def test_minimal_dotted_token_is_a_store_token() -> None:
    assert decode_token("xxx.yyy", KEY) == SyncToken(store="xxx.yyy")


def test_komga_token_is_a_store_token_not_an_error() -> None:
    header = "KOMGA." + b64(b'{"version":1,"rawKoboSyncToken":"","ongoingSyncPointId":"a"}').rstrip("=")

    token = decode_token(header, KEY)

    assert token.from_ is None
    assert token.to is None


def test_calibre_web_token_gives_up_its_store_token() -> None:
    token = decode_token(calibre_web_token("abc.def"), KEY)

    assert token == SyncToken(store="abc.def")


def test_calibre_web_token_without_a_store_token() -> None:
    assert decode_token(calibre_web_token(""), KEY) == SyncToken()


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "!!!!",
        "not base64 at all",
        "ü-not-ascii",
        "e30",  # {}
        "A",
        b64(b"\x00\xff\xfe binary"),
        b64(b"plain text, not json"),
        b64(b"[1, 2, 3]"),
        b64(b'"a string"'),
        b64(b"null"),
        b64(b'{"data": 5}'),
        b64(b'{"version": "1-1-0", "data": {"raw_kobo_store_token": null}}'),
        b64(b'{"sig": 5}'),
        b64(b'{"from": 1, "to": 2'),
        calibre_web_token(42),
    ],
)
def test_anything_unparsable_is_a_fresh_token(header: str) -> None:
    assert decode_token(header, KEY) == SyncToken()


def test_random_bytes_never_raise() -> None:
    for size in range(64):
        data = bytes((size * 37 + i * 101) % 256 for i in range(size))
        header = b64(data)

        token = decode_token(header, KEY)

        assert token.from_ is None
        assert token.to is None


def test_token_signed_with_another_key_is_forged() -> None:
    header = encode_token(SyncToken(from_=1, to=2, phase="new"), OTHER_KEY)

    with pytest.raises(ForgedSyncTokenError):
        decode_token(header, KEY)


@pytest.mark.parametrize(
    ("field", "value"),
    [("from", 99), ("to", 99), ("after", 0), ("phase", "tags"), ("store", "evil.token"), ("v", 2), ("from", None)],
)
def test_edited_token_without_a_new_signature_is_forged(field: str, value: object) -> None:
    header = encode_token(SyncToken(from_=1, to=2, phase="new", after=100), KEY)
    fields = msgspec.json.decode(base64.b64decode(header))
    assert fields.get(field) != value
    fields[field] = value
    edited = b64(msgspec.json.encode(fields))

    with pytest.raises(ForgedSyncTokenError):
        decode_token(edited, KEY)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"sig": ""}',
        b'{"sig": "0000000000", "from": 1}',
        b'{"sig": "abc", "phase": "nope"}',
        b'{"sig": "abc", "from": "one"}',
    ],
)
def test_our_format_with_a_bad_signature_or_body_is_forged(payload: bytes) -> None:
    with pytest.raises(ForgedSyncTokenError):
        decode_token(b64(payload), KEY)


def test_non_ascii_signature_is_forged_not_a_crash() -> None:
    header = b64('{"from": 1, "sig": "é"}'.encode())

    with pytest.raises(ForgedSyncTokenError):
        decode_token(header, KEY)


def test_huge_store_token_is_truncated() -> None:
    huge = "a." + "b" * (3 * MAX_STORE_TOKEN)

    token = decode_token(huge, KEY)

    assert token.store == huge[:MAX_STORE_TOKEN]
    assert len(token.store) == MAX_STORE_TOKEN


def test_huge_calibre_web_store_token_is_truncated() -> None:
    huge = "c." + "d" * (3 * MAX_STORE_TOKEN)

    token = decode_token(calibre_web_token(huge), KEY)

    assert token.store == huge[:MAX_STORE_TOKEN]


def test_truncated_store_token_still_round_trips_in_ours() -> None:
    kept = decode_token("a." + "b" * (3 * MAX_STORE_TOKEN), KEY)
    ours = msgspec.structs.replace(kept, from_=5, to=6, phase="tags", after=1)

    header = encode_token(ours, KEY)

    assert "." not in header
    assert unsigned(decode_token(header, KEY)) == ours


def test_header_uses_the_standard_alphabet() -> None:
    """``+`` and ``/``, never the URL-safe ``-`` and ``_``, whatever the JSON holds."""
    headers = [encode_token(SyncToken(store=f"\u00ff\u00fe>>>???{n}", from_=n), KEY) for n in range(20)]

    assert all(STANDARD_BASE64.fullmatch(header) for header in headers), headers
    assert any("+" in header or "/" in header for header in headers)
    for n, header in enumerate(headers):
        assert unsigned(decode_token(header, KEY)).store == f"\u00ff\u00fe>>>???{n}"
