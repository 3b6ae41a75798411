"""What the server says about itself and the guards on every answer: /metrics, request ids, JSON
logs without credentials, security headers, the body size limit and CORS."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from opds_server.observability import family_of, scrub
from tests.conftest import LiveServer, copy_fixture_library, start_server, stop_server
from tests.server.api_client import PASSWORDS, add_user


@dataclass(frozen=True)
class Watched:
    server: LiveServer
    log: Path


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    work = tmp_path_factory.mktemp("observed")
    library = copy_fixture_library(work / "library")
    env = {"OPDS_DATA_DIR": str(work / "data"), "OPDS_CORS_ORIGINS": "https://reader.example.org"}
    add_user(env, "ada")
    server = start_server(library, work / "data", work / "server.log", env)
    yield Watched(server, work / "server.log")
    stop_server(server)


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def sample(metrics: str, name: str) -> float:
    """The value of one sample line (``name`` with its labels) of a Prometheus text answer."""
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_by_family_cache_hits_logins_and_the_library(watched: Watched) -> None:
    with watched.server.client() as client:
        before = client.get("/metrics").text
        ada = basic("ada", PASSWORDS["ada"])
        for _ in range(3):
            assert client.get("/opds/books", headers=ada).status_code == 200
        assert client.get("/opds", headers=basic("ada", "not the password")).status_code == 401
        after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = after.text
    family = 'opds_http_requests_total{family="opds",status="2xx"}'
    assert sample(text, family) - sample(before, family) == 3
    failed = 'opds_http_requests_total{family="opds",status="4xx"}'
    assert sample(text, failed) - sample(before, failed) == 1
    logins = 'opds_login_failures_total{kind="password"}'
    assert sample(text, logins) - sample(before, logins) == 1
    hits = 'opds_feed_cache_total{result="hit"}'
    assert sample(text, hits) - sample(before, hits) >= 1
    assert sample(text, 'opds_http_request_duration_seconds_count{family="opds"}') >= 4
    assert sample(text, "opds_library_books") == 38
    assert sample(text, "opds_library_lag_seconds") == 0
    assert 'opds_library_generation_info{generation="' in text
    assert "opds_kobo_sync_pages_total" in text


def test_requests_carry_an_id_and_logs_are_json_without_credentials(watched: Watched) -> None:
    with watched.server.client() as client:
        mine = client.get("/health", headers={"X-Request-Id": "proxy-1234"})
        odd = client.get("/health", headers={"X-Request-Id": "bad id\twith spaces" + "x" * 80})
        refused = client.get("/opds", headers={**basic("ada", "hunter2-secret"), "X-Request-Id": "login-try-1"})
        kobo = client.get("/kobo/0123456789abcdef0123456789abcdef/v1/initialization")
    assert mine.headers["x-request-id"] == "proxy-1234"
    assert len(odd.headers["x-request-id"]) == 16
    assert (refused.status_code, kobo.status_code) == (401, 401)
    lines = [json.loads(line) for line in watched.log.read_text().splitlines() if line.startswith("{")]
    assert lines, "no JSON log line"
    assert all({"time", "level", "logger", "message", "request_id"} <= set(line) for line in lines)
    assert any(line["request_id"] == "login-try-1" and "401" in line["message"] for line in lines)
    text = watched.log.read_text()
    assert "hunter2-secret" not in text
    assert base64.b64encode(b"ada:hunter2-secret").decode() not in text
    assert "0123456789abcdef0123456789abcdef" not in text


def test_answers_carry_security_headers_and_pages_a_policy_without_scripts(watched: Watched) -> None:
    with watched.server.client() as client:
        feed = client.get("/opds", headers=basic("ada", PASSWORDS["ada"]))
        page = client.get("/login")
    for answer in (feed, page):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "same-origin"
    assert "content-security-policy" not in feed.headers
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src" not in policy  # default-src 'none': no script at all
    assert "frame-ancestors 'none'" in policy


def test_a_body_over_a_megabyte_is_refused_without_reading_it(watched: Watched) -> None:
    with watched.server.client() as client:
        answer = client.post(
            "/api/auth/token",
            content=b"{" + b" " * (1024 * 1024 + 10) + b"}",
            headers={"Content-Type": "application/json"},
        )
    assert answer.status_code == 413


def test_cors_only_for_the_configured_origin(watched: Watched) -> None:
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    with watched.server.client() as client:
        allowed = client.options("/api/favourites", headers={"Origin": "https://reader.example.org", **preflight})
        other = client.options("/api/favourites", headers={"Origin": "https://evil.example", **preflight})
        plain = client.get("/health", headers={"Origin": "https://evil.example"})
    assert allowed.headers.get("access-control-allow-origin") == "https://reader.example.org"
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in plain.headers


def test_no_cors_at_all_by_default(tmp_path: Path) -> None:
    server = start_server(copy_fixture_library(tmp_path / "library"), tmp_path / "data", tmp_path / "log")
    try:
        answer = httpx.get(f"{server.url}/health", headers={"Origin": "https://reader.example.org"})
    finally:
        stop_server(server)
    assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("GET /kobo/abcdef0123/v1/library/sync -> 200", "abcdef0123"),
        ("Authorization: Basic YWRhOnNlY3JldA==", "YWRhOnNlY3JldA=="),
        ("Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "eyJhbGciOiJIUzI1NiJ9"),
        ("cookie opds_session=abc.def.ghi; other=1", "abc.def.ghi"),
        ("x-auth-key: 5f4dcc3b5aa765d61d8327deb882cf99", "5f4dcc3b5aa765d61d8327deb882cf99"),
        ("password=hunter2&user=ada", "hunter2"),
    ],
)
def test_scrub_hides_every_kind_of_credential(text: str, hidden: str) -> None:
    assert hidden not in scrub(text)


@pytest.mark.parametrize(
    ("path", "family"),
    [
        ("/opds/books", "opds"),
        ("/kobo/x/v1/library/sync", "kobo"),
        ("/kosync/syncs/progress", "kosync"),
        ("/api/favourites", "api"),
        ("/download/1/1.epub", "downloads"),
        ("/covers/1", "covers"),
        ("/books/1", "html"),
        ("/", "html"),
        ("/metrics", "other"),
    ],
)
def test_route_families(path: str, family: str) -> None:
    assert family_of(path) == family
