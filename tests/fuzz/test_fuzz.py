"""The fuzz run in small (issue 9): a few hundred cases against a live server, none of them a 5xx.

``python -m tests.fuzz.run`` is the long run; this keeps it working and catches the easy finds in CI.
The seed is fixed, so a failure here reproduces with ``python -m tests.fuzz.run --cases 400 --seed 9``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.run import fuzz, running_server, summary

CASES = 400
SEED = 9


@pytest.mark.slow
def test_a_small_fuzz_run_finds_no_server_error(tmp_path: Path) -> None:
    with running_server(tmp_path) as target:
        tally = fuzz(target, CASES, SEED)
        report = summary(tally, SEED, target.log)
    print(report)
    assert sum(tally.cases.values()) >= CASES // 2, report
    assert not tally.server_errors, report
    assert not tally.bodyless, report
