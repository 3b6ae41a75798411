"""``suite``: our server against its peers on the same library, in the same run, with wrk.
``freshness``: how soon a Calibre write shows in our feeds while they are under load.

Each server (see ``peers.py``) is started in turn, answers every case for which it has an
equivalent URL, is measured for memory, and is stopped before the next one starts, so no two
compete for the CPU. A case is one URL: fetched once and checked for a 200 (206 for the ranged
download), timed alone (``--alone`` requests one at a time with httpx; 10 for a peer), then loaded
with ``wrk -t2 -c32 -d{seconds}s --latency --timeout 30s``. wrk's default 2 s timeout would report
calibre-web, which answers 32 connections in one batch seconds later, as zero requests.

Ours is measured twice on every feed: "cached" repeats one URL, so after the first request our
rendered-bytes cache answers; "uncached" makes every request's URL distinct with an ignored
``bench=<thread>-<n>`` parameter (a wrk Lua script counts per thread), so every request misses that
cache, which is keyed by the full URL, and renders the page. The deep page is reached the only way
a client can reach it: by following ``next`` links from page 1 (peers: by offset).

The targets checked at the end are one request at a time, uncached: newest page 1 and the deep
page p50 <= 15 ms, the search p50 <= 25 ms. The run prints the exact wrk commands, a table per
case, the ratios of ours to each peer, each server's cold start and resident memory (per
process: granian's workers) after its cases; ``--json`` keeps it all.

``freshness`` adds books to the library it is given (it is modified for good) with ``calibredb
add``, a batch of new EPUBs per call, while wrk browses the newest-books feed; after each call it
polls that feed until the batch's last title shows, and reports the lags and wrk's 5xx count.

Run as root, both re-execute themselves inside a network namespace that only has loopback
(``unshare -n``) unless ``--no-unshare`` is given; calibre-web is installed before that.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import msgspec

from tests.benchmark import peers
from tests.benchmark.peers import Case, ColdStart, Picks, ProcessMemory, Server
from tests.conftest import ROOT

CACHE = ROOT / ".cache"
RANGE = {"Range": "bytes=0-65535"}
TARGETS = {Case.NEWEST: 15.0, Case.DEEP: 15.0, Case.SEARCH: 25.0}
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_ISOLATED = "OPDS_BENCH_ISOLATED"
PEER_ALONE = 10
"""Requests a peer is timed alone: for reference only (a calibre-web search takes ~7 s at 100,000
books); the targets are ours."""
BACKLOG_TIMEOUT = 900.0
"""How long a case's first request may wait: a slow server is still working through the requests
of the previous case's wrk run (calibre-web: 32 searches of 7 s each at 100,000 books)."""


class WrkResult(msgspec.Struct, frozen=True, kw_only=True):
    command: str
    requests: int
    rate: float
    p50_ms: float | None
    """None when no request finished in time (wrk then prints zeros)."""
    p99_ms: float | None
    non_2xx_3xx: int
    socket_errors: int
    server_errors: int | None = None


class Alone(msgspec.Struct, frozen=True, kw_only=True):
    requests: int
    p50_ms: float
    p99_ms: float


class Row(msgspec.Struct, frozen=True, kw_only=True):
    case: Case
    server: str
    path: str
    status: int = 0
    bytes: int = 0
    entries: int = 0
    wrk: WrkResult | None = None
    alone: Alone | None = None
    error: str | None = None


