"""The browser test tools themselves, on three static pages served by ``http.server`` on 127.0.0.1.

The fixtures ``browser`` and ``axe_source`` come from ``tests/browser/driver.py`` through ``tests/conftest.py``.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.browser.driver import (
    ARTIFACTS,
    axe_violations,
    chromium_driver,
    console_errors,
    describe_violations,
    save_screenshot,
)

KOBO_USER_AGENT = (
    "Mozilla/5.0 (Linux; U; Android 2.0; en-us;) AppleWebKit/538.1 (KHTML, like Gecko) "
    "Version/4.0 Mobile Safari/538.1 (Kobo Touch 0377/4.38.23171)"
)
COVER = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='120' height='180'%3E"
    "%3Crect width='120' height='180' fill='%23234'/%3E%3C/svg%3E"
)
HEAD = '<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
HEAD += '<link rel="icon" href="data:,">'  # no request for /favicon.ico, so no 404 in the browser log

# Accessible: a language, a title, every piece of content inside a landmark, alt text, labels.
INDEX = f"""<!doctype html>
<html lang="en"><head>{HEAD}<title>Catalogue</title></head>
<body>
<header><h1>Catalogue</h1></header>
<nav aria-label="Main"><a href="book.html">Dune</a></nav>
<main>
<form action="book.html" method="get" role="search">
<label for="q">Search the catalogue</label> <input id="q" name="q" type="search">
<button type="submit">Search</button>
</form>
<img src="{COVER}" alt="The cover of Dune" width="120" height="180">
<p style="height: 2000px">A page taller than the window.</p>
</main>
<footer><p>End of the page.</p></footer>
</body></html>
"""
# Script text that must never run: inside a template, and as escaped text.
BOOK = f"""<!doctype html>
<html lang="en"><head>{HEAD}<title>Dune</title></head>
<body>
<main>
<h1>Dune</h1>
<template><script>window.__ran = true</script></template>
<p>&lt;script&gt;window.__ran = true&lt;/script&gt;</p>
<p><a href="index.html">Back to the catalogue</a></p>
</main>
</body></html>
"""
# No language, title, alt text or label, and scripts that run (one of them throws).
BAD = f"""<!doctype html>
<html><head>{HEAD}</head>
<body>
<img src="{COVER}">
<input name="q" type="search">
<script>window.__ran = true</script>
<script>throw new Error("thrown by bad.html")</script>
</body></html>
"""
PAGES = {"index.html": INDEX, "book.html": BOOK, "bad.html": BAD}


@dataclass(frozen=True)
class StaticSite:
    url: str
    requests: list[tuple[str, dict[str, str]]]
    """(path, headers) of every request, in order: the server's log."""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticSite]:
    root = tmp_path_factory.mktemp("site")
    for name, html in PAGES.items():
        (root / name).write_text(html, encoding="utf-8")
    requests: list[tuple[str, dict[str, str]]] = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append((self.path, {name.lower(): value for name, value in self.headers.items()}))
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            """Quiet: ``requests`` is the log."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield StaticSite(url=f"http://127.0.0.1:{server.server_address[1]}", requests=requests)
    server.shutdown()
    server.server_close()
    thread.join()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_loads_a_page_submits_a_get_form_and_follows_a_link(browser: WebDriver, site: StaticSite) -> None:
    browser.get(f"{site.url}/index.html")
    assert browser.title == "Catalogue"
    assert browser.execute_script("return [window.innerWidth, window.innerHeight]") == [1280, 900]

    browser.find_element(By.CSS_SELECTOR, "form[role=search] input[name=q]").send_keys("dune messiah")
    browser.find_element(By.CSS_SELECTOR, "form[role=search] button[type=submit]").click()
    WebDriverWait(browser, 10).until(expected_conditions.title_is("Dune"))
    assert browser.current_url == f"{site.url}/book.html?q=dune+messiah"

    browser.find_element(By.LINK_TEXT, "Back to the catalogue").click()
    WebDriverWait(browser, 10).until(expected_conditions.title_is("Catalogue"))
    assert browser.current_url == f"{site.url}/index.html"
    assert console_errors(browser) == []


def test_scripts_in_templates_and_text_do_not_run(browser: WebDriver, site: StaticSite) -> None:
    browser.get(f"{site.url}/book.html")
    assert browser.execute_script("return window.__ran === true") is False
    assert console_errors(browser) == []

    browser.get(f"{site.url}/bad.html")  # the check itself: real script tags do run
    assert browser.execute_script("return window.__ran === true") is True
    errors = console_errors(browser)
    assert len(errors) == 1
    assert "thrown by bad.html" in errors[0]


def test_axe_passes_an_accessible_page_and_fails_a_bad_one(
    browser: WebDriver, site: StaticSite, axe_source: str
) -> None:
    for page in ("index.html", "book.html"):
        browser.get(f"{site.url}/{page}")
        violations = axe_violations(browser, axe_source)
        assert violations == [], describe_violations(violations)

    browser.get(f"{site.url}/bad.html")
    found = {violation["id"] for violation in axe_violations(browser, axe_source)}
    assert {"image-alt", "label", "html-has-lang", "document-title"} <= found


def test_save_screenshot_captures_the_whole_page(browser: WebDriver, site: StaticSite) -> None:
    browser.get(f"{site.url}/index.html")
    path = save_screenshot(browser, "browser-test-driver-index")
    assert path == ARTIFACTS / "browser-test-driver-index.png"
    page = browser.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    assert list(png_size(path)) == page
    assert page[1] > 2000  # taller than the 900 px viewport: the capture went beyond it
    assert browser.execute_script("return [window.innerWidth, window.innerHeight]") == [1280, 900]


def test_user_agent_override_reaches_the_server(site: StaticSite) -> None:
    driver = chromium_driver(width=758, height=1024, user_agent=KOBO_USER_AGENT)
    try:
        driver.get(f"{site.url}/book.html?from=kobo")
        assert driver.execute_script("return navigator.userAgent") == KOBO_USER_AGENT
        assert driver.execute_script("return [window.innerWidth, window.innerHeight]") == [758, 1024]
    finally:
        driver.quit()
    [headers] = [headers for path, headers in site.requests if path == "/book.html?from=kobo"]
    assert headers["user-agent"] == KOBO_USER_AGENT
    assert not [name for name in headers if name.startswith("sec-ch-ua")]  # a Kobo sends no client hints
