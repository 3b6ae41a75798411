"""The servers the suite compares, started the same way each time, and the URLs that mean the same
thing on each of them.

Every server listens on 127.0.0.1 only and is started from a fresh process, so its cold start is
measured from ``Popen`` to the first 200 on its root feed and then on its newest-books page,
polling every 20 ms. Every server shows the same number of entries per page (``page_size``):
ours through ``OPDS_PAGE_SIZE``, calibre through ``--max-opds-items``, calibre-web through its
``config_books_per_page`` setting.

- ``ours``: ``python -m opds_server serve`` with one user, Basic auth on every request.
- ``ceiling``: ``tests/benchmark/ceiling.py`` under granian, the physical limit.
- ``calibre``: Debian's ``calibre-server``, no auth; OPDS under ``/opds``.
- ``calibre-web``: ``pip install calibreweb`` into a venv of its own (``.cache/``), configured by
  writing its settings database (``app.db``) between a first boot that creates it and the measured
  one; default login admin/admin123, Basic auth on its ``/opds``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import msgspec
from lxml import etree

from tests.conftest import ROOT, free_port

HOST = "127.0.0.1"
POLL_SECONDS = 0.02
START_TIMEOUT = 180.0
PASSWORD = "a long benchmark password"
CALIBRE_WEB_LOGIN = ("admin", "admin123")
ATOM = "{http://www.w3.org/2005/Atom}"


class PeerUnavailableError(Exception):
    """A server could not be installed, configured or started; the message says why."""


class Case(StrEnum):
    ROOT = "root navigation feed"
    NEWEST = "newest books, page 1"
    DEEP = "newest books, deep page"
    AUTHOR = "an author's books"
    SERIES = "a series"
    SEARCH = "a search"
    THUMBNAIL = "a cover thumbnail"
    DOWNLOAD = "a download, Range: bytes=0-65535"


FEED_CASES = (Case.ROOT, Case.NEWEST, Case.DEEP, Case.AUTHOR, Case.SERIES, Case.SEARCH)


class ColdStart(msgspec.Struct, frozen=True, kw_only=True):
    root_ms: float
    page_ms: float
    first_page_ms: float | None = None
    """Ours only: the very first start on this library, which builds the library index."""
    search_ready_ms: float | None = None
    """Ours only: from that first start until the search index was complete (filled in the background)."""


class ProcessMemory(msgspec.Struct, frozen=True, kw_only=True):
    pid: int
    role: str
    command: str
    rss_mib: float


class Picks(msgspec.Struct, frozen=True, kw_only=True):
    """What every server is asked for, chosen once from ``metadata.db``."""

    books: int
    author_id: int
    author: str
    author_books: int
    series_id: int
    series: str
    series_books: int
    search: str
    book_id: int


@dataclass(frozen=True)
class Server:
    """A running server: where it answers, the headers every request needs, and its cold start."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    headers: Mapping[str, str]
    cold_start: ColdStart
    log: Path
    started: float = 0.0
    """``time.perf_counter()`` when the process was started."""


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def read_picks(library: Path, search: str | None) -> Picks:
    """The author and the series with the most books, a common surname to search for (the most
    frequent last word of an author's name, by books), and a book with a cover and an EPUB."""
    with closing(sqlite3.connect(f"file:{library / 'metadata.db'}?mode=ro", uri=True)) as db:
        books = db.execute("SELECT count(*) FROM books").fetchone()[0]
        author = db.execute(
            "SELECT a.id, a.name, count(*) AS n FROM authors a JOIN books_authors_link l ON l.author = a.id"
            " GROUP BY a.id ORDER BY n DESC, a.id LIMIT 1"
        ).fetchone()
        series = db.execute(
            "SELECT s.id, s.name, count(*) AS n FROM series s JOIN books_series_link l ON l.series = s.id"
            " GROUP BY s.id ORDER BY n DESC, s.id LIMIT 1"
        ).fetchone()
        surnames: Counter[str] = Counter()
        for name, count in db.execute(
            "SELECT a.name, count(*) FROM authors a JOIN books_authors_link l ON l.author = a.id GROUP BY a.id"
        ):
            words = re.findall(r"[^\W\d_]{3,}", name)
            if words:
                surnames[words[-1]] += count
        book = db.execute(
            "SELECT b.id FROM books b JOIN data d ON d.book = b.id AND d.format = 'EPUB'"
            " WHERE b.has_cover ORDER BY b.id LIMIT 1"
        ).fetchone()
    if author is None or series is None or book is None or not surnames:
        msg = f"{library} needs an author, a series and a book with a cover and an EPUB"
        raise PeerUnavailableError(msg)
    return Picks(
        books=books,
        author_id=author[0],
        author=author[1],
        author_books=author[2],
        series_id=series[0],
        series=series[1],
        series_books=series[2],
        search=search or surnames.most_common(1)[0][0],
        book_id=book[0],
    )


