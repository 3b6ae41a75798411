"""KOReader's sync plugin against a running server, on SQLite and Postgres (spec part A, C.3).

The calls are the stock plugin's (``KOSyncClient.lua``): ``x-auth-user`` and ``x-auth-key`` =
md5(password), KOReader's ``Accept``, JSON bodies. Positions meet the Kobo's and the API's.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sync.koreader.keys import partial_md5
from tests.conftest import (
    LiveServer,
    copy_fixture_library,
    create_postgres_database,
    drop_postgres_database,
    start_server,
    stop_server,
)
from tests.server.api_client import PASSWORDS, add_user, login
from tests.server.kobo_device import Kobo, uuids_by_id

ACCEPT = "application/vnd.koreader.v1+json"
BOOK_1 = "Eleanor Whitby/The Lantern Keeper (1)/The Lantern Keeper - Eleanor Whitby.epub"
BOOK_2 = "Eleanor Whitby/A Bridge of Embers (2)/A Bridge of Embers - Eleanor Whitby.epub"


def key_of(password: str) -> str:
    return hashlib.md5(password.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class KosyncServer:
    server: LiveServer
    env: dict[str, str]

    def reader(self, name: str, password: str | None = None) -> httpx.Client:
        headers = {"Accept": ACCEPT, "x-auth-user": name, "x-auth-key": key_of(password or PASSWORDS[name])}
        return httpx.Client(base_url=f"{self.server.url}/kosync", headers=headers, timeout=30)

    def api(self, name: str) -> httpx.Client:
        with self.server.client() as http:
            token = login(http, name).access_token
        return self.server.client(headers={"Authorization": f"Bearer {token}"})

    def document(self, relative: str) -> str:
        with (self.server.library / relative).open("rb") as source:
            return partial_md5(source)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def kosync(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> Iterator[KosyncServer]:
    work = tmp_path_factory.mktemp(f"kosync-{request.param}")
    library = copy_fixture_library(work / "library")
    env = {"OPDS_DATA_DIR": str(work / "data"), "OPDS_KOSYNC_REGISTRATION": "true"}
    database = f"opds_kosync_{worker_id}_{os.getpid()}"
    if request.param == "postgresql":
        env["DATABASE_URL"] = create_postgres_database(database)
    server = start_server(library, work / "data", work / "server.log", env)
    try:
        for name in ("ada", "bob", "cyd"):
            add_user(env, name)
        yield KosyncServer(server=server, env=env)
    finally:
        stop_server(server)
        if request.param == "postgresql":
            drop_postgres_database(database)


def wait_for_keys(kosync: KosyncServer, document: str) -> None:
    """The key index is filled in the background at start-up: wait until it knows the book."""
    with kosync.reader("ada") as reader:
        for _ in range(100):
            pushed = reader.put("/syncs/progress", json=push(document, 0.01, device="probe"))
            assert pushed.status_code == 200
            with kosync.api("ada") as api:
                if any(p["device_kind"] == "koreader" for p in api.get("/api/progress/1").json()):
                    return
            time.sleep(0.1)
    raise AssertionError("the document key index never knew book 1")


def push(
    document: str,
    percentage: float,
    *,
    device: str = "Kobo Libra 2",
    device_id: str = "8F6A0C1E2B3D4F5A69788796A5B4C3D2",
    progress: str = "/body/DocFragment[3]/body/p[22]/text().0",
) -> dict[str, Any]:
    return {
        "document": document,
        "progress": progress,
        "percentage": percentage,
        "device": device,
        "device_id": device_id,
    }


def test_login_with_the_accounts_password_and_app_passwords_and_nothing_else(kosync: KosyncServer) -> None:
    with kosync.reader("ada") as reader:
        answer = reader.get("/users/auth")
        assert answer.status_code == 200
        assert answer.json() == {"authorized": "OK"}
        assert answer.headers["content-type"].startswith("application/json")
    with kosync.api("ada") as api:
        created = api.post("/api/app-passwords", json={"label": "KOReader"}).json()
    with kosync.reader("ada", created["password"]) as reader:
        assert reader.get("/users/auth").status_code == 200
    for name, password in (("ada", "wrong"), ("nobody", "x"), ("ada", PASSWORDS["bob"])):
        with kosync.reader(name, password) as reader:
            refused = reader.get("/users/auth")
            assert refused.status_code == 401
            assert refused.json() == {"code": 2001, "message": "Unauthorized"}
    with kosync.reader("ada") as reader:  # a server URL typed with a trailing slash (spec A.1)
        doubled = reader.get(f"{kosync.server.url}/kosync//users/auth")
        assert doubled.status_code == 200
        assert doubled.json() == {"authorized": "OK"}
    with httpx.Client(base_url=f"{kosync.server.url}/kosync") as bare:
        assert bare.get("/users/auth").json()["code"] == 2001  # no headers at all
        assert bare.get("/healthcheck").json() == {"state": "OK"}
        plain = bare.get("/users/auth", headers={"x-auth-user": "ada", "x-auth-key": PASSWORDS["ada"]})
        assert plain.status_code == 401  # the key is md5(password), never the password


def test_a_changed_password_changes_the_key_at_once(kosync: KosyncServer) -> None:
    with kosync.reader("cyd") as reader:
        assert reader.get("/users/auth").status_code == 200
    with kosync.api("cyd") as api:
        changed = api.post(
            "/api/me/password", json={"current_password": PASSWORDS["cyd"], "new_password": "cyd's new password"}
        )
        assert changed.status_code == 204, changed.text
    with kosync.reader("cyd") as reader:
        assert reader.get("/users/auth").status_code == 401
    with kosync.reader("cyd", "cyd's new password") as reader:
        assert reader.get("/users/auth").status_code == 200


def test_registration_through_the_plugin_and_its_refusals(kosync: KosyncServer) -> None:
    with httpx.Client(base_url=f"{kosync.server.url}/kosync", headers={"Accept": ACCEPT}) as http:
        created = http.post("/users/create", json={"username": "koreader-kim", "password": key_of("kim's pw")})
        assert created.status_code == 201
        assert created.json() == {"username": "koreader-kim"}
        again = http.post("/users/create", json={"username": "koreader-kim", "password": key_of("x")})
        assert again.status_code == 402
        assert again.json() == {"code": 2002, "message": "Username is already registered."}
        bad = http.post("/users/create", json={"username": "a:b", "password": "x"})
        assert bad.status_code == 403
        assert bad.json()["code"] == 2003
    with kosync.reader("koreader-kim", "kim's pw") as reader:
        assert reader.get("/users/auth").status_code == 200


def test_push_then_pull_echoes_the_record_with_integer_seconds(kosync: KosyncServer) -> None:
    document = "0123456789abcdef0123456789abcdef"  # not in the library: stored all the same
    with kosync.reader("ada") as reader:
        pushed = reader.put("/syncs/progress", json=push(document, 0.3187))
        assert pushed.status_code == 200
        body = pushed.json()
        assert body["document"] == document
        assert isinstance(body["timestamp"], int)
        assert body["timestamp"] < 10**11  # seconds, not milliseconds
        pulled = reader.get(f"/syncs/progress/{document}", headers={"Accept": "*/*"})
        assert pulled.status_code == 200
        assert pulled.json() == {
            "document": document,
            "percentage": 0.3187,
            "progress": "/body/DocFragment[3]/body/p[22]/text().0",
            "device": "Kobo Libra 2",
            "device_id": "8F6A0C1E2B3D4F5A69788796A5B4C3D2",
            "timestamp": body["timestamp"],
        }
        assert reader.get("/syncs/progress/ffffffffffffffffffffffffffffffff").json() == {}
    with kosync.reader("bob") as other:
        assert other.get(f"/syncs/progress/{document}").json() == {}  # one reader's positions only


def test_a_second_devices_newer_push_wins(kosync: KosyncServer) -> None:
    document = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"
    with kosync.reader("ada") as reader:
        reader.put("/syncs/progress", json=push(document, 0.2, device="Kobo Libra 2", device_id="A" * 32))
        reader.put("/syncs/progress", json=push(document, 0.1, device="PocketBook", device_id="B" * 32, progress="12"))
        pulled = reader.get(f"/syncs/progress/{document}").json()
    assert (pulled["device"], pulled["device_id"], pulled["percentage"], pulled["progress"]) == (
        "PocketBook",
        "B" * 32,
        0.1,
        "12",
    )


@pytest.mark.parametrize(
    ("body", "status", "code", "named"),
    [
        (b'{"progress": "p", "percentage": 0.5, "device": "d"}', 403, 2004, "document"),
        (b'{"document": "a:b", "progress": "p", "percentage": 0.5, "device": "d"}', 403, 2004, "document"),
        (b'{"document": "abc", "percentage": 0.5, "device": "d"}', 403, 2003, "progress"),
        (b'{"document": "abc", "progress": "p", "device": "d"}', 403, 2003, "percentage"),
        (b'{"document": "abc", "progress": "p", "percentage": 1.5, "device": "d"}', 403, 2003, "percentage"),
        (b'{"document": "abc", "progress": "p", "percentage": -0.1, "device": "d"}', 403, 2003, "percentage"),
        (b'{"document": "abc", "progress": "p", "percentage": "half", "device": "d"}', 403, 2003, "percentage"),
        (b'{"document": "abc", "progress": "", "percentage": 0.5, "device": "d"}', 403, 2003, "progress"),
        (b'{"document": "abc", "progress": "p", "percentage": 0.5}', 403, 2003, "device"),
        (b"{not json", 403, 2003, "malformed"),
        (b"[1, 2]", 403, 2003, "object"),
    ],
)
def test_bad_pushes_get_koreaders_error_naming_the_field_and_keep_stored_progress(
    kosync: KosyncServer, body: bytes, status: int, code: int, named: str
) -> None:
    document = "cccccccccccccccccccccccccccccccc"
    with kosync.reader("ada") as reader:
        assert reader.put("/syncs/progress", json=push(document, 0.42)).status_code == 200
        refused = reader.put("/syncs/progress", content=body, headers={"Content-Type": "application/json"})
        assert refused.status_code == status, refused.text
        assert refused.json()["code"] == code
        assert named in refused.json()["message"].lower()
        assert reader.get(f"/syncs/progress/{document}").json()["percentage"] == 0.42


def test_huge_bodies_and_bad_document_keys_are_refused(kosync: KosyncServer) -> None:
    with kosync.reader("ada") as reader:
        huge = reader.put("/syncs/progress", json=push("d" * 32, 0.5, progress="x" * 200_000))
        assert huge.status_code == 413
        assert huge.json()["code"] == 2003
    with kosync.reader("ada") as reader:  # the unread body ended that connection, as it may
        assert reader.get("/syncs/progress/a:b").json()["code"] == 2004
        assert reader.get("/syncs/progress/" + "e" * 300).status_code == 403


def test_koreader_progress_reaches_the_kobo_and_the_api_and_back(kosync: KosyncServer) -> None:
    document = kosync.document(BOOK_1)
    wait_for_keys(kosync, document)
    with kosync.reader("ada") as reader:
        assert reader.put("/syncs/progress", json=push(document, 0.6543)).status_code == 200
    with kosync.api("ada") as api:
        (koreader,) = [p for p in api.get("/api/progress/1").json() if p["device_kind"] == "koreader"]
        assert koreader["percentage"] == 65.43
        assert koreader["locator"] == "/body/DocFragment[3]/body/p[22]/text().0"
        device = api.post("/api/kobo/devices", json={"label": "Kobo"}).json()
    kobo = Kobo(kosync.server.url, device["api_endpoint"].rsplit("/", 1)[1])
    uuid = uuids_by_id(kosync.server.library)[1]
    (state,) = kobo.call("GET", f"/v1/library/{uuid}/state").json()
    bookmark = state["CurrentBookmark"]
    assert bookmark["ProgressPercent"] == 65.43
    assert bookmark["Location"]["Type"] == "KoboSpan"
    assert bookmark["Location"]["Source"].endswith(".xhtml") or bookmark["Location"]["Source"].endswith(".html")
    assert state["StatusInfo"]["Status"] == "Reading"

    # The Kobo reads on: KOReader is sent the Kobo's percentage at the start of the Kobo's chapter.
    kobo_state = {
        "EntitlementId": uuid,
        "LastModified": "2030-01-01T10:00:00.000Z",
        "CurrentBookmark": {
            "LastModified": "2030-01-01T10:00:00.000Z",
            "ProgressPercent": 80,
            "Location": {"Source": bookmark["Location"]["Source"], "Type": "KoboSpan", "Value": "kobo.9.1"},
        },
        "StatusInfo": {"LastModified": "2030-01-01T10:00:00.000Z", "Status": "Reading"},
    }
    assert kobo.call("PUT", f"/v1/library/{uuid}/state", json={"ReadingStates": [kobo_state]}).status_code == 200
    with kosync.reader("ada") as reader:
        pulled = reader.get(f"/syncs/progress/{document}").json()
    assert pulled["percentage"] == 0.8
    assert pulled["device"] == "Kobo"
    assert pulled["device_id"] == "SERVER"
    assert re.fullmatch(r"/body/DocFragment\[\d+\]\.0", pulled["progress"])
    assert pulled["progress"] == "/body/DocFragment[3].0"  # the chapter KOReader was in
    assert isinstance(pulled["timestamp"], int)

    # Finished on the API: finished everywhere.
    with kosync.api("ada") as api:
        assert (
            api.put("/api/progress/1", json={"percentage": 100, "finished": True, "device_kind": "web"}).status_code
            == 200
        )
        finished = api.get("/opds/v2/finished").text
    assert "/opds/v2/books/1" in finished
    with kosync.reader("ada") as reader:
        assert reader.get(f"/syncs/progress/{document}").json()["percentage"] == 1.0
    (state,) = kobo.call("GET", f"/v1/library/{uuid}/state").json()
    assert state["StatusInfo"]["Status"] == "Finished"


def test_a_document_we_cannot_match_is_linked_by_its_metadata(kosync: KosyncServer) -> None:
    document = "dddddddddddddddddddddddddddddddd"
    metadata = {"title": "A Bridge of Embers", "authors": "Eleanor Whitby", "filename": "whatever.epub"}
    with kosync.reader("ada") as reader:
        body = {**push(document, 0.25), "metadata": metadata}
        assert reader.put("/syncs/progress", json=body).status_code == 200
    with kosync.api("ada") as api:
        progress = api.get("/api/progress/2").json()
    assert [(p["device_kind"], p["percentage"]) for p in progress] == [("koreader", 25.0)]


def test_registration_is_limited_per_address(kosync: KosyncServer) -> None:
    answers = []
    with httpx.Client(base_url=f"{kosync.server.url}/kosync", headers={"Accept": ACCEPT}) as http:
        for number in range(8):
            answer = http.post("/users/create", json={"username": f"flood-{number}", "password": key_of("x")})
            answers.append(answer.status_code)
            if answer.status_code == 429:
                assert answer.json()["code"] == 2003
                assert "Too many registrations" in answer.json()["message"]
                break
    assert answers[-1] == 429, answers
    assert answers.count(201) <= 5
