"""Rendered documents go through the shared conformance checker without a server.

``Catalogue`` serves a set of rendered documents to the checker through an in-memory httpx
transport, so every renderer test can ask: would the checker pass this?
"""

from __future__ import annotations

import httpx
import opds_check
import pytest


class Catalogue:
    """Rendered documents by URL, and the checker run over them."""

    def __init__(self) -> None:
        self.documents: dict[str, tuple[str, bytes]] = {}

    def add(self, url: str, media_type: str, body: bytes) -> None:
        self.documents[url] = (media_type, body)

    def _serve(self, request: httpx.Request) -> httpx.Response:
        found = self.documents.get(str(request.url))
        if found is None:
            return httpx.Response(404, text="not in this test catalogue")
        media_type, body = found
        return httpx.Response(200, headers={"Content-Type": media_type}, content=body)

    def check(self, root: str) -> list[opds_check.Violation]:
        """Errors the checker finds crawling from ``root`` (links to files are not followed)."""
        report = opds_check.run(root, transport=httpx.MockTransport(self._serve), check_links=False, refetch=False)
        errors: list[opds_check.Violation] = report.errors
        return errors


@pytest.fixture
def catalogue() -> Catalogue:
    return Catalogue()
