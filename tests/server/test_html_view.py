"""The HTML view over HTTP: pages, their links and safety, the login form, favourites.

What a browser does with the pages (clicking through, downloading, scripts never running, the
accessibility check) is in ``tests/browser/test_html_pages.py``; here are the answers themselves.
"""

from __future__ import annotations

import base64
import io
import re
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from lxml import html

from tests.conftest import LiveServer, copy_fixture_library, start_server, stop_server
from tests.server.api_client import PASSWORDS, add_user

HOSTILE = 24  # the fixture's book with <script>, onerror, javascript: and iframe in its comments
KOBO_BROWSER = (
    "Mozilla/5.0 (Linux; U; Android 2.0; en-us;) AppleWebKit/538.1 (KHTML, like Gecko) Version/4.0"
    " Mobile Safari/538.1 (Kobo Touch 0377/4.38.23171)"
)
PAGE = {"Accept": "text/html,application/xhtml+xml"}


def strings(node: html.HtmlElement, expression: str) -> list[str]:
    """What an XPath selecting attributes or text finds, as strings."""
    found = node.xpath(expression)
    assert isinstance(found, list)
    return [str(item) for item in found]


def elements(node: html.HtmlElement, expression: str) -> list[html.HtmlElement]:
    found = node.xpath(expression)
    assert isinstance(found, list)
    return [item for item in found if isinstance(item, html.HtmlElement)]


@dataclass(frozen=True)
class Site:
    server: LiveServer

    def browser(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=30, headers={**PAGE, **headers})

    def log_in(self, client: httpx.Client, name: str = "ada", next_path: str = "/") -> httpx.Response:
        form = client.get("/login", params={"next": next_path})
        csrf = strings(html.fromstring(form.content), "//input[@name='csrf']/@value")[0]
        return client.post(
            "/login",
            data={"username": name, "password": PASSWORDS[name], "csrf": csrf, "next": next_path},
            headers={"Origin": self.server.url},
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("html-view")
    library = copy_fixture_library(work / "library")
    env = {"OPDS_DATA_DIR": str(work / "data")}
    add_user(env, "ada")
    server = start_server(library, work / "data", work / "server.log", env)
    yield Site(server)
    stop_server(server)


def test_an_anonymous_browser_is_sent_to_the_login_form_and_brought_back(site: Site) -> None:
    with site.browser() as client:
        answer = client.get("/books", params={"series": 1})
        assert answer.status_code == 303
        assert answer.headers["location"] == f"{site.server.url}/login?next=%2Fbooks%3Fseries%3D1"
        assert site.log_in(client, next_path="/books?series=1").headers["location"] == (
            f"{site.server.url}/books?series=1"
        )
        page = client.get("/books", params={"series": 1})
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert b"The Lantern Chronicles" in page.content
    # An OPDS client (no text/html in Accept) still gets its 401 and Basic challenge.
    assert httpx.get(f"{site.server.url}/books").status_code == 401


def test_the_session_cookie_is_httponly_samesite_and_logging_out_ends_it(site: Site) -> None:
    with site.browser() as client:
        answer = site.log_in(client)
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("opds_session=")
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        token = client.cookies["opds_session"]
        assert client.get("/favourites").status_code == 200
        confirm = client.get("/logout")
        assert b"logged in as ada" in confirm.content
        out = client.post("/logout", headers={"Origin": site.server.url})
        assert out.status_code == 303
        assert "opds_session=;" in out.headers["set-cookie"]
    with site.browser() as stolen:  # the same cookie, kept by someone else, no longer works
        stolen.cookies.set("opds_session", token)
        assert stolen.get("/favourites").status_code == 303


def test_a_wrong_password_or_a_forged_form_changes_nothing(site: Site) -> None:
    with site.browser() as client:
        form = client.get("/login")
        csrf = strings(html.fromstring(form.content), "//input[@name='csrf']/@value")[0]
        wrong = client.post(
            "/login",
            data={"username": "ada", "password": "not it", "csrf": csrf, "next": "/"},
            headers={"Origin": site.server.url},
        )
        assert wrong.status_code == 401
        assert b"do not match" in wrong.content
        assert "opds_session" not in client.cookies
        no_token = client.post(
            "/login",
            data={"username": "ada", "password": PASSWORDS["ada"], "csrf": "", "next": "/"},
            headers={"Origin": site.server.url},
        )
        assert no_token.status_code == 403
        elsewhere = client.post(
            "/login",
            data={"username": "ada", "password": PASSWORDS["ada"], "csrf": csrf, "next": "/"},
            headers={"Origin": "https://evil.example"},
        )
        assert elsewhere.status_code == 403
        assert "opds_session" not in client.cookies
        site.log_in(client)
        forged = client.post("/favourites/2", headers={"Origin": "https://evil.example"})
        assert forged.status_code == 403
        favourites = client.get("/favourites")
    assert b'/books/2"' not in favourites.content


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "books"])
def test_login_never_leads_off_the_site(site: Site, target: str) -> None:
    with site.browser() as client:
        answer = site.log_in(client, next_path=target)
    assert answer.headers["location"] == f"{site.server.url}/"


