"""``/health`` checks each piece when asked: Calibre, the user database and the cache store."""

from __future__ import annotations

from pathlib import Path

import httpx
import msgspec

from tests.conftest import LiveServer, copy_fixture_library, free_port, start_server, stop_server


def health(server: LiveServer) -> tuple[int, dict[str, object]]:
    response = httpx.get(f"{server.url}/health", timeout=30)
    assert response.headers["cache-control"] == "no-store"
    return response.status_code, msgspec.json.decode(response.content)


def test_everything_answering_is_healthy(live_server: LiveServer) -> None:
    assert health(live_server) == (
        200,
        {"status": "healthy", "cache": True, "database": True, "calibre": True, "storage": True},
    )


def test_an_unreachable_redis_is_degraded_and_the_catalogue_still_serves(tmp_path: Path) -> None:
    # Nothing listens on this port: every Redis call fails at once.
    env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    server = start_server(copy_fixture_library(tmp_path / "library"), tmp_path / "data", tmp_path / "log", env)
    try:
        assert health(server) == (
            200,
            {"status": "degraded", "cache": False, "database": True, "calibre": True, "storage": True},
        )
        assert httpx.get(f"{server.url}/opds", timeout=30).status_code == 200
    finally:
        stop_server(server)
