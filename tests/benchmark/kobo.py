"""``kobo``: one Kobo's first full library sync against our server, then its reading-state calls.

Our server is started alone (one worker, a fresh data dir in a temporary folder, the Kobo page size
from ``--page-size`` as ``OPDS_KOBO_PAGE_SIZE``, ``OPDS_BASE_URL`` naming its own port), with one
user made and one Kobo registered through the CLI (``kobo add-device`` prints the
``api_endpoint=<base>/kobo/<token>`` line a device is given). Once ``/opds`` answers 200 and the
search index is complete (it is filled in the background and would otherwise share the CPU with
the first sync), the device's calls of spec 12.1 run once, as a factory-fresh Kobo makes them:

1. ``GET /v1/initialization``, ``POST /v1/auth/device``, ``GET /v1/user/profile``,
   ``POST /v1/analytics/gettests``; every later call carries the access token as a Bearer.
2. The first full sync, page by page: ``GET /v1/library/sync?Filter=ALL&...``, sending each
   response's ``x-kobo-synctoken`` back until a response has no ``x-kobo-sync: continue``. Per page:
   wall time, JSON items, body bytes (decoded, and as sent), response header bytes (``len(name) +
   len(value) + 4`` per raw header) and the token's length. The first page is shown apart: it
   freezes the device's snapshot of the library.
3. A second sync with the final token: nothing changed, so the fast path, which should be empty.
   Then a wait until the server is idle: the KEPUB conversions a sync queues run on after it.
4. ``--state-clients`` threads, each with its own httpx client, for ``--state-seconds``: ``PUT
   /v1/library/<uuid>/state`` (the body of spec 5.6, millisecond timestamps, a random synced
   book) then ``GET`` of the same state. Each client draws from books of its own (when there are
   enough), so its GET must give back what its PUT stored: the percentage as the same integer,
   the location, and the device's ``LastModified`` as ``PriorityTimestamp`` (spec 8.2). Random
   choices print their seed.
5. A sync after those writes: the device's own states are not sent back to it (spec 8.1).

Checks (the exit status is 1 when one fails): every call 2xx; every sync page 200, none over the
device's 30 s (spec 7.3), none over its ~286 KB of JSON; one ``NewEntitlement`` per book with an
EPUB or KEPUB on disk (counted from ``metadata.db``, opened read only; a file Calibre lists but
lost is never offered), no id sent twice; the fast path empty and without ``continue``; every GET
giving back its PUT. Times are absolute, for this machine (its CPU count is printed); the client
runs on the same CPUs as the server.

The device's calls are in ``kobo_sync.py``, the reading-state load in ``kobo_states.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path

import httpx
import msgspec

from tests.benchmark import peers
from tests.benchmark.kobo_states import StateRun, run_states, wait_idle
from tests.benchmark.kobo_sync import DEVICE_HEADERS, REQUEST_TIMEOUT, Call, Session, handshake, sync
from tests.conftest import ROOT, free_port

DEVICE_SECONDS = 30.0
"""A Kobo drops a sync response that takes longer (spec 7.3; calibre-web-automated#1112)."""
DEVICE_BODY_BYTES = 286 * 1024
"""A Kobo gave up on a sync page of about this much JSON (spec 7.3; calibre-web#1276)."""
_ENDPOINT = re.compile(r"api_endpoint=(\S+)/kobo/([0-9a-f]{32})")


class Check(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    ok: bool
    detail: str


class Machine(msgspec.Struct, frozen=True, kw_only=True):
    nproc: int
    cpu: str
    python: str


class KoboResult(msgspec.Struct, frozen=True, kw_only=True):
    library: str
    machine: Machine
    page_size: int
    books_with_kobo_file: int
    """``SELECT COUNT(DISTINCT book) FROM data WHERE format IN ('EPUB', 'KEPUB')``."""
    books_on_disk: int
    """Of those, the books whose EPUB or KEPUB is on disk: what a sync must send."""
    ready_ms: float
    """From ``Popen`` to the first 200 on ``/opds`` (builds the library index)."""
    search_ready_ms: float
    handshake: list[Call]
    first_sync: Session
    fast_path: Session
    idle_wait_ms: float | None
    """After the sync, until the server was idle (its background KEPUB conversions done)."""
    state: StateRun | None
    progress_sync: Session | None
    memory: list[peers.ProcessMemory]
    checks: list[Check]
    log: str


# Starting the server


def _cli(arguments: Sequence[str], env: Mapping[str, str], stdin: str = "") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "opds_server", *arguments],
        input=stdin,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        msg = f"opds_server {' '.join(arguments)} exited with {done.returncode}: {done.stderr.strip()[-800:]}"
        raise peers.PeerUnavailableError(msg)
    return done.stdout


def start_server(library: Path, work: Path, page_size: int) -> tuple[peers.Server, str, float]:
    """Our server with user ``bench`` and one Kobo; returns it, the device's path token, and the
    milliseconds from ``Popen`` until the search index was complete."""
    port = free_port()
    base = f"http://{peers.HOST}:{port}"
    env = {
        "OPDS_NO_BOOTSTRAP": "1",
        "OPDS_DATA_DIR": str(work / "data"),
        "OPDS_KOBO_PAGE_SIZE": str(page_size),
        "OPDS_BASE_URL": base,
    }
    _cli(["users", "add", "bench", "--password-stdin"], env, f"{peers.PASSWORD}\n")
    printed = _cli(["kobo", "add-device", "bench", "--label", "bench"], env)
    endpoint = _ENDPOINT.search(printed)
    if endpoint is None:
        msg = f"kobo add-device printed no api_endpoint line: {printed!r}"
        raise peers.PeerUnavailableError(msg)
    command = [sys.executable, "-m", "opds_server", "serve", "--library", str(library)]
    command += ["--host", peers.HOST, "--port", str(port), "--workers", "1"]
    launch = peers.Launch(command, work / "server.log", env)
    headers = peers.basic("bench", peers.PASSWORD)
    server = peers._start("ours", launch, port, headers, ("/opds", "/opds"))
    try:
        peers._first_200(server.process, f"{server.url}/opds/books?query=a", headers, launch.log)
    except BaseException:
        peers.stop(server.process)
        raise
    return server, endpoint[2], (time.perf_counter() - server.started) * 1000


def count_kobo_books(library: Path) -> tuple[int, int]:
    """Books with an EPUB or a KEPUB in ``metadata.db``, and those of them with such a file on disk:
    the ones a Kobo is offered (a file Calibre lists but lost is never advertised)."""
    with closing(sqlite3.connect(f"{(library / 'metadata.db').as_uri()}?mode=ro", uri=True)) as db:
        listed: int = db.execute("SELECT COUNT(DISTINCT book) FROM data WHERE format IN ('EPUB', 'KEPUB')").fetchone()[
            0
        ]
        files = db.execute(
            "SELECT d.book, b.path, d.name, d.format FROM data d JOIN books b ON b.id = d.book"
            " WHERE d.format IN ('EPUB', 'KEPUB')"
        ).fetchall()
    on_disk = {book for book, path, name, fmt in files if (library / path / f"{name}.{fmt.lower()}").is_file()}
    return listed, len(on_disk)


# Figures and the report


def _quantile(values: Sequence[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def read_machine() -> Machine:
    cpu = ""
    try:
        model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        cpu = model[1].strip() if model else ""
    except OSError:
        pass
    return Machine(
        nproc=len(os.sched_getaffinity(0)), cpu=cpu or platform.processor(), python=platform.python_version()
    )


def checks_of(result: KoboResult, *, max_pages: int) -> list[Check]:
    first, fast, state = result.first_sync, result.fast_path, result.state
    pages = first.pages
    bad_calls = [f"{c.method} {c.path} {c.status}" for c in result.handshake if not 200 <= c.status < 300]
    not_200 = [f"page {p.number}: {p.status} {p.error or ''}".strip() for p in pages if p.status != 200 or p.error]
    slow = [f"page {p.number}: {p.ms:.0f} ms" for p in pages if p.ms > DEVICE_SECONDS * 1000]
    large = [f"page {p.number}: {p.body_bytes} B" for p in pages if p.body_bytes > DEVICE_BODY_BYTES]
    expected = result.books_on_disk
    found = []
    found.append(Check(name="handshake calls 2xx", ok=not bad_calls, detail="; ".join(bad_calls) or "all 2xx"))
    found.append(Check(name="every sync page 200", ok=not not_200, detail="; ".join(not_200[:5]) or f"{len(pages)}"))
    ended = bool(pages) and not pages[-1].has_continue
    found.append(
        Check(name="sync ends", ok=ended, detail="last page has no continue" if ended else f"{max_pages} pages")
    )
    found.append(Check(name="no page over 30 s", ok=not slow, detail="; ".join(slow[:5]) or "none"))
    found.append(Check(name="no page over 286 KB of JSON", ok=not large, detail="; ".join(large[:5]) or "none"))
    found.append(
        Check(
            name="every Kobo book sent once",
            ok=first.new_entitlements == expected == first.distinct_ids and not first.duplicates,
            detail=f"{first.new_entitlements} NewEntitlement items, {first.distinct_ids} distinct ids,"
            f" {first.duplicates} ids sent more than once; {result.books_with_kobo_file} books with an EPUB or"
            f" KEPUB in metadata.db, {expected} of them on disk",
        )
    )
    fast_page = fast.pages[0] if fast.pages else None
    found.append(
        Check(
            name="second sync: fast path, empty",
            ok=fast_page is not None
            and fast_page.status == 200
            and fast_page.items == 0
            and not fast_page.has_continue,
            detail=f"{len(fast.pages)} pages, {fast_page.items if fast_page else 0} items,"
            f" status {fast_page.status if fast_page else 0}, continue {fast_page.has_continue if fast_page else None}",
        )
    )
    if state is not None:
        found.append(
            Check(
                name="reading state calls 2xx",
                ok=not state.failures and state.requests > 0,
                detail=", ".join(f"{k}: {v}" for k, v in state.failures.items()) or f"{state.requests} requests",
            )
        )
    if state is not None and result.progress_sync is not None:
        progress = result.progress_sync
        found.append(
            Check(
                name="sync after the writes: the device's own states not echoed back (spec 8.1)",
                ok=progress.changed_states == 0 and all(p.status == 200 for p in progress.pages),
                detail=f"{progress.changed_states} books with a ChangedReadingState, {state.books_written} written",
            )
        )
    return found


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def print_report(result: KoboResult) -> None:
    machine, first = result.machine, result.first_sync
    pages = first.pages
    times = [p.ms for p in pages]
    print(
        f"\n== Kobo sync: {result.library}, {result.books_with_kobo_file} books with an EPUB or KEPUB"
        f" ({result.books_on_disk} on disk) =="
    )
    print(f"machine: nproc {machine.nproc}, {machine.cpu}, Python {machine.python}; server: 1 worker")
    print(f"server ready (/opds 200) {result.ready_ms:.0f} ms, search index complete {result.search_ready_ms:.0f} ms")
    print("handshake: " + ", ".join(f"{c.method} {c.path} {c.status} {c.ms:.1f} ms" for c in result.handshake))
    if pages:
        rest = times[1:] or times
        kinds: Counter[str] = Counter()
        for page in pages:
            kinds.update(page.kinds)
        print(
            f"first sync: {len(pages)} pages of up to {result.page_size}, {sum(p.items for p in pages)} items"
            f" ({', '.join(f'{k} {v}' for k, v in kinds.items())}) in {first.ms / 1000:.1f} s"
        )
        print(f"  first page (freezes the snapshot): {pages[0].ms:.0f} ms, {pages[0].items} items")
        print(
            f"  pages after it: p50 {_quantile(rest, 50):.0f} ms, p90 {_quantile(rest, 90):.0f} ms,"
            f" max {max(rest):.0f} ms; all pages: p50 {_quantile(times, 50):.0f} ms,"
            f" p90 {_quantile(times, 90):.0f} ms, max {max(times):.0f} ms"
        )
        print(
            f"  max body {max(p.body_bytes for p in pages)} B (as sent {max(p.wire_bytes for p in pages)} B),"
            f" max response headers {max(p.header_bytes for p in pages)} B,"
            f" max x-kobo-synctoken {max(p.token_length for p in pages)} chars"
        )
    fast = result.fast_path.pages[0] if result.fast_path.pages else None
    if fast is not None:
        print(f"second sync (fast path): {fast.ms:.1f} ms, {fast.items} items, status {fast.status}")
    if result.idle_wait_ms is not None:
        print(f"server busy after the syncs (background KEPUB conversions) for {result.idle_wait_ms / 1000:.1f} s")
    if result.state is not None:
        state = result.state
        print(
            f"reading state, {state.clients} clients x {state.seconds:.1f} s (seed {state.seed}):"
            f" {state.requests} requests, {state.rate:.0f} req/s, {state.books_written} books written"
        )
        for name, figures in (("PUT", state.put), ("GET", state.get)):
            print(
                f"  {name}: {figures.requests} requests, p50 {_ms(figures.p50_ms)}, p99 {_ms(figures.p99_ms)},"
                f" max {_ms(figures.max_ms)}"
            )
        compared = "each GET compared with its PUT" if state.verified else "GETs not compared (too few books)"
        print(f"  non-2xx / errors / differences ({compared}): {state.failures or 'none'}")
        if state.example:
            print(f"  first failure: {state.example}")
    if result.progress_sync is not None:
        progress = result.progress_sync
        print(
            f"sync after the writes: {len(progress.pages)} pages, {sum(p.items for p in progress.pages)} items,"
            f" {progress.changed_states} books with a ChangedReadingState, {progress.ms:.0f} ms"
        )
    print(f"server RSS after the run: {sum(m.rss_mib for m in result.memory):.0f} MiB")
    print("\n== checks ==")
    for check in result.checks:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")


def run_kobo(options: argparse.Namespace) -> int:
    library: Path = options.library
    if not (library / "metadata.db").is_file():
        print(f"{library} has no metadata.db", file=sys.stderr)
        return 2
    listed, expected = count_kobo_books(library)
    max_pages = expected + 100  # a page has at least one item: more pages means an endless loop
    work = Path(tempfile.mkdtemp(prefix="opds-kobo-"))
    try:
        server, token, search_ready_ms = start_server(library, work, options.page_size)
    except peers.PeerUnavailableError as exc:
        print(f"our server did not start: {exc}\nlog: {work / 'server.log'}", file=sys.stderr)
        return 2
    print(f"server up at {server.url} (log {server.log}); device token {token[:6]}...", flush=True)
    device_url = f"{server.url}/kobo/{token}"
    try:
        with httpx.Client(base_url=device_url, headers=DEVICE_HEADERS, timeout=REQUEST_TIMEOUT) as client:
            calls = handshake(client)
            first, final_token, books = sync(client, None, max_pages=max_pages)
            fast, fast_token, _ = sync(client, final_token, max_pages=1)
            state = None
            progress = None
            idle_wait_ms = None
            if options.state_clients > 0 and options.state_seconds > 0 and books:
                idle_wait_ms = wait_idle(server.process.pid)
                state = run_states(device_url, client.headers, books, options)
                progress, _, _ = sync(client, fast_token, max_pages=max_pages)
        memory = peers.read_memory(server.process.pid)
    finally:
        peers.stop(server.process)
    result = KoboResult(
        library=str(library),
        machine=read_machine(),
        page_size=options.page_size,
        books_with_kobo_file=listed,
        books_on_disk=expected,
        ready_ms=server.cold_start.root_ms,
        search_ready_ms=search_ready_ms,
        handshake=calls,
        first_sync=first,
        fast_path=fast,
        idle_wait_ms=idle_wait_ms,
        state=state,
        progress_sync=progress,
        memory=memory,
        checks=[],
        log=str(server.log),
    )
    result = msgspec.structs.replace(result, checks=checks_of(result, max_pages=max_pages))
    print_report(result)
    if options.json:
        Path(options.json).write_bytes(msgspec.json.format(msgspec.json.encode(result)))
        print(f"\nresults written to {options.json}")
    if options.keep:
        print(f"server log and data dir kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(check.ok for check in result.checks) else 1


def add_kobo_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kobo = commands.add_parser("kobo", help="a Kobo's first full sync, then reading-state latency")
    kobo.add_argument("--library", type=Path, required=True, help="a Calibre library (read only)")
    kobo.add_argument("--page-size", type=int, default=100, help="OPDS_KOBO_PAGE_SIZE: books per sync page")
    kobo.add_argument("--state-clients", type=int, default=20, help="concurrent clients for reading state")
    kobo.add_argument("--state-seconds", type=float, default=10.0, help="how long they run (0: skip)")
    kobo.add_argument("--seed", type=int, help="seed of the reading-state choices (default: random, printed)")
    kobo.add_argument("--json", help="also write the results here as JSON")
    kobo.add_argument("--keep", action="store_true", help="keep the server's log and data dir")
    kobo.set_defaults(run=run_kobo)
