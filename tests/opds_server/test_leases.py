"""One holder at a time of a periodic job: across processes on one machine (a file lock), across
instances (a real Redis lock), and on its own machine's terms while Redis does not answer."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from opds_server.leases import Lease
from tests.conftest import REDIS_TEST_URL


def test_one_holder_on_one_machine(tmp_path: Path) -> None:
    first = Lease(tmp_path / "job.lock", redis_url=None, key="job", seconds=60)
    second = Lease(tmp_path / "job.lock", redis_url=None, key="job", seconds=60)
    with first.held() as is_first, second.held() as is_second:
        assert (is_first, is_second) == (True, False)
    with second.held() as is_second:
        assert is_second


def test_one_holder_across_instances_through_redis(tmp_path: Path) -> None:
    key = f"opds-test:lease:{uuid.uuid4().hex}"
    here = Lease(tmp_path / "a" / "job.lock", redis_url=REDIS_TEST_URL, key=key, seconds=60)
    there = Lease(tmp_path / "b" / "job.lock", redis_url=REDIS_TEST_URL, key=key, seconds=60)
    try:
        with here.held() as is_here, there.held() as is_there:
            assert (is_here, is_there) == (True, False)
        with there.held() as is_there:
            assert is_there
    finally:
        here.close()
        there.close()


def test_without_redis_each_machine_runs_the_job_and_says_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lease = Lease(tmp_path / "job.lock", redis_url="redis://127.0.0.1:9/0", key="job", seconds=60)
    try:
        with lease.held() as is_ours:
            assert is_ours
    finally:
        lease.close()
    assert "Redis did not answer" in caplog.text
