"""Benchmarks against a running server, with wrk (Debian's ``wrk``).

``auth``: the cost of HTTP Basic. One server on the fixture library with a user and anonymous
browsing on, so the same feed is fetched with and without credentials in the same run: wrk
``-t2 -c32`` on the first acquisition page (rendered once, then served from the rendered-bytes
cache) and on its revalidation (a 304, the cheapest answer, where authentication weighs most).
Runs alternate with and without credentials; the medians and their ratio are printed. Every
server listens on 127.0.0.1 only.

``generate PATH --books N``: write a large Calibre library to benchmark against (``library.py``).

``kobo --library PATH``: a Kobo's first full sync and its reading-state calls (``kobo.py``).

``kosync --library PATH``: KOReader progress pushes and pulls from concurrent devices, against the
cheapest answer of the same server (``kosync.py``).

``drive``: the server's memory while concurrent clients download large books from the Google Drive
emulator, against one client in the same run (``drive.py``).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from tests.benchmark.drive import add_drive_command
from tests.benchmark.kobo import add_kobo_command
from tests.benchmark.kosync import add_kosync_command
from tests.benchmark.library import CalibreNotFoundError, generate_library
from tests.benchmark.suite import add_freshness_command, add_suite_command
from tests.conftest import FIXTURE_LIBRARY, ROOT, start_server, stop_server

_REQUESTS = re.compile(r"Requests/sec:\s+([\d.]+)")
_LATENCY = re.compile(r"^\s+50%\s+([\d.]+)(us|ms|s)", re.MULTILINE)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, headers: dict[str, str], *, seconds: int, connections: int) -> tuple[float, float]:
    """Requests per second and median latency (ms) of one wrk run."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rate = _REQUESTS.search(output)
    latency = _LATENCY.search(output)
    if rate is None or latency is None:
        msg = f"wrk printed no figures:\n{output}"
        raise RuntimeError(msg)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        msg = f"wrk saw {non_2xx[1]} failed responses for {url}"
        raise RuntimeError(msg)
    return float(rate[1]), float(latency[1]) * _UNITS[latency[2]]


def bench_auth(rounds: int, seconds: int) -> int:
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="opds-bench-"))
    library = work / "library"
    shutil.copytree(FIXTURE_LIBRARY, library)
    env = {"OPDS_DATA_DIR": str(work / "data"), "OPDS_ANONYMOUS_BROWSING": "true"}
    subprocess.run(
        [sys.executable, "-m", "opds_server", "users", "add", "reader", "--password-stdin"],
        input="a long benchmark password\n",
        text=True,
        cwd=ROOT,
        env={**os.environ, "OPDS_NO_BOOTSTRAP": "1", **env},
        check=True,
        capture_output=True,
    )
    server = start_server(library, work / "data", work / "server.log", env)
    try:
        url = f"{server.url}/opds/books?sort=new"
        credentials = {"Authorization": "Basic " + base64.b64encode(b"reader:a long benchmark password").decode()}
        etag = httpx.get(url, headers=credentials, timeout=30).headers["etag"]
        cases = {
            "acquisition page, cached bytes": ({}, credentials),
            "acquisition page, 304 revalidation": ({"If-None-Match": etag}, {**credentials, "If-None-Match": etag}),
        }
        print(f"wrk -t2 -c32 -d{seconds}s, {rounds} alternating rounds, median of each; {url}")
        print(
            f"{'case':38} {'no auth req/s':>14} {'Basic req/s':>12} {'ratio':>6} {'p50 no auth':>12} {'p50 Basic':>10}"
        )
        for name, (anonymous, basic) in cases.items():
            wrk(url, basic, seconds=2, connections=32)  # warm the credential cache and the server
            plain, authed = [], []
            for _ in range(rounds):
                plain.append(wrk(url, anonymous, seconds=seconds, connections=32))
                authed.append(wrk(url, basic, seconds=seconds, connections=32))
            rate_plain = statistics.median(r for r, _ in plain)
            rate_authed = statistics.median(r for r, _ in authed)
            p50_plain = statistics.median(p for _, p in plain)
            p50_authed = statistics.median(p for _, p in authed)
            print(
                f"{name:38} {rate_plain:14.0f} {rate_authed:12.0f} {rate_authed / rate_plain:6.0%}"
                f" {p50_plain:10.2f}ms {p50_authed:8.2f}ms"
            )
    finally:
        stop_server(server)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def run_generate(options: argparse.Namespace) -> int:
    try:
        generate_library(options.path, options.books, seed=options.seed)
    except (CalibreNotFoundError, FileExistsError) as error:
        print(error, file=sys.stderr)
        return 2
    return 0


def main(arguments: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.benchmark")
    commands = parser.add_subparsers(dest="benchmark", required=True)
    auth = commands.add_parser("auth", help="HTTP Basic against no auth on the same feed")
    auth.add_argument("--rounds", type=int, default=3)
    auth.add_argument("--seconds", type=int, default=5)
    add_suite_command(commands)
    add_freshness_command(commands)
    add_kobo_command(commands)
    add_kosync_command(commands)
    add_drive_command(commands)
    generate = commands.add_parser("generate", help="write a large Calibre library into a new folder")
    generate.add_argument("path", type=Path, help="a folder that is missing or empty")
    generate.add_argument("--books", type=int, default=100_000)
    generate.add_argument("--seed", type=int, default=1, help="the same seed writes the same books")
    generate.set_defaults(run=run_generate)
    parsed = parser.parse_args(arguments)
    if hasattr(parsed, "run"):
        return int(parsed.run(parsed))
    return bench_auth(parsed.rounds, parsed.seconds)
