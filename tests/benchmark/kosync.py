"""``kosync``: KOReader's progress sync (``/kosync``, shared/specs/koreader-sync.md A.2, A.6-A.8) under
concurrent devices, against the server's cheapest answer in the same run.

1. Up to ``SAMPLE_FILES`` random book files of the library (``books.path`` / ``data.name`` +
   ``.`` + lower(format), read from ``metadata.db`` opened read only) get their KOReader document
   key, ``sync.koreader.keys.partial_md5``, as a device computes it. Files whose bytes another
   sampled file has (a generated library hard-links a few templates) would share one key, which
   names no single book (spec C.2), so those are pushed by their "Filename" key instead
   (``filename_key`` of ``koreader_file_name``, the name KOReader's OPDS browser gives a download,
   which the server indexes too); how many is printed.
2. Our server starts alone on the library (a fresh data dir in a temporary folder, ``--workers``,
   user ``bench`` made through the CLI). Once ``/health`` answers 200 the run waits until the
   server is idle (the library index and the document-key index are built in the background on a
   first start), then until every sampled key is in the server's key index (``document_keys`` in
   its ``opds.db``, opened read only), so pushes find their books. One ``GET /kosync/users/auth``
   then pays the one argon2 check of the credential (it is cached after that); its time is shown.
3. Baseline: ``--clients`` threads ``GET /kosync/healthcheck`` (no auth, no database) for
   ``--seconds``.
4. Load: ``--clients`` threads, each its own ``httpx.Client`` with KOReader's headers (``Accept:
   application/vnd.koreader.v1+json``, ``x-auth-user``, ``x-auth-key`` = md5 of the password) and
   its own ``device`` / ``device_id``, for ``--seconds``: ``PUT /kosync/syncs/progress`` of a random
   document (a random key no book has in ``UNKNOWN_SHARE`` of the loops: a sideloaded file) with a
   random percentage truncated to 4 decimals and an XPointer, then ``GET
   /kosync/syncs/progress/{document}``. Each client pushes documents of its own (whole books, so
   the server's "newest record of any file of the book" rule cannot answer with another client's
   push), so the GET must give back the PUT's percentage, progress, device and device_id, with an
   integer ``timestamp`` in seconds (spec A.7, A.8; milliseconds would always look newer).
5. After the load, the server's ``kosync_progress`` shows which pushed documents were linked to a
   book: every library document whose key names exactly one book in the key index must be.

Checks (exit status 1 when one fails): the key index holds the sample; every call 2xx; every GET
giving back its PUT; PUT and GET p99 under ``P99_LIMIT_MS``, far under KOReader's 2 s connect
timeout (spec A.2); every document naming one book linked. Times are absolute, for this machine
(its CPU count is printed); the clients run on the same CPUs as the server. Random choices print
their seed.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import msgspec

from opds_server.calibre.books import book_file_name
from sync.koreader.keys import filename_key, koreader_file_name, partial_md5
from tests.benchmark import peers
from tests.benchmark.kobo import Check, Machine, _cli, read_machine
from tests.benchmark.kobo_states import Latency, latency, wait_idle
from tests.benchmark.kobo_sync import since
from tests.conftest import free_port

SAMPLE_FILES = 500
UNKNOWN_SHARE = 0.2
"""Share of the pushes that name a document no book has (a sideloaded file, spec A.11)."""
KOREADER_CONNECT_MS = 2000.0
"""KOReader gives up on a push or pull that does not connect in 2 s (5 s in all; spec A.2)."""
P99_LIMIT_MS = 500.0
INDEX_TIMEOUT = 600.0
REQUEST_TIMEOUT = 10.0
"""Twice KOReader's 5 s, so a slow answer is measured instead of dropped."""
USER = "bench"
ACCEPT = "application/vnd.koreader.v1+json"
LATENCY_CHECK = "PUT and GET p99 under 500 ms"

KeyKind = Literal["binary", "filename"]


