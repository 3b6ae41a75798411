"""A Redis and a Postgres of the test's own, which it may crash and restart on the same port.

Neither touches the shared services of ``.ci/run``: each runs from a temporary folder on a free
port of 127.0.0.1 and is removed at the end, even when the test fails.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import free_port

START_SECONDS = 30


class ServiceError(RuntimeError):
    """A service did not start or stop as asked."""


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """``redis-server`` in the foreground, without persistence: a restart comes back empty."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start on ``self.port`` (the same one after a kill) and wait until it answers PING."""
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail("redis-server is needed (.ci/run installs it)")
        command = [executable, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        command += ["--daemonize", "no", "--dir", str(self.log.parent)]
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_SECONDS
        while not _answers_ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise ServiceError(
                    f"redis-server did not start on {self.port}:\n{self.log.read_text(errors='replace')}"
                )
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: a crash, with no goodbye to the clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _postgres_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if versions:
        return versions[-1].parent
    found = shutil.which("pg_ctl")
    if found is None:
        pytest.fail("PostgreSQL's pg_ctl is needed (.ci/run installs postgresql)")
    return Path(found).parent


class PostgresServer:
    """A throwaway cluster (trust auth, no fsync) in a temporary folder, run by ``pg_ctl``.

    As root, the cluster belongs to the ``postgres`` user (Postgres refuses to run as root), so it
    lives under the system's temporary folder rather than pytest's, which only root may enter.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="opds-postgres-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.bin = _postgres_bin()
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        try:
            self._run(
                "initdb", "--no-sync", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"
            )
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _run(self, program: str, *arguments: str, check: bool = True) -> int:
        done = subprocess.run(
            [*self._as, str(self.bin / program), *arguments], capture_output=True, text=True, check=False, timeout=60
        )
        if check and done.returncode != 0:
            raise ServiceError(f"{program} {' '.join(arguments)} failed with {done.returncode}:\n{done.stderr}")
        return done.returncode

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start on ``self.port`` (the same one after a kill); a crash is recovered from here."""
        options = f"-p {self.port} -h 127.0.0.1 -k {self.root} -c fsync=off -c synchronous_commit=off"
        options += " -c full_page_writes=off -c max_connections=200"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(START_SECONDS), "-o", options, "start"
        )

    def kill(self) -> None:
        """``pg_ctl stop -m immediate``: every backend dies at once, as in a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def is_running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False) == 0

    def stop(self) -> None:
        if self.is_running():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def remove(self, keep_log: Path | None = None) -> None:
        """Delete the cluster's folder, keeping a copy of its log at ``keep_log``."""
        if keep_log is not None and self.log.is_file():
            shutil.copyfile(self.log, keep_log)
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def running_redis(log: Path) -> Iterator[RedisServer]:
    server = RedisServer(log)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def running_postgres(keep_log: Path | None = None) -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            server.remove(keep_log)


@pytest.fixture(name="redis_server")
def redis_server_fixture(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own; its log is ``redis.log`` in the test's tmp dir."""
    with running_redis(tmp_path / "redis.log") as server:
        yield server


@pytest.fixture(name="postgres_server")
def postgres_server_fixture(tmp_path: Path) -> Iterator[PostgresServer]:
    """A Postgres cluster of this test's own; its log is copied to ``postgres.log`` in the test's tmp dir."""
    with running_postgres(tmp_path / "postgres.log") as server:
        yield server
