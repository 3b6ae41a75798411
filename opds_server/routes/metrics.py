"""``/metrics``: Prometheus text format (see ``opds_server.observability`` for what is counted)."""

from __future__ import annotations

import os
from collections.abc import Iterator

from litestar import Response, get
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from opds_server.state import Services

PROMETHEUS_TEXT = "text/plain; version=0.0.4"
"""The text format ``generate_latest`` writes (Litestar adds the charset)."""


class LibraryCollector(Collector):
    """The library as this process serves it, read when ``/metrics`` is scraped."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily | InfoMetricFamily]:
        library = self.services.library
        snapshot = library._snapshot  # what is served now, without refreshing for a scrape
        if snapshot is None:
            return
        books = GaugeMetricFamily("opds_library_books", "Books the catalogue offers")
        books.add_metric([], snapshot.book_count)
        yield books
        info = InfoMetricFamily("opds_library_generation", "The library generation served")
        info.add_metric([], {"generation": snapshot.generation})
        yield info
        lag = GaugeMetricFamily(
            "opds_library_lag_seconds", "How far the served snapshot is behind metadata.db's last write (0: current)"
        )
        try:
            written = os.stat(library.source.path).st_mtime_ns  # noqa: PTH116  # one stat per scrape
        except OSError:
            written = snapshot.fingerprint[1]
        lag.add_metric([], max(0.0, (written - snapshot.fingerprint[1]) / 1e9))
        yield lag


def metrics_registry() -> CollectorRegistry:
    """Every worker's metrics summed (multiprocess mode), or this process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped in prometheus_client
        return registry
    return REGISTRY


@get("/metrics", sync_to_thread=False, include_in_schema=False)
def metrics(services: Services) -> Response[bytes]:
    library = CollectorRegistry()  # per process and per app: this worker's view of the library
    library.register(LibraryCollector(services))
    body = generate_latest(metrics_registry()) + generate_latest(library)
    return Response(content=body, media_type=PROMETHEUS_TEXT, headers={"Cache-Control": "no-store"})
