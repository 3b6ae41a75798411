"""Downloads, covers, thumbnails and comic pages.

Files are resolved from ``metadata.db`` at request time (Calibre moves them when a title or author
changes) and must lie inside the library folder. Everything answers HEAD, ranges and conditional
requests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Request, Response, Router
from litestar.params import Parameter

from opds_server.catalog.media import media_type
from opds_server.catalog.service import cover_file, find_cover, locate_file
from opds_server.errors import CoverNotFoundError, FormatNotFoundError, NotFoundError
from opds_server.http import FileResponse, get_and_head, is_fresh, make_etag, parse_range, validators
from opds_server.routes.params import BookIdParam
from opds_server.state import Services
from opds_server.storage.comics import read_page
from opds_server.storage.covers import COVER
from opds_server.storage.derived import ThumbnailError
from opds_server.storage.files import LOCAL_READER, LibraryFiles, StoredFile, local_stored

DOWNLOAD_CACHE_CONTROL = "private, max-age=3600"
COVER_CACHE_CONTROL = "public, max-age=3600"


def content_disposition(file_name: str) -> str:
    """RFC 6266: an ASCII ``filename`` fallback and the exact name as ``filename*``."""
    fallback = file_name.encode("ascii", "replace").decode("ascii").replace("?", "_")
    fallback = fallback.replace("\\", "_").replace('"', "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


def send_stored(
    request: Request[Any, Any, Any],
    stored: StoredFile,
    files: LibraryFiles,
    *,
    media: str,
    cache_control: str,
    extra_headers: dict[str, str] | None = None,
    etag_parts: tuple[object, ...] = (),
) -> Response[bytes]:
    """A file with its validators: 304 when the client's copy is current, else the bytes or the
    range asked for (``If-Range`` honoured), streamed from wherever the storage has them."""
    etag = make_etag(*etag_parts, stored.mtime_ns, stored.size)
    modified = stored.modified
    headers = {**validators(etag, modified, cache_control), **(extra_headers or {})}
    if is_fresh(request, etag, modified):
        return Response(content=b"", status_code=304, headers=headers, media_type=media)
    if_range = request.headers.get("if-range")
    header = request.headers.get("range") if not if_range or if_range.strip() == etag else None
    byte_range = parse_range(header, stored.size)
    return FileResponse(
        stored,
        files=files,
        is_get=request.method == "GET",
        media_type=media,
        byte_range=byte_range,
        headers=headers,
    )


def send_local(
    request: Request[Any, Any, Any],
    path: Path,
    *,
    media: str,
    cache_control: str,
    extra_headers: dict[str, str] | None = None,
    etag_parts: tuple[object, ...] = (),
    mtime_ns: int | None = None,
) -> Response[bytes]:
    """A file of ours on local disk (a thumbnail, a cover's copy, a KEPUB); ``mtime_ns``: the
    version of the library file it was made from, for its validators."""
    try:
        stored = local_stored(path, mtime_ns=mtime_ns)
    except OSError as exc:
        raise NotFoundError(f"{request.url.path}: the file went away while it was being sent") from exc
    return send_stored(
        request,
        stored,
        LOCAL_READER,
        media=media,
        cache_control=cache_control,
        extra_headers=extra_headers,
        etag_parts=etag_parts,
    )


@get_and_head("/download/{book_id:int}/{file_name:str}", name="download")
def download(
    request: Request[Any, Any, Any], services: Services, book_id: BookIdParam, file_name: str
) -> Response[bytes]:
    # `12.epub` as the feeds write it; any name ending in the format works, and so does `epub` alone.
    if file_name.lower().endswith(".kepub.epub"):
        return _kepub(request, services, book_id)
    book_format = file_name.rpartition(".")[2]
    location = locate_file(services.catalog, book_id, book_format)
    return send_stored(
        request,
        location.stored,
        services.catalog.files,
        media=media_type(location.format),
        cache_control=DOWNLOAD_CACHE_CONTROL,
        extra_headers={"Content-Disposition": content_disposition(location.file_name)},
        etag_parts=(book_id, location.format),
    )


def send_made_kepub(
    request: Request[Any, Any, Any], book_id: int, kepub: Path, epub_name: str, *, media: str, etag_tag: str
) -> Response[bytes]:
    """The KEPUB we made of a book's EPUB, named after the EPUB (``Title.kepub.epub``)."""
    name = epub_name.removesuffix(".epub") + ".kepub.epub"
    return send_local(
        request,
        kepub,
        media=media,
        cache_control=DOWNLOAD_CACHE_CONTROL,
        extra_headers={"Content-Disposition": content_disposition(name)},
        etag_parts=(book_id, etag_tag, kepub.name),
    )


def _kepub(request: Request[Any, Any, Any], services: Services, book_id: int) -> Response[bytes]:
    """``12.kepub.epub``: the book's own KEPUB, else the one made from its EPUB for Kobos (what a
    Kobo's browser is offered on the book's page)."""
    try:
        location = locate_file(services.catalog, book_id, "KEPUB")
    except FormatNotFoundError:
        location = locate_file(services.catalog, book_id, "EPUB")
        converted = services.kepubs.wait_for(book_id, location.stored) if services.settings.kobo_kepub else None
        if converted is None:
            raise FormatNotFoundError(
                f"book {book_id} has no KEPUB: its EPUB is sent to Kobos as it is (fixed layout, or not convertible)"
            ) from None
        return send_made_kepub(
            request, book_id, converted, location.file_name, media=media_type("KEPUB"), etag_tag="kepub"
        )
    return send_stored(
        request,
        location.stored,
        services.catalog.files,
        media=media_type("KEPUB"),
        cache_control=DOWNLOAD_CACHE_CONTROL,
        extra_headers={"Content-Disposition": content_disposition(location.file_name)},
        etag_parts=(book_id, "KEPUB"),
    )


@get_and_head("/covers/{book_id:int}", name="cover")
def cover(request: Request[Any, Any, Any], services: Services, book_id: BookIdParam) -> Response[bytes]:
    image = find_cover(services.catalog, services.placeholders, book_id)
    redirect = services.covers.redirect(image, COVER)
    if redirect is not None:
        return redirect
    return send_local(
        request,
        cover_file(services.catalog, services.placeholders, image),
        media="image/jpeg",
        cache_control=COVER_CACHE_CONTROL,
        etag_parts=(image.key, image.version),
        mtime_ns=image.mtime_ns,
    )


@get_and_head("/covers/{book_id:int}/thumbnail", name="thumbnail")
def thumbnail(request: Request[Any, Any, Any], services: Services, book_id: BookIdParam) -> Response[bytes]:
    image = find_cover(services.catalog, services.placeholders, book_id)
    redirect = services.covers.redirect(image, services.covers.thumbnail_name)
    if redirect is not None:
        return redirect
    path = cover_file(services.catalog, services.placeholders, image)
    try:
        thumb = services.thumbnails.read_thumbnail(image.key, path, image.version)
    except ThumbnailError as exc:
        raise CoverNotFoundError(str(exc)) from exc
    return send_local(
        request,
        thumb,
        media="image/jpeg",
        cache_control=COVER_CACHE_CONTROL,
        etag_parts=(book_id, "thumbnail", image.version),
        mtime_ns=image.mtime_ns,
    )


@get_and_head("/pse/{book_id:int}/{page:int}", name="pse-page")
def comic_page(
    services: Services,
    book_id: BookIdParam,
    page: Annotated[int, Parameter(ge=0, le=100_000)],
    max_width: Annotated[int | None, Parameter(query="maxWidth", ge=16, le=10_000)] = None,
) -> Response[bytes]:
    location = locate_file(services.catalog, book_id, "CBZ")
    found = read_page(services.catalog.files, location.stored, page, max_width)
    if found is None:
        raise NotFoundError(f"page {page} is past the end of book {book_id}'s comic")
    data, media = found
    return Response(content=data, media_type=media, headers={"Cache-Control": COVER_CACHE_CONTROL})


files_router = Router(path="/", route_handlers=[download, cover, thumbnail, comic_page])
