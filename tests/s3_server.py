"""A real S3 API on 127.0.0.1: moto's standalone server, run on a thread of the test process.

Tests reach it with real boto3 clients (or a server subprocess, through ``s3_settings``), so no
credentials are needed and none are read from ``~/.aws``. Moto keeps its buckets in process-wide
state: every ``S3Server`` of one process shows the same buckets, and ``reset()`` empties them all.
Under xdist each worker is its own process with its own server, so give each test its own bucket.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import httpx
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"


class S3Server:
    """moto's S3 on ``127.0.0.1:port``; ``port=0`` takes a free one when started."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self._server: ThreadedMotoServer | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the S3 server has no port until it is started")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # werkzeug logs every request at INFO, which would bury a failing test's own log.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.port = self._server.get_host_and_port()[1]

    def stop(self) -> None:
        """Stop answering and close the socket, so that a client gets "connection refused"."""
        if self._server is None:
            return
        wsgi_server = self._server._server  # moto's stop() shuts the loop down but leaves the socket listening
        self._server.stop()
        if wsgi_server is not None:
            wsgi_server.server_close()
        self._server = None

    def reset(self) -> None:
        """Drop every bucket of this process (moto's state is shared by all its servers)."""
        httpx.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def create_bucket(self, name: str | None = None) -> str:
        """A new bucket (a unique name unless given); returns its name."""
        bucket = name or f"covers-{uuid.uuid4().hex[:12]}"
        s3_client(self.url).create_bucket(Bucket=bucket)
        return bucket


@functools.cache
def s3_client(server_url: str, *, max_attempts: int = 1) -> S3Client:
    """A boto3 client of the test server, with explicit test credentials (one per server: each costs 50 ms)."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=server_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(
            signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": max_attempts}
        ),
    )


def s3_settings(server_url: str, bucket: str, prefix: str = "") -> dict[str, str]:
    """The environment a server subprocess needs to use ``bucket`` on the test server."""
    return {
        "S3_BUCKET": bucket,
        "S3_PREFIX": prefix,
        "S3_ENDPOINT_URL": server_url,
        "S3_REGION": REGION,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
    }


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One S3 server per test process (per xdist worker), on its own free port."""
    server = S3Server()
    server.start()
    yield server
    server.stop()
