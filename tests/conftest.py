"""Fixtures shared by every test: the fixture library, the conformance checker, a live server.

The live server is the real thing: ``python -m opds_server serve`` (granian) in a subprocess on a
free port of 127.0.0.1, reached over HTTP with httpx.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from opds_server.cache.store import MemoryStore, RedisStore, Store
from opds_server.db.engine import make_engine, migrate
from opds_server.db.schema import Base
from tests.browser.driver import axe_source, browser  # noqa: F401 - headless Chromium and axe-core, for every test
from tests.s3_server import s3_server  # noqa: F401 - the session's S3 server (moto), for every test

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("OPDS_SHARED_DIR", ROOT.parent / "shared"))
FIXTURE_LIBRARY = SHARED / "fixtures" / "calibre-library"
CONFORMANCE = SHARED / "conformance"
R2_CACHE = ROOT / ".cache" / "r2"

if str(CONFORMANCE) not in sys.path:
    sys.path.insert(0, str(CONFORMANCE))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class LiveServer:
    """A running ``opds-server serve``."""

    url: str
    library: Path
    data_dir: Path
    process: subprocess.Popen[bytes]

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]


def start_server(library: Path | None, data_dir: Path, log: Path, env: Mapping[str, str] | None = None) -> LiveServer:
    """Start the CLI's ``serve`` and wait until it answers ``/health``; no ``library``: the default one."""
    port = free_port()
    library_arguments = ["--library", str(library)] if library is not None else []
    environment = {**os.environ, "OPDS_NO_BOOTSTRAP": "1", "OPDS_DATA_DIR": str(data_dir), **(env or {})}
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "opds_server", "serve", *library_arguments, "--port", str(port)],
            cwd=ROOT,
            env=environment,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code in {200, 503}:
                return LiveServer(
                    url=url, library=library or data_dir / "demo-library", data_dir=data_dir, process=process
                )
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    pytest.fail(f"server did not start in 30 s:\n{log.read_text(errors='replace')}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def copy_fixture_library(target: Path) -> Path:
    """A private copy of the fixture library: tests never touch shared/."""
    if not (FIXTURE_LIBRARY / "metadata.db").is_file():
        pytest.fail(f"the fixture library is missing: {FIXTURE_LIBRARY}")
    shutil.copytree(FIXTURE_LIBRARY, target)
    return target


@pytest.fixture(scope="session")
def fixture_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention copy of the fixture library for the whole session."""
    return copy_fixture_library(tmp_path_factory.mktemp("fixture") / "library")


@pytest.fixture(scope="session")
def live_server(fixture_library: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The server on the fixture library, shared by the read-only HTTP tests."""
    workdir = tmp_path_factory.mktemp("server")
    server = start_server(fixture_library, workdir / "data", workdir / "server.log")
    wait_for_search(server)
    yield server
    stop_server(server)


def wait_for_search(server: LiveServer, seconds: float = 30) -> None:
    """Until the search index is filled (in the background after a first start, a 503 meanwhile):
    tests that search must not depend on how busy the machine is."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if httpx.get(f"{server.url}/opds/books", params={"query": "a"}, timeout=10).status_code != 503:
            return
        time.sleep(0.1)
    pytest.fail(f"the search index of {server.library} was not ready in {seconds:.0f} s")


@pytest.fixture(scope="session")
def r2_modules() -> Path:
    """node_modules holding Readium's r2-opds-js (the parser inside Thorium), installed once."""
    modules = R2_CACHE / "node_modules"
    lock = CONFORMANCE / "package-lock.json"
    stamp = R2_CACHE / "installed-lock"
    R2_CACHE.mkdir(parents=True, exist_ok=True)
    with (R2_CACHE / ".lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # xdist workers share one install
        _install_r2(modules, lock, stamp)
    return modules


def _install_r2(modules: Path, lock: Path, stamp: Path) -> None:
    if not (modules / "r2-opds-js").is_dir() or not stamp.is_file() or stamp.read_bytes() != lock.read_bytes():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed for the Readium parser; .ci/run installs it (apt-get install nodejs npm)")
        for name in ("package.json", "package-lock.json", ".npmrc"):
            if (CONFORMANCE / name).is_file():
                shutil.copyfile(CONFORMANCE / name, R2_CACHE / name)
        subprocess.run([npm, "ci", "--silent", "--no-audit", "--no-fund"], cwd=R2_CACHE, check=True)
        shutil.copyfile(lock, stamp)


_CRAWL_SUMMARIES: list[str] = []


@pytest.fixture(scope="session")
def crawl_summaries() -> list[str]:
    """Conformance crawls add their summary line here; it is printed at the end of the run."""
    return _CRAWL_SUMMARIES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _CRAWL_SUMMARIES:
        terminalreporter.section("conformance crawl")
        for line in _CRAWL_SUMMARIES:
            terminalreporter.write_line(line)


# Databases and caches: every DB test runs on SQLite and on a real Postgres, every cache test on the
# in-process store and a real Redis. Neither is ever skipped: .ci/run starts both.

POSTGRES_ADMIN_URL = os.environ.get("OPDS_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_TEST_URL = os.environ.get("OPDS_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _postgres_admin() -> Engine:
    return create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")


def create_postgres_database(name: str) -> str:
    """A fresh, empty Postgres database for this test session; its URL."""
    admin = _postgres_admin()
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        pytest.fail(f"PostgreSQL is needed at {POSTGRES_ADMIN_URL} (.ci/run starts it): {exc}")
    finally:
        admin.dispose()
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(name: str) -> None:
    admin = _postgres_admin()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_url(worker_id: str) -> Iterator[str]:
    name = f"opds_test_{worker_id}_{os.getpid()}"
    url = create_postgres_database(name)
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    yield url
    drop_postgres_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty user database on each backend."""
    if request.param == "sqlite":
        made = make_engine(f"sqlite:///{tmp_path / 'opds.db'}")
        migrate(made)
    else:
        made = make_engine(request.getfixturevalue("postgres_url"))
        with made.begin() as connection:
            tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield made
    made.dispose()


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """An empty store of each kind."""
    if request.param == "memory":
        made: Store = MemoryStore()
    else:
        # A prefix of its own per test: xdist workers share the Redis database, so nothing is flushed.
        prefix = f"opds-test:{uuid.uuid4().hex}:"
        client = Redis.from_url(REDIS_TEST_URL)
        try:
            await client.ping()
        except RedisError as exc:
            pytest.fail(f"Redis is needed at {REDIS_TEST_URL} (.ci/run starts it): {exc}")
        made = RedisStore(REDIS_TEST_URL, prefix=prefix)
    yield made
    await made.close()
    if request.param == "redis":
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
