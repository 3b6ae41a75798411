"""Several instances of the server behind one imaginary load balancer, and the load they carry.

Instances share the library folder, ``DATABASE_URL``, ``REDIS_URL`` and ``OPDS_SECRET_KEY``, and
each has its own data dir. ``Load`` keeps background threads sending a mix of requests to them in
turn and records every answer with the phase of the test it fell in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import secrets
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import LiveServer, start_server, stop_server, wait_for_search
from tests.server.kobo_device import SYNC_QUERY, USER_AGENT

SAMPLES = 8
"""5xx answers (and transport errors) kept whole per phase, for the failure message."""

CATALOGUE = ("opds", "download", "cover")


def shared_env(database_url: str, redis_url: str) -> dict[str, str]:
    """What every instance of one deployment is given: the same database, Redis, prefix and secret."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "OPDS_REDIS_PREFIX": f"opds-production-{uuid.uuid4().hex[:12]}:",
        "OPDS_SECRET_KEY": secrets.token_urlsafe(48),
    }


@contextmanager
def running_instances(
    count: int, library: Path, workdir: Path, env: Mapping[str, str], *, ready: Callable[[int], None] | None = None
) -> Iterator[list[LiveServer]]:
    """``count`` instances, started one after the other (the first runs the migrations), each
    logging to ``instance-N.log`` in ``workdir``; ``ready(n)`` runs once instance ``n`` answers."""
    with ExitStack() as stack:
        servers: list[LiveServer] = []
        for number in range(count):
            server = start_server(library, workdir / f"data-{number}", workdir / f"instance-{number}.log", env)
            stack.callback(stop_server, server)
            servers.append(server)
            if ready is not None:
                ready(number)
        for server in servers:
            wait_for_search(server)
        yield servers


@dataclass(frozen=True)
class Shot:
    """One request to make: which worker thread, which instance, and a number unique in the load."""

    worker: int
    instance: int
    number: int


@dataclass(frozen=True)
class Action:
    """A kind of request; ``send`` makes it with the instance's client (its base URL is set)."""

    family: str
    send: Callable[[httpx.Client, Shot], httpx.Response]


@dataclass(frozen=True)
class Outcome:
    """One answer (``status`` None: a transport error, ``error`` says which)."""

    at: float
    took: float
    phase: str
    family: str
    instance: int
    request: str
    status: int | None
    retry_after: str | None
    error: str = ""

    @property
    def is_ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Sample:
    """A 5xx or a transport error, kept whole."""

    phase: str
    family: str
    instance: int
    request: str
    status: int | None
    retry_after: str | None
    body: str


def status_name(outcome: Outcome) -> str:
    return "transport-error" if outcome.status is None else str(outcome.status)


def _request_of(exc: httpx.TransportError) -> str:
    try:
        return f"{exc.request.method} {exc.request.url}"
    except RuntimeError:  # httpx raises it when the error has no request
        return "?"


