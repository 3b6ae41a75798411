"""The Kobo benchmark (``tests/benchmark/kobo.py``) runs end to end on the fixture library.

Only that it runs and that its checks hold; its times are for the benchmark's own report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_kobo_benchmark_syncs_every_book_of_the_fixture_library(fixture_library: Path, tmp_path: Path) -> None:
    report = tmp_path / "kobo.json"
    command = [sys.executable, "-m", "tests.benchmark", "kobo", "--library", str(fixture_library)]
    command += ["--page-size", "10", "--state-clients", "2", "--state-seconds", "1", "--seed", "3"]
    done = subprocess.run(
        [*command, "--json", str(report)],
        cwd=ROOT,
        env={**os.environ, "OPDS_NO_BOOTSTRAP": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(report.read_text())
    assert all(check["ok"] for check in result["checks"])
    pages = result["first_sync"]["pages"]
    assert len(pages) == -(-result["books_on_disk"] // 10)
    assert [page["has_continue"] for page in pages] == [True] * (len(pages) - 1) + [False]
    assert result["first_sync"]["distinct_ids"] == result["books_on_disk"]
    assert result["fast_path"]["pages"][0]["items"] == 0
    assert result["state"]["requests"] > 0