class ServerReport(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: str = ""
    cold_start: ColdStart | None = None
    memory: list[ProcessMemory] = msgspec.field(default_factory=list)
    error: str | None = None


class SuiteResult(msgspec.Struct, frozen=True, kw_only=True):
    library: str
    picks: Picks
    page_size: int
    depth: int
    seconds: int
    workers: int
    servers: list[ServerReport]
    rows: list[Row]


def _milliseconds(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def parse_wrk(output: str, command: str) -> WrkResult:
    """The figures of wrk's ``--latency`` report (and the 5xx line our Lua ``done`` prints)."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    requests = re.search(r"(\d+) requests in", output)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m|h)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m|h)", output, re.MULTILINE)
    if rate is None or requests is None or p50 is None or p99 is None:
        msg = f"wrk printed no figures:\n{output}"
        raise RuntimeError(msg)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    server_errors = re.search(r"^5xx responses: (\d+)", output, re.MULTILINE)
    return WrkResult(
        command=command,
        requests=int(requests[1]),
        rate=float(rate[1]),
        p50_ms=_milliseconds(*p50.groups()) if int(requests[1]) else None,
        p99_ms=_milliseconds(*p99.groups()) if int(requests[1]) else None,
        non_2xx_3xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
        server_errors=int(server_errors[1]) if server_errors else None,
    )


def wrk_command(url: str, headers: Mapping[str, str], seconds: int, script: Path | None) -> list[str]:
    command = ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", "--timeout", "30s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    return [*command, *(["-s", str(script)] if script else []), url]


def distinct_urls_script(path: str, target: Path) -> Path:
    """A wrk script whose every request has a URL of its own: ``path`` plus ``bench=<thread>-<n>``.
    ``wrk.format(nil, ...)`` keeps the ``-H`` headers."""
    separator = "&" if "?" in path else "?"
    target.write_text(
        "local counter, threads = 0, 0\n"
        'function setup(thread) thread:set("thread_id", threads); threads = threads + 1 end\n'
        "function request()\n  counter = counter + 1\n"
        f'  return wrk.format(nil, {json.dumps(path + separator + "bench=")} .. thread_id .. "-" .. counter)\n'
        "end\n"
    )
    return target


def _alone(client: httpx.Client, path: str, headers: Mapping[str, str], count: int, *, distinct: bool) -> Alone:
    times: list[float] = []
    for n in range(count):
        url = f"{path}{'&' if '?' in path else '?'}bench=alone-{n}" if distinct else path
        started = time.perf_counter()
        client.get(url, headers=headers).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    quantiles = statistics.quantiles(times, n=100, method="inclusive")
    return Alone(requests=count, p50_ms=statistics.median(times), p99_ms=quantiles[98])


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    seconds: int
    alone: int
    work: Path


def measure(server: Server, label: str, case: Case, path: str, plan: Plan) -> Row:
    """Check one URL answers, time it alone, then load it with wrk. Alone comes first: a slow
    server still works through wrk's last requests after wrk has stopped. The first request also
    waits for any such backlog from the previous case to clear."""
    headers = {**server.headers, **(RANGE if case is Case.DOWNLOAD else {})}
    distinct = label.endswith("uncached")
    with httpx.Client(base_url=server.url, timeout=120) as client:
        first = client.get(path, headers=headers, timeout=BACKLOG_TIMEOUT)
        row = Row(case=case, server=label, path=path, status=first.status_code, bytes=len(first.content))
        if first.status_code != (206 if case is Case.DOWNLOAD else 200):
            return msgspec.structs.replace(row, error=f"HTTP {first.status_code}: {first.text[:200]!r}")
        entries = first.content.count(b"<entry>") + first.content.count(b"<entry ")
        count = min(plan.alone, PEER_ALONE) if server.name in {"calibre", "calibre-web"} else plan.alone
        alone = _alone(client, path, headers, count, distinct=distinct) if count > 1 else None
    script = distinct_urls_script(path, plan.work / "distinct.lua") if distinct else None
    command = wrk_command(server.url + path, headers, plan.seconds, script)
    shown = shlex.join(command)
    print(f"  $ {shown}", flush=True)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return msgspec.structs.replace(row, entries=entries, alone=alone, wrk=parse_wrk(output, shown))


def _server_rows(server: Server, paths: Mapping[Case, str], plan: Plan) -> list[Row]:
    rows: list[Row] = []
    for case, path in paths.items():
        labels = ["ours, cached", "ours, uncached"] if server.name == "ours" and case in peers.FEED_CASES else []
        for label in labels or [server.name]:
            try:
                rows.append(measure(server, label, case, path, plan))
            except (httpx.HTTPError, subprocess.CalledProcessError, RuntimeError) as exc:
                print(f"  {label}, {case}: not measured: {exc!r}", flush=True)
                rows.append(Row(case=case, server=label, path=path, error=repr(exc)))
    return rows


def _start_and_measure(
    name: str, options: argparse.Namespace, picks: Picks, plan: Plan
) -> tuple[ServerReport, list[Row]]:
    library: Path = options.library
    version = ""
    offset = options.depth * options.page_size
    if name == "ours":
        server = peers.start_ours(
            library, plan.work, workers=options.workers, page_size=options.page_size, root=options.ours_root
        )
    elif name == "ceiling":
        server = peers.start_ceiling(plan.work)
    elif name == "calibre":
        server = peers.start_calibre(library, plan.work, page_size=options.page_size)
        version = subprocess.run(
            ["calibre-server", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    else:
        cps = peers.prepare_calibre_web(CACHE)
        version = f"calibreweb {peers.calibre_web_version(cps)}"
        server = peers.start_calibre_web(library, plan.work, cps, page_size=options.page_size)
    print(f"{name}: up in {server.cold_start.page_ms:.0f} ms at {server.url}", flush=True)
    try:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=120) as client:
            if name == "ours":
                deep = peers.walk_cursor(client, "/opds/books?sort=new", options.depth)
                paths = peers.ours_paths(picks, deep)
            elif name == "ceiling":
                paths = {Case.ROOT: "/"}  # one fixed page: shown beside every case
            elif name == "calibre":
                paths = peers.calibre_paths(server.url, picks, offset)
            else:
                paths = peers.calibre_web_paths(picks, offset)
        rows = _server_rows(server, paths, plan)
        memory = peers.read_memory(server.process.pid)
    finally:
        peers.stop(server.process)
    return ServerReport(name=name, version=version, cold_start=server.cold_start, memory=memory), rows


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}ms"


def _print_case(case: Case, rows: Sequence[Row], ceiling: Row | None) -> None:
    shown = [row for row in rows if row.case is case and row.server != "ceiling"]
    shown += [ceiling] if ceiling and ceiling.wrk else []
    print(f"\n== {case} ==")
    print(
        f"{'server':16} {'req/s':>9} {'p50':>9} {'p99':>9} {'non-2xx':>8} {'sock.err':>8} {'bytes':>8} {'entries':>7}"
        f" {'alone p50':>10} {'alone p99':>10}  path"
    )
    for row in shown:
        if row.wrk is None:
            print(f"{row.server:16} not measured: {row.error}  ({row.path})")
            continue
        alone = row.alone
        print(
            f"{row.server:16} {row.wrk.rate:9.0f} {_ms(row.wrk.p50_ms):>9} {_ms(row.wrk.p99_ms):>9}"
            f" {row.wrk.non_2xx_3xx:8d} {row.wrk.socket_errors:8d} {row.bytes:8d} {row.entries:7d}"
            f" {_ms(alone.p50_ms if alone else None):>10} {_ms(alone.p99_ms if alone else None):>10}  {row.path}"
        )
    rates = {row.server: row.wrk.rate for row in shown if row.wrk and row.wrk.rate > 0}
    ratios = [
        f"{ours} / {other} {rates[ours] / rates[other]:.2f}x"
        for ours in ("ours", "ours, cached", "ours, uncached")
        for other in ("calibre", "calibre-web", "ceiling")
        if ours in rates and other in rates
    ]
    if ratios:
        print("req/s ratios: " + "; ".join(ratios))


def print_report(result: SuiteResult) -> None:
    ceiling = next((row for row in result.rows if row.server == "ceiling"), None)
    for case in Case:
        if any(row.case is case for row in result.rows if row.server != "ceiling"):
            _print_case(case, result.rows, ceiling)
    print("\n== cold start (Popen to first 200) and resident memory after the cases ==")
    for report in result.servers:
        if report.cold_start is None:
            print(f"{report.name:12} not run: {report.error}")
            continue
        workers = ", ".join(f"{m.role} {m.pid} {m.rss_mib:.0f} MiB" for m in report.memory)
        print(
            f"{report.name:12} root {report.cold_start.root_ms:7.0f} ms,"
            f" newest page {report.cold_start.page_ms:7.0f} ms;"
            f" RSS {sum(m.rss_mib for m in report.memory):.0f} MiB ({workers}) {report.version}"
        )
        if report.cold_start.first_page_ms is not None:
            print(
                f"{'':12} first start on this library (builds the index): newest page after"
                f" {report.cold_start.first_page_ms:.0f} ms, search index complete after"
                f" {report.cold_start.search_ready_ms or 0:.0f} ms"
            )
    print(f"\n== targets: ours, uncached, one request at a time ({result.depth} pages deep) ==")
    for case, limit in TARGETS.items():
        row = next((r for r in result.rows if r.case is case and r.server == "ours, uncached"), None)
        if row is None or row.alone is None:
            print(f"{case:28} not measured")
            continue
        verdict = "met" if row.alone.p50_ms <= limit else "MISSED"
        print(f"{case:28} p50 {row.alone.p50_ms:6.2f} ms (target <= {limit:.0f} ms): {verdict}")


def isolate(no_unshare: bool, peer_names: Sequence[str]) -> None:
    """As root, re-run this command inside a loopback-only network namespace (once; calibre-web is
    installed first, while the network is still there). Returns only when not re-executing."""
    if no_unshare or os.geteuid() != 0 or os.environ.get(_ISOLATED) or shutil.which("unshare") is None:
        return
    if "calibre-web" in peer_names:
        try:
            peers.prepare_calibre_web(CACHE)
        except peers.PeerUnavailableError as exc:
            print(f"calibre-web: {exc}", file=sys.stderr)
    if subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False).returncode != 0:
        print("unshare -n is not allowed here: running without network isolation", file=sys.stderr)
        return
    os.chdir(ROOT)
    command = ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
    command += [sys.executable, "-m", "tests.benchmark", *sys.argv[1:]]
    print(f"isolating: {shlex.join(command)}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execvpe("unshare", command, {**os.environ, _ISOLATED: "1", "OPDS_NO_BOOTSTRAP": "1"})


def run_suite(options: argparse.Namespace) -> int:
    names = [name.strip() for name in options.peers.split(",") if name.strip()]
    unknown = set(names) - {"calibre", "calibre-web"}
    if unknown or shutil.which("wrk") is None:
        print(f"unknown peers {sorted(unknown)}" if unknown else "wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    isolate(options.no_unshare, names)
    picks = peers.read_picks(options.library, options.search)
    pages = max(1, math.ceil(picks.books / options.page_size))
    if options.depth > pages - 1:
        print(f"{picks.books} books make {pages} pages of {options.page_size}: the deep page is {pages - 1} deep")
        options.depth = pages - 1
    print(
        f"library {options.library}: {picks.books} books, {options.page_size} per page; author {picks.author!r}"
        f" (id {picks.author_id}, {picks.author_books} books), series {picks.series!r} (id {picks.series_id},"
        f" {picks.series_books} books), search {picks.search!r}, book {picks.book_id}; deep page {options.depth}"
    )
    work = Path(tempfile.mkdtemp(prefix="opds-suite-"))
    plan = Plan(seconds=options.seconds, alone=options.alone, work=work)
    reports: list[ServerReport] = []
    rows: list[Row] = []
    try:
        for name in ["ceiling", "ours", *names]:
            try:
                report, measured = _start_and_measure(name, options, picks, plan)
            except (peers.PeerUnavailableError, httpx.HTTPError, subprocess.CalledProcessError) as exc:
                print(f"{name}: not measured: {exc}", flush=True)
                reports.append(ServerReport(name=name, error=str(exc)))
                continue
            reports.append(report)
            rows += measured
    finally:
        if options.keep:
            print(f"logs and configuration kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    result = SuiteResult(
        library=str(options.library),
        picks=picks,
        page_size=options.page_size,
        depth=options.depth,
        seconds=options.seconds,
        workers=options.workers,
        servers=reports,
        rows=rows,
    )
    print_report(result)
    if options.json:
        Path(options.json).write_bytes(msgspec.json.format(msgspec.json.encode(result)))
        print(f"\nresults written to {options.json}")
    return 0


def add_suite_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    suite = commands.add_parser("suite", help="ours against calibre, calibre-web and the framework ceiling")
    suite.add_argument("--library", type=Path, required=True, help="a Calibre library (read only)")
    suite.add_argument("--seconds", type=int, default=10, help="wrk duration per case")
    suite.add_argument("--peers", default="calibre,calibre-web", help="comma-separated: calibre, calibre-web")
    suite.add_argument("--workers", type=int, default=1, help="our server's worker processes")
    suite.add_argument("--page-size", type=int, default=50, help="entries per acquisition page, on every server")
    suite.add_argument("--depth", type=int, default=1000, help="how many pages deep the deep page is")
    suite.add_argument("--search", help="the search term (default: the most common author surname)")
    suite.add_argument("--alone", type=int, default=50, help="sequential requests per case for alone latency")
    suite.add_argument("--json", help="also write the results here as JSON")
    suite.add_argument("--ours-root", type=Path, default=ROOT, help="the checkout our server runs from")
    suite.add_argument("--keep", action="store_true", help="keep the servers' logs and configuration")
    suite.add_argument("--no-unshare", action="store_true", help="do not isolate the run in a network namespace")
    suite.set_defaults(run=run_suite)


# freshness: how long a Calibre write takes to show in our feeds, while wrk keeps browsing them.

_SERVER_ERRORS_LUA = """local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) server_errors = 0 end
function response(status, headers, body) if status >= 500 then server_errors = server_errors + 1 end end
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("server_errors") end
  io.write(string.format("5xx responses: %d\\n", total))
end
"""
_CONTAINER = (
    '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
    '<rootfiles><rootfile full-path="content.opf" media-type="application/oebps-package+xml"/></rootfiles></container>'
)


def write_epub(target: Path, title: str) -> Path:
    """A minimal EPUB whose OPF gives calibre its title."""
    opf = (
        '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="2.0" unique-identifier="id">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f'<dc:title>{title}</dc:title><dc:creator>Freshness Bench</dc:creator><dc:identifier id="id">{title}'
        '</dc:identifier><dc:language>en</dc:language></metadata><manifest><item id="t" href="t.xhtml"'
        ' media-type="application/xhtml+xml"/></manifest><spine><itemref idref="t"/></spine></package>'
    )
    page = f'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>{title}</title></head><body><p>{title}</p></body></html>'
    with zipfile.ZipFile(target, "w") as epub:
        epub.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        for name, text in (("META-INF/container.xml", _CONTAINER), ("content.opf", opf), ("t.xhtml", page)):
            epub.writestr(name, text, compress_type=zipfile.ZIP_DEFLATED)
    return target


def _appears(client: httpx.Client, title: str, timeout: float) -> float | None:
    """Seconds until ``title`` is on the newest-books page, polling every 10 ms."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if title.encode() in client.get("/opds/books?sort=new").content:
            return time.perf_counter() - started
        time.sleep(0.01)
    return None


def run_freshness(options: argparse.Namespace) -> int:
    """Adds ``--books`` books to the library in ``--batch``-sized ``calibredb add`` calls: the
    library is modified for good."""
    if shutil.which("wrk") is None or shutil.which("calibredb") is None:
        print("wrk and calibredb are needed: apt-get install wrk calibre", file=sys.stderr)
        return 2
    isolate(options.no_unshare, [])
    work = Path(tempfile.mkdtemp(prefix="opds-freshness-"))
    server = peers.start_ours(options.library, work, workers=options.workers, page_size=50)
    run = time.strftime("%Y%m%d%H%M%S")
    lags: list[float] = []
    missing = 0
    try:
        script = work / "errors.lua"
        script.write_text(_SERVER_ERRORS_LUA)
        command = wrk_command(f"{server.url}/opds/books?sort=new", server.headers, 24 * 3600, script)
        print(f"$ {shlex.join(command)}  (stopped with SIGINT after the last batch)", flush=True)
        wrk = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as client:
            for first in range(0, options.books, options.batch):
                folder = work / f"batch-{first}"
                folder.mkdir()
                count = min(options.batch, options.books - first)
                titles = [f"Freshness {run} {first + n:05d}" for n in range(count)]
                files = [write_epub(folder / f"{n}.epub", title) for n, title in enumerate(titles)]
                add = ["calibredb", "add", "--with-library", str(options.library), *map(str, files)]
                subprocess.run(add, check=True, capture_output=True)
                lag = _appears(client, titles[-1], timeout=120)
                missing += lag is None
                lags.append(lag if lag is not None else math.inf)
                print(
                    f"batch of {count} ending {titles[-1]!r}: visible after {lag * 1000 if lag else math.inf:.0f} ms",
                    flush=True,
                )
        wrk.send_signal(signal.SIGINT)
        output, _ = wrk.communicate(timeout=60)
        result = parse_wrk(output, shlex.join(command))
    finally:
        peers.stop(server.process)
        shutil.rmtree(work, ignore_errors=True)
    finite = [lag * 1000 for lag in lags if math.isfinite(lag)]
    print(
        f"\n{options.books} books in batches of {options.batch}: lag from calibredb's return to the newest feed"
        f" p50 {statistics.median(finite) if finite else math.nan:.0f} ms, max {max(finite, default=math.nan):.0f} ms,"
        f" {missing} batches never seen within 120 s"
    )
    print(
        f"wrk meanwhile: {result.requests} requests, {result.rate:.0f}/s, p50 {_ms(result.p50_ms)},"
        f" p99 {_ms(result.p99_ms)}, non-2xx/3xx {result.non_2xx_3xx}, 5xx {result.server_errors},"
        f" socket errors {result.socket_errors}"
    )
    if options.json:
        record = {"books": options.books, "batch": options.batch, "lags_ms": finite, "missing": missing, "wrk": result}
        Path(options.json).write_bytes(msgspec.json.format(msgspec.json.encode(record)))
    return 0 if missing == 0 and not result.server_errors else 1


def add_freshness_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    freshness = commands.add_parser("freshness", help="Calibre writes under load: lag until visible, 5xx count")
    freshness.add_argument("--library", type=Path, required=True, help="a Calibre library: books are ADDED to it")
    freshness.add_argument("--books", type=int, default=1000)
    freshness.add_argument("--batch", type=int, default=50, help="books per calibredb add (at most 50, one page)")
    freshness.add_argument("--workers", type=int, default=1, help="our server's worker processes")
    freshness.add_argument("--json", help="also write the results here as JSON")
    freshness.add_argument("--no-unshare", action="store_true", help="do not isolate the run in a network namespace")
    freshness.set_defaults(run=run_freshness)
