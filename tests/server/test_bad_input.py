"""Bad input and a broken library, over real HTTP: every answer is a 4xx or 503 problem that says
what is wrong, never a 500 and never a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec
import pytest
from lxml import etree

from tests.conftest import copy_fixture_library, start_server, stop_server

ATOM_NS = "http://www.w3.org/2005/Atom"
PROBLEM_TYPE = "application/problem+json"
LONG_QUERY = "x" * 5000
MANY_WORDS = "+".join(f"w{n}" for n in range(50))  # 50 words, well under the length limit


class Problem(msgspec.Struct, frozen=True):
    """RFC 9457 problem details, the fields every error body must carry."""

    type: str
    title: str
    status: int
    detail: str


class Health(msgspec.Struct, frozen=True):
    status: str
    calibre: bool


def read_problem(response: httpx.Response, status: int) -> Problem:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == PROBLEM_TYPE
    assert "Traceback" not in response.text
    problem = msgspec.json.decode(response.content, type=Problem)
    assert problem.status == status
    return problem


def assert_names(detail: str, *words: str) -> None:
    """``detail`` mentions each word as itself (``query``, not ``search`` or ``QUERY``)."""
    for word in words:
        assert re.search(rf"(?<![\w.]){re.escape(word)}(?!\w)", detail), (word, detail)


def next_after(client: httpx.Client, path: str) -> str:
    """The ``after`` cursor of a feed's next link."""
    response = client.get(path)
    assert response.status_code == 200
    feed = etree.fromstring(response.content)
    (href,) = [str(link.get("href")) for link in feed.iter(f"{{{ATOM_NS}}}link") if link.get("rel") == "next"]
    (after,) = parse_qs(urlsplit(href).query)["after"]
    return after


def read_health(client: httpx.Client, status: int) -> Health:
    response = client.get("/health")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    return msgspec.json.decode(response.content, type=Health)


@pytest.fixture(scope="module")
def short_pages(fixture_library: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A server with pages of three, so navigation lists have cursors too."""
    workdir = tmp_path_factory.mktemp("short-pages")
    server = start_server(fixture_library, workdir / "data", workdir / "server.log", env={"OPDS_PAGE_SIZE": "3"})
    with server.client() as http:
        yield http
    stop_server(server)


@pytest.fixture
def own_library(tmp_path: Path) -> Iterator[tuple[Path, httpx.Client]]:
    """A server on a private copy of the fixture library, which the test may break."""
    library = copy_fixture_library(tmp_path / "library")
    server = start_server(library, tmp_path / "data", tmp_path / "server.log")
    with server.client() as http:
        yield library, http
    stop_server(server)


BAD_REQUESTS: list[tuple[str, int, tuple[str, ...]]] = [
    ("/opds/books?after=garbage", 400, ("after",)),
    ("/opds/books?limit=0", 400, ("limit",)),
    ("/opds/books?limit=100000", 400, ("limit",)),
    ("/opds/books?limit=abc", 400, ("limit",)),
    ("/opds/books?rating=11", 400, ("rating",)),
    ("/opds/books?sort=bogus", 400, ("sort",)),
    ("/opds/books?author=abc", 400, ("author",)),
    ("/opds/books?author=999999", 404, ("author", "999999")),
    ("/opds/books?series=0", 400, ("series",)),
    ("/opds/books?initial=AB", 400, ("initial",)),
    ("/opds/books?format=XYZ", 404, ("format", "XYZ")),
    ("/opds/books?tag=nope", 404, ("tag", "nope")),
    ("/opds/books?query=", 400, ("query",)),
    (f"/opds/books?query={LONG_QUERY}", 400, ("query",)),
    ("/opds/books?query=%FF%FE", 400, ("query",)),
    (f"/opds/books?query={MANY_WORDS}", 400, ("query", "50")),
    ("/opds/books/999999", 404, ("999999",)),
    ("/opds/v2/books/999999", 404, ("999999",)),
    ("/opds/nonsense", 404, ("/opds/nonsense",)),
    ("/opds/tags?parent=nope", 404, ("parent", "nope")),
    ("/opds/authors?parent=a%01b", 400, ("parent",)),  # the fuzz run's 500: the title is XML
    ("/opds/v2/series?parent=%EF%BF%BF", 400, ("parent",)),
    ("/opds/tags?parent=%FF", 400, ("parent",)),
    ("/opds/authors?initial=Z", 404, ("initial", "Z")),  # "Quill, Ada" files Ada Quill under Q
    ("/pse/21/0?maxWidth=abc", 400, ("maxWidth",)),
]


@pytest.mark.parametrize(("path", "status", "words"), BAD_REQUESTS, ids=[path[:60] for path, _, _ in BAD_REQUESTS])
def test_bad_parameter_is_a_problem_naming_it(
    client: httpx.Client, path: str, status: int, words: tuple[str, ...]
) -> None:
    assert_names(read_problem(client.get(path), status).detail, *words)


def test_parameter_error_names_the_value_received_not_internal_names(client: httpx.Client) -> None:
    detail = read_problem(client.get("/opds/books?limit=abc"), 400).detail
    assert_names(detail, "limit", "abc")
    assert "ParamType" not in detail


def test_truncated_cursor_is_a_400_naming_after(client: httpx.Client) -> None:
    after = next_after(client, "/opds/books?sort=title&limit=5")
    response = client.get("/opds/books", params={"sort": "title", "limit": 5, "after": after[: len(after) // 2]})
    assert_names(read_problem(response, 400).detail, "after")


def test_cursor_of_another_sort_order_is_a_400_naming_after(client: httpx.Client) -> None:
    after = next_after(client, "/opds/books?sort=title&limit=5")
    response = client.get("/opds/books", params={"sort": "new", "limit": 5, "after": after})
    assert_names(read_problem(response, 400).detail, "after")


def test_navigation_cursor_on_books_is_a_400_naming_after(short_pages: httpx.Client) -> None:
    after = next_after(short_pages, "/opds/authors")
    for sort in ("new", "title", "author"):
        response = short_pages.get("/opds/books", params={"sort": sort, "after": after})
        assert_names(read_problem(response, 400).detail, "after")


def test_missing_metadata_db_is_a_503_until_it_returns(own_library: tuple[Path, httpx.Client]) -> None:
    library, http = own_library
    database = library / "metadata.db"
    database.rename(library / "metadata.db.away")
    response = http.get("/opds")
    assert_names(read_problem(response, 503).detail, "metadata.db")
    assert response.headers["retry-after"].isdigit()
    assert read_health(http, 503) == Health(status="unhealthy", calibre=False)
    (library / "metadata.db.away").rename(database)
    assert http.get("/opds").status_code == 200
    assert read_health(http, 200) == Health(status="healthy", calibre=True)


def test_garbage_metadata_db_is_a_503_not_a_500(own_library: tuple[Path, httpx.Client]) -> None:
    library, http = own_library
    (library / "metadata.db").write_bytes(b"this is not an SQLite database\n" * 512)
    for path in ("/opds", "/opds/v2", "/opds/books", "/opds/books/1", "/download/1/epub"):
        response = http.get(path)
        assert_names(read_problem(response, 503).detail, "metadata.db")
        assert response.headers["retry-after"].isdigit(), path


def test_health_is_unhealthy_when_metadata_db_is_garbage(own_library: tuple[Path, httpx.Client]) -> None:
    library, http = own_library
    (library / "metadata.db").write_bytes(b"this is not an SQLite database\n" * 512)
    assert read_health(http, 503) == Health(status="unhealthy", calibre=False)
