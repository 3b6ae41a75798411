"""Reading-state load for ``kobo.py``: concurrent clients, each a Kobo saving and reading back
its position (spec 5.6, 8.2), and a wait until the server is idle before it starts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec

from tests.benchmark import peers
from tests.benchmark.kobo_sync import REQUEST_TIMEOUT, since

IDLE_CPU = 0.05
"""CPU seconds per second under which the server counts as idle."""
IDLE_TIMEOUT = 600.0


class Latency(msgspec.Struct, frozen=True, kw_only=True):
    requests: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


class StateRun(msgspec.Struct, frozen=True, kw_only=True):
    clients: int
    seconds: float
    seed: int
    requests: int
    rate: float
    put: Latency
    get: Latency
    failures: dict[str, int]
    """``"PUT 500"``, ``"GET ReadTimeout"``, ``"GET differs from PUT: Location"``...: count."""
    example: str
    """The first failure, with the bodies."""
    verified: bool
    """Whether each GET was compared with its PUT (each client had books of its own)."""
    books_written: int


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and every process below it."""
    ticks = 0
    for process in peers.read_memory(pid):
        try:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15 of proc(5)
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, *, timeout: float = IDLE_TIMEOUT) -> float:
    """Milliseconds until the server used under ``IDLE_CPU`` of a CPU over one second: the KEPUB
    conversions a sync queues run on after it, and would be measured as reading-state latency."""
    started = time.perf_counter()
    used = _cpu_seconds(pid)
    while time.perf_counter() - started < timeout:
        time.sleep(1.0)
        now = _cpu_seconds(pid)
        if now - used < IDLE_CPU:
            break
        used = now
    return since(started)


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Sent(msgspec.Struct, frozen=True, kw_only=True):
    """What a PUT stored, to compare with the GET that follows it (spec 8.2)."""

    stamp: str
    percent: int
    location: dict[str, str]


def state_body(book: str, rng: random.Random) -> tuple[bytes, _Sent]:
    """The PUT body of spec 5.6, as a Kobo (firmware 4.x and later) sends it."""
    stamp = _stamp()
    location = {
        "Source": f"OEBPS/chapter-{rng.randint(1, 40):03d}.xhtml",
        "Type": "KoboSpan",
        "Value": f"kobo.{rng.randint(1, 200)}.{rng.randint(1, 9)}",
    }
    percent = rng.randint(0, 100)
    bookmark = {
        "LastModified": stamp,
        "ProgressPercent": percent,
        "ContentSourceProgressPercent": rng.randint(0, 100),
        "Location": location,
    }
    statistics_ = {"LastModified": stamp, "SpentReadingMinutes": rng.randint(1, 600), "RemainingTimeMinutes": 99}
    state = {
        "EntitlementId": book,
        "LastModified": stamp,
        "CurrentBookmark": bookmark,
        "Statistics": statistics_,
        "StatusInfo": {"LastModified": stamp, "Status": "Reading"},
    }
    return msgspec.json.encode({"ReadingStates": [state]}), _Sent(stamp=stamp, percent=percent, location=location)


def _instant(value: object) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def state_differences(body: bytes, sent: _Sent) -> list[str]:
    """How a GET of a state differs from the PUT before it: the percentage as the same JSON integer,
    the location exactly, ``PriorityTimestamp`` the device's own ``LastModified`` (spec 8.2)."""
    try:
        states = msgspec.json.decode(body, type=list[dict[str, Any]])
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ["not a JSON array of states"]
    if len(states) != 1:
        return [f"{len(states)} states"]
    state = states[0]
    bookmark = state.get("CurrentBookmark") or {}
    differences = []
    percent = bookmark.get("ProgressPercent")
    if not isinstance(percent, int) or percent != sent.percent:
        differences.append("ProgressPercent")
    if bookmark.get("Location") != sent.location:
        differences.append("Location")
    if _instant(state.get("PriorityTimestamp")) != _instant(sent.stamp):
        differences.append("PriorityTimestamp")
    return differences


@dataclass
class _Worker:
    puts: list[float] = field(default_factory=list)
    gets: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    written: set[str] = field(default_factory=set)
    example: str = ""


def _state_worker(client: httpx.Client, books: Sequence[str], seed: int, deadline: float, *, verify: bool) -> _Worker:
    """PUT then GET of one random book's state until ``deadline``. With ``verify`` (this worker's
    books are its own) the GET must return what the PUT stored."""
    rng = random.Random(seed)
    done = _Worker()
    with client:
        while time.perf_counter() < deadline:
            book = rng.choice(books)
            path = f"/v1/library/{book}/state"
            body, sent = state_body(book, rng)
            started = time.perf_counter()
            method = "PUT"
            try:
                put = client.put(path, content=body, headers={"Content-Type": "application/json"})
                done.puts.append(since(started))
                if not put.is_success:
                    done.failures[f"PUT {put.status_code}"] += 1
                    done.example = done.example or f"PUT {path}: {put.status_code} {put.text[:200]}"
                    continue
                done.written.add(book)
                method = "GET"
                started = time.perf_counter()
                got = client.get(path)
                done.gets.append(since(started))
            except httpx.HTTPError as exc:
                done.failures[f"{method} {type(exc).__name__}"] += 1
                continue
            if not got.is_success:
                done.failures[f"GET {got.status_code}"] += 1
                done.example = done.example or f"GET {path}: {got.status_code} {got.text[:200]}"
            elif verify and (differences := state_differences(got.content, sent)):
                done.failures["GET differs from PUT: " + ", ".join(differences)] += 1
                done.example = done.example or f"PUT {body[:300]!r} then GET {got.content[:300]!r}"
    return done


def run_states(
    base_url: str, headers: Mapping[str, str], books: Sequence[str], options: argparse.Namespace
) -> StateRun:
    seed: int = options.seed if options.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"reading state: {options.state_clients} clients for {options.state_seconds} s, seed {seed}", flush=True)
    clients = [
        httpx.Client(base_url=base_url, headers=dict(headers), timeout=REQUEST_TIMEOUT)
        for _ in range(options.state_clients)
    ]
    started = time.perf_counter()
    deadline = started + options.state_seconds
    # Each client writes its own books when there are enough, so its GET must show its own PUT.
    verify = len(books) >= len(clients)
    shares = [books[n :: len(clients)] if verify else books for n in range(len(clients))]
    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        futures = [
            pool.submit(_state_worker, client, share, seed + n, deadline, verify=verify)
            for n, (client, share) in enumerate(zip(clients, shares, strict=True))
        ]
        workers = [future.result() for future in futures]
    elapsed = time.perf_counter() - started
    puts = [t for w in workers for t in w.puts]
    gets = [t for w in workers for t in w.gets]
    failures: Counter[str] = Counter()
    for worker in workers:
        failures.update(worker.failures)
    return StateRun(
        clients=options.state_clients,
        seconds=elapsed,
        seed=seed,
        requests=len(puts) + len(gets),
        rate=(len(puts) + len(gets)) / elapsed,
        put=latency(puts),
        get=latency(gets),
        failures=dict(failures),
        example=next((w.example for w in workers if w.example), ""),
        verified=verify,
        books_written=len({book for w in workers for book in w.written}),
    )


def latency(times: Sequence[float]) -> Latency:
    if not times:
        return Latency(requests=0, p50_ms=None, p99_ms=None, max_ms=None)
    p99 = statistics.quantiles(times, n=100, method="inclusive")[98] if len(times) > 1 else times[0]
    return Latency(requests=len(times), p50_ms=statistics.median(times), p99_ms=p99, max_ms=max(times))
