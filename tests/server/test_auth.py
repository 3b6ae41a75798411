"""Logging in over real HTTP: KOReader's Basic flow, Thorium's authentication-document flow, app
passwords, what stays public, rate limits, and two instances on one Postgres and one Redis agreeing
at once when a password changes or an app password is revoked."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import opds_check
import pytest

from tests.conftest import (
    REDIS_TEST_URL,
    ROOT,
    LiveServer,
    copy_fixture_library,
    create_postgres_database,
    drop_postgres_database,
    start_server,
    stop_server,
)

KOREADER = {"User-Agent": "KOReader/2024.11 (https://koreader.rocks/; Linux; aarch64)", "Accept-Encoding": "identity"}
AUTH_TYPE = "application/opds-authentication+json"


@dataclass(frozen=True)
class Site:
    servers: tuple[LiveServer, ...]
    env: dict[str, str]

    def cli(self, *arguments: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "opds_server", *arguments],
            cwd=ROOT,
            env={**os.environ, "OPDS_NO_BOOTSTRAP": "1", **self.env},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def add_user(self, name: str, password: str) -> None:
        result = self.cli("users", "add", name, "--password-stdin", stdin=password + "\n")
        assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One server (SQLite, in-process cache) with users ada and bob."""
    work = tmp_path_factory.mktemp("auth")
    env = {"OPDS_DATA_DIR": str(work / "data")}
    made = Site(servers=(), env=env)
    made.add_user("ada", "correct horse")
    made.add_user("bob", "bobs password")
    server = start_server(copy_fixture_library(work / "library"), work / "data", work / "server.log", env)
    yield Site(servers=(server,), env=env)
    stop_server(server)


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Site]:
    """Two instances with separate data dirs sharing one Postgres, one Redis and one secret."""
    work = tmp_path_factory.mktemp("twins")
    name = f"opds_twins_{worker_id}_{os.getpid()}"
    env = {
        "DATABASE_URL": create_postgres_database(name),
        "REDIS_URL": REDIS_TEST_URL,
        "OPDS_REDIS_PREFIX": f"opds-test-{secrets.token_hex(6)}:",  # other runs' counters stay apart
        "OPDS_SECRET_KEY": secrets.token_urlsafe(40),
        "OPDS_DATA_DIR": str(work / "cli-data"),
        "OPDS_BASE_URL": "https://books.example.org",  # one public address, as behind a load balancer
    }
    made = Site(servers=(), env=env)
    made.add_user("ada", "correct horse")
    library = copy_fixture_library(work / "library")
    servers = tuple(
        start_server(
            library, work / f"data{n}", work / f"server{n}.log", {**env, "OPDS_DATA_DIR": str(work / f"data{n}")}
        )
        for n in (1, 2)
    )
    yield Site(servers=servers, env=env)
    for server in servers:
        stop_server(server)
    drop_postgres_database(name)


def get(server: LiveServer, path: str, auth: tuple[str, str] | None = None, **headers: str) -> httpx.Response:
    return httpx.get(server.url + path, auth=auth, headers=headers, timeout=30)


# What needs a login


