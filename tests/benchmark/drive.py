"""``drive``: the server's memory while concurrent clients download large books from Google Drive
(the Drive emulator, ``tests/drive_emulator.py``); it must stay flat, as downloads stream in
``CHUNK_SIZE`` chunks and never hold a whole book.

1. A work dir: the fixture library's book folders in ``drive/Calibre Library`` (the emulator's
   root), where the EPUBs of ``--books`` books (``data.format = 'EPUB'`` in ``metadata.db``, opened
   read only) are replaced by ``--size-mb`` MiB of seeded random bytes (the seed is printed; the
   download route never parses them). The served ``library/`` holds only ``metadata.db``.
2. The emulator runs as a process of its own, so its memory is not the server's.
3. For 1 client, then ``--clients``, ``--rounds`` times: a fresh server (its own data dir, the
   Drive settings, ``MALLOC_ARENA_MAX=2`` as the CLI sets it). After ``/health`` answers 200, one
   ``GET /opds`` and one small book from Drive (the index, the path map and the Drive session
   made), and the server idle, the baseline VmRSS is read. Then every client, each in a thread
   with its own ``httpx.Client``, streams a different large book (round robin when clients
   outnumber books), counting its bytes and their MD5 against the file on disk, while a thread
   reads VmRSS every ``SAMPLE_SECONDS``. granian's worker is a child of its main process: the
   worker (every process below the main one) and the total are both reported, with the worker's
   VmHWM at the end.

Checks (exit status 1 when one fails): every download whole and byte for byte; the total RSS
increase with ``--clients`` clients (the worst round) under ``FLAT_BASE_MIB + FLAT_PER_CLIENT_MIB``
per client. Clients run on the same CPUs as the server and the emulator (the CPU count is printed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import httpx
import msgspec

from opds_server.calibre.books import book_file_name
from opds_server.storage.files import CHUNK_SIZE
from tests.benchmark import peers
from tests.benchmark.kobo import Check, Machine, read_machine
from tests.benchmark.kobo_states import wait_idle
from tests.conftest import FIXTURE_LIBRARY, ROOT, LiveServer, start_server, stop_server

MIB = 1024 * 1024
SAMPLE_SECONDS = 0.02
FLAT_BASE_MIB = 64.0
FLAT_PER_CLIENT_MIB = 2.0
EMULATOR_TIMEOUT = 300.0
"""The emulator hashes every file before it answers: a few seconds per GiB."""
REQUEST_TIMEOUT = 120.0
_RSS = re.compile(rb"^VmRSS:\s+(\d+) kB", re.MULTILINE)
_HWM = re.compile(rb"^VmHWM:\s+(\d+) kB", re.MULTILINE)


class BigBook(msgspec.Struct, frozen=True, kw_only=True):
    book_id: int
    relative: str
    size: int
    md5: str


class Memory(msgspec.Struct, frozen=True, kw_only=True):
    """MiB; ``worker``: every process below granian's main one; ``total``: with the main one."""

    worker_pids: list[int]
    baseline_worker: float
    baseline_total: float
    peak_worker: float
    peak_total: float
    worker_hwm: float
    """The worker's VmHWM after the downloads (over its whole life, start included)."""
    increase_worker: float
    increase_total: float
    samples: int


class Run(msgspec.Struct, frozen=True, kw_only=True):
    clients: int
    round: int
    wall_s: float
    bytes: int
    mib_per_s: float
    client_p50_s: float
    client_max_s: float
    complete: int
    failures: list[str]
    memory: Memory


class DriveResult(msgspec.Struct, frozen=True, kw_only=True):
    machine: Machine
    seed: int
    size_mib: int
    books: list[BigBook]
    clients: int
    runs: list[Run]
    increase_ratio: float | None
    """The worst total increase with ``clients`` clients over the worst with one (None: one grew under 1 MiB)."""
    checks: list[Check]
    work: str


# The library and the emulator


