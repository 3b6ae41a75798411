"""The fuzz run: a real server on a copy of the fixture library, then schemathesis and hypothesis at it.

``python -m tests.fuzz.run [--cases N] [--seed S]``: about ``N`` requests in all, half from schemathesis (every
operation of the OpenAPI document, positive and negative cases, a bearer token), half from hypothesis over the
bodies the JSON API's schema does not describe: the Kobo's ``ReadingStates``, tags and sync tokens, and KOReader's
kosync calls. Exit 1 on any 5xx, or on a 4xx without a body; the summary names the request and shows the server
log's traceback.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import status_code_conformance

from tests.conftest import LiveServer, copy_fixture_library, start_server, stop_server
from tests.server.api_client import PASSWORDS, add_user, login
from tests.server.kobo_device import USER_AGENT, uuids_by_id

SCHEMA_PATH = "/schema/openapi.json"
KOSYNC_ACCEPT = "application/vnd.koreader.v1+json"
EXCERPT = 300


@dataclass
class Finding:
    part: str
    method: str
    path: str
    status: int
    body: str
    answer: str


@dataclass
class Tally:
    """What the run saw: cases and statuses per part, and the requests that broke the rules."""

    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    server_errors: list[Finding] = field(default_factory=list)
    bodyless: list[Finding] = field(default_factory=list)
    mismatches: Counter[str] = field(default_factory=Counter)
    without_negative: int = 0

    def record(self, part: str, method: str, path: str, body: bytes | None, *, status: int, answer: bytes) -> None:
        self.cases[part] += 1
        self.statuses[f"{part} {status}"] += 1
        finding = Finding(
            part,
            method,
            path[:EXCERPT],
            status,
            (body or b"")[:EXCERPT].decode("utf-8", "replace"),
            answer[:EXCERPT].decode("utf-8", "replace"),
        )
        if status >= 500:
            self.server_errors.append(finding)
        elif status >= 400 and method != "HEAD" and not answer.strip():
            self.bodyless.append(finding)

    @property
    def failed(self) -> bool:
        return bool(self.server_errors or self.bodyless)


@dataclass(frozen=True)
class Target:
    """The running server and what the fuzzers need to reach it."""

    server: LiveServer
    log: Path
    bearer: str
    kobo_token: str
    book_uuid: str
    tag_id: str
    sync_token: str


@contextmanager
def running_server(workdir: Path) -> Iterator[Target]:
    """The server on a fresh copy of the fixture library, ada (Kobo, kosync) and bob (the JSON API)."""
    library = copy_fixture_library(workdir / "library")
    data = workdir / "data"
    env = {"OPDS_DATA_DIR": str(data), "OPDS_KOSYNC_REGISTRATION": "true"}
    log = workdir / "server.log"
    server = start_server(library, data, log, env)
    try:
        for name in ("ada", "bob"):
            add_user(env, name)
        with server.client() as http:
            ada = login(http, "ada").access_token
            bob = login(http, "bob").access_token
            made = http.post("/api/kobo/devices", json={"label": "Fuzz"}, headers={"Authorization": f"Bearer {ada}"})
        assert made.status_code == 201, made.text
        found = re.fullmatch(r".+/kobo/([0-9a-f]{32})", made.json()["api_endpoint"])
        assert found is not None, made.text
        kobo_token = found.group(1)
        book_uuid = uuids_by_id(library)[1]
        with kobo_client(server.url, kobo_token) as kobo:
            tag = kobo.post("/v1/library/tags", json={"Name": "Fuzzed", "Items": []})
            assert tag.status_code == 201, tag.text
            synced = kobo.get("/v1/library/sync")
            assert synced.status_code == 200, synced.text
        yield Target(server, log, bob, kobo_token, book_uuid, str(tag.json()), synced.headers["x-kobo-synctoken"])
    finally:
        stop_server(server)


def kobo_client(url: str, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{url}/kobo/{token}",
        timeout=60,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json", "Authorization": "Bearer device"},
    )


def kosync_client(url: str) -> httpx.Client:
    key = hashlib.md5(PASSWORDS["ada"].encode(), usedforsecurity=False).hexdigest()
    headers = {"Accept": KOSYNC_ACCEPT, "x-auth-user": "ada", "x-auth-key": key}
    return httpx.Client(base_url=f"{url}/kosync", headers=headers, timeout=60)


def _settings(cases: int) -> settings:
    return settings(
        max_examples=max(1, cases),
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate),  # nothing raises inside: findings are collected, not shrunk
        suppress_health_check=list(HealthCheck),
    )


# schemathesis: every operation of the server's own OpenAPI document.


def fuzz_schema(target: Target, tally: Tally, cases: int, run_seed: int) -> None:
    url = target.server.url
    schema = schemathesis.openapi.from_url(url + SCHEMA_PATH)
    operations = []
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            raise result.err()  # the server's own document does not load: that is a bug too
        operations.append(result.ok())
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    per_run = max(1, cases // (len(operations) * len(modes)))
    headers = {"Authorization": f"Bearer {target.bearer}"}
    for operation in operations:
        for mode in modes:

            @seed(run_seed)
            @_settings(per_run)
            @given(case=operation.as_strategy(generation_mode=mode))
            def one(case: schemathesis.Case[Any]) -> None:
                response = case.call(base_url=url, headers=headers, timeout=60)
                body = response.request.body
                sent = body.encode() if isinstance(body, str) else body
                tally.record(
                    "schemathesis",
                    case.method,
                    response.request.url or "",
                    sent,
                    status=response.status_code,
                    answer=response.content,
                )
                if response.status_code < 500:
                    try:
                        case.validate_response(response, checks=[status_code_conformance], headers=headers)
                    except (AssertionError, FailureGroup):
                        tally.mismatches[f"{case.method} {case.path} -> {response.status_code}"] += 1

            try:
                one()
            except Unsatisfiable:  # nothing to make invalid: an operation without parameters or body
                tally.without_negative += 1


# hypothesis: the bodies the OpenAPI document does not describe.

LONG = st.text(min_size=1000, max_size=5000)
NAN_LIKE = st.sampled_from(["NaN", "nan", "Infinity", "-Infinity", "1e309", "-0", "0x10", "", " ", "null", "\x00"])
HUGE = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, -(10**30), 1e308, -1e308, 5e-324])
TIMESTAMPS = st.one_of(
    st.sampled_from(
        [
            "",
            "0000-00-00T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.9999999Z",
            "2024-02-30T00:00:00Z",
            "2024-01-01T25:61:61Z",
            "-0001-01-01T00:00:00Z",
            "2024-01-01",
            "2024-01-01T00:00:00+99:00",
            "2024-01-01T00:00:00.123456789123Z",
            "1712345678",
        ]
    ),
    st.datetimes().map(lambda moment: moment.isoformat() + "Z"),
    st.text(max_size=40),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), HUGE, st.floats(), st.text(max_size=50), NAN_LIKE)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5),
    max_leaves=25,
)
JUNK = st.one_of(SCALARS, LONG, JSON)


def either(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's right value most of the time, anything at all otherwise."""
    return st.one_of(good, good, JUNK)


def optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={name: either(value) for name, value in fields.items()})


def reading_states(book_uuid: str) -> st.SearchStrategy[Any]:
    percent = st.integers(-10, 200) | st.floats() | HUGE
    minutes = st.integers() | HUGE
    location = optional(
        Value=st.text(max_size=80), Type=st.sampled_from(["KoboSpan", "CFI"]) | st.text(), Source=st.text()
    )
    bookmark = optional(
        LastModified=TIMESTAMPS, ProgressPercent=percent, ContentSourceProgressPercent=percent, Location=location
    )
    statistics = optional(LastModified=TIMESTAMPS, SpentReadingMinutes=minutes, RemainingTimeMinutes=minutes)
    status = optional(
        LastModified=TIMESTAMPS,
        Status=st.sampled_from(["ReadyToRead", "Reading", "Finished"]) | st.text(max_size=20),
        TimesStartedReading=minutes,
        LastTimeStartedReading=TIMESTAMPS,
        LastTimeFinished=TIMESTAMPS,
    )
    state = optional(
        EntitlementId=st.just(book_uuid) | st.uuids().map(str),
        LastModified=TIMESTAMPS,
        CurrentBookmark=bookmark,
        Statistics=statistics,
        StatusInfo=status,
    )
    return st.one_of(JSON, optional(ReadingStates=st.lists(either(state), min_size=1, max_size=4)))


