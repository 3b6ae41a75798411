"""The whole fixture library, crawled through both roots by the shared conformance checker.

RELAX NG (OPDS 1.2), JSON Schema (OPDS 2.0), link, pagination, search and identity checks, and
Readium's own parser (what Thorium runs). Zero failures, warnings included in the report.
"""

from __future__ import annotations

from pathlib import Path

import opds_check
import pytest

from opds_server.calibre.demo import write_demo_library
from tests.conftest import LiveServer, start_server, stop_server

CRAWL_BUDGET = {"max_pages": 6000, "max_links": 12000, "probe_all_acquisitions": True}


@pytest.mark.slow
@pytest.mark.parametrize("root", ["/opds", "/opds/v2"])
def test_catalogue_crawl_has_no_failures(
    live_server: LiveServer, r2_modules: Path, root: str, crawl_summaries: list[str]
) -> None:
    report = opds_check.run(
        live_server.url + root,
        readium=True,
        readium_modules=str(r2_modules),
        **CRAWL_BUDGET,
    )
    crawl_summaries.append(f"{root}: {report.summary().splitlines()[-1]} ({len(report.warnings)} warnings)")
    assert report.errors == [], "\n".join(map(str, report.errors))
    assert report.passed > 100, report.summary()
    unverified = [w for w in report.warnings if w.rule in {"crawl.limit", "links.limit", "pagination.unverified"}]
    assert unverified == [], "the crawl did not cover the whole catalogue:\n" + "\n".join(map(str, unverified))


@pytest.mark.slow
@pytest.mark.parametrize("root", ["/opds", "/opds/v2"])
def test_demo_library_crawl_has_no_failures(
    tmp_path_factory: pytest.TempPathFactory, r2_modules: Path, root: str, crawl_summaries: list[str]
) -> None:
    workdir = tmp_path_factory.mktemp("demo-crawl")
    write_demo_library(workdir / "demo")
    server = start_server(workdir / "demo", workdir / "data", workdir / "server.log")
    try:
        report = opds_check.run(server.url + root, readium=True, readium_modules=str(r2_modules), **CRAWL_BUDGET)
    finally:
        stop_server(server)
    crawl_summaries.append(f"demo {root}: {report.summary().splitlines()[-1]} ({len(report.warnings)} warnings)")
    assert report.errors == [], "\n".join(map(str, report.errors))
