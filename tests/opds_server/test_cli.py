"""The ``opds-server`` command line, run through its real entry point (``python -m opds_server``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from lxml import etree

from tests.conftest import ROOT, start_server, stop_server
from tests.s3_server import S3Server, s3_settings

ATOM = {"a": "http://www.w3.org/2005/Atom"}


def run_cli(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "OPDS_NO_BOOTSTRAP": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "opds_server", *arguments],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_demo_library_writes_a_calibre_library(tmp_path: Path) -> None:
    result = run_cli("demo-library", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "demo" / "metadata.db").is_file()


def test_demo_library_refuses_a_folder_holding_a_library(tmp_path: Path) -> None:
    assert run_cli("demo-library", str(tmp_path)).returncode == 0
    result = run_cli("demo-library", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"opds-server: {tmp_path} already holds a Calibre library; choose an empty folder"
    ]


def test_serve_without_a_library_exits_with_one_line(tmp_path: Path) -> None:
    result = run_cli("serve", "--library", str(tmp_path / "missing"), "--port", "1")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("opds-server: library not found:")
    assert "metadata.db" in line


def test_a_bad_setting_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    result = run_cli("serve", "--library", str(tmp_path), env={"OPDS_PAGE_SIZE": "lots"})
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "OPDS_PAGE_SIZE='lots'" in line


def test_serve_with_no_library_builds_and_serves_the_demo(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    data = tmp_path / "data"
    server = start_server(None, data, tmp_path / "serve.log", env={"HOME": str(home), "OPDS_LIBRARY": ""})
    try:
        assert (data / "demo-library" / "metadata.db").is_file()
        feed = httpx.get(f"{server.url}/opds/books?limit=100", timeout=30)
        assert feed.status_code == 200
        assert len(etree.fromstring(feed.content).findall("a:entry", ATOM)) == 12
    finally:
        stop_server(server)


def test_serve_prefers_the_users_calibre_library(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run_cli("demo-library", str(home / "Calibre Library")).returncode == 0
    server = start_server(None, tmp_path / "data", tmp_path / "serve.log", env={"HOME": str(home), "OPDS_LIBRARY": ""})
    try:
        assert httpx.get(f"{server.url}/opds", timeout=30).status_code == 200
        assert not (tmp_path / "data" / "demo-library").exists()
    finally:
        stop_server(server)


def test_covers_push_without_a_bucket_exits_with_one_line(tmp_path: Path, fixture_library: Path) -> None:
    result = run_cli("covers", "push", "--library", str(fixture_library), env={"OPDS_DATA_DIR": str(tmp_path)})
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("opds-server: no S3 bucket is configured: set S3_BUCKET")


def test_covers_push_to_a_missing_bucket_names_it(tmp_path: Path, fixture_library: Path, s3_server: S3Server) -> None:
    env = {"OPDS_DATA_DIR": str(tmp_path), **s3_settings(s3_server.url, "no-such-bucket")}
    result = run_cli("covers", "push", "--library", str(fixture_library), env=env)
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("opds-server: cannot push covers to")
    assert "no-such-bucket" in line
