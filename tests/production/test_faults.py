"""Faults under load: Redis and Postgres crash and come back, Calibre holds its lock, metadata.db
goes away; two instances keep answering as a reader needs, and no write is lost or doubled.

The phases run one after the other on one deployment. Every rule is checked at the end, so one run
reports every broken expectation; the counts per phase go to ``test-artifacts/production-faults.json``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import bindparam, create_engine, text

from tests.conftest import ROOT, LiveServer, copy_fixture_library
from tests.production.cluster import (
    CATALOGUE,
    FavouriteLedger,
    KoboLedger,
    Load,
    Outcome,
    ProgressLedger,
    catalogue_actions,
    interleave,
    running_instances,
    shared_env,
    status_name,
)
from tests.production.services import (  # noqa: F401 - fixtures
    PostgresServer,
    RedisServer,
    postgres_server_fixture,
    redis_server_fixture,
)
from tests.server.api_client import PASSWORDS, add_user, login
from tests.server.kobo_device import uuids_by_id

ARTIFACT = ROOT / "test-artifacts" / "production-faults.json"
FAMILIES = ("opds", "download", "cover", "kosync", "kobo", "api")
OUTAGE_SECONDS = 4.0
LOCK_SECONDS = 8.0
MOVED_SECONDS = 3.0
RECOVERY_SECONDS = 10.0
"""After a restart, every family answers 2xx again within this, without restarting the app."""
STABLE_SECONDS = 1.5
"""A family has recovered once it answered only 2xx for this long (and at least once)."""
NEW_TITLE_SECONDS = 3.0
LOCKED_ANSWER_SECONDS = 3.0
"""While Calibre holds its lock, a request for an entry is answered, with the old title, within this."""
LOCKED_BOOK = 10
BOOKS = [1, 2, 3, 5, 6, 7]
COVERS = [1, 2, 3, 5]

Rule = Callable[[Outcome], bool]


def is_2xx(outcome: Outcome) -> bool:
    return outcome.is_ok


def is_2xx_or_503_retry(outcome: Outcome) -> bool:
    """2xx, or 503 with a Retry-After header: the answer of a dependency that is down."""
    return outcome.is_ok or (outcome.status == 503 and bool(outcome.retry_after))


RULES: dict[str, tuple[Rule, Rule, str]] = {
    # phase: (catalogue rule, personal rule, what it means)
    "baseline": (is_2xx, is_2xx, "everything 2xx"),
    "redis-down": (is_2xx, is_2xx, "Redis down: everything answers as normal"),
    "redis-back": (is_2xx, is_2xx, "Redis back: everything 2xx"),
    "postgres-down": (is_2xx, is_2xx_or_503_retry, "Postgres down: personal 503 + Retry-After, never 500"),
    "postgres-back": (is_2xx, is_2xx_or_503_retry, "Postgres back: personal 2xx or 503 + Retry-After"),
    "library-locked": (is_2xx, is_2xx, "metadata.db locked: the last good catalogue serves"),
    "library-committed": (is_2xx, is_2xx, "after Calibre's commit: everything 2xx"),
    "library-moved": (is_2xx_or_503_retry, is_2xx_or_503_retry, "metadata.db gone: 2xx or 503 + Retry-After"),
    "library-back": (is_2xx_or_503_retry, is_2xx_or_503_retry, "metadata.db back: 2xx or 503 + Retry-After"),
}
RESTARTS = ("redis-back", "postgres-back", "library-back")


@dataclass
class Timeline:
    """The phases of the run, in order, with their start times (``time.monotonic()``)."""

    load: Load
    started: dict[str, float] = field(default_factory=dict)

    def begin(self, phase: str, *, settle: bool = False) -> float:
        """Start ``phase`` now; with ``settle``, once every request of the phases before it has been
        answered (before a fault is injected, so that no earlier request meets it)."""
        if settle:
            self.load.enter(phase)
        else:
            self.load.phase = phase
        self.started[phase] = time.monotonic()
        return self.started[phase]

    def hold(self, seconds: float) -> None:
        time.sleep(seconds)

    def recover(self, phase: str) -> None:
        """Keep the phase until every family answered only 2xx for ``STABLE_SECONDS`` (at most the
        recovery limit and that again), so a recovery that comes too late is measured, not cut."""
        since = self.started[phase]
        while time.monotonic() - since < RECOVERY_SECONDS + STABLE_SECONDS:
            if all(recovered_after(self.load.outcomes(since), family, since) is not None for family in FAMILIES):
                return
            time.sleep(0.1)


def recovered_after(outcomes: Sequence[Outcome], family: str, since: float) -> float | None:
    """Seconds from ``since`` to the family's last non-2xx answer, once only 2xx followed for
    ``STABLE_SECONDS``; None: not recovered (yet)."""
    mine = [o for o in outcomes if o.family == family]
    last_bad = max((o.at for o in mine if not o.is_ok), default=since)
    stable = any(o.is_ok and o.at > last_bad for o in mine) and time.monotonic() - last_bad >= STABLE_SECONDS
    return round(last_bad - since, 3) if stable else None


def recovery_of(outcomes: Sequence[Outcome], family: str, phase: str, since: float) -> float | None:
    """After the load stopped: seconds from ``since`` to the family's last non-2xx answer in the
    phase, None if no 2xx came after it."""
    mine = [o for o in outcomes if o.family == family and o.phase == phase]
    last_bad = max((o.at for o in mine if not o.is_ok), default=since)
    return round(last_bad - since, 3) if any(o.is_ok and o.at > last_bad for o in mine) else None


def broken_rules(outcomes: Sequence[Outcome]) -> list[str]:
    """Answers no phase allows, grouped by (phase, family, status, Retry-After), with one example."""
    grouped: dict[tuple[str, str, str, bool], list[Outcome]] = {}
    for outcome in outcomes:
        catalogue_rule, personal_rule, _ = RULES[outcome.phase]
        rule = catalogue_rule if outcome.family in CATALOGUE else personal_rule
        if outcome.status is None or not rule(outcome):
            key = (outcome.phase, outcome.family, status_name(outcome), bool(outcome.retry_after))
            grouped.setdefault(key, []).append(outcome)
    return [
        f"{phase} ({RULES[phase][2]}): {family} answered {status} {'with' if retry else 'without'} Retry-After"
        f" x{len(found)}, e.g. {found[0].request}{' ' + found[0].error if found[0].error else ''}"
        for (phase, family, status, retry), found in grouped.items()
    ]


def title_of(http: httpx.Client, book: int) -> tuple[int, str | None]:
    answer = http.get(f"/opds/v2/books/{book}", auth=("ada", PASSWORDS["ada"]))
    return answer.status_code, (answer.json()["metadata"]["title"] if answer.status_code == 200 else None)


@dataclass(frozen=True)
class Look:
    """One look at the locked book's entry: when it was asked and answered, and what it showed."""

    asked: float
    answered: float
    instance: int
    status: int
    title: str | None


