"""Headless Chromium for tests: Debian's ``chromium`` and ``chromedriver``, driven by Selenium.

Nothing is downloaded. The driver's path is always given, so Selenium Manager is skipped, and
``SE_OFFLINE`` keeps it offline should it ever run. Every Chromium gets a new, empty profile and
the flags that keep it from calling Google's hosts. axe-core, pinned in ``package.json`` beside
this file, is installed once per checkout into ``.cache/axe``, the way ``r2_modules`` installs
Readium's parser (``tests/conftest.py``).

The fixtures ``browser`` and ``axe_source`` are imported by ``tests/conftest.py`` for the whole
suite.
"""

from __future__ import annotations

import base64
import fcntl
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ARTIFACTS = ROOT / "test-artifacts"
AXE_CACHE = ROOT / ".cache" / "axe"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

# Headless (without scrollbars, so the layout and screenshots span the whole viewport), and off the
# network: no QUIC, first-run, background, component-update or sync traffic.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
PAGE_LOAD_TIMEOUT = 30
SCRIPT_TIMEOUT = 30
AXE_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice")

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager never downloads a driver or a browser


class ChromiumDriver(WebDriver):
    """Selenium's Chrome driver that also removes its throw-away profile when it quits."""

    def __init__(self, *, options: Options, service: Service, profile: Path) -> None:
        self.profile = profile
        try:
            super().__init__(options=options, service=service)
        except BaseException:
            shutil.rmtree(profile, ignore_errors=True)
            raise

    def quit(self) -> None:
        try:
            super().quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


def chromium_driver(*, width: int = 1280, height: int = 900, user_agent: str | None = None) -> WebDriver:
    """A new headless Chromium whose viewport is ``width`` by ``height`` CSS pixels; call ``quit()``.

    ``user_agent`` replaces the User-Agent header and ``navigator.userAgent`` (a Kobo's, say), and
    the page's requests carry no ``Sec-CH-UA*`` client hints naming Chromium, as a Kobo's do not.
    The browser log is kept for :func:`console_errors`.
    """
    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not binary.is_file():
            pytest.fail(f"{binary} is missing; .ci/run installs it (apt-get install {package})")
    profile = Path(tempfile.mkdtemp(prefix="opds-chromium-"))
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    if user_agent is not None:
        options.add_argument(f"--user-agent={user_agent}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=subprocess.DEVNULL)
    driver = ChromiumDriver(options=options, service=service, profile=profile)
    try:
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
        driver.set_script_timeout(SCRIPT_TIMEOUT)
        if user_agent is not None:  # the flag alone still sends Chromium's Sec-CH-UA headers
            driver.execute_cdp_cmd("Emulation.setUserAgentOverride", {"userAgent": user_agent})
        # --window-size sizes the window; grow it by the (emulated) browser chrome so the viewport fits.
        inner_width, inner_height, outer_width, outer_height = driver.execute_script(
            "return [window.innerWidth, window.innerHeight, window.outerWidth, window.outerHeight]"
        )
        if (inner_width, inner_height) != (width, height):
            driver.set_window_size(outer_width + width - inner_width, outer_height + height - inner_height)
    except BaseException:
        driver.quit()
        raise
    return driver


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """A fresh headless Chromium per test (it starts in about half a second)."""
    driver = chromium_driver()
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def axe_source() -> str:
    """The text of axe-core's ``axe.min.js``, installed once per checkout into ``.cache/axe``."""
    AXE_CACHE.mkdir(parents=True, exist_ok=True)
    with (AXE_CACHE / ".lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # xdist workers share one install
        script = _install_axe()
    return script.read_text(encoding="utf-8")


def _install_axe() -> Path:
    script = AXE_CACHE / "node_modules" / "axe-core" / "axe.min.js"
    lock = HERE / "package-lock.json"
    stamp = AXE_CACHE / "installed-lock"
    if not script.is_file() or not stamp.is_file() or stamp.read_bytes() != lock.read_bytes():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(
                "npm is needed for axe-core (the accessibility check); .ci/run installs it (apt-get install npm)"
            )
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(HERE / name, AXE_CACHE / name)
        subprocess.run(
            [npm, "ci", "--silent", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=AXE_CACHE, check=True
        )
        shutil.copyfile(lock, stamp)
    return script


_AXE_RUN = """
const [tags, done] = arguments;
axe.run(document, {runOnly: {type: "tag", values: tags}}).then(
  (results) => done({violations: results.violations.map((violation) => ({
    id: violation.id,
    impact: violation.impact,
    help: violation.help,
    targets: violation.nodes.map((node) => node.target),
  }))}),
  (error) => done({error: String(error)}),
);
"""


def axe_violations(driver: WebDriver, axe_source: str, tags: Sequence[str] = AXE_TAGS) -> list[dict[str, Any]]:
    """axe-core's violations on the current page: ``id``, ``impact``, ``help`` and the nodes' ``targets``.

    The rules are WCAG 2.0 and 2.1, levels A and AA, and axe's best practices.
    """
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(axe_source)
    outcome: dict[str, Any] = driver.execute_async_script(_AXE_RUN, list(tags))
    if "error" in outcome:
        raise RuntimeError(f"axe.run failed on {driver.current_url}: {outcome['error']}")
    violations: list[dict[str, Any]] = outcome["violations"]
    return violations


def describe_violations(violations: list[dict[str, Any]]) -> str:
    """One line per violation, for an assertion message."""
    return "\n".join(f"{v['id']} ({v['impact']}): {v['help']} at {v['targets']}" for v in violations)


def save_screenshot(driver: WebDriver, name: str) -> Path:
    """A PNG of the whole page, beyond the viewport, as ``test-artifacts/{name}.png``; its path."""
    if not name or Path(name).name != name:
        raise ValueError(f"a screenshot name is a plain file name: {name!r}")
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": math.ceil(size["width"]), "height": math.ceil(size["height"]), "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def console_errors(driver: WebDriver) -> list[str]:
    """The browser log's errors since the last call (reading empties it).

    Uncaught exceptions, ``console.error`` and failed loads (a 404 favicon too) are all SEVERE.
    """
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]  # selenium leaves it untyped
    return [entry["message"] for entry in entries if entry["level"] == "SEVERE"]
