"""Kobo sync over real HTTP against a running server on the fixture library, on SQLite and Postgres.

Each test plays a device (``tests.server.kobo_device``) through the calls of spec 12: a first
sync through several pages of 10, syncs after ``calibredb add`` and ``remove``, reading states
both ways, a second device, collections both ways, and the checklist of spec 16.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from lxml import etree
from PIL import Image

from tests.benchmark.library import run_calibre
from tests.conftest import (
    ROOT,
    LiveServer,
    copy_fixture_library,
    create_postgres_database,
    drop_postgres_database,
    start_server,
    stop_server,
)
from tests.server.api_client import add_user, login
from tests.server.kobo_device import Kobo, entitlement_ids, items_of, kobo_books, uuids_by_id

PAGE_SIZE = 10
STATE_BODY: dict[str, Any] = {
    "LastModified": "2026-08-17T17:56:53.254Z",
    "CurrentBookmark": {
        "LastModified": "2026-08-17T17:56:53.254Z",
        "ProgressPercent": 48,
        "ContentSourceProgressPercent": 40,
        "Location": {"Source": "OEBPS/chapter-026.xhtml", "Type": "KoboSpan", "Value": "kobo.67.3"},
    },
    "Statistics": {
        "LastModified": "2026-08-17T17:56:53.254Z",
        "SpentReadingMinutes": 286,
        "RemainingTimeMinutes": 9541,
    },
    "StatusInfo": {"LastModified": "2026-08-17T17:56:53.254Z", "Status": "Reading"},
}


@dataclass(frozen=True)
class KoboServer:
    server: LiveServer
    env: dict[str, str]
    backend: str

    def account(self, name: str) -> httpx.Client:
        with self.server.client() as http:
            token = login(http, name).access_token
        return self.server.client(headers={"Authorization": f"Bearer {token}"})

    def register(self, name: str, label: str = "Libra") -> tuple[int, Kobo]:
        with self.account(name) as api:
            response = api.post("/api/kobo/devices", json={"label": label})
        assert response.status_code == 201, response.text
        created = response.json()
        found = re.fullmatch(r"(.+)/kobo/([0-9a-f]{32})", created["api_endpoint"])
        assert found is not None, created
        return int(created["id"]), Kobo(self.server.url, found.group(2))

    def calibredb(self, *arguments: str) -> str:
        return run_calibre("calibredb", arguments[0], "--library-path", str(self.server.library), *arguments[1:])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def kobo_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> Iterator[KoboServer]:
    work = tmp_path_factory.mktemp(f"kobo-{request.param}")
    library = copy_fixture_library(work / "library")
    for path in (library, *library.rglob("*")):  # calibredb writes this copy
        path.chmod(path.stat().st_mode | 0o200)
    env = {"OPDS_DATA_DIR": str(work / "data"), "OPDS_KOBO_PAGE_SIZE": str(PAGE_SIZE)}
    database = f"opds_kobo_{worker_id}_{os.getpid()}"
    if request.param == "postgresql":
        env["DATABASE_URL"] = create_postgres_database(database)
    server = start_server(library, work / "data", work / "server.log", env)
    try:
        for name in ("ada", "bob"):
            add_user(env, name)
        yield KoboServer(server=server, env=env, backend=request.param)
    finally:
        stop_server(server)
        if request.param == "postgresql":
            drop_postgres_database(database)


def put_state(kobo: Kobo, uuid: str, **changes: Any) -> httpx.Response:
    state = {"EntitlementId": uuid, **STATE_BODY, **changes}
    return kobo.call("PUT", f"/v1/library/{uuid}/state", json={"ReadingStates": [state]})


def get_state(kobo: Kobo, uuid: str) -> dict[str, Any]:
    response = kobo.call("GET", f"/v1/library/{uuid}/state")
    assert response.status_code == 200, response.text
    (state,) = response.json()
    assert isinstance(state, dict)
    return state


def without_sizes(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for item in items:
        for download in item.get("NewEntitlement", {}).get("BookMetadata", {}).get("DownloadUrls", []):
            download.pop("Size")
    return items


# Devices and tokens


def test_cli_registers_a_device_and_prints_the_line_for_the_conf_file(kobo_server: KoboServer) -> None:
    env = {
        **os.environ,
        "OPDS_NO_BOOTSTRAP": "1",
        **kobo_server.env,
        "OPDS_BASE_URL": "https://books.example.org:8443/lib",
    }
    command = [sys.executable, "-m", "opds_server", "kobo", "add-device", "ada", "--label", "Clara"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    found = re.fullmatch(r"api_endpoint=https://books\.example\.org:8443/lib/kobo/([0-9a-f]{32})", line)
    assert found is not None, line
    device = Kobo(kobo_server.server.url, found.group(1))
    assert device.call("GET", "/v1/initialization").status_code == 200

    def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "opds_server", "kobo", *arguments]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)

    listed = cli("list", "ada")
    assert listed.returncode == 0, listed.stderr
    (row,) = [r.split("\t") for r in listed.stdout.splitlines() if "\tClara\t" in r]
    assert row[2:4] == ["active", "syncs library"]
    assert cli("revoke", "ada", row[0]).returncode == 0
    assert device.call("GET", "/v1/initialization").status_code == 401
    again = cli("revoke", "ada", row[0])
    assert again.returncode != 0
    assert "no active Kobo device" in again.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "opds_server", "kobo", "add-device", "nobody"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unknown.returncode != 0
    assert "nobody" in unknown.stderr


def test_unknown_malformed_and_revoked_tokens_get_the_same_401(kobo_server: KoboServer) -> None:
    device_id, kobo = kobo_server.register("ada")
    assert kobo.call("GET", "/v1/initialization").status_code == 200
    answers = []
    for token in ("0" * 32, "not-a-token", kobo.token.upper()):
        response = Kobo(kobo_server.server.url, token).call("GET", "/v1/library/sync")
        answers.append((response.status_code, response.json()["detail"]))
        assert token not in response.text  # a credential is never echoed (nor logged)
    with kobo_server.account("ada") as api:
        assert api.delete(f"/api/kobo/devices/{device_id}").status_code == 204
        listed = {d["id"]: d for d in api.get("/api/kobo/devices").json()}
    assert listed[device_id]["is_revoked"] is True
    for path in ("/v1/library/sync", "/v1/initialization", "/v1/unknown/store/call"):
        revoked = kobo.call("GET", path)  # at once: the credential epoch moved
        answers.append((revoked.status_code, revoked.json()["detail"]))
        assert "www-authenticate" not in revoked.headers
    assert {status for status, _ in answers} == {401}
    assert len({detail for _, detail in answers}) == 1  # unknown and revoked look the same


def test_devices_are_per_user_in_the_api(kobo_server: KoboServer) -> None:
    device_id, _ = kobo_server.register("ada")
    with kobo_server.account("bob") as bob:
        assert device_id not in {d["id"] for d in bob.get("/api/kobo/devices").json()}
        assert bob.delete(f"/api/kobo/devices/{device_id}").status_code == 404
        refused = bob.post("/api/kobo/devices", json={"label": ""})
        assert refused.status_code == 400


# Start-up calls (spec 5.2, 5.3, 5.11, 5.12, 12.1)


def test_initialization_rewrites_every_store_url_keeping_the_port(kobo_server: KoboServer) -> None:
    _, kobo = kobo_server.register("ada")
    port = kobo_server.server.url.rsplit(":", 1)[1]
    # A Kobo's Host header has no port (spec 4.4): the URLs must still carry it.
    response = kobo.call("GET", "/v1/initialization", headers={"Host": "127.0.0.1"})
    assert response.status_code == 200
    assert response.headers["x-kobo-apitoken"] == "e30="
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    resources = response.json()["Resources"]
    base = f"http://127.0.0.1:{port}/kobo/{kobo.token}"
    assert len(resources) > 130
    assert not [k for k, v in resources.items() if isinstance(v, str) and "storeapi.kobo.com" in v]
    assert resources["image_host"] == f"http://127.0.0.1:{port}"
    assert (
        resources["image_url_template"] == f"{base}/v1/books/{{ImageId}}/thumbnail/{{Width}}/{{Height}}/false/image.jpg"
    )
    assert resources["image_url_quality_template"] == (
        f"{base}/v1/books/{{ImageId}}/thumbnail/{{Width}}/{{Height}}/{{Quality}}/{{IsGreyscale}}/image.jpg"
    )
    assert resources["library_sync"] == f"{base}/v1/library/sync"
    assert resources["reading_state"] == f"{base}/v1/library/{{Ids}}/state"
    assert resources["tags"] == f"{base}/v1/library/tags"
    assert resources["oauth_host"] == f"{base}/oauth"
    assert resources["reading_services_host"] == f"http://127.0.0.1:{port}"
    assert resources["use_one_store"] == "True"


def test_every_call_around_a_sync_answers_2xx_locally(kobo_server: KoboServer) -> None:
    _, kobo = kobo_server.register("ada")
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "", {}),
        ("GET", "/v1/affiliate?PlatformID=00000000-0000-0000-0000-000000000373&SerialNumber=N0", {}),
        ("GET", "/v1/initialization", {}),
        (
            "POST",
            "/v1/auth/device",
            {
                "json": {
                    "AffiliateName": "Kobo",
                    "AppVersion": "4.38",
                    "ClientKey": "a2V5",
                    "DeviceId": "d",
                    "PlatformId": "p",
                    "UserKey": "uk",
                }
            },
        ),
        (
            "POST",
            "/v1/auth/refresh",
            {"json": {"AppVersion": "4.38", "ClientKey": "a2V5", "PlatformId": "p", "RefreshToken": "r"}},
        ),
        ("GET", "/oauth/.well-known/openid-configuration", {}),
        ("POST", "/oauth/token", {"data": {"grant_type": "refresh_token", "refresh_token": "x"}}),
        ("GET", "/v1/user/profile", {}),
        ("GET", "/v1/user/loyalty/benefits", {}),
        ("GET", "/v1/products/books/subscriptions", {}),
        ("GET", "/v1/deals", {}),
        ("GET", "/v1/analytics/gettests", {}),
        ("POST", "/v1/analytics/gettests", {"json": {}}),
        ("POST", "/v1/analytics/event", {"json": {"Events": []}}),
        ("GET", "/v1/assets?DiffRequests=x", {}),
        ("GET", "/v1/user/wishlist", {}),
        ("GET", "/v1/user/recommendations", {}),
        ("GET", "/v1/products/featured/", {}),
        ("GET", "/v1/products/0e6a7b4c-2f7c-4a59-9c1e-3f1e2d4c5b6a/nextread", {}),
        ("GET", "/v1/products/books/series/abc", {}),
        ("GET", "/v1/categories/abc/featured", {}),
        ("GET", "/v1/library/0e6a7b4c-2f7c-4a59-9c1e-3f1e2d4c5b6a/preview", {}),
        ("PATCH", "/v1/something/new", {"json": {}}),
        ("DELETE", "/v1/library/tags/unknown", {}),
        ("PUT", "/v1/library/tags/unknown", {"json": {"Name": "x"}}),
        ("POST", "/v1/library/tags/unknown/items", {"json": {"Items": []}}),
        ("POST", "/v1/library/tags/unknown/Items/delete", {"json": {"Items": []}}),
    ]
    for method, path, arguments in calls:
        response = kobo.call(method, path, **arguments)
        assert 200 <= response.status_code < 300, (method, path, response.status_code, response.text[:200])
        if response.content:
            response.json()  # JSON, never an HTML page
    auth = kobo.call("POST", "/v1/auth/device", json={"UserKey": "uk"}).json()
    assert auth["TokenType"] == "Bearer"
    assert auth["UserKey"] == "uk"
    assert auth["AccessToken"]
    tests = kobo.call("GET", "/v1/analytics/gettests").json()
    assert tests == {"Result": "Success", "TestKey": "5c0b9c8a-userkey", "Tests": {}}
    assert kobo.call("GET", "/v1/user/loyalty/benefits").json() == {"Benefits": {}}
    assert kobo.call("GET", "/v1/products/x/nextread").json() == []
    discovery = kobo.call("GET", "/oauth/.well-known/openid-configuration").json()
    assert discovery["token_endpoint"].endswith(f"/kobo/{kobo.token}/oauth/token")
    token = kobo.call("POST", "/oauth/token").json()
    assert token["token_type"] == "Bearer"
    assert token["access_token"] == token["AccessToken"]
    # Reading services at the site root, with only the bearer token (spec 5.12).
    with httpx.Client(
        base_url=kobo_server.server.url, headers={"Authorization": f"Bearer {auth['AccessToken']}"}
    ) as root:
        assert root.get("/api/v3/content/checkforchanges").json() == []
        assert root.get("/api/v3/content/abc/annotations").json() == {"data": [], "totalResults": 0}
        assert root.patch("/api/v3/content/abc/annotations", json={"updatedAnnotations": []}).status_code == 200
        assert root.get("/api/UserStorage/Metadata").json() == {}
        assert root.get("/api/internal/notebooks").json() == {"data": [], "totalResults": 0}


# Library sync (spec 5.4, 7, 16.2-16.4)


def test_first_sync_sends_every_kobo_book_once_in_pages_and_pages_replay_identically(kobo_server: KoboServer) -> None:
    _, kobo = kobo_server.register("bob")
    pages = kobo.sync()
    eligible = kobo_books(kobo_server.server.library)
    sent = entitlement_ids(pages)
    assert sorted(sent) == sorted(eligible)  # once each; book 17 (file missing) and PDFs never
    assert len(sent) == len(set(sent))
    sizes = [len(p.items) for p in pages]
    assert sizes[:-1] == [PAGE_SIZE] * (len(pages) - 1)
    assert 0 < sizes[-1] <= PAGE_SIZE
    assert [p.has_more for p in pages] == [True] * (len(pages) - 1) + [False]
    assert max(p.header_bytes for p in pages) < 1024
    assert max(len(p.token) for p in pages) < 200
    assert all("." not in p.token for p in pages)
    for item in items_of(pages, "NewEntitlement"):
        metadata = item["BookMetadata"]
        assert item["ReadingState"]["StatusInfo"]["Status"] == "ReadyToRead"
        assert item["ReadingState"]["CurrentBookmark"]["ProgressPercent"] == 0
        (download,) = metadata["DownloadUrls"]
        assert download["Format"] in {"KEPUB", "EPUB3", "EPUB3FL"}
        assert download["Url"].startswith(
            f"{kobo_server.server.url}/kobo/{kobo.token}/v1/books/{metadata['EntitlementId']}/file/"
        )
        assert download["Size"] > 0
        assert metadata["CoverImageId"].startswith(metadata["EntitlementId"] + "-")
        assert item["BookEntitlement"]["Id"] == metadata["EntitlementId"] == metadata["RevisionId"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", item["BookEntitlement"]["LastModified"])

    # A device that lost a response asks for the same page again: it gets the same page (only a
    # KEPUB finished in between changes, to its own size).
    second_token = pages[0].token
    again = kobo.sync_page(second_token)
    assert without_sizes(again.items) == without_sizes(pages[1].items)
    assert again.token == pages[1].token

    # Nothing changed: an empty page at once, no continue, a token.
    kobo.sync_token = pages[-1].token
    quiet = kobo.sync_page()
    assert quiet.items == []
    assert quiet.has_more is False


def test_an_empty_device_selection_syncs_an_empty_list(kobo_server: KoboServer) -> None:
    device_id, kobo = kobo_server.register("bob", "Empty")
    with kobo_server.account("bob") as api:
        chosen = api.put(f"/api/kobo/devices/{device_id}/sync", json={"sync": "shelves", "shelf_ids": []})
        assert chosen.status_code == 200, chosen.text
    pages = kobo.sync()
    assert len(pages) == 1
    assert pages[0].items == []
    assert pages[0].has_more is False


def test_calibredb_add_and_remove_reach_a_synced_device_once(kobo_server: KoboServer, tmp_path: Path) -> None:
    _, kobo = kobo_server.register("ada", "Incremental")
    kobo.sync()
    library = kobo_server.server.library
    epub = tmp_path / "new.epub"
    shutil.copyfile(library / "Ada Quill" / "The Painted Sail (32)" / "The Painted Sail - Ada Quill.epub", epub)
    added = re.search(r"Added book ids: (\d+)", kobo_server.calibredb("add", "--title", "Kobo Arrival", str(epub)))
    assert added is not None
    new_uuid = uuids_by_id(library)[int(added.group(1))]
    pages = kobo.sync()
    assert entitlement_ids(pages) == [new_uuid]
    assert items_of(pages, "ChangedEntitlement") == []

    kobo_server.calibredb("remove", "--permanent", added.group(1))
    pages = kobo.sync()
    removed = items_of(pages, "ChangedEntitlement")
    assert [r["BookEntitlement"]["Id"] for r in removed] == [new_uuid]
    assert removed[0]["BookEntitlement"]["IsRemoved"] is True
    assert entitlement_ids(pages) == []
    assert kobo.sync()[0].items == []  # sent once


def test_a_changed_book_is_sent_as_new_entitlement_metadata_and_state(kobo_server: KoboServer, tmp_path: Path) -> None:
    _, kobo = kobo_server.register("ada", "Changes")
    first = {m["EntitlementId"]: m for m in (i["BookMetadata"] for i in items_of(kobo.sync(), "NewEntitlement"))}
    uuid = uuids_by_id(kobo_server.server.library)[27]
    kobo_server.calibredb("set_metadata", "--field", "title:Letters from the Orchard, Revised", "27")
    pages = kobo.sync()
    assert entitlement_ids(pages) == [uuid]
    (changed,) = items_of(pages, "ChangedProductMetadata")
    assert changed["BookMetadata"]["Title"] == "Letters from the Orchard, Revised"
    assert [s["ReadingState"]["EntitlementId"] for s in items_of(pages, "ChangedReadingState")] == [uuid]

    # A new cover gets a new image id, so the device fetches it instead of keeping the old one.
    picture = tmp_path / "cover.jpg"
    Image.new("RGB", (300, 450), (200, 30, 30)).save(picture, "JPEG")
    kobo_server.calibredb("set_metadata", "--field", f"cover:{picture}", "27")
    (recovered,) = items_of(kobo.sync(), "ChangedProductMetadata")
    image = recovered["BookMetadata"]["CoverImageId"]
    assert image != first[uuid]["CoverImageId"]
    cover = kobo.call("GET", f"/v1/books/{image}/thumbnail/150/225/false/image.jpg")
    with Image.open(io.BytesIO(cover.content)) as served:
        pixel = served.convert("RGB").getpixel((75, 112))
    assert isinstance(pixel, tuple)
    assert pixel[0] > 150 > pixel[1]  # the new red cover


def test_a_book_the_device_deleted_is_not_sent_again_until_resync(kobo_server: KoboServer) -> None:
    device_id, kobo = kobo_server.register("ada", "Deleter")
    kobo.sync()
    uuid = uuids_by_id(kobo_server.server.library)[1]
    assert kobo.call("DELETE", f"/v1/library/{uuid}").status_code == 204
    pages = kobo.sync()
    assert entitlement_ids(pages) == []
    assert items_of(pages, "ChangedEntitlement") == []  # it dropped the book itself
    with kobo_server.account("ada") as api:
        assert api.post(f"/api/kobo/devices/{device_id}/resync").status_code == 204
    assert uuid in entitlement_ids(kobo.sync())


def test_two_overlapping_sessions_of_one_device_both_finish(kobo_server: KoboServer) -> None:
    _, kobo = kobo_server.register("bob", "Twin")
    first = kobo.sync_page()
    twin = Kobo(kobo.url, kobo.token, sync_token=first.token)
    rest = kobo.sync()
    twin_rest = twin.sync()
    assert [without_sizes(p.items) for p in rest] == [without_sizes(p.items) for p in twin_rest]


# Reading state (spec 5.6, 8, 16.5)


def test_reading_state_comes_back_exactly_as_the_device_sent_it(kobo_server: KoboServer) -> None:
    _, kobo = kobo_server.register("ada", "Reader")
    uuid = uuids_by_id(kobo_server.server.library)[2]
    response = put_state(kobo, uuid)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["RequestResult"] == "Success"
    (update,) = result["UpdateResults"]
    assert update["LastModified"] == update["PriorityTimestamp"] == "2026-08-17T17:56:53.254Z"
    assert update["CurrentBookmarkResult"] == {"Result": "Success"}
    state = get_state(kobo, uuid)
    assert state["PriorityTimestamp"] == state["LastModified"] == "2026-08-17T17:56:53.254Z"
    assert state["CurrentBookmark"]["ProgressPercent"] == 48
    assert '"ProgressPercent":48,' in kobo.call("GET", f"/v1/library/{uuid}/state").text  # 48, never 48.0
    assert state["CurrentBookmark"]["ContentSourceProgressPercent"] == 40
    assert state["CurrentBookmark"]["Location"] == STATE_BODY["CurrentBookmark"]["Location"]
    assert state["Statistics"]["SpentReadingMinutes"] == 286
    assert state["StatusInfo"]["Status"] == "Reading"

    zero = {**STATE_BODY["CurrentBookmark"], "ProgressPercent": 0, "LastModified": "2026-08-18T08:00:00.5Z"}
    assert put_state(kobo, uuid, CurrentBookmark=zero, LastModified="2026-08-18T08:00:00.5Z").status_code == 200
    state = get_state(kobo, uuid)
    assert state["CurrentBookmark"]["ProgressPercent"] == 0  # kept, not dropped as falsy
    assert state["PriorityTimestamp"] == "2026-08-18T08:00:00.500Z"
    assert state["Statistics"]["SpentReadingMinutes"] == 286  # parts not sent are kept

    with kobo_server.account("ada") as api:
        (progress,) = [p for p in api.get("/api/progress/2").json() if p["device_kind"] == "kobo"]
    assert progress["percentage"] == 0
    assert progress["finished"] is False


def test_finished_on_the_kobo_marks_the_book_read_everywhere(kobo_server: KoboServer) -> None:
    _, kobo = kobo_server.register("ada", "Finisher")
    uuid = uuids_by_id(kobo_server.server.library)[3]
    status = {"LastModified": "2026-08-19T10:00:00.000Z", "Status": "Finished"}
    assert put_state(kobo, uuid, StatusInfo=status, LastModified="2026-08-19T10:00:00.000Z").status_code == 200
    with kobo_server.account("ada") as api:
        (progress,) = [p for p in api.get("/api/progress/3").json() if p["device_kind"] == "kobo"]
        finished = api.get("/opds/v2/finished")
    assert progress["finished"] is True
    assert progress["percentage"] == 100
    assert finished.status_code == 200
    assert "/opds/v2/books/3" in finished.text


def test_progress_from_one_kobo_reaches_the_other_without_echo(kobo_server: KoboServer) -> None:
    _, first = kobo_server.register("bob", "First")
    _, second = kobo_server.register("bob", "Second")
    first.sync()
    second.sync()
    uuid = uuids_by_id(kobo_server.server.library)[5]
    assert put_state(first, uuid).status_code == 200
    changes = items_of(second.sync(), "ChangedReadingState")
    assert [c["ReadingState"]["EntitlementId"] for c in changes] == [uuid]
    assert changes[0]["ReadingState"]["PriorityTimestamp"] == "2026-08-17T17:56:53.254Z"
    assert changes[0]["ReadingState"]["CurrentBookmark"]["ProgressPercent"] == 48
    assert items_of(first.sync(), "ChangedReadingState") == []  # its own change is not echoed
    assert get_state(second, uuid)["CurrentBookmark"]["Location"]["Value"] == "kobo.67.3"


def test_progress_saved_through_the_api_reaches_the_kobo(kobo_server: KoboServer) -> None:
    _, kobo = kobo_server.register("bob", "Api follower")
    kobo.sync()
    uuid = uuids_by_id(kobo_server.server.library)[6]
    with kobo_server.account("bob") as api:
        saved = api.put("/api/progress/6", json={"percentage": 75, "device_kind": "web"})
        assert saved.status_code == 200, saved.text
    (change,) = items_of(kobo.sync(), "ChangedReadingState")
    state = change["ReadingState"]
    assert state["EntitlementId"] == uuid
    assert state["CurrentBookmark"]["ProgressPercent"] == 75
    assert state["StatusInfo"]["Status"] == "Reading"
    assert state["PriorityTimestamp"] > "2026-08-17"
    assert get_state(kobo, uuid)["CurrentBookmark"]["ProgressPercent"] == 75


# Collections (spec 5.8, 11)


def test_shelves_become_collections_and_collections_come_back_as_shelves(kobo_server: KoboServer) -> None:
    _, kobo = kobo_server.register("bob", "Collector")
    ids = uuids_by_id(kobo_server.server.library)
    with kobo_server.account("bob") as api:
        shelf = api.post("/api/shelves", json={"name": "To read"}).json()
        for book_id in (1, 2):
            assert api.put(f"/api/shelves/{shelf['id']}/books/{book_id}").status_code == 204
    pages = kobo.sync()
    (tag,) = [t["Tag"] for t in items_of(pages, "NewTag")]
    assert tag["Name"] == "To read"
    assert tag["Type"] == "UserTag"
    assert [i["RevisionId"] for i in tag["Items"]] == [ids[1], ids[2]]
    assert all(i["Type"] == "ProductRevisionTagItem" for i in tag["Items"])

    with kobo_server.account("bob") as api:
        assert api.patch(f"/api/shelves/{shelf['id']}", json={"name": "Up next"}).status_code == 200
    (changed,) = [t["Tag"] for t in items_of(kobo.sync(), "ChangedTag")]
    assert (changed["Id"], changed["Name"]) == (tag["Id"], "Up next")

    # Made on the device: a shelf of the reader, kept in step with the device's edits.
    created = kobo.call(
        "POST",
        "/v1/library/tags",
        json={"Name": "Holiday", "Items": [{"Type": "ProductRevisionTagItem", "RevisionId": ids[5]}]},
    )
    assert created.status_code == 201
    holiday = created.json()
    assert isinstance(holiday, str)
    add = {
        "Items": [
            {"Type": "ProductRevisionTagItem", "RevisionId": ids[6]},
            {"Type": "ProductRevisionTagItem", "RevisionId": "store-book"},
        ]
    }
    assert kobo.call("POST", f"/v1/library/tags/{holiday}/Items", json=add).status_code == 201
    remove = {"Items": [{"Type": "ProductRevisionTagItem", "RevisionId": ids[5]}]}
    assert kobo.call("POST", f"/v1/library/tags/{holiday}/items/delete", json=remove).status_code == 200
    assert kobo.call("PUT", f"/v1/library/tags/{holiday}", json={"Name": "Summer"}).status_code == 200
    with kobo_server.account("bob") as api:
        shelves = {s["name"]: s for s in api.get("/api/shelves").json()}
        assert set(shelves) == {"Up next", "Summer"}
        books = [b["book_id"] for b in api.get(f"/api/shelves/{shelves['Summer']['id']}").json()["books"]]
        assert books == [6]
    assert kobo.call("DELETE", f"/v1/library/tags/{holiday}").status_code == 200
    with kobo_server.account("bob") as api:
        assert {s["name"] for s in api.get("/api/shelves").json()} == {"Up next"}
        assert api.delete(f"/api/shelves/{shelf['id']}").status_code == 204
    deleted = [t["Tag"]["Id"] for t in items_of(kobo.sync(), "DeletedTag")]
    assert tag["Id"] in deleted


def test_a_device_that_syncs_only_chosen_shelves_gets_only_their_books(kobo_server: KoboServer) -> None:
    device_id, kobo = kobo_server.register("ada", "Shelf only")
    everything = entitlement_ids(kobo.sync())
    ids = uuids_by_id(kobo_server.server.library)
    with kobo_server.account("ada") as api:
        shelf = api.post("/api/shelves", json={"name": "Kobo picks"}).json()
        assert api.put(f"/api/shelves/{shelf['id']}/books/9").status_code == 204
        chosen = api.put(f"/api/kobo/devices/{device_id}/sync", json={"sync": "shelves", "shelf_ids": [shelf["id"]]})
        assert chosen.json()["sync"] == "shelves"
        assert chosen.json()["shelf_ids"] == [shelf["id"]]
    pages = kobo.sync()
    removed = {r["BookEntitlement"]["Id"] for r in items_of(pages, "ChangedEntitlement")}
    assert removed == set(everything) - {ids[9]}
    assert [t["Tag"]["Name"] for t in items_of(pages, "NewTag")] == ["Kobo picks"]
    with kobo_server.account("ada") as api:
        assert api.put(f"/api/shelves/{shelf['id']}/books/8").status_code == 204
    assert entitlement_ids(kobo.sync()) == [ids[8]]


# Files and covers (spec 5.9, 5.10)


def test_downloads_and_covers_named_in_the_metadata_are_served(kobo_server: KoboServer) -> None:
    _, kobo = kobo_server.register("bob", "Downloader")
    uuid = uuids_by_id(kobo_server.server.library)[1]
    (metadata,) = kobo.call("GET", f"/v1/library/{uuid}/metadata").json()
    (download,) = metadata["DownloadUrls"]
    with httpx.Client(timeout=30) as http:
        got = http.get(download["Url"])
        assert got.status_code == 200
        assert got.headers["content-type"] == "application/epub+zip"
        assert int(got.headers["content-length"]) == len(got.content)
        assert "set-cookie" not in got.headers
        if download["Format"] == "KEPUB":
            assert ".kepub.epub" in got.headers["content-disposition"]
        with zipfile.ZipFile(io.BytesIO(got.content)) as kepub:
            assert kepub.namelist()[0] == "mimetype"
            documents = [n for n in kepub.namelist() if n.endswith((".xhtml", ".html"))]
            spans = [etree.fromstring(kepub.read(n)).xpath("//*[@class='koboSpan']") for n in documents]
        assert any(spans)
        again = http.get(download["Url"], headers={"Range": "bytes=0-99"})
        assert again.status_code == 206
        assert again.content == got.content[:100]
        # The next sync announces the KEPUB's own size once it exists.
        (metadata,) = kobo.call("GET", f"/v1/library/{uuid}/metadata").json()
        assert metadata["DownloadUrls"][0]["Size"] == len(got.content)

    image = metadata["CoverImageId"]
    for path in (
        f"/v1/books/{image}/thumbnail/355/530/false/image.jpg",
        f"/v1/books/{image}/thumbnail/355/530/85/true/image.jpg",
    ):
        cover = kobo.call("GET", path)
        assert cover.status_code == 200
        assert cover.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(cover.content)) as picture:
            assert picture.width <= 355
            assert picture.height <= 530
            assert max(picture.width / 355, picture.height / 530) > 0.99
    no_cover = uuids_by_id(kobo_server.server.library)[4]  # drawn for it
    (drawn,) = kobo.call("GET", f"/v1/library/{no_cover}/metadata").json()
    assert kobo.call("GET", f"/v1/books/{drawn['CoverImageId']}/thumbnail/100/150/false/image.jpg").status_code == 200
    unknown = "0e6a7b4c-2f7c-4a59-9c1e-3f1e2d4c5b6a-1"
    assert kobo.call("GET", f"/v1/books/{unknown}/thumbnail/100/150/false/image.jpg").status_code == 404
    assert kobo.call("GET", "/v1/books/0e6a7b4c-2f7c-4a59-9c1e-3f1e2d4c5b6a/file/kepub").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/v1/books/..%2F..%2Fmetadata.db/file/epub",
        "/v1/books/{uuid}/file/..%2F..%2F..%2Fmetadata.db",
        "/v1/books/{uuid}/file/%2e%2e",
        "/v1/books/..%2Fmetadata.db/thumbnail/100/150/false/image.jpg",
        "/v1/books/{uuid}%2F..%2F..%2Fcover.jpg/thumbnail/100/150/85/false/image.jpg",
        "/v1/library/..%2F..%2Fmetadata.db/metadata",
        "/v1/library/..%2F..%2Fmetadata.db/state",
    ],
)
def test_path_traversal_through_kobo_routes_never_returns_file_bytes(kobo_server: KoboServer, path: str) -> None:
    """Kobo paths name books by UUID and never build a file path from the URL; what no route takes
    is answered as a store call (spec 5.13), with nothing in it."""
    _, kobo = kobo_server.register("bob", "Prober")
    sent = path.format(uuid=uuids_by_id(kobo_server.server.library)[1])
    response = kobo.call("GET", sent)
    assert response.request.url.raw_path.endswith(sent.encode())  # sent as written, not normalised
    assert not response.content.startswith(b"SQLite format 3")
    if response.status_code == 200:  # a path no route takes is a store call: the catch-all's empty answer
        assert response.json() == {}, (sent, response.text[:200])
    else:
        assert 400 <= response.status_code < 500, (sent, response.status_code)
        assert response.headers["content-type"].startswith("application/problem+json"), response.headers


# Bad input (the list; stored progress survives every one)


def test_bad_input_gets_a_4xx_naming_the_problem_and_keeps_stored_progress(kobo_server: KoboServer) -> None:
    _, kobo = kobo_server.register("bob", "Fuzzed")
    uuid = uuids_by_id(kobo_server.server.library)[7]
    assert put_state(kobo, uuid).status_code == 200
    path = f"/v1/library/{uuid}/state"
    cases: list[tuple[bytes, str]] = [
        (b"{not json", "not JSON"),
        (b'{"ReadingStates": []}', "ReadingStates"),
        (b'{"ReadingStates": [{"CurrentBookmark": {"ProgressPercent": 148}}]}', "ProgressPercent"),
        (b'{"ReadingStates": [{"CurrentBookmark": {"ProgressPercent": -1}}]}', "ProgressPercent"),
        (b'{"ReadingStates": [{"CurrentBookmark": {"ProgressPercent": "half"}}]}', "ProgressPercent"),
        (b'{"ReadingStates": [{"StatusInfo": {"Status": "Skimming"}}]}', "Status"),
        (b'{"ReadingStates": [{"LastModified": "yesterday"}]}', "LastModified"),
        (b'{"ReadingStates": [{"Statistics": {"SpentReadingMinutes": -5}}]}', "SpentReadingMinutes"),
        (
            msgspec.json.encode({"ReadingStates": [{"EntitlementId": uuids_by_id(kobo_server.server.library)[8]}]}),
            "EntitlementId",
        ),
    ]
    for body, named in cases:
        response = kobo.call("PUT", path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (body, response.text)
        assert named in response.json()["detail"], (body, response.json())
    assert kobo.call("GET", "/v1/library/not-a-uuid/state").status_code == 400
    forged = kobo.call("GET", "/v1/library/sync", headers={"x-kobo-synctoken": "eyJmcm9tIjoxLCJzaWciOiIwIn0="})
    assert forged.status_code == 400
    assert "sync token" in forged.json()["detail"]
    state = get_state(kobo, uuid)
    assert state["CurrentBookmark"]["ProgressPercent"] == 48
    assert state["PriorityTimestamp"] == "2026-08-17T17:56:53.254Z"
    # A store book's state (a UUID we do not have) is answered, not refused: the device would retry.
    store_book = "0e6a7b4c-2f7c-4a59-9c1e-3f1e2d4c5b6a"
    assert kobo.call("GET", f"/v1/library/{store_book}/state").json() == []
    ignored = put_state(kobo, store_book).json()
    assert ignored["UpdateResults"][0]["CurrentBookmarkResult"] == {"Result": "Ignored"}
    # Tokens we did not make mean a full sync, never an error (spec 7.2).
    for foreign in ("eyJ0eXAiOjF9.eyJJbnRlcm5hbFN5bmNUb2tlbiI6IngifQ", "garbage!!", "e30="):
        page = kobo.sync_page(foreign)
        assert len(page.items) == PAGE_SIZE