class Sample(msgspec.Struct, frozen=True, kw_only=True):
    seed: int
    files: int
    """Book files sampled, on disk."""
    binary_keys: int
    """Distinct partial MD5s among them."""
    files_by_filename_key: int
    """Sampled files whose bytes another sampled file has too: pushed by their filename key."""
    documents: int
    """Distinct library documents pushed."""
    books: int


class Baseline(msgspec.Struct, frozen=True, kw_only=True):
    clients: int
    seconds: float
    requests: int
    rate: float
    latency: Latency
    failures: dict[str, int]


class Load(msgspec.Struct, frozen=True, kw_only=True):
    clients: int
    seconds: float
    seed: int
    requests: int
    rate: float
    put: Latency
    get: Latency
    failures: dict[str, int]
    """``"PUT 500"``, ``"GET ReadTimeout"``, ``"GET differs from PUT: percentage"``...: count."""
    example: str
    """The first failure, with the bodies."""
    verified: bool
    """Whether each GET was compared with its PUT (each client had documents of its own)."""
    documents_written: int
    unknown_pushes: int


class Linking(msgspec.Struct, frozen=True, kw_only=True):
    """What ``kosync_progress`` shows after the load, for the library documents pushed."""

    pushed: int
    naming_one_book: int
    """Of those, the documents whose key names exactly one book in the server's key index."""
    linked: int
    linked_as_expected: int
    not_indexed: int
    unknown_linked: int
    """Random keys no book has, linked to a book all the same (must be 0)."""


class Ratios(msgspec.Struct, frozen=True, kw_only=True):
    """Load against the healthcheck baseline of the same run."""

    put_p99: float | None
    get_p99: float | None
    rate: float


class KosyncResult(msgspec.Struct, frozen=True, kw_only=True):
    library: str
    machine: Machine
    workers: int
    ready_ms: float
    """From ``Popen`` to the first 200 on ``/health``."""
    idle_wait_ms: float
    """Then until the server was idle (its background indexes built)."""
    index_wait_ms: float
    """Then until the key index held every sampled key."""
    first_auth_ms: float
    """The first ``/kosync/users/auth``: one argon2 check, cached after it."""
    sample: Sample
    baseline: Baseline
    load: Load
    ratios: Ratios
    linking: Linking | None
    memory: list[peers.ProcessMemory]
    checks: list[Check]
    log: str


# The documents


@dataclass(frozen=True)
class _File:
    book_id: int
    path: Path
    book_format: str
    title: str
    authors: tuple[str, ...]


@dataclass(frozen=True)
class _Document:
    key: str
    kind: KeyKind
    book_ids: frozenset[int]


