"""The HTML view driven in headless Chromium: a reader logs in, browses to a series, opens a book,
downloads it, searches, adds a favourite and makes a shelf; every page passes axe-core's WCAG 2.1 A/AA and
best-practice rules; the fixture's hostile comments never run; the pages fit a 600-pixel screen.

Screenshots of the root and of a book page are written to ``test-artifacts/`` (``root.png``,
``book.png``, ``book-600px.png``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from tests.browser.driver import axe_violations, chromium_driver, console_errors, describe_violations, save_screenshot
from tests.conftest import LiveServer, copy_fixture_library, start_server, stop_server
from tests.server.api_client import PASSWORDS, add_user

pytestmark = pytest.mark.slow

HOSTILE = 24
KOBO_BROWSER = (
    "Mozilla/5.0 (Linux; U; Android 2.0; en-us;) AppleWebKit/538.1 (KHTML, like Gecko) Version/4.0"
    " Mobile Safari/538.1 (Kobo Touch 0377/4.38.23171)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    work = tmp_path_factory.mktemp("html-browser")
    library = copy_fixture_library(work / "library")
    env = {"OPDS_DATA_DIR": str(work / "data")}
    add_user(env, "ada")
    running = start_server(library, work / "data", work / "server.log", env)
    yield running
    stop_server(running)


def log_in(driver: WebDriver, server: LiveServer, path: str = "/") -> None:
    """Open ``path``: the login form comes first, and leads back to it."""
    driver.get(server.url + path)
    assert "/login" in driver.current_url
    driver.find_element(By.NAME, "username").send_keys("ada")
    driver.find_element(By.NAME, "password").send_keys(PASSWORDS["ada"])
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    WebDriverWait(driver, 10).until(lambda current: "/login" not in current.current_url)
    assert driver.current_url == server.url + path


def accessible(driver: WebDriver, axe_source: str) -> None:
    violations = axe_violations(driver, axe_source)
    assert violations == [], f"{driver.current_url}:\n{describe_violations(violations)}"


def make_a_shelf(browser: WebDriver, axe_source: str, title: str) -> None:
    """From a book's page, put it on a new shelf; the book's page then offers that shelf."""
    browser.find_element(By.PARTIAL_LINK_TEXT, title).click()
    browser.find_element(By.XPATH, "//form[button='Create']//input[@name='name']").send_keys("Bedtime")
    browser.find_element(By.XPATH, "//button[.='Create']").click()
    WebDriverWait(browser, 10).until(lambda driver: "/shelves/" in driver.current_url)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Bedtime"
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, "ul.books .title")] == [title]
    accessible(browser, axe_source)
    browser.back()
    browser.refresh()  # the page now offers the new shelf
    assert browser.find_element(By.XPATH, "//select[@name='shelf_id']/option").text == "Bedtime"
    accessible(browser, axe_source)


def test_a_reader_logs_in_browses_opens_downloads_searches_and_adds_a_favourite(
    browser: WebDriver, axe_source: str, server: LiveServer, tmp_path: Path
) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    log_in(browser, server)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Calibre Library"
    accessible(browser, axe_source)
    save_screenshot(browser, "root")

    browser.find_element(By.LINK_TEXT, "Series").click()
    accessible(browser, axe_source)
    browser.find_element(By.PARTIAL_LINK_TEXT, "The Lantern Chronicles").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "The Lantern Chronicles"
    accessible(browser, axe_source)
    titles = [element.text for element in browser.find_elements(By.CSS_SELECTOR, "ul.books .title")]
    assert "The Lantern Keeper" in titles

    browser.find_element(By.PARTIAL_LINK_TEXT, "The Lantern Keeper").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "The Lantern Keeper"
    accessible(browser, axe_source)
    save_screenshot(browser, "book")
    cover = browser.find_element(By.CSS_SELECTOR, "figure img")
    assert cover.get_attribute("alt") == "Cover of The Lantern Keeper"
    assert browser.execute_script("return arguments[0].naturalWidth", cover) > 0  # the cover loaded

    browser.find_element(By.PARTIAL_LINK_TEXT, "Download EPUB").click()
    deadline = time.monotonic() + 15
    while not list(downloads.glob("*.epub")) and time.monotonic() < deadline:
        time.sleep(0.1)
    (saved,) = downloads.glob("*.epub")
    original = next(server.library.glob("Eleanor Whitby/The Lantern Keeper (1)/*.epub"))
    assert saved.read_bytes() == original.read_bytes()
    assert saved.name == original.name

    search = browser.find_element(By.ID, "search-query")
    search.send_keys("salt road")
    search.submit()
    assert "query=salt" in browser.current_url
    found = [element.text for element in browser.find_elements(By.CSS_SELECTOR, "ul.books .title")]
    assert found == ["The Salt Road"]
    accessible(browser, axe_source)

    browser.find_element(By.PARTIAL_LINK_TEXT, "The Salt Road").click()
    browser.find_element(By.XPATH, "//button[.='Add to favourites']").click()
    WebDriverWait(browser, 10).until(lambda driver: driver.current_url != f"{server.url}/books/3")
    assert browser.current_url == f"{server.url}/favourites", browser.page_source[:2000]
    favourites = [element.text for element in browser.find_elements(By.CSS_SELECTOR, "ul.books .title")]
    assert "The Salt Road" in favourites
    accessible(browser, axe_source)

    make_a_shelf(browser, axe_source, "The Salt Road")
    assert console_errors(browser) == []


def test_hostile_comments_never_run(browser: WebDriver, axe_source: str, server: LiveServer) -> None:
    log_in(browser, server, f"/books/{HOSTILE}")
    assert "Harmless intro." in browser.find_element(By.TAG_NAME, "main").text
    assert browser.execute_script("return document.querySelectorAll('main script, main iframe').length") == 0
    assert (
        browser.execute_script(
            "return [...document.querySelectorAll('main *')].filter("
            "e => [...e.attributes].some(a => a.name.startsWith('on') || /javascript:/i.test(a.value))).length"
        )
        == 0
    )
    clickable = browser.find_elements(By.PARTIAL_LINK_TEXT, "click")
    for link in clickable:
        link.click()
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
    accessible(browser, axe_source)
    assert console_errors(browser) == []


@pytest.mark.parametrize(
    "path",
    ["/authors", "/tags?initial=F", "/languages", "/books?sort=title", "/shelves", "/reading", "/logout", "/books/16"],
)
def test_every_kind_of_page_passes_axe(browser: WebDriver, axe_source: str, server: LiveServer, path: str) -> None:
    log_in(browser, server)
    browser.get(server.url + path)
    assert browser.find_element(By.TAG_NAME, "h1").text
    accessible(browser, axe_source)


def test_the_login_page_passes_axe(browser: WebDriver, axe_source: str, server: LiveServer) -> None:
    browser.get(f"{server.url}/login")
    accessible(browser, axe_source)


def test_pages_fit_a_600_pixel_screen_and_a_kobo_gets_its_kepub(axe_source: str, server: LiveServer) -> None:
    narrow = chromium_driver(width=600, height=800, user_agent=KOBO_BROWSER)
    try:
        log_in(narrow, server, "/books/1")
        assert narrow.execute_script("return document.documentElement.scrollWidth") <= 600
        save_screenshot(narrow, "book-600px")
        buttons = [element.text for element in narrow.find_elements(By.CSS_SELECTOR, "a.button")]
        assert buttons[:2] == ["Download KEPUB for Kobo", "Download EPUB (5 KB)"]
        narrow.get(f"{server.url}/")
        assert narrow.execute_script("return document.documentElement.scrollWidth") <= 600
        accessible(narrow, axe_source)
    finally:
        narrow.quit()