@pytest.mark.parametrize(
    "path", ["/opds", "/opds/v2", "/opds/books", "/opds/books/1", "/download/1/1.epub", "/pse/21/0"]
)
def test_feeds_and_books_need_a_login(site: Site, path: str) -> None:
    response = get(site.servers[0], path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Basic realm="Calibre Library"')


@pytest.mark.parametrize("path", ["/covers/1", "/covers/1/thumbnail", "/opds/opensearch.xml", "/opds/auth", "/health"])
def test_covers_and_discovery_documents_stay_public(site: Site, path: str) -> None:
    assert get(site.servers[0], path).status_code == 200


def test_a_401_on_a_feed_carries_the_authentication_document(site: Site) -> None:
    response = get(site.servers[0], "/opds")
    assert response.headers["content-type"] == AUTH_TYPE
    document = msgspec.json.decode(response.content)
    assert document["authentication"] == [
        {"type": "http://opds-spec.org/auth/basic", "labels": {"login": "User name", "password": "Password"}}
    ]
    assert document["id"] == site.servers[0].url + "/opds/auth"


@pytest.mark.parametrize(
    "authorization",
    ["Basic", "Basic %%%", "Basic " + "QQ==" * 3000, "Bearer nope", "Negotiate abc", "Basic YWRhOndyb25n"],
)
def test_bad_authorization_headers_are_401_never_500(site: Site, authorization: str) -> None:
    response = get(site.servers[0], "/opds", Authorization=authorization)
    assert response.status_code == 401
    assert b"Traceback" not in response.content


# Clients


def test_koreader_basic_flow_head_then_get(site: Site) -> None:
    server = site.servers[0]
    for path in ("/opds", "/opds/books?sort=new", "/download/1/1.epub"):
        head = httpx.head(server.url + path, auth=("ada", "correct horse"), headers=KOREADER)
        got = get(server, path, ("ada", "correct horse"), **KOREADER)
        assert (head.status_code, got.status_code) == (200, 200), path
        assert head.headers["content-length"] == got.headers["content-length"]
        assert "content-encoding" not in got.headers


def test_thorium_flow_reads_the_document_then_logs_in(site: Site) -> None:
    server = site.servers[0]
    challenge = get(server, "/opds/v2")
    assert challenge.status_code == 401
    assert msgspec.json.decode(challenge.content)["authentication"][0]["type"] == "http://opds-spec.org/auth/basic"
    assert get(server, "/opds/v2", ("ada", "correct horse")).status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("root", ["/opds", "/opds/v2"])
def test_the_catalogue_conforms_for_a_logged_in_reader(site: Site, r2_modules: Path, root: str) -> None:
    report = opds_check.run(
        site.servers[0].url + root,
        auth=("ada", "correct horse"),
        readium=True,
        readium_modules=str(r2_modules),
        max_pages=300,
        max_links=600,
    )
    assert report.errors == [], "\n".join(map(str, report.errors))


def test_an_app_password_logs_in_with_its_scopes_only(site: Site) -> None:
    result = site.cli("app-passwords", "create", "bob", "Kobo browser", "--scope", "catalog")
    assert result.returncode == 0, result.stderr
    secret = result.stdout.strip().splitlines()[-1]
    server = site.servers[0]
    assert get(server, "/opds", ("bob", secret)).status_code == 200
    assert get(server, "/api/me", ("bob", secret)).status_code == 403


def test_too_many_failures_are_refused_alike_for_known_and_unknown_names(site: Site) -> None:
    server = site.servers[0]
    answers = {}
    for name in ("bob", "nobody-at-all"):
        statuses = [get(server, "/opds", (name, f"wrong {n}")).status_code for n in range(12)]
        answers[name] = statuses
    assert answers["bob"] == answers["nobody-at-all"]
    assert answers["bob"][:10] == [401] * 10
    assert answers["bob"][10:] == [429, 429]


# Two instances


def test_a_password_change_locks_the_old_one_out_on_every_instance_at_once(twins: Site) -> None:
    for server in twins.servers:
        assert get(server, "/opds", ("ada", "correct horse")).status_code == 200  # now cached on both
    result = twins.cli("users", "passwd", "ada", "--password-stdin", stdin="battery staple\n")
    assert result.returncode == 0, result.stderr
    for server in twins.servers:
        assert get(server, "/opds", ("ada", "correct horse")).status_code == 401
        assert get(server, "/opds", ("ada", "battery staple")).status_code == 200


def test_a_revoked_app_password_stops_on_every_instance_at_once(twins: Site) -> None:
    created = twins.cli("app-passwords", "create", "ada", "KOReader")
    assert created.returncode == 0, created.stderr
    password_id, secret = created.stdout.split()[2], created.stdout.strip().splitlines()[-1]
    for server in twins.servers:
        assert get(server, "/opds", ("ada", secret)).status_code == 200
    assert twins.cli("app-passwords", "revoke", "ada", password_id).returncode == 0
    for server in twins.servers:
        assert get(server, "/opds", ("ada", secret)).status_code == 401


def test_bytes_rendered_by_one_instance_are_served_by_the_other(twins: Site) -> None:
    first, second = twins.servers
    path = "/opds/opensearch.xml"  # public, so no login changes it
    assert get(first, path).headers["x-cache"] == "miss"
    shared = get(second, path)
    assert shared.headers["x-cache"] == "hit"
    assert shared.content == get(first, path).content