def look_until(stop: threading.Event, servers: Sequence[LiveServer], looks: list[Look]) -> None:
    """Ask each instance for the locked book's entry in turn, every 200 ms, until ``stop``."""
    clients = [server.client() for server in servers]
    try:
        for number in itertools.count():
            if stop.is_set():
                return
            asked = time.monotonic()
            status, title = title_of(clients[number % len(clients)], LOCKED_BOOK)
            looks.append(Look(asked, time.monotonic(), number % len(clients), status, title))
            time.sleep(0.2)
    finally:
        for client in clients:
            client.close()


def hold_calibres_lock(library: Path, servers: Sequence[LiveServer], timeline: Timeline) -> dict[str, Any]:
    """Calibre renames a book inside an exclusive transaction held ``LOCK_SECONDS``: the entry shows
    the old title meanwhile, and the new one within ``NEW_TITLE_SECONDS`` of the commit."""
    with servers[0].client() as http:
        old = title_of(http, LOCKED_BOOK)[1]
    new = f"Rewritten Under Lock {uuid.uuid4().hex[:8]}"
    database = library / "metadata.db"
    looks: list[Look] = []
    stop = threading.Event()
    looker = threading.Thread(target=look_until, args=(stop, servers, looks), daemon=True)
    locked = timeline.begin("library-locked", settle=True)
    with closing(sqlite3.connect(database, timeout=10, isolation_level=None)) as calibre:
        calibre.create_function("title_sort", 1, lambda title: title)  # calibre's trigger calls it
        calibre.execute("BEGIN EXCLUSIVE")
        now = dt.datetime.now(dt.UTC).isoformat(sep=" ")
        calibre.execute("UPDATE books SET title = ?, last_modified = ? WHERE id = ?", (new, now, LOCKED_BOOK))
        os.utime(database)  # what Calibre's write does to the file, so the server looks at it
        looker.start()
        time.sleep(LOCK_SECONDS)
        calibre.execute("COMMIT")
    committed = timeline.begin("library-committed")
    shown: list[float | None] = [None] * len(servers)
    while time.monotonic() - committed < 2 * NEW_TITLE_SECONDS and None in shown:
        for look in looks[:]:
            if look.answered >= committed and look.title == new and shown[look.instance] is None:
                shown[look.instance] = round(look.answered - committed, 3)
        time.sleep(0.05)
    stop.set()
    looker.join(timeout=30)
    names = {old: "old title", new: "new title"}
    during = [look for look in looks if look.asked < committed]

    def shown_as(look: Look) -> str:
        title = names.get(look.title, repr(look.title)) if look.title else "no title"
        return (
            f"+{look.asked - locked:.1f} s to +{look.answered - locked:.1f} s on {look.instance}: {look.status} {title}"
        )

    late = [
        shown_as(look)
        for look in during
        if look.asked < committed - LOCKED_ANSWER_SECONDS
        and (look.answered - look.asked > LOCKED_ANSWER_SECONDS or (look.status, look.title) != (200, old))
    ]
    return {
        "old": old,
        "new": new,
        "lock_seconds": round(committed - locked, 1),
        "looks_asked_while_locked": [shown_as(look) for look in during],
        "looks_not_answering_the_old_title_in_time": late,
        "new_title_after_commit_seconds": shown,
    }