def _path_of(href: str) -> str:
    parts = urlsplit(href)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def next_path(feed: bytes) -> str | None:
    """The ``rel="next"`` link of an Atom feed, as a path and query."""
    links = etree.fromstring(feed).findall(f"{ATOM}link[@rel='next']")
    return _path_of(str(links[0].get("href"))) if links else None


def walk_cursor(client: httpx.Client, start: str, depth: int) -> str:
    """Our page ``depth`` pages after ``start``, reached by following ``next`` links (our cursors are
    opaque, so this is the only honest way there)."""
    path = start
    for done in range(depth):
        response = client.get(path)
        response.raise_for_status()
        found = next_path(response.content)
        if found is None:
            msg = f"{start} has only {done + 1} pages; asked for {depth} pages deep"
            raise PeerUnavailableError(msg)
        path = found
    return path


def ours_paths(picks: Picks, deep: str) -> dict[Case, str]:
    book = picks.book_id
    return {
        Case.ROOT: "/opds",
        Case.NEWEST: "/opds/books?sort=new",
        Case.DEEP: deep,
        Case.AUTHOR: f"/opds/books?author={picks.author_id}",
        Case.SERIES: f"/opds/books?series={picks.series_id}",
        Case.SEARCH: f"/opds/books?query={quote(picks.search)}",
        Case.THUMBNAIL: f"/covers/{book}/thumbnail",
        Case.DOWNLOAD: f"/download/{book}/{book}.epub",
    }


def _hex(text: str) -> str:
    return text.encode().hex()


def _calibre_links(url: str) -> tuple[str, str]:
    """The "By Newest" link (``navcatalog/hex("Onewest")``) and the search template of calibre's root."""
    root = etree.fromstring(httpx.get(f"{url}/opds", timeout=60).raise_for_status().content)
    links = [(str(link.get("rel", "")), str(link.get("href", ""))) for link in root.iter(f"{ATOM}link")]
    newest = [href for _, href in links if f"/opds/navcatalog/{_hex('Onewest')}" in href]
    search = [href for rel, href in links if rel == "search"]
    if not newest or not search or "library_id=" not in newest[0]:
        raise PeerUnavailableError("calibre's /opds root has no By Newest link or no search link")
    return _path_of(newest[0]), _path_of(search[0])


def calibre_paths(url: str, picks: Picks, offset: int) -> dict[Case, str]:
    """Found by following calibre's root feed. Categories are grouped by first letter in large
    libraries, so the author and series feeds are built as calibre builds their links:
    ``/opds/category/hex(field)/hex("I<id>:field")``."""
    newest, search = _calibre_links(url)
    library_id = newest.split("library_id=")[1].split("&")[0]

    def category(field: str, item: int) -> str:
        return f"/opds/category/{_hex(field)}/{_hex(f'I{item}:{field}')}?library_id={library_id}"

    return {
        Case.ROOT: "/opds",
        Case.NEWEST: newest,
        Case.DEEP: f"{newest}&offset={offset}",
        Case.AUTHOR: category("authors", picks.author_id),
        Case.SERIES: category("series", picks.series_id),
        Case.SEARCH: search.replace("{searchTerms}", quote(picks.search)),
        Case.THUMBNAIL: f"/get/thumb/{picks.book_id}/{library_id}",
        Case.DOWNLOAD: f"/get/epub/{picks.book_id}/{library_id}",
    }