def encoded(value: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """JSON text (Python's, so NaN and Infinity sneak in), now and then raw bytes."""
    return st.one_of(
        value.map(lambda v: json.dumps(v).encode()),
        value.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=200),
    )


def path_part(good: str) -> st.SearchStrategy[str]:
    return st.one_of(st.just(good), st.text(min_size=1, max_size=200).map(lambda text: quote(text, safe="")))


def sync_tokens(real: str) -> st.SearchStrategy[str]:
    printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)
    b64 = JSON.map(lambda v: base64.b64encode(json.dumps(v).encode()).decode())
    return st.one_of(
        printable,
        b64,
        st.binary(max_size=200).map(lambda raw: base64.urlsafe_b64encode(raw).decode()),
        st.integers(0, max(0, len(real) - 1)).map(lambda cut: real[:cut]),
        printable.map(lambda tail: real + tail),
        st.tuples(b64, printable).map(".".join),
        st.just(real),
    ).map(str.strip)  # HTTP forbids a header value's outer whitespace: httpx refuses to send it


Send = Callable[[httpx.Client, str, str, bytes | None, dict[str, str] | None], None]


def sender(tally: Tally, part: str) -> Send:
    def send(http: httpx.Client, method: str, path: str, body: bytes | None, headers: dict[str, str] | None) -> None:
        extra = {"Content-Type": "application/json"} if body is not None else {}
        response = http.request(method, path, content=body, headers={**extra, **(headers or {})})
        shown = path if headers is None else f"{path} {headers}"
        tally.record(part, method, shown, body, status=response.status_code, answer=response.content)

    return send