@dataclass
class Load:
    """``workers`` threads sending ``actions`` in turn, each to the next instance in turn."""

    urls: Sequence[str]
    actions: Sequence[Action]
    workers: int = 4
    pause: float = 0.01
    timeout: float = 15
    phase: str = "start"
    samples: list[Sample] = field(default_factory=list)
    _outcomes: list[Outcome] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    _numbers: Iterator[int] = field(default_factory=itertools.count)
    _crashes: list[BaseException] = field(default_factory=list)
    _in_flight: dict[int, str] = field(default_factory=dict)

    def start(self) -> Load:
        for worker in range(self.workers):
            thread = threading.Thread(target=self._run, args=(worker,), name=f"load-{worker}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> dict[str, dict[str, dict[str, int]]]:
        """Stop the threads; the counts: phase -> family -> status -> n."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)
        if self._crashes:
            raise AssertionError(f"a load thread crashed: {self._crashes[0]!r}") from self._crashes[0]
        return self.counts()

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        counted: dict[str, dict[str, Counter[str]]] = {}
        for outcome in self.outcomes():
            counted.setdefault(outcome.phase, {}).setdefault(outcome.family, Counter())[status_name(outcome)] += 1
        return {
            phase: {family: dict(sorted(statuses.items())) for family, statuses in sorted(families.items())}
            for phase, families in counted.items()
        }

    def latencies(self) -> dict[str, dict[str, dict[str, float]]]:
        """Seconds per answer: phase -> family -> median and slowest."""
        took: dict[str, dict[str, list[float]]] = {}
        for outcome in self.outcomes():
            took.setdefault(outcome.phase, {}).setdefault(outcome.family, []).append(outcome.took)
        return {
            phase: {
                family: {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}
                for family, values in sorted(families.items())
            }
            for phase, families in took.items()
        }

    def enter(self, phase: str) -> None:
        """Label the requests sent from now on ``phase``, and wait until every request sent before
        has been answered, so that a fault injected next meets only requests of ``phase``."""
        with self._lock:
            self.phase = phase
        deadline = time.monotonic() + self.timeout + 1
        while any(label != phase for label in list(self._in_flight.values())) and time.monotonic() < deadline:
            time.sleep(0.005)

    def outcomes(self, since: float = 0) -> list[Outcome]:
        """Every answer received at ``since`` (``time.monotonic()``) or later."""
        with self._lock:
            return [outcome for outcome in self._outcomes if outcome.at >= since]

    def _run(self, worker: int) -> None:
        clients = [httpx.Client(base_url=url, timeout=self.timeout) for url in self.urls]
        try:
            while not self._stopping.is_set():
                number = next(self._numbers)
                instance = number % len(self.urls)
                action = self.actions[(number // len(self.urls)) % len(self.actions)]
                self._send(clients[instance], action, Shot(worker=worker, instance=instance, number=number))
                self._in_flight.pop(worker, None)
                time.sleep(self.pause)
        except BaseException as exc:  # a bug in an action, not a server's answer: stop() raises it
            self._crashes.append(exc)
            raise
        finally:
            for client in clients:
                client.close()

    def _send(self, client: httpx.Client, action: Action, shot: Shot) -> None:
        with self._lock:  # with enter(): a request is either of the new phase or waited for
            phase = self._in_flight[shot.worker] = self.phase
        sent = time.monotonic()
        status, retry_after, error, body = None, None, "", ""
        try:
            response = action.send(client, shot)
        except httpx.TransportError as exc:
            request, error = _request_of(exc), repr(exc)
        else:
            request = f"{response.request.method} {response.request.url}"
            status, retry_after = response.status_code, response.headers.get("retry-after")
            body = response.text[:600] if status >= 500 else ""
        answered = time.monotonic()
        outcome = Outcome(
            at=answered,
            took=answered - sent,
            phase=phase,
            family=action.family,
            instance=shot.instance,
            request=request,
            status=status,
            retry_after=retry_after,
            error=error,
        )
        self._record(outcome, body=body)

    def _record(self, outcome: Outcome, body: str) -> None:
        with self._lock:
            self._outcomes.append(outcome)
            failed = outcome.status is None or outcome.status >= 500
            if failed and sum(s.phase == outcome.phase for s in self.samples) < SAMPLES:
                sample = Sample(
                    phase=outcome.phase,
                    family=outcome.family,
                    instance=outcome.instance,
                    request=outcome.request,
                    status=outcome.status,
                    retry_after=outcome.retry_after,
                    body=body or outcome.error,
                )
                self.samples.append(sample)


def get(path: str, family: str, auth: tuple[str, str] | None = None) -> Action:
    """A GET whose body is read whole (downloads and covers included)."""
    return Action(family=family, send=lambda http, _shot: http.get(path, auth=auth))


def catalogue_actions(auth: tuple[str, str], book_ids: Sequence[int], cover_ids: Sequence[int]) -> list[Action]:
    """Feeds of both OPDS versions, a search and entries; downloads of ``book_ids``' EPUBs; covers
    and thumbnails (public, so sent without a login as Moon+ Reader does)."""
    feeds = [
        "/opds",
        "/opds/books?sort=new",
        "/opds/v2",
        "/opds/v2/books",
        "/opds/authors",
        "/opds/books?query=the",
        *(f"/opds/books/{book}" for book in book_ids[::2]),
        *(f"/opds/v2/books/{book}" for book in book_ids[1::2]),
    ]
    opds = [get(path, "opds", auth) for path in feeds]
    downloads = [get(f"/download/{book}/{book}.epub", "download", auth) for book in book_ids]
    covers = [get(f"/covers/{book}", "cover") for book in cover_ids[::2]]
    covers += [get(f"/covers/{book}/thumbnail", "cover") for book in cover_ids[1::2]]
    return interleave(opds, downloads, covers)


def interleave(*families: Sequence[Action]) -> list[Action]:
    """One of each family in turn, so that every family is asked from the first seconds on."""
    mixed = itertools.chain.from_iterable(itertools.zip_longest(*families))
    return [action for action in mixed if action is not None]


KOREADER_ACCEPT = "application/vnd.koreader.v1+json"


@dataclass(frozen=True)
class Push:
    """One progress PUT and its answer (``status`` None: no answer, so it may or may not be stored)."""

    percentage: float
    progress: str
    status: int | None


@dataclass
class ProgressLedger:
    """KOReader pushes: each worker its own document, whose percentage only grows; every answer kept."""

    user: str
    password: str
    run: str = field(default_factory=lambda: uuid.uuid4().hex)
    pushes: dict[str, list[Push]] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        key = hashlib.md5(self.password.encode(), usedforsecurity=False).hexdigest()
        return {"Accept": KOREADER_ACCEPT, "x-auth-user": self.user, "x-auth-key": key}

    def document(self, worker: int) -> str:
        return hashlib.md5(f"{self.run}-{worker}".encode(), usedforsecurity=False).hexdigest()

    def action(self) -> Action:
        return Action(family="kosync", send=self._push)

    def _push(self, http: httpx.Client, shot: Shot) -> httpx.Response:
        document = self.document(shot.worker)
        sent = self.pushes.setdefault(document, [])  # only this worker touches this document
        step = len(sent) + 1
        percentage, progress = step / 10_000, f"/body/DocFragment[{step}]/body/p[1]/text().0"
        body = {"document": document, "progress": progress, "percentage": percentage, "device": "KOReader"}
        body["device_id"] = "0123456789ABCDEF0123456789ABCDEF"
        try:
            response = http.put("/kosync/syncs/progress", json=body, headers=self.headers())
        except httpx.TransportError:
            sent.append(Push(percentage=percentage, progress=progress, status=None))
            raise
        sent.append(Push(percentage=percentage, progress=progress, status=response.status_code))
        return response

    def expected(self, document: str) -> tuple[Push | None, list[Push]]:
        """The last push answered 2xx, and the unanswered ones after it (either may be what is stored)."""
        pushes = self.pushes[document]
        last = max((i for i, p in enumerate(pushes) if p.status is not None and 200 <= p.status < 300), default=-1)
        unanswered = [p for p in pushes[last + 1 :] if p.status is None]
        return (pushes[last] if last >= 0 else None), unanswered


@dataclass
class FavouriteLedger:
    """``PUT /api/favourites/{id}`` over ``book_ids`` and ``GET /api/favourites``, with a bearer token."""

    token: str
    book_ids: Sequence[int]
    added: set[int] = field(default_factory=set)

    def actions(self) -> list[Action]:
        return [Action(family="api", send=self._put), Action(family="api", send=self._list)]

    def _put(self, http: httpx.Client, shot: Shot) -> httpx.Response:
        book = self.book_ids[shot.number % len(self.book_ids)]
        response = http.put(f"/api/favourites/{book}", headers={"Authorization": f"Bearer {self.token}"})
        if response.is_success:
            self.added.add(book)
        return response

    def _list(self, http: httpx.Client, _shot: Shot) -> httpx.Response:
        return http.get("/api/favourites", headers={"Authorization": f"Bearer {self.token}"})


KOBO_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "application/json",
    "Authorization": "Bearer made-up-by-the-device",
    "x-kobo-deviceid": "d3v1c3",
}


@dataclass
class KoboLedger:
    """A Kobo syncing its library and pushing reading states: each worker its own book, whose
    progress only grows (a newer ``LastModified`` each time); every answer kept."""

    token: str
    uuids: Sequence[str]
    pushes: dict[str, list[tuple[int, int | None]]] = field(default_factory=dict)

    def actions(self) -> list[Action]:
        return [Action(family="kobo", send=self._sync), Action(family="kobo", send=self._push)]

    def _sync(self, http: httpx.Client, _shot: Shot) -> httpx.Response:
        return http.get(f"/kobo/{self.token}/v1/library/sync{SYNC_QUERY}", headers=KOBO_HEADERS)

    def _push(self, http: httpx.Client, shot: Shot) -> httpx.Response:
        uuid_ = self.uuids[shot.worker % len(self.uuids)]
        sent = self.pushes.setdefault(uuid_, [])  # only this worker touches this book
        percent = len(sent) + 1
        when = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        state = {
            "EntitlementId": uuid_,
            "LastModified": when,
            "CurrentBookmark": {
                "LastModified": when,
                "ProgressPercent": percent,
                "ContentSourceProgressPercent": percent,
                "Location": {"Source": "OEBPS/chapter-001.xhtml", "Type": "KoboSpan", "Value": f"kobo.{percent}.1"},
            },
            "StatusInfo": {"LastModified": when, "Status": "Reading"},
        }
        try:
            response = http.put(
                f"/kobo/{self.token}/v1/library/{uuid_}/state", json={"ReadingStates": [state]}, headers=KOBO_HEADERS
            )
        except httpx.TransportError:
            sent.append((percent, None))
            raise
        sent.append((percent, response.status_code))
        return response

    def expected(self, uuid_: str) -> list[int]:
        """The progress the server may hold: the last push answered 2xx, or an unanswered later one."""
        pushes = self.pushes[uuid_]
        last = max((i for i, (_, status) in enumerate(pushes) if status and 200 <= status < 300), default=-1)
        return [pushes[last][0]] * (last >= 0) + [p for p, status in pushes[last + 1 :] if status is None]

    def problems(self, url: str) -> list[str]:
        """Where what the device reads back is not its last acknowledged push."""
        found: list[str] = []
        with httpx.Client(base_url=f"{url}/kobo/{self.token}", headers=KOBO_HEADERS, timeout=30) as http:
            for uuid_ in self.pushes:
                answer = http.get(f"/v1/library/{uuid_}/state")
                states = answer.json() if answer.status_code == 200 else []
                percent = states[0].get("CurrentBookmark", {}).get("ProgressPercent") if states else None
                if answer.status_code != 200 or percent not in self.expected(uuid_):
                    found.append(
                        f"kobo {uuid_}: server has {answer.status_code} {percent}, expected one of"
                        f" {self.expected(uuid_)} (last pushes {self.pushes[uuid_][-4:]})"
                    )
        return found
