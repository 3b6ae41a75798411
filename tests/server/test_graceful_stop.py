"""SIGTERM drains: the server stops taking connections, finishes the downloads under way, then exits."""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import copy_fixture_library, start_server

BOOK_BYTES = 24 * 1024 * 1024


def test_sigterm_finishes_a_download_under_way_and_takes_no_new_request(tmp_path: Path) -> None:
    library = copy_fixture_library(tmp_path / "library")
    book = next(library.glob("Eleanor Whitby/The Lantern Keeper (1)/*.epub"))
    book.chmod(0o644)
    book.write_bytes(hashlib.sha256(b"seed").digest() * (BOOK_BYTES // 32))
    expected = hashlib.md5(book.read_bytes()).hexdigest()
    server = start_server(library, tmp_path / "data", tmp_path / "server.log")
    received: dict[str, object] = {}
    started = threading.Event()

    def slow_reader() -> None:
        digest = hashlib.md5()
        with httpx.stream("GET", f"{server.url}/download/1/1.epub", timeout=60) as answer:
            received["status"] = answer.status_code
            for chunk in answer.iter_bytes(1024 * 1024):
                started.set()
                digest.update(chunk)
                time.sleep(0.05)  # a slow e-reader on Wi-Fi: about 2 s for the book
        received["md5"] = digest.hexdigest()

    reader = threading.Thread(target=slow_reader)
    reader.start()
    try:
        assert started.wait(10)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        try:
            refused = httpx.get(f"{server.url}/health", timeout=2).status_code
        except httpx.TransportError:
            refused = None
        assert refused is None, "a new request was taken after SIGTERM"
        reader.join(timeout=60)
        assert server.process.wait(timeout=30) == 0
    finally:
        if server.process.poll() is None:
            server.process.kill()
        reader.join(timeout=5)
    assert received == {"status": 200, "md5": expected}
