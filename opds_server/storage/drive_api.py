"""The Drive v3 calls we make, and a Drive file's bytes as a stream or a seekable reader.

Through google-auth's ``AuthorizedSession`` (tokens refresh on their own, also after a 401).
Downloads stream in 256 KiB chunks and a client's byte range goes to Drive as a ``Range``; a stream
cut midway is asked for again from where it stopped. Zip readers (spines, comics, KOReader's partial
MD5) read ranges of the file, never all of it. Transient failures (429, 5xx, timeouts) are retried
with backoff; what still fails is a ``StorageError`` for that file only (a 502, or a 404 when Drive
says the file is gone).

pydrive2 is not used: it speaks Drive v2 through the API discovery client and oauth2client, while
everything here is four v3 calls that google-auth's session makes directly.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import requests
from google.auth.exceptions import GoogleAuthError
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account
from requests.adapters import HTTPAdapter

from opds_server.storage.files import CHUNK_SIZE, StorageError, StoredFile

log = logging.getLogger(__name__)

SCOPES = ("https://www.googleapis.com/auth/drive.readonly",)
FOLDER_TYPE = "application/vnd.google-apps.folder"
FILE_FIELDS = "id,name,mimeType,parents,size,md5Checksum,modifiedTime,trashed"
TIMEOUT = (5.0, 30.0)
"""(connect, read) seconds for one request to Drive."""
ATTEMPTS = 4
"""Tries of one request: three retries of a transient failure, about 2 s in all."""
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
READ_AHEAD = 64 * 1024
"""The least a seekable reader fetches at a time (zip directories and partial MD5s read small bits)."""


def _reason(response: requests.Response) -> str:
    """Drive's own words for an error answer (``reason: message``)."""
    try:
        error = response.json().get("error", {})
    except ValueError:
        return f"HTTP {response.status_code}"
    if not isinstance(error, dict):
        return str(error)
    reasons = [str(e.get("reason", "")) for e in error.get("errors", []) if isinstance(e, dict)]
    message = str(error.get("message", f"HTTP {response.status_code}"))
    return f"{reasons[0]}: {message}" if reasons and reasons[0] else message


class DriveApi:
    """The four Drive v3 calls we make, with retries, through google-auth's authorized session."""

    def __init__(self, credentials: Path, api_url: str, *, pool_size: int = 32) -> None:
        try:
            account = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]  # google-auth has no annotations here
                str(credentials), scopes=SCOPES
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(
                f"GOOGLE_DRIVE_CREDENTIALS={credentials}: not a service-account JSON file ({exc})"
            ) from exc
        self.session = AuthorizedSession(account)  # type: ignore[no-untyped-call]  # as above
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.api_url = api_url.rstrip("/")

    def request(
        self, path: str, params: Mapping[str, str], *, headers: Mapping[str, str] | None = None, stream: bool = False
    ) -> requests.Response:
        """GET ``path`` of the API, retrying transient failures; a 2xx answer.

        Raises:
            StorageError: a 404 (``is_missing``), another 4xx, or a failure that outlived the retries.
        """
        url = f"{self.api_url}/{path}"
        failure = "no answer"
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(min(2.0, 0.25 * 2 ** (attempt - 1)))
            try:
                response = self.session.get(url, params=params, headers=headers, stream=stream, timeout=TIMEOUT)
            except (requests.ConnectionError, requests.Timeout) as exc:
                failure = f"{type(exc).__name__}: {exc}"
                continue
            except GoogleAuthError as exc:
                raise StorageError(f"Google Drive refused our credentials: {exc}") from exc
            if response.status_code < 400:
                return response
            reason = _reason(response)
            response.close()
            if response.status_code == 404:
                raise StorageError(f"Google Drive has no such file ({reason})", is_missing=True)
            if response.status_code in RETRIED_STATUSES or any(r in reason for r in RATE_LIMIT_REASONS):
                failure = f"HTTP {response.status_code} {reason}"
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit() and attempt + 1 < ATTEMPTS:
                    time.sleep(min(float(retry_after), 2.0))
                continue
            raise StorageError(f"Google Drive refused: HTTP {response.status_code} {reason}")
        raise StorageError(f"Google Drive did not answer after {ATTEMPTS} tries: {failure}")

    def list_all(self) -> Iterator[dict[str, Any]]:
        """Every file and folder the account sees, page by page."""
        token: str | None = None
        while True:
            params = {
                "q": "trashed = false",
                "pageSize": "1000",
                "fields": f"nextPageToken,files({FILE_FIELDS})",
                "supportsAllDrives": "true",
                "includeItemsFromAllDrives": "true",
            }
            if token:
                params["pageToken"] = token
            page = self.request("files", params).json()
            yield from page.get("files", [])
            token = page.get("nextPageToken")
            if not token:
                return

    def start_token(self) -> str:
        return str(self.request("changes/startPageToken", {"supportsAllDrives": "true"}).json()["startPageToken"])

    def changes(self, token: str) -> tuple[list[dict[str, Any]], str]:
        """Every change since ``token``, and the token to ask from next time."""
        found: list[dict[str, Any]] = []
        while True:
            page = self.request(
                "changes",
                {
                    "pageToken": token,
                    "pageSize": "1000",
                    "includeRemoved": "true",
                    "supportsAllDrives": "true",
                    "includeItemsFromAllDrives": "true",
                    "fields": f"nextPageToken,newStartPageToken,changes(fileId,removed,file({FILE_FIELDS}))",
                },
            ).json()
            found.extend(page.get("changes", []))
            if page.get("newStartPageToken"):
                return found, str(page["newStartPageToken"])
            token = str(page["nextPageToken"])

    def media(self, file_id: str, start: int, end: int) -> requests.Response:
        """Bytes ``start`` to ``end`` (inclusive) of a file, as a stream.

        Raises:
            StorageError: as ``request``, or Drive ignored the range.
        """
        response = self.request(
            f"files/{file_id}",
            {"alt": "media", "supportsAllDrives": "true"},
            headers={"Range": f"bytes={start}-{end}"},
            stream=True,
        )
        if start > 0 and response.status_code != 206:
            response.close()
            raise StorageError(f"Google Drive ignored the byte range {start}-{end} of file {file_id}")
        return response

    def close(self) -> None:
        self.session.close()  # type: ignore[no-untyped-call]  # as above


