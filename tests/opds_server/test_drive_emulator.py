"""The Drive emulator, driven through the real google-auth stack: service-account credentials and AuthorizedSession."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import AuthorizedSession, Request
from google.oauth2 import service_account

from tests.drive_emulator import FOLDER_MIME, DriveEmulator

SCOPES = ["https://www.googleapis.com/auth/drive.readonly"]
EPUB = bytes(range(256)) * 400  # 102 400 bytes: two 64 KiB chunks
FULL_FIELDS = "nextPageToken,files(id,name,parents,size,md5Checksum,modifiedTime,version,mimeType)"
RFC3339_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A small Calibre-like library: two authors, one book each, a database and a name that needs escaping."""
    root = tmp_path / "Calibre Library"
    first = root / "Author One" / "First Book (1)"
    first.mkdir(parents=True)
    (first / "book.epub").write_bytes(EPUB)
    (first / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 cover")
    second = root / "Author Two" / "Second Book (2)"
    second.mkdir(parents=True)
    (second / "book.pdf").write_bytes(b"%PDF-1.7 second")
    (root / "Author Two" / "O'Brien \\ notes.txt").write_bytes(b"quoted")
    (root / "metadata.db").write_bytes(b"SQLite format 3\x00")
    return root


@pytest.fixture
def emulator(root: Path) -> Iterator[DriveEmulator]:
    with DriveEmulator(root) as emulator:
        yield emulator


def load_credentials(credentials_file: Path) -> service_account.Credentials:
    """Service-account credentials the way the server loads them (google-auth's functions are unannotated)."""
    load = service_account.Credentials.from_service_account_file
    credentials: service_account.Credentials = load(str(credentials_file), scopes=SCOPES)  # type: ignore[no-untyped-call]
    return credentials


def authorized_session(credentials_file: Path) -> AuthorizedSession:
    return AuthorizedSession(load_credentials(credentials_file))  # type: ignore[no-untyped-call] # as above


@pytest.fixture
def session(emulator: DriveEmulator, tmp_path: Path) -> Iterator[AuthorizedSession]:
    with authorized_session(emulator.write_credentials(tmp_path / "service-account.json")) as session:
        yield session


def list_all(session: AuthorizedSession, emulator: DriveEmulator, **params: str) -> list[dict[str, object]]:
    """Every file of a listing, following nextPageToken."""
    files: list[dict[str, object]] = []
    token: str | None = None
    while True:
        page = {**params, **({"pageToken": token} if token else {})}
        answer = session.get(f"{emulator.api_url}/files", params=page)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        files.extend(body["files"])
        token = body.get("nextPageToken")
        if token is None:
            return files


def test_a_token_from_token_uri_authorizes_api_calls(emulator: DriveEmulator, session: AuthorizedSession) -> None:
    answer = session.get(f"{emulator.api_url}/files/{emulator.folder_id}")

    assert answer.status_code == 200
    assert answer.json() == {
        "kind": "drive#file",
        "id": emulator.folder_id,
        "name": "Calibre Library",
        "mimeType": FOLDER_MIME,
    }
    assert emulator.tokens_issued == 1
    assert [(entry.method, entry.path, entry.status) for entry in emulator.requests] == [
        ("POST", "/token", 200),
        ("GET", f"/drive/v3/files/{emulator.folder_id}", 200),
    ]


def test_a_call_without_a_token_gets_drive_401(emulator: DriveEmulator) -> None:
    answer = requests.get(f"{emulator.api_url}/files", timeout=5)

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    error = answer.json()["error"]
    assert (error["code"], error["status"], error["errors"][0]["reason"]) == (401, "UNAUTHENTICATED", "authError")


def test_ids_are_deterministic_33_character_drive_ids(root: Path, emulator: DriveEmulator) -> None:
    epub_id = emulator.file_id("Author One/First Book (1)/book.epub")

    assert len(epub_id) == 33
    assert re.fullmatch(r"[A-Za-z0-9_-]+", epub_id)
    assert emulator.file_id("") == emulator.folder_id
    with DriveEmulator(root) as again:
        assert again.file_id("Author One/First Book (1)/book.epub") == epub_id


def test_children_of_the_folder_are_listed_with_default_fields(
    emulator: DriveEmulator, session: AuthorizedSession
) -> None:
    files = list_all(session, emulator, q=f"'{emulator.folder_id}' in parents and trashed = false")

    assert sorted(str(file["name"]) for file in files) == ["Author One", "Author Two", "metadata.db"]
    assert all(set(file) == {"kind", "id", "name", "mimeType"} for file in files)


def test_paging_by_two_visits_every_item_once(emulator: DriveEmulator, session: AuthorizedSession) -> None:
    files = list_all(session, emulator, q="trashed=false", pageSize="2")

    ids = [str(file["id"]) for file in files]
    assert len(ids) == len(set(ids)) == 12  # root, 8 items under it, "Other stuff" and its file
    assert emulator.folder_id in ids
    assert emulator.file_id("Author Two/O'Brien \\ notes.txt") in ids
    assert len([entry for entry in emulator.requests if entry.path == "/drive/v3/files"]) == 6


def test_fields_select_what_is_sent(emulator: DriveEmulator, session: AuthorizedSession) -> None:
    answer = session.get(f"{emulator.api_url}/files", params={"q": "name = 'book.epub'", "fields": FULL_FIELDS})

    assert answer.status_code == 200
    [epub] = answer.json()["files"]
    assert set(answer.json()) == {"files"}  # no kind, no nextPageToken on the only page
    assert epub["id"] == emulator.file_id("Author One/First Book (1)/book.epub")
    assert epub["parents"] == [emulator.file_id("Author One/First Book (1)")]
    assert (epub["size"], epub["md5Checksum"]) == (str(len(EPUB)), hashlib.md5(EPUB).hexdigest())
    assert (epub["mimeType"], epub["version"]) == ("application/epub+zip", "1")
    assert RFC3339_MS.fullmatch(epub["modifiedTime"])
    assert set(epub) == {"id", "name", "parents", "size", "md5Checksum", "modifiedTime", "version", "mimeType"}

    folder = session.get(f"{emulator.api_url}/files/{emulator.folder_id}", params={"fields": "*"}).json()
    assert "size" not in folder
    assert "md5Checksum" not in folder
    assert folder["trashed"] is False

    wrong = session.get(f"{emulator.api_url}/files", params={"fields": "files(md5checksum)"})
    assert wrong.status_code == 400
    assert wrong.json()["error"]["errors"][0]["location"] == "fields"


def test_q_understands_escapes_precedence_and_rejects_the_rest(
    emulator: DriveEmulator, session: AuthorizedSession
) -> None:
    author_two = emulator.file_id("Author Two")
    escaped = r"name = 'O\'Brien \\ notes.txt'"
    query = f"mimeType != '{FOLDER_MIME}' and ('{author_two}' in parents or {escaped}) or name = 'metadata.db'"
    names = {str(file["name"]) for file in list_all(session, emulator, q=query)}
    assert names == {"O'Brien \\ notes.txt", "metadata.db"}

    folders = list_all(session, emulator, q=f"mimeType = '{FOLDER_MIME}' and '{emulator.folder_id}' in parents")
    assert {str(file["name"]) for file in folders} == {"Author One", "Author Two"}

    answer = session.get(f"{emulator.api_url}/files", params={"q": "fullText contains 'x'"})
    assert answer.status_code == 400
    assert answer.json()["error"]["errors"][0]["reason"] == "invalid"
    assert answer.json()["error"]["errors"][0]["location"] == "q"


def test_media_is_sent_whole_or_by_range(emulator: DriveEmulator, session: AuthorizedSession) -> None:
    url = f"{emulator.api_url}/files/{emulator.file_id('Author One/First Book (1)/book.epub')}"

    whole = session.get(url, params={"alt": "media"})
    assert whole.status_code == 200
    assert whole.content == EPUB
    assert (whole.headers["Content-Type"], whole.headers["Accept-Ranges"]) == ("application/epub+zip", "bytes")
    assert whole.headers["Content-Length"] == str(len(EPUB))

    part = session.get(url, params={"alt": "media"}, headers={"Range": "bytes=70000-70009"})
    assert part.status_code == 206
    assert part.content == EPUB[70000:70010]
    assert part.headers["Content-Range"] == f"bytes 70000-70009/{len(EPUB)}"
    assert emulator.requests[-1].range == "bytes=70000-70009"

    tail = session.get(url, params={"alt": "media"}, headers={"Range": "bytes=-5"})
    assert (tail.status_code, tail.content) == (206, EPUB[-5:])
    rest = session.get(url, params={"alt": "media"}, headers={"Range": "bytes=102395-"})
    assert (rest.status_code, rest.content) == (206, EPUB[102395:])

    beyond = session.get(url, params={"alt": "media"}, headers={"Range": f"bytes={len(EPUB)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(EPUB)}"

    folder = session.get(f"{emulator.api_url}/files/{emulator.folder_id}", params={"alt": "media"})
    assert folder.status_code == 403
    assert folder.json()["error"]["errors"][0]["reason"] == "fileNotDownloadable"


def test_an_unknown_id_is_drive_404(emulator: DriveEmulator, session: AuthorizedSession) -> None:
    answer = session.get(f"{emulator.api_url}/files/1NoSuchFile")

    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["message"] == "File not found: 1NoSuchFile."
    assert (error["errors"][0]["reason"], error["errors"][0]["location"]) == ("notFound", "fileId")


def test_changes_report_each_changed_file_once_in_its_latest_state(
    root: Path, emulator: DriveEmulator, session: AuthorizedSession
) -> None:
    start = session.get(f"{emulator.api_url}/changes/startPageToken").json()
    assert start["kind"] == "drive#startPageToken"
    pdf_id = emulator.file_id("Author Two/Second Book (2)/book.pdf")
    book_id = emulator.file_id("Author One/First Book (1)")

    new_id = emulator.add_file("Author Three/New Book (3)/book.epub", b"new book")
    emulator.replace_file("metadata.db", b"SQLite format 3\x00 v2")
    emulator.replace_file("metadata.db", b"SQLite format 3\x00 v3")
    emulator.move("Author One/First Book (1)", "Author One/First Book, Renamed (1)")
    emulator.delete("Author Two/Second Book (2)/book.pdf")

    answer = session.get(
        f"{emulator.api_url}/changes",
        params={"pageToken": start["startPageToken"], "fields": "*", "includeRemoved": "true", "spaces": "drive"},
    ).json()
    changes = {change["fileId"]: change for change in answer["changes"]}
    assert len(changes) == len(answer["changes"]) == 6  # two new folders, the new file, db, the moved folder, pdf

    new_file = changes[new_id]["file"]
    assert new_file["parents"] == [emulator.file_id("Author Three/New Book (3)")]
    assert new_file["md5Checksum"] == hashlib.md5(b"new book").hexdigest()
    database = changes[emulator.file_id("metadata.db")]["file"]
    assert (database["version"], database["size"]) == ("3", str(len(b"SQLite format 3\x00 v3")))
    assert changes[book_id]["file"]["name"] == "First Book, Renamed (1)"
    assert emulator.file_id("Author One/First Book, Renamed (1)/book.epub")  # the contents moved along
    assert changes[pdf_id]["removed"] is True
    assert "file" not in changes[pdf_id]
    assert (root / "Author Two" / "Second Book (2)" / "book.pdf").read_bytes() == b"%PDF-1.7 second"
    assert (root / "metadata.db").read_bytes() == b"SQLite format 3\x00"

    media = session.get(f"{emulator.api_url}/files/{emulator.file_id('metadata.db')}", params={"alt": "media"})
    assert media.content == b"SQLite format 3\x00 v3"
    gone = session.get(f"{emulator.api_url}/files/{pdf_id}")
    assert gone.status_code == 404

    after = session.get(f"{emulator.api_url}/changes", params={"pageToken": answer["newStartPageToken"]}).json()
    assert after["changes"] == []
    assert after["newStartPageToken"] == answer["newStartPageToken"]


def test_changes_page_without_losing_any(emulator: DriveEmulator, session: AuthorizedSession) -> None:
    token = session.get(f"{emulator.api_url}/changes/startPageToken").json()["startPageToken"]
    added = {emulator.add_file(f"Inbox/{number}.epub", b"x") for number in range(5)}
    seen: list[str] = []
    while True:
        page = session.get(f"{emulator.api_url}/changes", params={"pageToken": token, "pageSize": "2"}).json()
        seen.extend(change["fileId"] for change in page["changes"])
        if "newStartPageToken" in page:
            break
        token = page["nextPageToken"]

    assert len(seen) == len(set(seen)) == 6
    assert set(seen) == added | {emulator.file_id("Inbox")}


def test_expired_tokens_are_refreshed_by_google_auth_on_401(
    emulator: DriveEmulator, session: AuthorizedSession
) -> None:
    url = f"{emulator.api_url}/files/{emulator.folder_id}"
    assert session.get(url).status_code == 200

    emulator.expire_tokens()
    answer = session.get(url)

    assert answer.status_code == 200
    assert emulator.tokens_issued == 2
    assert [entry.status for entry in emulator.requests if entry.path == f"/drive/v3/files/{emulator.folder_id}"] == [
        200,
        401,
        200,
    ]


def test_a_rate_limited_request_succeeds_when_retried(emulator: DriveEmulator, session: AuthorizedSession) -> None:
    emulator.fail_next(1, 429)
    url = f"{emulator.api_url}/files"

    limited = session.get(url)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert limited.json()["error"]["errors"][0]["reason"] == "rateLimitExceeded"
    assert session.get(url).status_code == 200


def test_a_failing_file_fails_until_cleared(emulator: DriveEmulator, session: AuthorizedSession) -> None:
    epub_id = emulator.file_id("Author One/First Book (1)/book.epub")
    emulator.fail_file(epub_id, 403)
    url = f"{emulator.api_url}/files/{epub_id}"

    quota = session.get(url, params={"alt": "media"})
    assert quota.status_code == 403
    assert quota.json()["error"]["errors"][0]["reason"] == "downloadQuotaExceeded"
    assert session.get(url).status_code == 403
    assert session.get(f"{emulator.api_url}/files/{emulator.folder_id}").status_code == 200

    emulator.clear_faults()
    assert session.get(url, params={"alt": "media"}).content == EPUB


def test_stalls_trip_the_client_read_timeout(emulator: DriveEmulator, session: AuthorizedSession) -> None:
    url = f"{emulator.api_url}/files/{emulator.file_id('Author One/First Book (1)/book.epub')}"
    session.get(f"{emulator.api_url}/files")  # the token first: stalls apply to the API only

    emulator.stall_next(1, 5.0, media_only=True)
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(url, params={"alt": "media"}, timeout=(2, 0.2))

    emulator.stall_next(1, 5.0, media_only=True, after_bytes=70000)
    with session.get(url, params={"alt": "media"}, timeout=(2, 0.2), stream=True) as answer:
        assert answer.status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            answer.content  # noqa: B018 - reading the body is the point

    assert session.get(url, params={"alt": "media"}, timeout=(2, 2)).content == EPUB


def test_twenty_clients_download_at_once(emulator: DriveEmulator, session: AuthorizedSession) -> None:
    large = bytes(range(256)) * 8192  # 2 MiB
    large_id = emulator.add_file("Big/large.cbz", large)
    session.get(f"{emulator.api_url}/files")
    authorization = {"Authorization": f"Bearer {session.credentials.token}"}

    def download(_: int) -> bytes:
        with requests.Session() as client:
            answer = client.get(f"{emulator.api_url}/files/{large_id}?alt=media", headers=authorization, timeout=10)
            return answer.content

    with ThreadPoolExecutor(max_workers=20) as pool:
        bodies = list(pool.map(download, range(20)))

    assert all(body == large for body in bodies)


def test_an_assertion_signed_with_another_key_is_refused(emulator: DriveEmulator, tmp_path: Path) -> None:
    info = json.loads(emulator.write_credentials(tmp_path / "real.json").read_text())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    info["private_key"] = other_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(info))
    credentials = load_credentials(forged)

    with requests.Session() as transport, pytest.raises(RefreshError, match="invalid_grant"):
        credentials.refresh(Request(transport))  # type: ignore[no-untyped-call] # google-auth is unannotated

    assert [(entry.path, entry.status) for entry in emulator.requests] == [("/token", 400)]
    assert emulator.tokens_issued == 0
    garbage = requests.post(
        emulator.token_uri,
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "not.a.jwt"},
        timeout=5,
    )
    assert garbage.status_code == 400
    assert garbage.json()["error"] == "invalid_grant"