def fuzz_kobo(target: Target, tally: Tally, cases: int, run_seed: int) -> None:
    send = sender(tally, "kobo")
    per_run = max(1, cases // 4)
    with kobo_client(target.server.url, target.kobo_token) as http:

        @seed(run_seed)
        @_settings(per_run)
        @given(entitlement=path_part(target.book_uuid), body=encoded(reading_states(target.book_uuid)))
        def state(entitlement: str, body: bytes) -> None:
            send(http, "PUT", f"/v1/library/{entitlement}/state", body, None)

        tag_item = optional(
            RevisionId=st.just(target.book_uuid) | st.text(max_size=60),
            Type=st.sampled_from(["ProductRevisionTagItem"]) | st.text(max_size=30),
        )
        tag_body = st.one_of(
            JSON, optional(Name=st.text(max_size=60) | LONG, Items=st.lists(either(tag_item), max_size=5))
        )

        @seed(run_seed)
        @_settings(per_run)
        @given(body=encoded(tag_body))
        def tags(body: bytes) -> None:
            send(http, "POST", "/v1/library/tags", body, None)

        @seed(run_seed)
        @_settings(per_run)
        @given(tag=path_part(target.tag_id), body=encoded(tag_body), remove=st.booleans())
        def tag_items(tag: str, body: bytes, remove: bool) -> None:
            send(http, "POST", f"/v1/library/tags/{tag}/items" + ("/delete" if remove else ""), body, None)

        @seed(run_seed)
        @_settings(per_run)
        @given(token=sync_tokens(target.sync_token))
        def sync(token: str) -> None:
            send(http, "GET", "/v1/library/sync", None, {"x-kobo-synctoken": token})

        for run in (state, tags, tag_items, sync):
            run()


def fuzz_kosync(target: Target, tally: Tally, cases: int, run_seed: int) -> None:
    send = sender(tally, "kosync")
    per_run = max(1, cases // 3)
    md5 = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
    progress = optional(
        document=md5 | st.text(max_size=40),
        progress=st.text(max_size=80) | LONG,
        percentage=st.floats(0, 1) | st.floats() | HUGE,
        device=st.text(max_size=40),
        device_id=st.text(max_size=40),
        metadata=JSON,
    )
    registration = optional(username=st.text(max_size=40) | LONG, password=st.text(max_size=40) | LONG)
    with kosync_client(target.server.url) as http:

        @seed(run_seed)
        @_settings(per_run)
        @given(body=encoded(st.one_of(JSON, progress)))
        def push(body: bytes) -> None:
            send(http, "PUT", "/syncs/progress", body, None)

        @seed(run_seed)
        @_settings(per_run)
        @given(document=st.one_of(md5, st.text(min_size=1, max_size=300).map(lambda text: quote(text, safe=""))))
        def pull(document: str) -> None:
            send(http, "GET", f"/syncs/progress/{document}", None, None)

        @seed(run_seed)
        @_settings(per_run)
        @given(body=encoded(st.one_of(JSON, registration)))
        def create(body: bytes) -> None:
            send(http, "POST", "/users/create", body, None)

        for run in (push, pull, create):
            run()


def fuzz(target: Target, cases: int, run_seed: int) -> Tally:
    """About ``cases`` requests: half from schemathesis, a quarter each at the Kobo and kosync calls."""
    tally = Tally()
    fuzz_kobo(target, tally, cases // 4, run_seed)
    fuzz_kosync(target, tally, cases // 4, run_seed)
    fuzz_schema(target, tally, cases // 2, run_seed)
    return tally


def tracebacks(log: Path) -> list[str]:
    """The distinct tracebacks in the server's log (JSON lines, or plain text), the last lines of each."""
    found: dict[str, str] = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        values = record.values() if isinstance(record, dict) else ()
        for value in values:
            if isinstance(value, str) and "Traceback (most recent call last)" in value:
                lines = value.strip().splitlines()
                found.setdefault(lines[-1], "\n".join(lines[-12:]))
    if not found and "Traceback" in (text := log.read_text(errors="replace")):
        found["plain"] = text[text.rindex("Traceback") :][:3000]
    return list(found.values())


def summary(tally: Tally, run_seed: int, log: Path) -> str:
    lines = [f"fuzz seed {run_seed}: {sum(tally.cases.values())} cases"]
    lines += [f"  {part}: {count} cases" for part, count in sorted(tally.cases.items())]
    lines.append(f"  ({tally.without_negative} operations have no negative case: no parameters, no body)")
    lines.append("statuses:")
    lines += [f"  {key}: {count}" for key, count in sorted(tally.statuses.items())]
    if tally.mismatches:
        lines.append(f"status codes the schema does not list ({sum(tally.mismatches.values())} cases, not a failure):")
        lines += [f"  {key}: {count}" for key, count in sorted(tally.mismatches.items())]
    for title, findings in (("5xx", tally.server_errors), ("4xx without a body", tally.bodyless)):
        if findings:
            lines.append(f"{title}: {len(findings)}")
            lines += [
                f"  [{f.part}] {f.method} {f.path} -> {f.status}\n    sent {f.body!r}\n    got {f.answer!r}"
                for f in findings[:20]
            ]
    if tally.server_errors:
        lines.append("server log tracebacks:")
        lines += tracebacks(log)[:5]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=3000, help="about how many requests in all (default 3000)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: a random one, printed)")
    arguments = parser.parse_args(argv)
    run_seed = arguments.seed if arguments.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"fuzz seed {run_seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="opds-fuzz-") as work, running_server(Path(work)) as target:
        tally = fuzz(target, arguments.cases, run_seed)
        print(summary(tally, run_seed, target.log))
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
