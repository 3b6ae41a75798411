"""The KOReader sync benchmark (``tests/benchmark/kosync.py``) runs end to end on the fixture library.

Only that it runs and that its checks hold, but for the one on latency: times are for the
benchmark's own report, not asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmark.kosync import LATENCY_CHECK
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_kosync_benchmark_pushes_and_pulls_the_fixture_library(fixture_library: Path, tmp_path: Path) -> None:
    report = tmp_path / "kosync.json"
    command = [sys.executable, "-m", "tests.benchmark", "kosync", "--library", str(fixture_library)]
    command += ["--clients", "2", "--seconds", "1", "--seed", "3"]
    done = subprocess.run(
        [*command, "--json", str(report)],
        cwd=ROOT,
        env={**os.environ, "OPDS_NO_BOOTSTRAP": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )

    assert done.returncode in {0, 1}, done.stdout + done.stderr
    result = json.loads(report.read_text())
    failed = [check for check in result["checks"] if not check["ok"] and check["name"] != LATENCY_CHECK]
    assert not failed, done.stdout
    assert done.returncode == (0 if all(check["ok"] for check in result["checks"]) else 1)
    assert result["baseline"]["requests"] > 0
    assert result["load"]["put"]["requests"] > 0
    assert result["load"]["verified"]
    assert result["linking"]["linked_as_expected"] > 0