def build_work(work: Path, count: int, size_mib: int, seed: int) -> tuple[list[BigBook], int | None]:
    """The Drive's folder with ``count`` large EPUBs and the served library (``metadata.db`` only);
    the large books, and a book whose EPUB was left as it was (``None``: none was)."""
    books = work / "drive" / "Calibre Library"
    shutil.copytree(FIXTURE_LIBRARY, books, ignore=shutil.ignore_patterns("metadata.db*", ".calnotes"))
    (work / "library").mkdir()
    shutil.copyfile(FIXTURE_LIBRARY / "metadata.db", work / "library" / "metadata.db")
    with closing(sqlite3.connect(f"{(work / 'library' / 'metadata.db').as_uri()}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT b.id, b.path, d.name FROM data d JOIN books b ON b.id = d.book"
            " WHERE d.format = 'EPUB' ORDER BY b.id"
        ).fetchall()
    rng = random.Random(seed)
    found = []
    for book_id, folder, name in rows[:count]:
        relative = f"{folder}/{book_file_name(name, 'EPUB')}"
        digest = hashlib.md5(usedforsecurity=False)
        with (books / relative).open("wb") as out:
            for _ in range(size_mib):
                block = rng.randbytes(MIB)
                digest.update(block)
                out.write(block)
        found.append(BigBook(book_id=book_id, relative=relative, size=size_mib * MIB, md5=digest.hexdigest()))
    return found, int(rows[count][0]) if len(rows) > count else None


def start_emulator(work: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """The emulator on ``drive/Calibre Library``, and the line it printed, once it printed it."""
    log = work / "emulator.log"
    command = [sys.executable, "-m", "tests.drive_emulator", str(work / "drive" / "Calibre Library")]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--credentials", str(work / "service-account.json")],
            cwd=ROOT,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    deadline = time.monotonic() + EMULATOR_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        for line in log.read_bytes().splitlines():
            if line.startswith(b"{"):
                return process, {str(k): str(v) for k, v in json.loads(line).items()}
        time.sleep(0.1)
    peers.stop(process)
    msg = f"the Drive emulator printed no settings:\n{log.read_text(errors='replace')[-2000:]}"
    raise peers.PeerUnavailableError(msg)


# Memory


def _status_kib(pid: int, field: re.Pattern[bytes]) -> int:
    try:
        found = field.search(Path(f"/proc/{pid}/status").read_bytes())
    except OSError:
        return 0
    return int(found[1]) if found else 0


class Sampler(threading.Thread):
    """The highest VmRSS of the worker(s), and of them with the main process, until stopped."""

    def __init__(self, main: int, workers: list[int]) -> None:
        super().__init__(daemon=True)
        self.main, self.workers = main, workers
        self.peak_worker = self.peak_total = 0
        self.samples = 0
        self._done = threading.Event()

    def read(self) -> tuple[int, int]:
        """KiB of the worker(s) and of everything."""
        worker = sum(_status_kib(pid, _RSS) for pid in self.workers)
        return worker, worker + _status_kib(self.main, _RSS)

    def run(self) -> None:
        while True:
            worker, total = self.read()
            self.peak_worker, self.peak_total = max(self.peak_worker, worker), max(self.peak_total, total)
            self.samples += 1
            if self._done.wait(SAMPLE_SECONDS):
                return

    def stop(self) -> None:
        self._done.set()
        self.join()


# The downloads


class _Download(msgspec.Struct, kw_only=True):
    started: float = 0.0
    ended: float = 0.0
    bytes: int = 0
    failure: str = ""


def download(base_url: str, book: BigBook, start: threading.Barrier) -> _Download:
    """Stream one book, checking its length and MD5."""
    done = _Download()
    digest = hashlib.md5(usedforsecurity=False)
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as client:
        start.wait()
        done.started = time.perf_counter()
        try:
            with client.stream("GET", f"/download/{book.book_id}/{book.book_id}.epub") as answer:
                length = answer.headers.get("content-length")
                for chunk in answer.iter_bytes(CHUNK_SIZE):
                    done.bytes += len(chunk)
                    digest.update(chunk)
                status = answer.status_code
        except httpx.HTTPError as exc:
            done.failure = f"book {book.book_id}: {type(exc).__name__} after {done.bytes} bytes: {exc}"
        done.ended = time.perf_counter()
    if done.failure:
        return done
    if status != 200 or length != str(book.size) or done.bytes != book.size or digest.hexdigest() != book.md5:
        done.failure = (
            f"book {book.book_id}: HTTP {status}, Content-Length {length}, {done.bytes} of {book.size} bytes,"
            f" MD5 {'ok' if digest.hexdigest() == book.md5 else 'differs'}"
        )
    return done


def warm_up(server: LiveServer, small: int | None) -> None:
    """``/health`` 200, the root feed and one small book from Drive, then the server idle."""
    deadline = time.monotonic() + 60
    with server.client() as client:
        while client.get("/health").status_code != 200:
            if time.monotonic() > deadline:
                raise peers.PeerUnavailableError("/health never answered 200")
            time.sleep(0.2)
        for path in ["/opds"] + ([f"/download/{small}/{small}.epub"] if small is not None else []):
            answer = client.get(path)
            if answer.status_code != 200:
                raise peers.PeerUnavailableError(f"GET {path} answered {answer.status_code}: {answer.text[:200]}")
    wait_idle(server.process.pid)


def run_clients(
    work: Path, env: dict[str, str], books: list[BigBook], clients: int, *, round_: int, small: int | None
) -> Run:
    data = work / f"data-{clients}-{round_}"
    server = start_server(work / "library", data, work / f"server-{clients}-{round_}.log", env)
    try:
        warm_up(server, small)
        workers = [m.pid for m in peers.read_memory(server.process.pid) if m.role == "child"]
        sampler = Sampler(server.process.pid, workers)
        baseline_worker, baseline_total = sampler.read()
        sampler.start()
        start = threading.Barrier(clients + 1, timeout=60)
        with ThreadPoolExecutor(max_workers=clients) as pool:
            futures = [pool.submit(download, server.url, books[n % len(books)], start) for n in range(clients)]
            start.wait()
            results = [future.result() for future in futures]
        sampler.stop()
        hwm = sum(_status_kib(pid, _HWM) for pid in workers)
    finally:
        stop_server(server)
    moved = sum(r.bytes for r in results)
    wall = max(r.ended for r in results) - min(r.started for r in results)
    times = [r.ended - r.started for r in results if not r.failure] or [0.0]
    memory = Memory(
        worker_pids=workers,
        baseline_worker=baseline_worker / 1024,
        baseline_total=baseline_total / 1024,
        peak_worker=sampler.peak_worker / 1024,
        peak_total=sampler.peak_total / 1024,
        worker_hwm=hwm / 1024,
        increase_worker=(sampler.peak_worker - baseline_worker) / 1024,
        increase_total=(sampler.peak_total - baseline_total) / 1024,
        samples=sampler.samples,
    )
    return Run(
        clients=clients,
        round=round_,
        wall_s=wall,
        bytes=moved,
        mib_per_s=moved / MIB / wall if wall else 0.0,
        client_p50_s=statistics.median(times),
        client_max_s=max(times),
        complete=sum(1 for r in results if not r.failure),
        failures=[r.failure for r in results if r.failure],
        memory=memory,
    )


# The report


def _worst(runs: list[Run], clients: int) -> Run:
    return max((r for r in runs if r.clients == clients), key=lambda r: r.memory.increase_total)


def checks_of(runs: list[Run], clients: int) -> tuple[list[Check], float | None]:
    worst, single = _worst(runs, clients), _worst(runs, 1)
    limit = FLAT_BASE_MIB + FLAT_PER_CLIENT_MIB * clients
    failures = [f for r in runs for f in r.failures]
    ratio = worst.memory.increase_total / single.memory.increase_total if single.memory.increase_total >= 1 else None
    checks = [
        Check(
            name="every download whole, byte for byte",
            ok=not failures,
            detail=f"{sum(r.complete for r in runs)} of {sum(r.clients for r in runs)}"
            + (f"; first failure: {failures[0]}" if failures else ""),
        ),
        Check(
            name=f"RSS increase with {clients} clients under {limit:.0f} MiB",
            ok=worst.memory.increase_total <= limit,
            detail=f"{worst.memory.increase_total:.1f} MiB (worker {worst.memory.increase_worker:.1f} MiB)"
            f" for {worst.bytes / MIB:,.0f} MiB downloaded",
        ),
    ]
    return checks, ratio


def print_report(result: DriveResult) -> None:
    machine = result.machine
    print(f"\n== Google Drive downloads: {len(result.books)} books of {result.size_mib} MiB (seed {result.seed}) ==")
    print(f"machine: nproc {machine.nproc}, {machine.cpu}, Python {machine.python}; server: 1 worker")
    print(
        f"{'clients':>7} {'round':>5} {'wall s':>7} {'MiB':>7} {'MiB/s':>7} {'p50 s':>6} {'max s':>6}"
        f" | worker MiB: {'base':>6} {'peak':>6} {'+':>6} {'HWM':>6} | total MiB: {'base':>6} {'peak':>6} {'+':>6}"
    )
    for run in result.runs:
        m = run.memory
        print(
            f"{run.clients:7} {run.round:5} {run.wall_s:7.2f} {run.bytes / MIB:7.0f} {run.mib_per_s:7.1f}"
            f" {run.client_p50_s:6.2f} {run.client_max_s:6.2f} | {'':11} {m.baseline_worker:6.1f}"
            f" {m.peak_worker:6.1f} {m.increase_worker:6.1f} {m.worker_hwm:6.1f} | {'':10} {m.baseline_total:6.1f}"
            f" {m.peak_total:6.1f} {m.increase_total:6.1f}"
        )
    print()
    for run in [_worst(result.runs, n) for n in dict.fromkeys((1, result.clients))]:
        m = run.memory
        print(
            f"{run.clients} client(s), worst round: peak RSS {m.peak_total:.1f} MiB (worker {m.peak_worker:.1f}), RSS"
            f" grew {m.increase_total:.1f} MiB (worker {m.increase_worker:.1f}) for {run.bytes / MIB:,.0f} MiB"
            f" downloaded ({m.increase_total * MIB / run.bytes:.1%}); {run.mib_per_s:.0f} MiB/s, {run.wall_s:.2f} s"
        )
    ratio = "-" if result.increase_ratio is None else f"{result.increase_ratio:.1f}x"
    print(f"RSS increase with {result.clients} clients: {ratio} one client's")
    print("\n== checks ==")
    for check in result.checks:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")


def run_drive(options: argparse.Namespace) -> int:
    if min(options.clients, options.size_mb, options.books, options.rounds) < 1:
        print("--clients, --size-mb, --books and --rounds must be at least 1", file=sys.stderr)
        return 2
    seed: int = options.seed if options.seed is not None else random.SystemRandom().randrange(2**32)
    work = Path(tempfile.mkdtemp(prefix="opds-drive-"))
    try:
        return _run(options, work, seed)
    finally:
        if options.keep:
            print(f"work dir kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _run(options: argparse.Namespace, work: Path, seed: int) -> int:
    print(f"writing {options.books} books of {options.size_mb} MiB in {work} (seed {seed})", flush=True)
    books, small = build_work(work, options.books, options.size_mb, seed)
    if not books:
        print(f"{FIXTURE_LIBRARY} has no EPUB", file=sys.stderr)
        return 2
    emulator: subprocess.Popen[bytes] | None = None
    runs = []
    try:
        emulator, drive = start_emulator(work)
        env = {
            "GOOGLE_DRIVE_CREDENTIALS": drive["credentials"],
            "GOOGLE_DRIVE_FOLDER_ID": drive["folder_id"],
            "GOOGLE_DRIVE_API_URL": drive["api_url"],
            "MALLOC_ARENA_MAX": "2",
        }
        for round_ in range(1, options.rounds + 1):
            for clients in dict.fromkeys((1, options.clients)):
                print(f"round {round_}: {clients} client(s) on a fresh server", flush=True)
                runs.append(run_clients(work, env, books, clients, round_=round_, small=small))
    except peers.PeerUnavailableError as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        if emulator is not None:
            peers.stop(emulator)
    checks, ratio = checks_of(runs, options.clients)
    result = DriveResult(
        machine=read_machine(),
        seed=seed,
        size_mib=options.size_mb,
        books=books,
        clients=options.clients,
        runs=runs,
        increase_ratio=ratio,
        checks=checks,
        work=str(work),
    )
    print_report(result)
    if options.json:
        Path(options.json).write_bytes(msgspec.json.format(msgspec.json.encode(result)))
        print(f"\nresults written to {options.json}")
    return 0 if all(check.ok for check in checks) else 1


def add_drive_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    drive = commands.add_parser("drive", help="server memory while clients download large books from Google Drive")
    drive.add_argument("--clients", type=int, default=20, help="concurrent downloads (after a run with one)")
    drive.add_argument("--size-mb", type=int, default=64, help="MiB of each large book")
    drive.add_argument("--books", type=int, default=20, help="books made large (clients share them round robin)")
    drive.add_argument("--rounds", type=int, default=1, help="times each client count runs, on a fresh server")
    drive.add_argument("--seed", type=int, help="seed of the books' bytes (default: random, printed)")
    drive.add_argument("--json", help="also write the results here as JSON")
    drive.add_argument("--keep", action="store_true", help="keep the work dir (books, logs, data dirs)")
    drive.set_defaults(run=run_drive)
