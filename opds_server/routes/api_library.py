"""``/api/favourites``, ``/api/shelves`` and ``/api/progress``: each reader's own library.

Handlers are thin and blocking (``sync_to_thread=True``): they check that a Calibre book exists
before storing its id, call ``PersonalLibrary`` with the logged-in account's id and nothing else,
and answer with titles from the Calibre library. Lists skip books Calibre has since removed. A
shelf of another account is answered exactly like a shelf that does not exist.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated

import msgspec
from litestar import Router, delete, get, patch, post, put
from msgspec import Meta
from sqlalchemy.exc import IntegrityError

from opds_server.auth.principal import Principal
from opds_server.calibre.books import read_books
from opds_server.db.library import MAX_LOCATOR, MAX_SHELF_NAME, PersonalLibrary, ProgressRecord, ShelfNameError
from opds_server.db.library import ShelfRecord as StoredShelf
from opds_server.errors import (
    AppError,
    BookNotFoundError,
    ConflictError,
    FavouriteNotFoundError,
    InvalidBodyError,
    ShelfNotFoundError,
)
from opds_server.routes.api import api_router, problems
from opds_server.routes.params import MAX_ID, BookIdParam, ShelfIdParam
from opds_server.state import Services, utc_now

MAX_SHELF_BOOKS = 10_000


class BookRef(msgspec.Struct, frozen=True, kw_only=True):
    book_id: int
    title: str


class ShelfName(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=MAX_SHELF_NAME, description="unique per account, any case")]


class Shelf(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    book_count: int
    created_at: dt.datetime
    updated_at: dt.datetime


class ShelfContents(Shelf, frozen=True, kw_only=True):
    books: list[BookRef]
    """In shelf order."""


class ShelfOrder(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    book_ids: Annotated[list[Annotated[int, Meta(ge=1, le=MAX_ID)]], Meta(max_length=MAX_SHELF_BOOKS)]
    """Books of the shelf to put first, in this order; the rest keep their order after them."""


class ProgressUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    percentage: Annotated[float, Meta(ge=0, le=100)]
    locator: Annotated[str, Meta(max_length=MAX_LOCATOR, description="the reader's own position format")] | None = None
    device_kind: Annotated[
        str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="api, web, koreader, kobo, ...")
    ] = "api"
    finished: bool = False


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    book_id: int
    title: str
    device_kind: str
    percentage: float
    locator: str | None
    finished: bool
    updated_at: dt.datetime


def _personal(services: Services) -> PersonalLibrary:
    return PersonalLibrary(services.engine)


def _titles(services: Services, book_ids: Sequence[int]) -> dict[int, str]:
    """Titles of the books that are still in the Calibre library."""
    if not book_ids:
        return {}
    services.catalog.snapshot()  # the index is up to date with metadata.db
    return {book_id: book.title for book_id, book in read_books(services.library.db, book_ids, ()).items()}


def _book_refs(services: Services, book_ids: Sequence[int]) -> list[BookRef]:
    titles = _titles(services, book_ids)
    return [BookRef(book_id=book_id, title=titles[book_id]) for book_id in book_ids if book_id in titles]


def _progress(records: Sequence[ProgressRecord], titles: dict[int, str]) -> list[Progress]:
    return [
        Progress(
            book_id=r.book_id,
            title=titles[r.book_id],
            device_kind=r.device_kind,
            percentage=r.percentage,
            locator=r.locator,
            finished=r.is_finished,
            updated_at=r.updated_at,
        )
        for r in records
        if r.book_id in titles
    ]


def _shelf(record: StoredShelf) -> Shelf:
    return Shelf(
        id=record.id,
        name=record.name,
        book_count=record.book_count,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _shelf_name_error(exc: ShelfNameError, name: str) -> AppError:
    if isinstance(exc.__cause__, IntegrityError):  # the unique (user, name) constraint
        return ConflictError(f"body field 'name' = {name[:60]!r}: {exc}")
    return InvalidBodyError(f"body field 'name' = {name[:60]!r}: {exc}")


def _no_shelf(shelf_id: int) -> ShelfNotFoundError:
    return ShelfNotFoundError(f"you have no shelf {shelf_id}")


# Favourites


@get("/favourites", sync_to_thread=True, summary="Favourite books, most recently added first", responses=problems(401))
def list_favourites(services: Services, account: Principal) -> list[BookRef]:
    return _book_refs(services, _personal(services).favourites(account.user_id))


@put(
    "/favourites/{book_id:int}",
    status_code=204,
    sync_to_thread=True,
    summary="Add a favourite (idempotent)",
    responses=problems(400, 401, 404),
)
def add_favourite(services: Services, account: Principal, book_id: BookIdParam) -> None:
    services.catalog.book(book_id)
    _personal(services).add_favourite(account.user_id, book_id, now=utc_now())


@delete(
    "/favourites/{book_id:int}", sync_to_thread=True, summary="Remove a favourite", responses=problems(400, 401, 404)
)
def remove_favourite(services: Services, account: Principal, book_id: BookIdParam) -> None:
    if not _personal(services).remove_favourite(account.user_id, book_id):
        raise FavouriteNotFoundError(f"book {book_id} is not among your favourites")


# Shelves


@get("/shelves", sync_to_thread=True, summary="Your shelves by name, with their book counts", responses=problems(401))
def list_shelves(services: Services, account: Principal) -> list[Shelf]:
    return [_shelf(record) for record in _personal(services).shelves(account.user_id)]


@post("/shelves", sync_to_thread=True, summary="A new, empty shelf", responses=problems(400, 401, 409, 413))
def create_shelf(services: Services, account: Principal, data: ShelfName) -> Shelf:
    try:
        return _shelf(_personal(services).create_shelf(account.user_id, data.name, now=utc_now()))
    except ShelfNameError as exc:
        raise _shelf_name_error(exc, data.name) from exc


def _contents(services: Services, account: Principal, shelf_id: int) -> ShelfContents:
    personal = _personal(services)
    record = personal.shelf(account.user_id, shelf_id)
    book_ids = personal.shelf_books(account.user_id, shelf_id)
    if record is None or book_ids is None:
        raise _no_shelf(shelf_id)
    books = _book_refs(services, book_ids)
    return ShelfContents(**msgspec.structs.asdict(_shelf(record)) | {"book_count": len(books)}, books=books)


@get(
    "/shelves/{shelf_id:int}",
    sync_to_thread=True,
    summary="A shelf and its books in order",
    responses=problems(400, 401, 404),
)
def read_shelf(services: Services, account: Principal, shelf_id: ShelfIdParam) -> ShelfContents:
    return _contents(services, account, shelf_id)


@patch(
    "/shelves/{shelf_id:int}",
    sync_to_thread=True,
    summary="Rename a shelf",
    responses=problems(400, 401, 404, 409, 413),
)
def rename_shelf(services: Services, account: Principal, shelf_id: ShelfIdParam, data: ShelfName) -> Shelf:
    personal = _personal(services)
    try:
        renamed = personal.rename_shelf(account.user_id, shelf_id, data.name, now=utc_now())
    except ShelfNameError as exc:
        raise _shelf_name_error(exc, data.name) from exc
    record = personal.shelf(account.user_id, shelf_id) if renamed else None
    if record is None:
        raise _no_shelf(shelf_id)
    return _shelf(record)


@delete(
    "/shelves/{shelf_id:int}",
    sync_to_thread=True,
    summary="Delete a shelf (its books stay in the library)",
    responses=problems(400, 401, 404),
)
def delete_shelf(services: Services, account: Principal, shelf_id: ShelfIdParam) -> None:
    if not _personal(services).delete_shelf(account.user_id, shelf_id):
        raise _no_shelf(shelf_id)


@put(
    "/shelves/{shelf_id:int}/books/{book_id:int}",
    status_code=204,
    sync_to_thread=True,
    summary="Put a book at the end of a shelf (idempotent)",
    responses=problems(400, 401, 404),
)
def add_to_shelf(services: Services, account: Principal, shelf_id: ShelfIdParam, book_id: BookIdParam) -> None:
    services.catalog.book(book_id)
    if not _personal(services).add_to_shelf(account.user_id, shelf_id, book_id, now=utc_now()):
        raise _no_shelf(shelf_id)


@delete(
    "/shelves/{shelf_id:int}/books/{book_id:int}",
    sync_to_thread=True,
    summary="Take a book off a shelf",
    responses=problems(400, 401, 404),
)
def remove_from_shelf(services: Services, account: Principal, shelf_id: ShelfIdParam, book_id: BookIdParam) -> None:
    personal = _personal(services)
    book_ids = personal.shelf_books(account.user_id, shelf_id)
    if book_ids is None:
        raise _no_shelf(shelf_id)
    if book_id not in book_ids:
        raise BookNotFoundError(f"book {book_id} is not on shelf {shelf_id}")
    personal.remove_from_shelf(account.user_id, shelf_id, book_id, now=utc_now())


@put(
    "/shelves/{shelf_id:int}/order",
    sync_to_thread=True,
    summary="Reorder a shelf",
    responses=problems(400, 401, 404, 413),
)
def reorder_shelf(services: Services, account: Principal, shelf_id: ShelfIdParam, data: ShelfOrder) -> ShelfContents:
    personal = _personal(services)
    current = personal.shelf_books(account.user_id, shelf_id)
    if current is None:
        raise _no_shelf(shelf_id)
    strangers = [book_id for book_id in dict.fromkeys(data.book_ids) if book_id not in set(current)]
    if strangers:
        listed = ", ".join(map(str, strangers[:10]))
        raise InvalidBodyError(f"body field 'book_ids': {listed} not on shelf {shelf_id}; list only books it holds")
    if not personal.reorder_shelf(account.user_id, shelf_id, data.book_ids, now=utc_now()):
        raise _no_shelf(shelf_id)
    return _contents(services, account, shelf_id)


# Progress


@get(
    "/progress",
    sync_to_thread=True,
    summary="Reading positions of every book and device, newest first",
    responses=problems(401),
)
def list_progress(services: Services, account: Principal) -> list[Progress]:
    records = _personal(services).progress(account.user_id)
    return _progress(records, _titles(services, list(dict.fromkeys(r.book_id for r in records))))


@get(
    "/progress/{book_id:int}",
    sync_to_thread=True,
    summary="Reading positions of one book, newest first",
    responses=problems(400, 401, 404),
)
def read_progress(services: Services, account: Principal, book_id: BookIdParam) -> list[Progress]:
    book = services.catalog.book(book_id)
    return _progress(_personal(services).progress(account.user_id, book_id), {book_id: book.title})


@put(
    "/progress/{book_id:int}",
    sync_to_thread=True,
    summary="Save the position on one kind of device",
    responses=problems(400, 401, 404, 413),
)
def save_progress(services: Services, account: Principal, book_id: BookIdParam, data: ProgressUpdate) -> Progress:
    book = services.catalog.book(book_id)
    record = _personal(services).save_progress(
        account.user_id,
        book_id,
        device_kind=data.device_kind,
        percentage=data.percentage,
        locator=data.locator,
        is_finished=data.finished,
        now=utc_now(),
    )
    (saved,) = _progress([record], {book_id: book.title})
    return saved


def library_router() -> Router:
    """The personal library's routes under ``/api``."""
    return api_router(
        [
            list_favourites,
            add_favourite,
            remove_favourite,
            list_shelves,
            create_shelf,
            read_shelf,
            rename_shelf,
            delete_shelf,
            add_to_shelf,
            remove_from_shelf,
            reorder_shelf,
            list_progress,
            read_progress,
            save_progress,
        ],
        tags=["personal library"],
    )