def read_files(library: Path, count: int, rng: random.Random) -> list[_File]:
    """Up to ``count`` random book files of the library that are on disk."""
    with closing(sqlite3.connect(f"{(library / 'metadata.db').as_uri()}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT b.id, b.path, d.name, d.format, b.title FROM data d JOIN books b ON b.id = d.book ORDER BY d.id"
        ).fetchall()
        authors: defaultdict[int, list[str]] = defaultdict(list)
        for book, name in db.execute(
            "SELECT l.book, a.name FROM books_authors_link l JOIN authors a ON a.id = l.author ORDER BY l.id"
        ):
            authors[book].append(name)
    files = []
    for book, folder, name, book_format, title in rng.sample(rows, len(rows)):
        path = library / folder / book_file_name(name, str(book_format).upper())
        if path.is_file():
            files.append(_File(book, path, str(book_format).upper(), str(title or ""), tuple(authors[book])))
            if len(files) == count:
                break
    return files


def document_keys(files: Sequence[_File]) -> tuple[list[_Document], int, int]:
    """The documents a device would push for these files (the partial MD5 where no other sampled
    file has the same bytes, else the filename key), how many distinct partial MD5s the files have,
    and how many files are pushed by their filename key."""
    binary: dict[_File, str] = {}
    for file in files:
        with file.path.open("rb") as source:
            binary[file] = partial_md5(source)
    shared = {key for key, n in Counter(binary.values()).items() if n > 1}
    books: defaultdict[tuple[str, KeyKind], set[int]] = defaultdict(set)
    by_name = 0
    for file, key in binary.items():
        if key in shared:
            by_name += 1
            name = koreader_file_name(file.authors, file.title, file.book_format.lower())
            books[filename_key(name), "filename"].add(file.book_id)
        else:
            books[key, "binary"].add(file.book_id)
    documents = [_Document(key, kind, frozenset(ids)) for (key, kind), ids in books.items()]
    return documents, len(set(binary.values())), by_name


def share_out(documents: Sequence[_Document], clients: int) -> list[list[_Document]] | None:
    """Documents split between clients so that no book and no key is pushed by two of them
    (connected groups of keys and books stay together); ``None`` when there are fewer groups than
    clients."""
    parent: dict[object, object] = {}

    def root(node: object) -> object:
        while parent.setdefault(node, node) != node:
            node = parent[node]
        return node

    for document in documents:
        for book in document.book_ids:
            parent[root(("book", book))] = root(("key", document.key))
    groups: defaultdict[object, list[_Document]] = defaultdict(list)
    for document in documents:
        groups[root(("key", document.key))].append(document)
    if len(groups) < clients:
        return None
    shares: list[list[_Document]] = [[] for _ in range(clients)]
    for group in sorted(groups.values(), key=len, reverse=True):
        min(shares, key=len).extend(group)
    return shares


# Starting the server


def start_server(library: Path, work: Path, workers: int) -> peers.Server:
    """Our server on the library with user ``bench``, once ``/health`` answers 200."""
    port = free_port()
    env = {"OPDS_NO_BOOTSTRAP": "1", "OPDS_DATA_DIR": str(work / "data")}
    _cli(["users", "add", USER, "--password-stdin"], env, f"{peers.PASSWORD}\n")
    command = [sys.executable, "-m", "opds_server", "serve", "--library", str(library)]
    command += ["--host", peers.HOST, "--port", str(port), "--workers", str(workers)]
    launch = peers.Launch(command, work / "server.log", env)
    return peers._start("ours", launch, port, {}, ("/health", "/kosync/healthcheck"))


def _server_db(work: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{(work / 'data' / 'opds.db').as_uri()}?mode=ro", uri=True, timeout=30)


def _books_by_key(db: sqlite3.Connection, keys: Sequence[str]) -> dict[str, int]:
    """How many books the server's key index gives each key (absent: none)."""
    found: dict[str, int] = {}
    for start in range(0, len(keys), 500):
        batch = keys[start : start + 500]
        marks = ",".join("?" * len(batch))
        found.update(
            db.execute(
                f"SELECT key, COUNT(DISTINCT book_id) FROM document_keys WHERE key IN ({marks}) GROUP BY key", batch
            ).fetchall()
        )
    return found


def wait_indexed(work: Path, keys: Sequence[str], process: subprocess.Popen[bytes]) -> tuple[float, int]:
    """Milliseconds until the server's key index held every key, and how many it lacks at the end."""
    started = time.perf_counter()
    missing = len(keys)
    while time.perf_counter() - started < INDEX_TIMEOUT and process.poll() is None:
        try:
            with closing(_server_db(work)) as db:
                missing = len(keys) - len(_books_by_key(db, keys))
        except sqlite3.OperationalError:
            pass  # not migrated yet, or locked by a writer for longer than the timeout
        if missing == 0:
            break
        time.sleep(1.0)
    return since(started), missing


def read_linking(work: Path, documents: Sequence[_Document], unknown: set[str]) -> Linking:
    """Which pushed documents the server linked to a book (``unknown``: the random keys pushed)."""
    with closing(_server_db(work)) as db:
        stored: dict[str, int | None] = dict(db.execute("SELECT document, book_id FROM kosync_progress").fetchall())
        pushed = [d for d in documents if d.key in stored]
        by_key = _books_by_key(db, [d.key for d in pushed])
    naming_one = {d.key for d in pushed if by_key.get(d.key) == 1}
    return Linking(
        pushed=len(pushed),
        naming_one_book=len(naming_one),
        linked=sum(1 for d in pushed if stored[d.key] is not None),
        linked_as_expected=sum(1 for d in pushed if d.key in naming_one and stored[d.key] in d.book_ids),
        not_indexed=sum(1 for d in pushed if d.key not in by_key),
        unknown_linked=sum(1 for key in unknown if stored.get(key) is not None),
    )


# The load


def koreader_headers(password: str) -> dict[str, str]:
    """What the sync plugin sends on every call but registration (spec A.2)."""
    return {
        "Accept": ACCEPT,
        "x-auth-user": USER,
        "x-auth-key": hashlib.md5(password.encode(), usedforsecurity=False).hexdigest(),
    }


@dataclass
class _Worker:
    puts: list[float] = field(default_factory=list)
    gets: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    written: set[str] = field(default_factory=set)
    unknown_pushes: int = 0
    example: str = ""

    def fail(self, reason: str, example: str) -> None:
        self.failures[reason] += 1
        self.example = self.example or example


def _differences(body: bytes, sent: Mapping[str, object]) -> list[str]:
    """How a pulled record differs from the push before it (spec A.7): echoed exactly, with an
    integer timestamp in seconds (a millisecond one is a thousand times now)."""
    try:
        record = msgspec.json.decode(body, type=dict[str, Any])
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ["not a JSON object"]
    differences = [name for name, value in sent.items() if record.get(name) != value]
    timestamp = record.get("timestamp")
    if type(timestamp) is not int or abs(timestamp - time.time()) > 300:
        differences.append("timestamp")
    return differences


@dataclass(frozen=True)
class _Device:
    name: str
    device_id: str
    documents: Sequence[str]
    unknown: Sequence[str]


def _push_pull(client: httpx.Client, device: _Device, seed: int, deadline: float, *, verify: bool) -> _Worker:
    """PUT then GET of one random document until ``deadline``; with ``verify`` (the device's
    documents are its own) the GET must give back the PUT."""
    rng = random.Random(seed)
    done = _Worker()
    with client:
        while time.perf_counter() < deadline:
            is_unknown = rng.random() < UNKNOWN_SHARE
            document = rng.choice(device.unknown if is_unknown else device.documents)
            sent: dict[str, object] = {
                "document": document,
                "progress": f"/body/DocFragment[{rng.randint(1, 60)}]/body/p[{rng.randint(1, 300)}]/text().0",
                "percentage": math.floor(rng.random() * 10_000) / 10_000,  # truncated, as KOReader does
                "device": device.name,
                "device_id": device.device_id,
            }
            body = msgspec.json.encode(sent)
            method = "PUT"
            try:
                started = time.perf_counter()
                put = client.put("/syncs/progress", content=body, headers={"Content-Type": "application/json"})
                done.puts.append(since(started))
                if not put.is_success:
                    done.fail(f"PUT {put.status_code}", f"PUT {body!r}: {put.status_code} {put.text[:200]}")
                    continue
                done.written.add(document)
                if is_unknown:
                    done.unknown_pushes += 1
                method = "GET"
                started = time.perf_counter()
                got = client.get(f"/syncs/progress/{document}")
                done.gets.append(since(started))
            except httpx.HTTPError as exc:
                done.fail(f"{method} {type(exc).__name__}", f"{method} {document}: {exc!r}")
                continue
            if not got.is_success:
                done.fail(f"GET {got.status_code}", f"GET {document}: {got.status_code} {got.text[:200]}")
            elif verify and (differences := _differences(got.content, sent)):
                reason = "GET differs from PUT: " + ", ".join(differences)
                done.fail(reason, f"PUT {body!r} then GET {got.content[:300]!r}")
    return done


def _healthcheck(client: httpx.Client, deadline: float) -> _Worker:
    done = _Worker()
    with client:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                answer = client.get("/healthcheck")
            except httpx.HTTPError as exc:
                done.fail(f"GET {type(exc).__name__}", repr(exc))
                continue
            done.gets.append(since(started))
            if not answer.is_success:
                done.fail(f"GET {answer.status_code}", answer.text[:200])
    return done


_T = TypeVar("_T")


def _in_threads(tasks: Sequence[Callable[[float], _T]], seconds: float) -> tuple[list[_T], float]:
    """Run each task (given the deadline) in a thread of its own; the results and the seconds taken."""
    started = time.perf_counter()
    deadline = started + seconds
    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        futures = [pool.submit(task, deadline) for task in tasks]
        results = [future.result() for future in futures]
    return results, time.perf_counter() - started


def _failures(workers: Sequence[_Worker]) -> dict[str, int]:
    failures: Counter[str] = Counter()
    for worker in workers:
        failures.update(worker.failures)
    return dict(failures)


def run_baseline(base_url: str, clients: int, seconds: float) -> Baseline:
    def task(deadline: float) -> _Worker:
        return _healthcheck(httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT), deadline)

    workers, elapsed = _in_threads([task] * clients, seconds)
    times = [t for w in workers for t in w.gets]
    return Baseline(
        clients=clients,
        seconds=elapsed,
        requests=len(times),
        rate=len(times) / elapsed,
        latency=latency(times),
        failures=_failures(workers),
    )


def run_load(
    base_url: str, headers: Mapping[str, str], documents: Sequence[_Document], options: argparse.Namespace, seed: int
) -> tuple[Load, set[str]]:
    """The load, and the random keys no book has that were pushed."""
    rng = random.Random(seed)
    shares = share_out(documents, options.clients)
    keys = [d.key for d in documents]
    devices = []
    for n in range(options.clients):
        own = [d.key for d in shares[n]] if shares is not None else keys
        random_keys = [f"{rng.getrandbits(128):032x}" for _ in range(max(1, len(own) // 4))]
        devices.append(_Device(f"Bench Reader {n + 1}", f"{rng.getrandbits(128):032X}", own, random_keys))
    verify = shares is not None

    def task(device: _Device, n: int) -> Callable[[float], _Worker]:
        def run(deadline: float) -> _Worker:
            client = httpx.Client(base_url=base_url, headers=dict(headers), timeout=REQUEST_TIMEOUT)
            return _push_pull(client, device, seed + 1 + n, deadline, verify=verify)

        return run

    workers, elapsed = _in_threads([task(d, n) for n, d in enumerate(devices)], options.seconds)
    puts = [t for w in workers for t in w.puts]
    gets = [t for w in workers for t in w.gets]
    unknown = {key for device in devices for key in device.unknown}
    load = Load(
        clients=options.clients,
        seconds=elapsed,
        seed=seed,
        requests=len(puts) + len(gets),
        rate=(len(puts) + len(gets)) / elapsed,
        put=latency(puts),
        get=latency(gets),
        failures=_failures(workers),
        example=next((w.example for w in workers if w.example), ""),
        verified=verify,
        documents_written=len({key for w in workers for key in w.written}),
        unknown_pushes=sum(w.unknown_pushes for w in workers),
    )
    return load, unknown & {key for w in workers for key in w.written}


# The report


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def checks_of(result: KosyncResult, missing: int) -> list[Check]:
    load, baseline, linking = result.load, result.baseline, result.linking
    worst = max((x for x in (load.put.p99_ms, load.get.p99_ms) if x is not None), default=None)
    non_2xx = {k: v for k, v in load.failures.items() if not k.startswith("GET differs")}
    differs = {k: v for k, v in load.failures.items() if k.startswith("GET differs")}
    found = [
        Check(
            name="the key index holds every sampled key",
            ok=missing == 0,
            detail=f"{missing} of {result.sample.documents} keys missing after {result.index_wait_ms / 1000:.1f} s",
        ),
        Check(
            name="healthcheck calls 2xx",
            ok=not baseline.failures and baseline.requests > 0,
            detail=", ".join(f"{k}: {v}" for k, v in baseline.failures.items()) or f"{baseline.requests} requests",
        ),
        Check(
            name="progress calls 2xx",
            ok=not non_2xx and load.requests > 0,
            detail=", ".join(f"{k}: {v}" for k, v in non_2xx.items()) or f"{load.requests} requests",
        ),
        Check(
            name="each GET gives back its PUT",
            ok=load.verified and not differs,
            detail=", ".join(f"{k}: {v}" for k, v in differs.items())
            or ("all" if load.verified else "not compared: fewer groups of documents than clients"),
        ),
        Check(
            name=LATENCY_CHECK,
            ok=worst is not None and worst <= P99_LIMIT_MS,
            detail=f"worst p99 {worst or 0:.1f} ms; KOReader gives up after {KOREADER_CONNECT_MS / 1000:.0f} s",
        ),
    ]
    if linking is not None:
        found.append(
            Check(
                name="every pushed document naming one book linked to it",
                ok=linking.linked_as_expected == linking.naming_one_book
                and not linking.not_indexed
                and not linking.unknown_linked,
                detail=f"{linking.linked_as_expected} of {linking.naming_one_book}; {linking.not_indexed} not in the"
                f" key index; {linking.unknown_linked} random keys linked",
            )
        )
    return found


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def print_report(result: KosyncResult) -> None:
    machine, sample, baseline, load = result.machine, result.sample, result.baseline, result.load
    print(f"\n== KOReader progress sync: {result.library} ==")
    print(f"machine: nproc {machine.nproc}, {machine.cpu}, Python {machine.python}; server: {result.workers} worker(s)")
    print(
        f"server: /health 200 after {result.ready_ms:.0f} ms, idle {result.idle_wait_ms / 1000:.1f} s later,"
        f" sampled keys indexed {result.index_wait_ms / 1000:.1f} s after that;"
        f" first auth (argon2) {result.first_auth_ms:.1f} ms"
    )
    print(
        f"sample (seed {sample.seed}): {sample.files} files of {sample.books} books, {sample.binary_keys} distinct"
        f" partial MD5s; {sample.files_by_filename_key} files share their bytes with another and are pushed by"
        f" filename key; {sample.documents} library documents"
    )
    print(
        f"baseline GET /kosync/healthcheck, {baseline.clients} clients x {baseline.seconds:.1f} s:"
        f" {baseline.requests} requests, {baseline.rate:.0f} req/s, p50 {_ms(baseline.latency.p50_ms)},"
        f" p99 {_ms(baseline.latency.p99_ms)}, max {_ms(baseline.latency.max_ms)}"
    )
    print(
        f"PUT then GET progress, {load.clients} clients x {load.seconds:.1f} s (seed {load.seed}):"
        f" {load.requests} requests, {load.rate:.0f} req/s ({_times(result.ratios.rate)} the baseline's),"
        f" {load.documents_written} documents written, {load.unknown_pushes} pushes of unknown keys"
    )
    for name, figures, ratio in (("PUT", load.put, result.ratios.put_p99), ("GET", load.get, result.ratios.get_p99)):
        print(
            f"  {name}: {figures.requests} requests, p50 {_ms(figures.p50_ms)}, p99 {_ms(figures.p99_ms)}"
            f" ({_times(ratio)} the baseline's p99), max {_ms(figures.max_ms)}"
        )
    compared = "each GET compared with its PUT" if load.verified else "GETs not compared"
    print(f"  non-2xx / errors / differences ({compared}): {load.failures or 'none'}")
    if load.example:
        print(f"  first failure: {load.example}")
    if result.linking is not None:
        linking = result.linking
        print(
            f"linking: {linking.pushed} library documents pushed, {linking.naming_one_book} name one book in the"
            f" key index, {linking.linked} linked ({linking.linked_as_expected} to the right book),"
            f" {linking.not_indexed} not indexed, {linking.unknown_linked} random keys linked"
        )
    print(f"server RSS after the run: {sum(m.rss_mib for m in result.memory):.0f} MiB")
    print("\n== checks ==")
    for check in result.checks:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")


def _first_auth(base_url: str, headers: Mapping[str, str]) -> float:
    started = time.perf_counter()
    answer = httpx.get(f"{base_url}/users/auth", headers=dict(headers), timeout=60)
    if answer.status_code != 200:
        msg = f"GET /kosync/users/auth answered {answer.status_code}: {answer.text[:200]}"
        raise peers.PeerUnavailableError(msg)
    return since(started)


def run_kosync(options: argparse.Namespace) -> int:
    library: Path = options.library
    if not (library / "metadata.db").is_file():
        print(f"{library} has no metadata.db", file=sys.stderr)
        return 2
    seed: int = options.seed if options.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    started = time.perf_counter()
    files = read_files(library, SAMPLE_FILES, rng)
    documents, binary_keys, by_name = document_keys(files)
    if not documents:
        print(f"{library} has no book file on disk", file=sys.stderr)
        return 2
    sample = Sample(
        seed=seed,
        files=len(files),
        binary_keys=binary_keys,
        files_by_filename_key=by_name,
        documents=len(documents),
        books=len({f.book_id for f in files}),
    )
    print(f"{len(files)} files sampled and hashed in {since(started):.0f} ms (seed {seed})", flush=True)
    work = Path(tempfile.mkdtemp(prefix="opds-kosync-"))
    try:
        server = start_server(library, work, options.workers)
    except peers.PeerUnavailableError as exc:
        print(f"our server did not start: {exc}\nlog: {work / 'server.log'}", file=sys.stderr)
        return 2
    print(f"server up at {server.url} (log {server.log}); waiting until it is idle", flush=True)
    base_url = f"{server.url}/kosync"
    headers = koreader_headers(peers.PASSWORD)
    try:
        idle_wait_ms = wait_idle(server.process.pid)
        index_wait_ms, missing = wait_indexed(work, [d.key for d in documents], server.process)
        first_auth_ms = _first_auth(base_url, headers)
        print(f"baseline: {options.clients} clients for {options.seconds} s", flush=True)
        baseline = run_baseline(base_url, options.clients, options.seconds)
        print(f"load: {options.clients} clients for {options.seconds} s, seed {seed}", flush=True)
        load, unknown = run_load(base_url, headers, documents, options, seed)
        memory = peers.read_memory(server.process.pid)
    except peers.PeerUnavailableError as exc:
        print(f"{exc}\nlog: {server.log}", file=sys.stderr)
        return 2
    finally:
        peers.stop(server.process)
    try:
        linking: Linking | None = read_linking(work, documents, unknown)
    except sqlite3.Error as exc:  # a DATABASE_URL elsewhere than the data dir's opds.db
        print(f"kosync_progress not read: {exc}", file=sys.stderr)
        linking = None
    result = KosyncResult(
        library=str(library),
        machine=read_machine(),
        workers=options.workers,
        ready_ms=server.cold_start.root_ms,
        idle_wait_ms=idle_wait_ms,
        index_wait_ms=index_wait_ms,
        first_auth_ms=first_auth_ms,
        sample=sample,
        baseline=baseline,
        load=load,
        ratios=Ratios(
            put_p99=_ratio(load.put.p99_ms, baseline.latency.p99_ms),
            get_p99=_ratio(load.get.p99_ms, baseline.latency.p99_ms),
            rate=load.rate / baseline.rate if baseline.rate else 0.0,
        ),
        linking=linking,
        memory=memory,
        checks=[],
        log=str(server.log),
    )
    result = msgspec.structs.replace(result, checks=checks_of(result, missing))
    print_report(result)
    if options.json:
        Path(options.json).write_bytes(msgspec.json.format(msgspec.json.encode(result)))
        print(f"\nresults written to {options.json}")
    if options.keep:
        print(f"server log and data dir kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(check.ok for check in result.checks) else 1


def add_kosync_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kosync = commands.add_parser("kosync", help="KOReader progress push and pull under concurrent devices")
    kosync.add_argument("--library", type=Path, required=True, help="a Calibre library (read only)")
    kosync.add_argument("--clients", type=int, default=20, help="concurrent devices")
    kosync.add_argument("--seconds", type=float, default=10.0, help="how long the baseline and the load each run")
    kosync.add_argument("--workers", type=int, default=1, help="the server's worker processes")
    kosync.add_argument("--seed", type=int, help="seed of the sample and the pushes (default: random, printed)")
    kosync.add_argument("--json", help="also write the results here as JSON")
    kosync.add_argument("--keep", action="store_true", help="keep the server's log and data dir")
    kosync.set_defaults(run=run_kosync)