class DriveChunks(AbstractContextManager[Iterator[bytes]]):
    """A byte range of a Drive file as chunks; a stream cut midway is asked for again from where it stopped."""

    def __init__(self, api: DriveApi, stored: StoredFile, start: int, length: int) -> None:
        self.api = api
        self.file_id = str(stored.remote_id)
        self.name = stored.relative
        self.start = start
        self.end = start + length - 1
        self._response: requests.Response | None = None

    def __enter__(self) -> Iterator[bytes]:
        if self.end < self.start:  # nothing asked for (an empty file): Drive refuses any range of it
            return iter(())
        self._response = self.api.media(self.file_id, self.start, self.end)
        return self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        position = self.start
        resumed = 0
        while position <= self.end:
            assert self._response is not None
            try:
                for chunk in self._response.iter_content(CHUNK_SIZE):
                    position += len(chunk)
                    yield chunk
                if position <= self.end:
                    raise requests.ConnectionError("the answer ended early")
            except (requests.RequestException, OSError) as exc:
                self._response.close()
                resumed += 1
                if resumed >= ATTEMPTS:
                    raise StorageError(f"{self.name}: the download from Google Drive broke off: {exc}") from exc
                log.info("%s: resuming the Drive download at byte %d after: %s", self.name, position, exc)
                self._response = self.api.media(self.file_id, position, self.end)

    def __exit__(self, *_exc: object) -> None:
        if self._response is not None:
            self._response.close()


class DriveReader(io.RawIOBase):
    """A seekable, read-only view of a Drive file: each read is a ranged request (at least ``READ_AHEAD``)."""

    def __init__(self, api: DriveApi, stored: StoredFile) -> None:
        super().__init__()
        self.api = api
        self.stored = stored
        self.position = 0
        self._window = b""
        self._window_start = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.stored.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self.stored.size - self.position)
        if wanted <= 0:
            return 0
        offset = self.position - self._window_start
        if not (offset >= 0 and offset + wanted <= len(self._window)):
            end = min(self.stored.size, self.position + max(wanted, READ_AHEAD)) - 1
            with self.api.media(str(self.stored.remote_id), self.position, end) as response:
                self._window = response.content
            self._window_start = self.position
            offset = 0
        view[:wanted] = self._window[offset : offset + wanted]
        self.position += wanted
        return wanted

    def readall(self) -> bytes:
        return self.read(self.stored.size - self.position)
