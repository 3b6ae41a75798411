"""Typed parameters the routes share, so a malformed or absurd id is a 400 naming it, never a 500."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

MAX_ID = 2**31 - 1
"""Calibre's ids fit SQLite's integers, and the user database keeps book ids as 32-bit integers on
Postgres; anything larger cannot name a book."""

BookIdParam = Annotated[int, Parameter(ge=1, le=MAX_ID, description="a book id of the Calibre library")]
ShelfIdParam = Annotated[int, Parameter(ge=1, le=MAX_ID, description="a shelf id from GET /api/shelves")]
CalibreIdParam = Annotated[int | None, Parameter(ge=1, le=MAX_ID)]