def test_a_favourite_added_from_a_book_page_is_on_the_favourites_page(site: Site) -> None:
    with site.browser() as client:
        site.log_in(client)
        book = html.fromstring(client.get("/books/3").content)
        (action,) = strings(book, "//form[button='Add to favourites']/@action")
        added = client.post(action, headers={"Origin": site.server.url})
        assert (added.status_code, added.headers["location"]) == (303, f"{site.server.url}/favourites")
        titles = elements(
            html.fromstring(client.get("/favourites").content), "//ul[@class='books']//span[@class='title']"
        )
        assert "/books/3" in client.get("/favourites").text
        assert titles
        (remove,) = strings(book, "//form[button='Remove from favourites']/@action")
        client.post(remove, headers={"Origin": site.server.url})
        assert '/books/3"' not in client.get("/favourites").text


def test_pages_link_their_opds_feeds_and_the_search(site: Site) -> None:
    basic = base64.b64encode(f"ada:{PASSWORDS['ada']}".encode()).decode()
    with site.browser(Authorization=f"Basic {basic}") as client:  # HTTP Basic, as e-readers send it
        root = html.fromstring(client.get("/").content)
        book = html.fromstring(client.get("/books/1").content)
    alternates = {link.get("type"): link.get("href") for link in elements(root, "//head/link[@rel='alternate']")}
    assert alternates == {
        "application/atom+xml;profile=opds-catalog;kind=navigation": f"{site.server.url}/opds",
        "application/opds+json": f"{site.server.url}/opds/v2",
    }
    assert strings(root, "//head/link[@rel='search']/@href") == [f"{site.server.url}/opds/opensearch.xml"]
    assert strings(root, "//form[@role='search']/@action") == [f"{site.server.url}/books"]
    assert elements(root, "//label[@for='search-query']")
    entries = {link.get("type") for link in elements(book, "//head/link[@rel='alternate']")}
    assert entries == {"application/atom+xml;type=entry;profile=opds-catalog", "application/opds-publication+json"}
    assert elements(book, "//img[@alt='Cover of The Lantern Keeper']")
    assert strings(book, "//a[@class='button' and @href]/text()") == ["Download EPUB (5 KB)"]


def test_search_and_pages_of_books(site: Site) -> None:
    with site.browser() as client:
        site.log_in(client)
        search = client.get("/books", params={"query": "lantern"})
        for _ in range(50):  # the search index is filled in the background after the first start
            if search.status_code != 503:
                break
            time.sleep(0.2)
            search = client.get("/books", params={"query": "lantern"})
        found = html.fromstring(search.content)
        first = html.fromstring(client.get("/books", params={"limit": 5}).content)
        (following,) = strings(first, "//nav[@class='pages']//a[@rel='next']/@href")
        second = html.fromstring(client.get(following).content)
    assert "The Lantern Keeper" in strings(found, "//span[@class='title']/text()")
    assert len(elements(first, "//ul[@class='books']/li")) == 5
    first_titles = set(strings(first, "//span[@class='title']/text()"))
    assert not first_titles & set(strings(second, "//span[@class='title']/text()"))


def test_hostile_comments_reach_the_page_sanitised(site: Site) -> None:
    with site.browser() as client:
        site.log_in(client)
        page = client.get(f"/books/{HOSTILE}").text
    assert "The Sanitiser" in page
    assert not re.search(r"<script|onerror|onclick|javascript:|<iframe|<object|<embed", page, re.IGNORECASE)


