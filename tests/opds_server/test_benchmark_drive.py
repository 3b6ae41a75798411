"""The Google Drive download benchmark (``tests/benchmark/drive.py``) runs end to end on tiny books.

Only that it runs, that every download arrives whole and that the memory figures are read: the
figures themselves are for the benchmark's own report, not asserted here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from tests.benchmark.drive import MIB, DriveResult
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_drive_benchmark_downloads_every_book_whole_with_one_and_more_clients(tmp_path: Path) -> None:
    report = tmp_path / "drive.json"
    command = [sys.executable, "-m", "tests.benchmark", "drive", "--clients", "3", "--size-mb", "1"]
    command += ["--books", "2", "--seed", "3", "--json", str(report)]
    done = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "OPDS_NO_BOOTSTRAP": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    result = msgspec.json.decode(report.read_bytes(), type=DriveResult)
    assert all(check.ok for check in result.checks)
    assert [(run.clients, run.round) for run in result.runs] == [(1, 1), (3, 1)]
    assert [book.size for book in result.books] == [MIB, MIB]
    for run in result.runs:
        assert run.complete == run.clients
        assert not run.failures
        assert run.bytes == run.clients * MIB
        assert run.memory.worker_pids
        assert run.memory.samples > 0
        assert run.memory.baseline_worker > 0
        assert run.memory.peak_total >= run.memory.peak_worker > 0
    assert "seed 3" in done.stdout
    assert not Path(result.work).exists()
