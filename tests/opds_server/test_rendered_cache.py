"""The rendered-bytes cache: bounded by bytes, least recently used out first, rendering once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from opds_server.cache.rendered import RenderedCache


def test_a_key_is_rendered_once() -> None:
    cache = RenderedCache(max_bytes=1000)
    renders: list[str] = []

    def render() -> bytes:
        renders.append("x")
        return b"feed"

    assert cache.read_or_render("k", render) == (b"feed", False)
    assert cache.read_or_render("k", render) == (b"feed", True)
    assert renders == ["x"]


def test_the_least_recently_used_go_first_when_over_the_byte_bound() -> None:
    cache = RenderedCache(max_bytes=800)
    for key in ("a", "b", "c", "d"):
        cache.read_or_render(key, lambda: b"x" * 100)
    cache.read_or_render("a", lambda: b"never")  # a is now the most recently used
    for key in ("e", "f", "g", "h", "i"):
        cache.read_or_render(key, lambda: b"x" * 100)
    assert cache.size <= 800
    assert cache.read_or_render("a", lambda: b"new")[1] is True
    assert cache.read_or_render("b", lambda: b"new") == (b"new", False)


def test_a_value_larger_than_an_eighth_of_the_bound_is_not_kept() -> None:
    cache = RenderedCache(max_bytes=800)
    cache.read_or_render("small", lambda: b"x" * 10)
    assert cache.read_or_render("huge", lambda: b"x" * 200) == (b"x" * 200, False)
    assert cache.read_or_render("huge", lambda: b"again") == (b"again", False)
    assert cache.read_or_render("small", lambda: b"never")[1] is True


def test_concurrent_misses_render_once() -> None:
    """After a library change every client asks for the new feed at once: one thread renders it."""
    cache = RenderedCache()
    calls: list[int] = []
    started = threading.Event()

    def render() -> bytes:
        calls.append(1)
        started.set()
        time.sleep(0.3)
        return b"<feed/>"

    with ThreadPoolExecutor(max_workers=8) as pool:
        first = pool.submit(cache.read_or_render, "generation-2:/opds/books", render)
        assert started.wait(5)
        others = [pool.submit(cache.read_or_render, "generation-2:/opds/books", render) for _ in range(7)]
        results = [first.result(), *(other.result() for other in others)]
    assert len(calls) == 1
    assert results[0] == (b"<feed/>", False)
    assert all(result == (b"<feed/>", True) for result in results[1:])