def test_a_kobo_browser_is_offered_the_kepub_kobo_sync_would_send(site: Site) -> None:
    with site.browser(**{"User-Agent": KOBO_BROWSER}) as client:
        site.log_in(client)
        page = html.fromstring(client.get("/books/1").content)
        buttons = elements(page, "//a[@class='button']")
        assert [b.text for b in buttons][:2] == ["Download KEPUB for Kobo", "Download EPUB (5 KB)"]
        kepub = client.get(buttons[0].get("href"))
    assert kepub.status_code == 200
    assert kepub.headers["content-type"] == "application/kepub+zip"
    assert ".kepub.epub" in kepub.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(kepub.content)) as archive:
        text = b"".join(archive.read(n) for n in archive.namelist() if n.endswith((".xhtml", ".html")))
    assert b"koboSpan" in text
    with site.browser() as desktop:
        site.log_in(desktop)
        assert b"KEPUB for Kobo" not in desktop.get("/books/1").content


def test_a_download_link_works_with_the_session_cookie(site: Site) -> None:
    with site.browser() as client:
        site.log_in(client)
        (href,) = strings(html.fromstring(client.get("/books/1").content), "//a[@class='button']/@href")
        book = client.get(href)
    assert book.status_code == 200
    assert book.content[:2] == b"PK"


def test_the_root_for_no_user_at_all_is_open(tmp_path: Path) -> None:
    library = copy_fixture_library(tmp_path / "library")
    server = start_server(library, tmp_path / "data", tmp_path / "server.log")
    try:
        page = httpx.get(f"{server.url}/", headers=PAGE)
    finally:
        stop_server(server)
    assert page.status_code == 200
    assert strings(html.fromstring(page.content), "//h1/text()") == ["Calibre Library"]


def test_errors_on_pages_are_pages_and_on_feeds_problem_documents(site: Site) -> None:
    with site.browser() as client:
        site.log_in(client)
        missing = client.get("/books/16")  # a book with no file at all
        nowhere = client.get("/no/such/page")
        bad = client.get("/books", params={"limit": "lots"})
    for answer, status in ((missing, 404), (nowhere, 404), (bad, 400)):
        assert answer.status_code == status
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
        assert strings(html.fromstring(answer.content), "//h1/text()")
    basic = base64.b64encode(f"ada:{PASSWORDS['ada']}".encode()).decode()
    feed = httpx.get(f"{site.server.url}/opds/books/16", headers={"Authorization": f"Basic {basic}", **PAGE})
    assert feed.status_code == 404
    assert feed.headers["content-type"] == "application/problem+json"


def test_shelves_from_book_pages(site: Site) -> None:
    origin = {"Origin": site.server.url}
    with site.browser() as client:
        site.log_in(client)
        page = html.fromstring(client.get("/books/2").content)
        (create,) = elements(page, "//form[button='Create']")
        fields = {i.get("name"): i.get("value") or "" for i in elements(create, ".//input")}
        made = client.post(create.get("action") or "", data={**fields, "name": "Bedtime"}, headers=origin)
        assert made.status_code == 303
        shelf_url = made.headers["location"]
        assert re.fullmatch(rf"{re.escape(site.server.url)}/shelves/\d+", shelf_url)
        page = html.fromstring(client.get("/books/4").content)
        (add,) = elements(page, "//form[button='Add to shelf']")
        options = {o.text: o.get("value") for o in elements(add, ".//select[@name='shelf_id']/option")}
        assert "Bedtime" in options
        assert strings(add, ".//label/text()") == ["Shelf"]
        added = client.post(
            add.get("action") or "", data={"book_id": "4", "shelf_id": options["Bedtime"] or ""}, headers=origin
        )
        assert added.headers["location"] == shelf_url
        shelf = html.fromstring(client.get(shelf_url).content)
        assert sorted(strings(shelf, "//ul[@class='books']/li/a/@href")) == [
            f"{site.server.url}/books/2",
            f"{site.server.url}/books/4",
        ]
        (remove,) = elements(shelf, "//li[a/@href='" + site.server.url + "/books/2']//form[button='Remove from shelf']")
        client.post(remove.get("action") or "", data={"book_id": "2"}, headers=origin)
        shelf = html.fromstring(client.get(shelf_url).content)
        assert strings(shelf, "//ul[@class='books']/li/a/@href") == [f"{site.server.url}/books/4"]
        duplicate = client.post(create.get("action") or "", data={**fields, "name": "Bedtime"}, headers=origin)
        assert duplicate.status_code == 400
        assert duplicate.headers["content-type"].startswith("text/html")
        bad = client.post("/shelves/add", data={"book_id": "x", "shelf_id": "1"}, headers=origin)
        assert bad.status_code == 400