def check_progress(progress: ProgressLedger, server: LiveServer, database_url: str) -> tuple[dict[str, Any], list[str]]:
    """What the server returns for each document is its last push answered 2xx (or a later
    unanswered one), and the database holds one row per (user, document)."""
    problems: list[str] = []
    with httpx.Client(base_url=f"{server.url}/kosync", headers=progress.headers(), timeout=30) as reader:
        for document in progress.pushes:
            last, unanswered = progress.expected(document)
            answer = reader.get(f"/syncs/progress/{document}")
            found = answer.json() if answer.status_code == 200 else {}
            pair = (found.get("percentage"), found.get("progress"))
            allowed = [(p.percentage, p.progress) for p in ([last] if last else []) + unanswered]
            if answer.status_code != 200 or (pair not in allowed and not (last is None and found == {})):
                statuses = [p.status for p in progress.pushes[document][-5:]]
                problems.append(
                    f"kosync {document}: server has {answer.status_code} {pair}, expected one of {allowed}"
                    f" (last 2xx push {last}, last statuses {statuses})"
                )
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            doubled = connection.execute(
                text("SELECT user_id, document, count(*) FROM kosync_progress GROUP BY 1, 2 HAVING count(*) > 1")
            ).all()
            ours = text("SELECT document, count(*) FROM kosync_progress WHERE document IN :documents GROUP BY 1")
            ours = ours.bindparams(bindparam("documents", expanding=True))
            rows = {str(d): int(n) for d, n in connection.execute(ours, {"documents": list(progress.pushes)})}
            favourites = connection.execute(
                text("SELECT user_id, book_id, count(*) FROM favourites GROUP BY 1, 2 HAVING count(*) > 1")
            ).all()
    finally:
        engine.dispose()
    if doubled:
        problems.append(f"kosync_progress holds several rows per (user, document): {[tuple(r) for r in doubled]}")
    stored = [d for d in progress.pushes if progress.expected(d)[0] is not None and rows.get(d) != 1]
    if stored:
        problems.append(
            f"kosync_progress rows of documents pushed with a 2xx, not one each: {[rows.get(d) for d in stored]}"
        )
    if favourites:
        problems.append(f"favourites holds several rows per (user, book): {[tuple(r) for r in favourites]}")
    summary = {
        "documents": len(progress.pushes),
        "pushes": sum(len(p) for p in progress.pushes.values()),
        "rows_per_document": rows,
        "doubled_rows": [list(r) for r in doubled],
        "doubled_favourites": [list(r) for r in favourites],
    }
    return summary, problems


def check_favourites(favourites: FavouriteLedger, server: LiveServer) -> list[str]:
    with server.client() as http:
        answer = http.get("/api/favourites", headers={"Authorization": f"Bearer {favourites.token}"})
    if answer.status_code != 200:
        return [f"GET /api/favourites after the run: {answer.status_code} {answer.text[:300]}"]
    listed = [int(entry["book_id"]) for entry in answer.json()]
    problems = [f"GET /api/favourites lists {book} {listed.count(book)} times" for book in set(listed)]
    problems = [p for p in problems if not p.endswith(" 1 times")]
    missing = favourites.added - set(listed)
    if missing:
        problems.append(f"favourites answered 2xx but missing afterwards: {sorted(missing)}")
    return problems


def server_errors(logs: Sequence[Path], limit: int = 6) -> list[str]:
    """The first error lines of each instance's log, for the report."""
    found: list[str] = []
    for log in logs:
        lines = log.read_text(errors="replace").splitlines()
        errors = [line for line in lines if '"level": "error"' in line or "Traceback" in line]
        found += [f"{log.name}: {line[:400]}" for line in errors[:limit]]
    return found