def calibre_web_paths(picks: Picks, offset: int) -> dict[Case, str]:
    """calibre-web's OPDS routes take calibre's own ids (``cps/opds.py``)."""
    return {
        Case.ROOT: "/opds",
        Case.NEWEST: "/opds/new",
        Case.DEEP: f"/opds/new?offset={offset}",
        Case.AUTHOR: f"/opds/author/{picks.author_id}",
        Case.SERIES: f"/opds/series/{picks.series_id}",
        Case.SEARCH: f"/opds/search/{quote(picks.search)}",
        Case.THUMBNAIL: f"/opds/cover_240_240/{picks.book_id}",
        Case.DOWNLOAD: f"/opds/download/{picks.book_id}/epub/",
    }


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.exists() else ""


@dataclass(frozen=True)
class Launch:
    """How to start a server: its command line, where its output goes, its environment."""

    command: Sequence[str]
    log: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path = ROOT

    def popen(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as handle:
            return subprocess.Popen(
                list(self.command),
                cwd=self.cwd,
                env={**os.environ, **self.env},
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends the workers too
            )


def _first_200(process: subprocess.Popen[bytes], url: str, headers: Mapping[str, str], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"exited with {process.returncode} before {url} answered:\n{_tail(log)}"
            raise PeerUnavailableError(msg)
        try:
            if httpx.get(url, headers=headers, timeout=60).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(POLL_SECONDS)
    msg = f"{url} gave no 200 within {START_TIMEOUT:.0f} s:\n{_tail(log)}"
    raise PeerUnavailableError(msg)


PagePath = str | Callable[[str], str]
"""The newest-books page, or how to find it from the base URL once the root answers."""


def _start(name: str, launch: Launch, port: int, headers: Mapping[str, str], paths: tuple[str, PagePath]) -> Server:
    """Start a server and time it to the first 200 on its root path, then on its newest page."""
    url = f"http://{HOST}:{port}"
    started = time.perf_counter()
    process = launch.popen()
    try:
        _first_200(process, url + paths[0], headers, launch.log)
        root_ms = (time.perf_counter() - started) * 1000
        page = paths[1] if isinstance(paths[1], str) else paths[1](url)
        _first_200(process, url + page, headers, launch.log)
    except BaseException:
        stop(process)
        raise
    page_ms = (time.perf_counter() - started) * 1000
    return Server(name, url, process, headers, ColdStart(root_ms=root_ms, page_ms=page_ms), launch.log, started)


def start_ours(library: Path, work: Path, *, workers: int, page_size: int, root: Path = ROOT) -> Server:
    """Our server (from the checkout at ``root``) with one user, ``bench``; every request carries its
    Basic credentials."""
    env = {"OPDS_NO_BOOTSTRAP": "1", "OPDS_DATA_DIR": str(work / "ours-data"), "OPDS_PAGE_SIZE": str(page_size)}
    subprocess.run(
        [sys.executable, "-m", "opds_server", "users", "add", "bench", "--password-stdin"],
        input=f"{PASSWORD}\n".encode(),
        cwd=root,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    headers = basic("bench", PASSWORD)

    def launch(log: str) -> tuple[Launch, int]:
        port = free_port()
        command = [sys.executable, "-m", "opds_server", "serve", "--library", str(library)]
        command += ["--host", HOST, "--port", str(port), "--workers", str(workers)]
        return Launch(command, work / log, env, root), port

    # The first start on a library builds its index (once per library and data dir), then fills the
    # search index in the background; measured apart. The cold start is a restart, as in use.
    first_launch, port = launch("ours-first.log")
    first = _start("ours", first_launch, port, headers, ("/opds", "/opds/books?sort=new"))
    try:
        _first_200(first.process, f"{first.url}/opds/books?query=a", headers, first_launch.log)
        search_ready_ms = (time.perf_counter() - first.started) * 1000
    finally:
        stop(first.process)
    again, port = launch("ours.log")
    server = _start("ours", again, port, headers, ("/opds", "/opds/books?sort=new"))
    cold = msgspec.structs.replace(
        server.cold_start, first_page_ms=first.cold_start.page_ms, search_ready_ms=search_ready_ms
    )
    return Server(server.name, server.url, server.process, server.headers, cold, server.log, server.started)


def start_ceiling(work: Path) -> Server:
    port = free_port()
    granian = str(Path(sys.executable).with_name("granian"))
    command = [granian, "--interface", "asgi", "--host", HOST, "--port", str(port), "--workers", "1"]
    launch = Launch([*command, "tests.benchmark.ceiling:app"], work / "ceiling.log")
    return _start("ceiling", launch, port, {}, ("/", "/"))


def start_calibre(library: Path, work: Path, *, page_size: int) -> Server:
    """calibre's content server, with its configuration in a folder of its own. Its newest-books
    link is only known once its root answers, so the page half of its cold start follows it."""
    port = free_port()
    command = ["calibre-server", "--disable-use-bonjour", "--listen-on", HOST, "--port", str(port)]
    command += ["--max-opds-items", str(page_size), str(library)]
    launch = Launch(command, work / "calibre.log", {"CALIBRE_CONFIG_DIRECTORY": str(work / "calibre-config")})
    return _start("calibre", launch, port, {}, ("/opds", lambda url: _calibre_links(url)[0]))


def prepare_calibre_web(cache: Path) -> Path:
    """calibre-web's ``cps`` command, installed with pip into ``cache/calibre-web-venv`` on first use
    (this needs the network, so it runs before the suite isolates itself)."""
    venv = cache / "calibre-web-venv"
    cps = venv / "bin" / "cps"
    if cps.exists():
        return cps
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", "calibreweb"], check=True, capture_output=True, text=True
        )
    except subprocess.CalledProcessError as exc:
        msg = f"pip install calibreweb failed ({exc.returncode}): {str(exc.stderr or '')[-800:]}"
        raise PeerUnavailableError(msg) from exc
    if not cps.exists():
        raise PeerUnavailableError(f"pip install calibreweb gave no {cps}")
    return cps


def calibre_web_version(cps: Path) -> str:
    found = subprocess.run(
        [str(cps.with_name("python")), "-c", "import importlib.metadata as m; print(m.version('calibreweb'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or "unknown"


def start_calibre_web(library: Path, work: Path, cps: Path, *, page_size: int) -> Server:
    """A first boot creates calibre-web's settings database (its port comes from ``CALIBRE_PORT``);
    once it answers it is stopped, the library and page size are written into ``settings``, and the
    second, measured boot serves the library."""
    config = work / "calibre-web"
    config.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {"CALIBRE_DBPATH": str(config), "CALIBRE_PORT": str(port), "CACHE_DIRECTORY": str(work / "calibre-web-cache")}
    command = [str(cps), "-i", HOST, "-p", str(config / "app.db")]
    launch = Launch(command, work / "calibre-web.log", env)
    first = launch.popen()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if first.poll() is not None or time.monotonic() > deadline:
                raise PeerUnavailableError(f"calibre-web's first boot failed:\n{_tail(launch.log)}")
            try:
                httpx.get(f"http://{HOST}:{port}/", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(POLL_SECONDS)
    finally:
        stop(first)
    with closing(sqlite3.connect(config / "app.db")) as db, db:
        updated = db.execute(
            "UPDATE settings SET config_calibre_dir = ?, config_port = ?, config_books_per_page = ?",
            (str(library), port, page_size),
        ).rowcount
    if updated != 1:
        raise PeerUnavailableError(f"calibre-web's {config / 'app.db'} has {updated} settings rows, not 1")
    headers = basic(*CALIBRE_WEB_LOGIN)
    return _start("calibre-web", launch, port, headers, ("/opds", "/opds/new"))


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server and every process it started (granian's workers), killing what lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found


def read_memory(pid: int) -> list[ProcessMemory]:
    """VmRSS of a process and of every process below it (granian's workers, calibre's workers)."""
    memory: list[ProcessMemory] = []
    pending = [(pid, "main")]
    while pending:
        current, role = pending.pop(0)
        try:
            status = Path(f"/proc/{current}/status").read_text()
            command = Path(f"/proc/{current}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        rss = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        rss_mib = int(rss[1]) / 1024 if rss else 0.0
        memory.append(ProcessMemory(pid=current, role=role, command=command.strip()[:100], rss_mib=rss_mib))
        pending += [(child, "child") for child in _children(current)]
    return memory
