"""Fixtures of the HTTP tests: a client of the shared live server, and both representations."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, create_postgres_database, drop_postgres_database, start_server, stop_server
from tests.server.api_client import PASSWORDS, Api, add_user, login
from tests.server.reading import Flavour


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> Iterator[httpx.Client]:
    with live_server.client() as http:
        yield http


@pytest.fixture(params=["atom", "json"])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    value: Flavour = request.param
    return value


# The JSON API: one server per backend and module, with users made by the CLI (test_api_*).


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(
    request: pytest.FixtureRequest, fixture_library: Path, tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> Iterator[Api]:
    work = tmp_path_factory.mktemp(f"api-{request.param}")
    database = f"opds_api_{worker_id}_{os.getpid()}"
    env = {"OPDS_DATA_DIR": str(work / "data")}
    if request.param == "postgresql":
        env["DATABASE_URL"] = create_postgres_database(database)
    server = start_server(fixture_library, work / "data", work / "server.log", env)
    try:
        with ThreadPoolExecutor() as pool:
            list(pool.map(lambda name: add_user(env, name), PASSWORDS))
        yield Api(server=server, backend=request.param)
    finally:
        stop_server(server)
        if request.param == "postgresql":
            drop_postgres_database(database)


@pytest.fixture(scope="module")
def http(api: Api) -> Iterator[httpx.Client]:
    """A client without credentials."""
    with api.client() as client:
        yield client


@pytest.fixture(scope="module")
def ada(api: Api, http: httpx.Client) -> Iterator[httpx.Client]:
    with api.client(login(http, "ada").access_token) as client:
        yield client


@pytest.fixture(scope="module")
def bob(api: Api, http: httpx.Client) -> Iterator[httpx.Client]:
    with api.client(login(http, "bob").access_token) as client:
        yield client