def run_phases(
    timeline: Timeline, library: Path, servers: Sequence[LiveServer], redis: RedisServer, postgres: PostgresServer
) -> dict[str, Any]:
    timeline.begin("baseline")
    timeline.hold(2)
    timeline.begin("redis-down", settle=True)
    redis.kill()
    timeline.hold(OUTAGE_SECONDS)
    redis.start()
    timeline.begin("redis-back")
    timeline.recover("redis-back")
    timeline.begin("postgres-down", settle=True)
    postgres.kill()
    timeline.hold(OUTAGE_SECONDS)
    postgres.start()
    timeline.begin("postgres-back")
    timeline.recover("postgres-back")
    lock = hold_calibres_lock(library, servers, timeline)
    timeline.hold(1)
    database = library / "metadata.db"
    away = database.with_name("metadata.db.away")
    timeline.begin("library-moved", settle=True)
    database.rename(away)
    try:
        timeline.hold(MOVED_SECONDS)
    finally:
        away.rename(database)
    timeline.begin("library-back")
    timeline.recover("library-back")
    return lock


def test_two_instances_ride_out_redis_postgres_and_calibre_faults_under_load(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    library = copy_fixture_library(tmp_path / "library")
    database_url = postgres_server.create_database("opds")
    env = shared_env(database_url, redis_server.url)

    def add_users(instance: int) -> None:
        if instance == 0:
            for name in ("ada", "bob"):
                add_user(env, name)

    problems: list[str] = []
    with running_instances(2, library, tmp_path, env, ready=add_users) as servers:
        with servers[0].client() as http:
            token = login(http, "bob").access_token
            registered = http.post(
                "/api/kobo/devices", json={"label": "Clara"}, headers={"Authorization": f"Bearer {token}"}
            )
        assert registered.status_code == 201, registered.text
        uuids = uuids_by_id(library)
        kobo = KoboLedger(registered.json()["api_endpoint"].rsplit("/kobo/", 1)[1], [uuids[b] for b in BOOKS])
        progress = ProgressLedger("ada", PASSWORDS["ada"])
        favourites = FavouriteLedger(token, BOOKS)
        personal = [
            progress.action(),
            favourites.actions()[0],
            kobo.actions()[0],
            progress.action(),
            favourites.actions()[1],
            kobo.actions()[1],
        ]
        actions = interleave(catalogue_actions(("ada", PASSWORDS["ada"]), BOOKS, COVERS), personal)
        load = Load(urls=[s.url for s in servers], actions=actions, phase="baseline").start()
        timeline = Timeline(load)
        try:
            lock = run_phases(timeline, library, servers, redis_server, postgres_server)
        finally:
            counts = load.stop()
        outcomes = load.outcomes()
        ledger, ledger_problems = check_progress(progress, servers[1], database_url)
        problems += ledger_problems + check_favourites(favourites, servers[0]) + kobo.problems(servers[0].url)

    problems += broken_rules(outcomes)
    recoveries = {
        phase: {family: recovery_of(outcomes, family, phase, timeline.started[phase]) for family in FAMILIES}
        for phase in RESTARTS
    }
    for phase, families in recoveries.items():
        late = {f: s for f, s in families.items() if s is None or s > RECOVERY_SECONDS}
        if late:
            problems.append(f"{phase}: not answering 2xx again within {RECOVERY_SECONDS} s (None: never): {late}")
    if lock["looks_not_answering_the_old_title_in_time"] or not lock["looks_asked_while_locked"]:
        problems.append(
            f"while Calibre held its lock, the entry did not answer the old title within {LOCKED_ANSWER_SECONDS} s:"
            f" {lock['looks_asked_while_locked']}"
        )
    slow = [s for s in lock["new_title_after_commit_seconds"] if s is None or s > NEW_TITLE_SECONDS]
    if slow:
        problems.append(f"new title after Calibre's commit, per instance: {lock['new_title_after_commit_seconds']} s")

    phases = list(timeline.started)
    ends = [*(timeline.started[p] for p in phases[1:]), max((o.at for o in outcomes), default=0)]
    report = {
        "phases": {
            phase: {"seconds": round(end - timeline.started[phase], 1), "requests": counts.get(phase, {})}
            for phase, end in zip(phases, ends, strict=True)
        },
        "recovery_seconds": recoveries,
        "latency_seconds": load.latencies(),
        "calibre_lock": lock,
        "kosync": ledger,
        "kobo_states": {u: len(p) for u, p in kobo.pushes.items()},
        "favourites_added": sorted(favourites.added),
        "samples_5xx_and_transport_errors": [vars(sample) for sample in load.samples],
        "server_log_errors": server_errors(sorted(tmp_path.glob("instance-*.log"))),
        "problems": problems,
    }
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    assert not problems, "\n".join(["faults broke these expectations:", *problems])
