"""A small Google Drive v3 emulator with an OAuth token endpoint, for tests and benchmarks.

It serves a local folder as a Drive folder to the real google-auth stack (service-account credentials whose
``token_uri`` points here) and to any client given ``api_url`` as its Drive base URL.

Emulated, with Drive's JSON shapes and error bodies:

* ``POST /token``: the JWT-bearer grant google-auth sends; the RS256 assertion is verified against the key of the
  service account written by :meth:`DriveEmulator.write_credentials`.
* ``GET /drive/v3/files``: ``q`` (``'<id>' in parents``, ``trashed``, ``name``, ``mimeType``, ``=`` / ``!=``,
  ``and`` / ``or`` / parentheses), ``pageSize`` / ``pageToken`` paging in id order, ``fields`` projection.
* ``GET /drive/v3/files/{id}`` (metadata) and ``?alt=media`` (content, one ``Range`` honoured, streamed from disk).
* ``GET /drive/v3/changes/startPageToken`` and ``GET /drive/v3/changes``, fed by the test mutations.
* Fault injection (error statuses, stalls before headers or mid-body) and a log of every request.

Not emulated: uploads or any write through the API, trash, permissions, shared drives, Google Docs exports, batch
requests, other ``q`` terms, ``fields`` nested deeper than ``files(...)`` (``changes`` ignores ``fields``), and
duplicate names in one folder (Drive allows them; here a relative path names one item).

The caller's folder is only ever read, and its files are hashed once, when the emulator is built: change them
through :meth:`DriveEmulator.replace_file`, not on disk. Content given to ``add_file`` / ``replace_file`` is written to
a private temporary directory (one new file per version, so a download in flight keeps its bytes); the directory is
removed by :meth:`DriveEmulator.stop`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import mimetypes
import re
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from operator import attrgetter
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import NoReturn, Self, TypeAlias
from urllib.parse import parse_qsl, unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

Fields: TypeAlias = dict[str, "Fields | None"]  # a parsed `fields` selection: name -> sub-selection (None: all of it)
Predicate: TypeAlias = Callable[["_Item"], bool]

FOLDER_MIME = "application/vnd.google-apps.folder"
CLIENT_EMAIL = "opds-server@opds-test.iam.gserviceaccount.com"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # the `aud` google-auth writes, whatever its token_uri
API_PREFIX = "/drive/v3"
_CHUNK = 64 * 1024
_MY_DRIVE_ID = "0AEmulatedMyDriveRootFolderUk9PVA"  # parent of the top-level folders; never an item itself
_JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_AUTH_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid "
    "authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_ERRORS = {  # status -> (reason, message) of injected faults
    403: ("downloadQuotaExceeded", "The download quota for this file has been exceeded."),
    429: ("rateLimitExceeded", "Rate Limit Exceeded"),
    500: ("backendError", "Backend Error"),
    503: ("backendError", "Service Unavailable"),
}
_FILE_FIELD_NAMES = (  # Drive's File resource; those we do not keep are simply absent, as in Drive
    "kind id name mimeType description starred trashed explicitlyTrashed parents properties appProperties spaces "
    "version webContentLink webViewLink iconLink thumbnailLink createdTime modifiedTime modifiedByMeTime "
    "viewedByMeTime sharedWithMeTime owners lastModifyingUser shared ownedByMe capabilities permissions "
    "permissionIds hasThumbnail originalFilename fullFileExtension fileExtension md5Checksum sha1Checksum "
    "sha256Checksum size quotaBytesUsed headRevisionId contentHints imageMediaMetadata videoMediaMetadata "
    "driveId resourceKey shortcutDetails trashedTime contentRestrictions exportLinks"
)
_FILE_FIELDS = frozenset(_FILE_FIELD_NAMES.split())
_LIST_FIELDS = frozenset({"kind", "nextPageToken", "incompleteSearch", "files"})
_DEFAULT_FILE_FIELDS: Fields = {"kind": None, "id": None, "name": None, "mimeType": None}
_MIME = mimetypes.MimeTypes()  # built-in table only, so the guess does not depend on the host's mime.types
_EBOOK_MIME = {
    ".epub": "application/epub+zip",
    ".kepub": "application/epub+zip",
    ".mobi": "application/x-mobipocket-ebook",
    ".azw3": "application/vnd.amazon.ebook",
    ".cbz": "application/vnd.comicbook+zip",
    ".cbr": "application/vnd.comicbook-rar",
    ".fb2": "application/x-fictionbook+xml",
    ".opf": "application/oebps-package+xml",
}


@dataclass(frozen=True)
class LoggedRequest:
    """One answered request: the path without query, the query's last values, the `Range` header, the status."""

    method: str
    path: str
    query: dict[str, str]
    range: str | None
    status: int


@dataclass
class _Item:
    id: str
    name: str
    parent: str
    mime_type: str
    source: Path | None  # the content on disk; None for a folder
    modified: datetime
    size: int = 0
    md5: str = ""
    version: int = 1

    def metadata(self) -> dict[str, object]:
        meta: dict[str, object] = {"kind": "drive#file", "id": self.id, "name": self.name, "mimeType": self.mime_type}
        meta["parents"] = [self.parent]
        if self.source is not None:
            meta |= {"size": str(self.size), "md5Checksum": self.md5}
        return meta | {"modifiedTime": _rfc3339(self.modified), "version": str(self.version), "trashed": False}


@dataclass
class _Change:
    seq: int
    file_id: str
    time: datetime


@dataclass
class _Rule:  # a pending fault or stall
    remaining: int
    file_id: str | None
    is_media_only: bool
    status: int = 0
    seconds: float = 0.0
    after_bytes: int = 0

    def matches(self, file_id: str | None, is_media: bool) -> bool:
        return (self.file_id is None or self.file_id == file_id) and (is_media or not self.is_media_only)


class _DriveError(Exception):
    """An answer in Drive's error format, raised inside a handler."""

    def __init__(
        self, status: int, reason: str, message: str, location: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.location = status, reason, message, location
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        detail: dict[str, object] = {"message": self.message, "domain": "global", "reason": self.reason}
        if self.location:
            where = "header" if self.location == "Authorization" else "parameter"
            detail |= {"location": self.location, "locationType": where}
        error: dict[str, object] = {"code": self.status, "message": self.message, "errors": [detail]}
        if self.status == 401:
            error["status"] = "UNAUTHENTICATED"
        return {"error": error}


class _GrantError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _now_ms(after: datetime | None = None) -> datetime:
    """Now, to the millisecond, and strictly later than `after`."""
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    return max(now, after + timedelta(milliseconds=1)) if after else now


def _digest_id(key: str) -> str:
    """A 33-character Drive-like id: "1" and the base64url of a 24-byte blake2b digest."""
    return "1" + base64.urlsafe_b64encode(hashlib.blake2b(key.encode(), digest_size=24).digest()).decode()


def _guess_mime(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return _EBOOK_MIME.get(suffix) or _MIME.guess_type(name)[0] or "application/octet-stream"


def _split(relative: str) -> tuple[str, ...]:
    parts = PurePosixPath(relative).parts
    if relative.startswith("/") or any(part in {"..", "."} for part in parts):
        raise ValueError(f"not a relative path inside the emulated folder: {relative!r}")
    return parts


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _int_param(query: Mapping[str, str], name: str, default: int) -> int:
    """A `pageSize`-like parameter: 1 or more, larger than 1000 clamped to 1000 as Drive does."""
    text = query.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) < 1:
        raise _DriveError(400, "invalid", f"Invalid value '{text}'. Values must be within the range: [1, 1000]", name)
    return min(int(text), 1000)


# --- `fields` and `q` -------------------------------------------------------------------------------------------------

_FIELD_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|\*|[(),])")


def _parse_fields(text: str) -> Fields:
    """Parse a `fields` selection: a comma list of names, each optionally followed by a parenthesised selection."""
    tokens: list[str] = []
    pos = 0
    while pos < len(text.rstrip()):
        match = _FIELD_TOKEN.match(text, pos)
        if not match:
            raise _DriveError(400, "invalidParameter", f"Invalid field selection {text[pos:]}", "fields")
        tokens.append(match[1])
        pos = match.end()

    def selection(index: int) -> tuple[Fields, int]:
        fields: Fields = {}
        while True:
            if index >= len(tokens) or tokens[index] in "(),":
                raise _DriveError(400, "invalidParameter", f"Invalid field selection {text}", "fields")
            name, index = tokens[index], index + 1
            fields[name] = None
            if index < len(tokens) and tokens[index] == "(":
                fields[name], index = selection(index + 1)
                if index >= len(tokens) or tokens[index] != ")":
                    raise _DriveError(400, "invalidParameter", f"Invalid field selection {text}", "fields")
                index += 1
            if index >= len(tokens) or tokens[index] != ",":
                return fields, index
            index += 1

    fields, end = selection(0)
    if end != len(tokens):
        raise _DriveError(400, "invalidParameter", f"Invalid field selection {text}", "fields")
    return fields


def _check_file_fields(selection: Fields | None) -> None:
    for name in selection or {}:
        if name != "*" and name not in _FILE_FIELDS:
            raise _DriveError(400, "invalidParameter", f"Invalid field selection {name}", "fields")


def _project(meta: dict[str, object], selection: Fields | None) -> dict[str, object]:
    if selection is None or "*" in selection:
        return meta
    return {name: meta[name] for name in selection if name in meta}


_Q_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<op>!=|=|\(|\))|(?P<word>[A-Za-z_][A-Za-z0-9_]*))")


class _QueryParser:
    """Recursive descent over Drive's `q` subset; `and` binds tighter than `or`."""

    def __init__(self, text: str) -> None:
        self.tokens, self.index = list[tuple[str, str]](), 0
        pos = 0
        while pos < len(text.rstrip()):
            match = _Q_TOKEN.match(text, pos)
            if not match or match.lastgroup is None:
                self.fail()
            kind = match.lastgroup
            value = match[kind]
            if kind == "str":
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            self.tokens.append((kind, value))
            pos = match.end()

    def fail(self) -> NoReturn:
        raise _DriveError(400, "invalid", "Invalid Value", "q")

    def peek_word(self) -> str:
        kind, value = self.tokens[self.index] if self.index < len(self.tokens) else ("", "")
        return value.lower() if kind == "word" else ""

    def take(self, kind: str) -> str:
        if self.index >= len(self.tokens) or self.tokens[self.index][0] != kind:
            self.fail()
        self.index += 1
        return self.tokens[self.index - 1][1]

    def parse(self) -> Predicate:
        predicate = self.disjunction()
        if self.index != len(self.tokens):
            self.fail()
        return predicate

    def disjunction(self) -> Predicate:
        terms = [self.conjunction()]
        while self.peek_word() == "or":
            self.index += 1
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else lambda item: any(term(item) for term in terms)

    def conjunction(self) -> Predicate:
        terms = [self.term()]
        while self.peek_word() == "and":
            self.index += 1
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else lambda item: all(term(item) for term in terms)

    def term(self) -> Predicate:
        kind, value = self.tokens[self.index] if self.index < len(self.tokens) else ("", "")
        self.index += 1
        if (kind, value) == ("op", "("):
            inner = self.disjunction()
            if self.take("op") != ")":
                self.fail()
            return inner
        if kind == "str":  # '<id>' in parents
            if self.take("word").lower() != "in" or self.take("word") != "parents":
                self.fail()
            return lambda item: item.parent == value
        if kind != "word" or value not in {"trashed", "name", "mimeType"}:
            self.fail()
        negate = {"=": False, "!=": True}.get(self.take("op"))
        if negate is None:
            self.fail()
        if value == "trashed":
            wanted = self.take("word").lower()
            if wanted not in {"true", "false"}:
                self.fail()
            return lambda _item: (wanted == "false") != negate  # nothing is ever trashed here
        literal = self.take("str")
        if value == "name":
            return lambda item: (item.name == literal) != negate
        return lambda item: (item.mime_type == literal) != negate


_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive span of one `Range: bytes=...`; None to send the whole file (absent or malformed, per RFC 9110)."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if not match or not (match[1] or match[2]):
        return None
    if match[1]:  # bytes=a-b or bytes=a-
        start, end = int(match[1]), int(match[2]) if match[2] else size - 1
        if match[2] and end < start:
            return None
        is_satisfiable = start < size
    else:  # bytes=-n: the last n bytes
        start, end = max(size - int(match[2]), 0), size - 1
        is_satisfiable = int(match[2]) > 0 and size > 0
    if not is_satisfiable:
        message, headers = "Request range not satisfiable", {"Content-Range": f"bytes */{size}"}
        raise _DriveError(416, "requestedRangeNotSatisfiable", message, headers=headers)
    return start, min(end, size - 1)


# --- the emulator -----------------------------------------------------------------------------------------------------


class DriveEmulator:
    """One local folder served as a Drive folder, with a token endpoint; see the module docstring.

    Use as a context manager or call :meth:`start` and :meth:`stop`. Every mutation and fault method is thread-safe.
    """

    def __init__(self, root: Path, *, token_lifetime: int = 3600, port: int = 0) -> None:
        self.root = root.resolve()
        self.token_lifetime = token_lifetime
        self._port = port
        self._lock = threading.Lock()  # guards everything below; never held while a socket or a file is read
        self._stopping = threading.Event()  # set by stop(); wakes stalled answers
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._blobs = Path(tempfile.mkdtemp(prefix="drive-emulator-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._blobs, ignore_errors=True)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._key_id = secrets.token_hex(20)
        self._items: dict[str, _Item] = {}
        self._used_ids: set[str] = set()  # Drive never reuses an id, even a deleted one
        self._changes: list[_Change] = []
        self._seq = 1000  # the sequence number of the last change; page tokens are later numbers
        self._tokens: dict[str, float] = {}  # access token -> expiry on the monotonic clock
        self._tokens_issued = 0
        self._faults: list[_Rule] = []
        self._stalls: list[_Rule] = []
        self._failing_files: dict[str, int] = {}
        self._requests: list[LoggedRequest] = []

        self.folder_id = self._create("", self.root.name, _MY_DRIVE_ID, None, _mtime(self.root)).id
        ids = {self.root: self.folder_id}
        for path in sorted(self.root.rglob("*"), key=lambda path: (len(path.parts), path)):  # parents first
            if path.is_dir() or path.is_file():
                source = None if path.is_dir() else path
                relative = path.relative_to(self.root).as_posix()
                ids[path] = self._create(relative, path.name, ids[path.parent], source, _mtime(path)).id
        other = self._create("\0other", "Other stuff", _MY_DRIVE_ID, None, _now_ms())  # outside the root folder
        self._create("\0other/notes.txt", "notes.txt", other.id, self._write_blob(b"Not a book.\n"), _now_ms())

    # --- lifecycle ----------------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Listen on 127.0.0.1 (the port given, or a free one) and serve from a daemon thread."""
        if self._server is not None or self._stopping.is_set():
            raise RuntimeError("the emulator is already running or was stopped; build a new one")
        self._server = _Server(("127.0.0.1", self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name="drive-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections, wake stalled answers and remove the private temporary directory."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def api_url(self) -> str:
        """The base URL of the Drive API, for `GOOGLE_DRIVE_API_URL`."""
        return self.url + API_PREFIX

    @property
    def token_uri(self) -> str:
        """The OAuth token endpoint, written as `token_uri` into the credentials."""
        return self.url + "/token"

    def write_credentials(self, path: Path) -> Path:
        """Write a service-account JSON key for this emulator's account to `path` and return `path`."""
        pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        info = {
            "type": "service_account",
            "project_id": "opds-test",
            "private_key_id": self._key_id,
            "private_key": pem.decode(),
            "client_email": CLIENT_EMAIL,
            "client_id": "1",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/" + CLIENT_EMAIL,
            "universe_domain": "googleapis.com",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(info, indent=2) + "\n")
        return path

    # --- the tree and its mutations -----------------------------------------------------------------------------------

    def file_id(self, relative: str) -> str:
        """The id of the item now at `relative` ("" is the root folder); KeyError when nothing is there.

        An item keeps the id it was created with, `"1" + base64url(blake2b(relative path at creation, 24 bytes))`.
        """
        with self._lock:
            item = self._find(_split(relative))
        if item is None:
            raise KeyError(relative)
        return item.id

    def add_file(self, relative: str, data: bytes) -> str:
        """Create a file (and its missing parent folders) with `data`, stored in the private directory; its id."""
        parts = _split(relative)
        if not parts:
            raise ValueError("add_file needs a file name")
        blob = self._write_blob(data)
        with self._lock:
            if self._find(parts) is not None:
                raise FileExistsError(relative)
            item = self._create(relative, parts[-1], self._folder_for(parts[:-1]), blob, _now_ms())
            self._record(item.id)
            return item.id

    def replace_file(self, relative: str, data: bytes) -> None:
        """Give a file new content: same id; new md5, size, version and modifiedTime. The original is not touched."""
        blob = self._write_blob(data)
        with self._lock:
            item = self._existing(relative)
            if item.source is None:
                raise IsADirectoryError(relative)
            item.source, item.size, item.md5 = blob, len(data), hashlib.md5(data, usedforsecurity=False).hexdigest()
            item.version, item.modified = item.version + 1, _now_ms(item.modified)
            self._record(item.id)

    def move(self, old_relative: str, new_relative: str) -> None:
        """Move or rename a file or a folder (with everything under it); only the moved item is reported changed."""
        old, new = _split(old_relative), _split(new_relative)
        if not old or not new or new[: len(old)] == old:
            raise ValueError(f"cannot move {old_relative!r} to {new_relative!r}")
        with self._lock:
            item = self._existing(old_relative)
            if self._find(new) is not None:
                raise FileExistsError(new_relative)
            item.parent, item.name, item.version = self._folder_for(new[:-1]), new[-1], item.version + 1
            self._record(item.id)

    def delete(self, relative: str) -> None:
        """Delete a file, or a folder and everything under it, for good: each is reported `removed`."""
        with self._lock:
            item = self._existing(relative)
            if item.id == self.folder_id:
                raise ValueError("the root folder cannot be deleted")
            doomed = [item.id]
            for parent in doomed:  # grows while it is walked: breadth first over the subtree
                doomed.extend(child.id for child in self._items.values() if child.parent == parent)
            for item_id in doomed:
                del self._items[item_id]
                self._record(item_id)

    def _create(self, key: str, name: str, parent: str, source: Path | None, modified: datetime) -> _Item:
        item_id, suffix = _digest_id(key), 0
        while item_id in self._used_ids:  # a path used again after a move or a delete gets a fresh id
            suffix += 1
            item_id = _digest_id(f"{key}\0{suffix}")
        self._used_ids.add(item_id)
        mime_type = FOLDER_MIME if source is None else _guess_mime(name)
        item = _Item(id=item_id, name=name, parent=parent, mime_type=mime_type, source=source, modified=modified)
        if source is not None:
            with source.open("rb") as handle:
                item.md5 = hashlib.file_digest(handle, "md5").hexdigest()
            item.size = source.stat().st_size
        self._items[item_id] = item
        return item

    def _find(self, parts: Sequence[str]) -> _Item | None:
        item = self._items[self.folder_id]
        for part in parts:
            found = next(
                (child for child in self._items.values() if child.parent == item.id and child.name == part), None
            )
            if found is None:
                return None
            item = found
        return item

    def _existing(self, relative: str) -> _Item:
        item = self._find(_split(relative))
        if item is None:
            raise FileNotFoundError(relative)
        return item

    def _folder_for(self, parts: Sequence[str]) -> str:
        """The id of the folder at `parts`, creating the missing ones (each a change)."""
        folder = self._items[self.folder_id]
        for depth in range(len(parts)):
            child = self._find(parts[: depth + 1])
            if child is None:
                child = self._create("/".join(parts[: depth + 1]), parts[depth], folder.id, None, _now_ms())
                self._record(child.id)
            elif child.source is not None:
                raise NotADirectoryError("/".join(parts[: depth + 1]))
            folder = child
        return folder.id

    def _write_blob(self, data: bytes) -> Path:
        path = self._blobs / secrets.token_hex(8)  # one file per version: downloads in flight keep their bytes
        path.write_bytes(data)
        return path

    def _record(self, item_id: str) -> None:
        self._seq += 1
        self._changes.append(_Change(self._seq, item_id, _now_ms()))

    # --- tokens, faults and the log -----------------------------------------------------------------------------------

    @property
    def tokens_issued(self) -> int:
        """How many access tokens the token endpoint has granted."""
        with self._lock:
            return self._tokens_issued

    def expire_tokens(self) -> None:
        """Make every access token issued so far invalid: the next API call with one gets a 401."""
        with self._lock:
            self._tokens.clear()

    def fail_next(self, count: int, status: int = 500, *, file_id: str | None = None, media_only: bool = False) -> None:
        """Answer the next `count` matching API requests with `status` and Drive's error body."""
        with self._lock:
            self._faults.append(_Rule(count, file_id, media_only, status=status))

    def fail_file(self, file_id: str, status: int) -> None:
        """Answer every metadata and media request for `file_id` with `status` until :meth:`clear_faults`."""
        with self._lock:
            self._failing_files[file_id] = status

    def stall_next(
        self, count: int, seconds: float, *, file_id: str | None = None, media_only: bool = False, after_bytes: int = 0
    ) -> None:
        """Delay the next `count` matching API requests by `seconds`, before the headers or, for media answers with
        `after_bytes` > 0, after that many bytes of the body. stop() cuts a stall short."""
        with self._lock:
            self._stalls.append(_Rule(count, file_id, media_only, seconds=seconds, after_bytes=after_bytes))

    def clear_faults(self) -> None:
        """Forget every pending fault, stall and failing file."""
        with self._lock:
            self._faults.clear()
            self._stalls.clear()
            self._failing_files.clear()

    @property
    def requests(self) -> list[LoggedRequest]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_log(self) -> None:
        """Empty the request log."""
        with self._lock:
            self._requests.clear()

    def _take(self, rules: list[_Rule], file_id: str | None, is_media: bool) -> _Rule | None:
        with self._lock:
            for rule in rules:
                if rule.matches(file_id, is_media):
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        rules.remove(rule)
                    return rule
        return None

    def _fault(self, file_id: str | None, is_media: bool) -> int | None:
        with self._lock:
            if file_id in self._failing_files:
                return self._failing_files[file_id]
        rule = self._take(self._faults, file_id, is_media)
        return rule.status if rule else None

    def _log(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._requests.append(entry)

    def _is_authorized(self, header: str | None) -> bool:
        scheme, _, token = (header or "").partition(" ")
        with self._lock:
            expiry = self._tokens.get(token.strip())
        return scheme.lower() == "bearer" and expiry is not None and expiry > time.monotonic()

    def _grant(self, form: Mapping[str, str]) -> str:
        """Verify a JWT-bearer grant as Google does and issue an access token."""
        if form.get("grant_type") != _JWT_GRANT:
            raise _GrantError("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type', '')}")
        try:
            encoded_header, encoded_claims, encoded_signature = form.get("assertion", "").split(".")
            header, claims = json.loads(_b64decode(encoded_header)), json.loads(_b64decode(encoded_claims))
            signature = _b64decode(encoded_signature)
        except ValueError as exc:  # also binascii.Error, JSONDecodeError and UnicodeDecodeError
            raise _GrantError("invalid_grant", "Invalid JWT: the assertion is not a signed JWT.") from exc
        if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "RS256":
            raise _GrantError("invalid_grant", "Invalid JWT: only RS256-signed JWTs are accepted.")
        try:
            signed = f"{encoded_header}.{encoded_claims}".encode()
            self._key.public_key().verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as exc:
            raise _GrantError("invalid_grant", "Invalid JWT Signature.") from exc
        if claims.get("iss") != CLIENT_EMAIL:
            raise _GrantError("invalid_grant", "Invalid grant: account not found")
        if claims.get("aud") not in {self.token_uri, GOOGLE_TOKEN_URI}:
            raise _GrantError(
                "invalid_grant", f"Invalid JWT: Failed audience check. The right audience is {self.token_uri}"
            )
        issued, expires, now = claims.get("iat"), claims.get("exp"), time.time()
        if (
            not isinstance(issued, int)
            or not isinstance(expires, int)
            or not issued - 300 < now < expires <= issued + 3600
        ):
            raise _GrantError(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
                "Check your iat and exp values in the JWT claim.",
            )
        if not claims.get("scope"):
            raise _GrantError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        token = "ya29." + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_lifetime
            self._tokens_issued += 1
        return token

    # --- the API ------------------------------------------------------------------------------------------------------

    def _list_files(self, query: Mapping[str, str]) -> dict[str, object]:
        text = query.get("q", "").strip()
        predicate: Predicate = _QueryParser(text).parse() if text else lambda _item: True
        page_size = _int_param(query, "pageSize", 100)
        top = _parse_fields(query["fields"]) if "fields" in query else None
        if top is not None and (unknown := sorted(set(top) - _LIST_FIELDS - {"*"})):
            raise _DriveError(400, "invalidParameter", f"Invalid field selection {unknown[0]}", "fields")
        selection = _DEFAULT_FILE_FIELDS if top is None else None if "*" in top else top.get("files")
        _check_file_fields(selection)
        after = self._decode_page_token(query.get("pageToken"), text)
        with self._lock:
            matches = sorted(
                (item for item in self._items.values() if item.id > after and predicate(item)), key=attrgetter("id")
            )
            page = [item.metadata() for item in matches[:page_size]]
        answer: dict[str, object] = {"kind": "drive#fileList", "incompleteSearch": False}
        answer["files"] = [_project(meta, selection) for meta in page]
        if len(matches) > page_size:  # opaque to clients: the last id sent and the query it belongs to
            answer["nextPageToken"] = base64.urlsafe_b64encode(json.dumps([page[-1]["id"], text]).encode()).decode()
        return answer if top is None or "*" in top else {key: answer[key] for key in top if key in answer}

    @staticmethod
    def _decode_page_token(token: str | None, text: str) -> str:
        if token is None:
            return ""
        try:
            after, query = json.loads(_b64decode(token))
        except ValueError as exc:
            raise _DriveError(400, "invalid", "Invalid Value", "pageToken") from exc
        if not isinstance(after, str) or query != text:
            raise _DriveError(400, "invalid", "Invalid Value", "pageToken")
        return after

    def _get_file(self, file_id: str, query: Mapping[str, str]) -> dict[str, object]:
        selection = _parse_fields(query["fields"]) if "fields" in query else _DEFAULT_FILE_FIELDS
        _check_file_fields(selection)
        with self._lock:
            item = self._items.get(file_id)
            meta = item.metadata() if item else None
        if meta is None:
            raise _not_found(file_id)
        return _project(meta, selection)

    def _media_source(self, file_id: str) -> tuple[Path, int, str]:
        with self._lock:
            item = self._items.get(file_id)
            found = (item.source, item.size, item.mime_type) if item else None
        if found is None:
            raise _not_found(file_id)
        source, size, mime_type = found
        if source is None:
            message = "Only files with binary content can be downloaded. Use Export with Docs Editors files."
            raise _DriveError(403, "fileNotDownloadable", message, "alt")
        return source, size, mime_type

    def _start_page_token(self) -> dict[str, object]:
        with self._lock:
            return {"kind": "drive#startPageToken", "startPageToken": str(self._seq + 1)}

    def _list_changes(self, query: Mapping[str, str]) -> dict[str, object]:
        token = query.get("pageToken")
        if token is None:
            raise _DriveError(400, "required", "Required parameter: pageToken", "pageToken")
        if not token.isdigit():
            raise _DriveError(400, "invalid", "Invalid Value", "pageToken")
        page_size = _int_param(query, "pageSize", 100)
        include_removed = query.get("includeRemoved", "true").lower() != "false"
        with self._lock:
            latest: dict[str, _Change] = {}  # file id -> its last change, in the order of those last changes
            for change in self._changes:
                if change.seq >= int(token):
                    latest.pop(change.file_id, None)
                    latest[change.file_id] = change
            entries: list[tuple[int, dict[str, object]]] = []
            for change in latest.values():
                item = self._items.get(change.file_id)
                if item is not None or include_removed:
                    entry: dict[str, object] = {"kind": "drive#change", "changeType": "file"}
                    entry |= {"time": _rfc3339(change.time), "removed": item is None, "fileId": change.file_id}
                    entries.append((change.seq, entry | ({"file": item.metadata()} if item else {})))
            next_start = self._seq + 1
        answer: dict[str, object] = {"kind": "drive#changeList", "changes": [entry for _, entry in entries[:page_size]]}
        if len(entries) > page_size:
            answer["nextPageToken"] = str(entries[page_size - 1][0] + 1)
        else:
            answer["newStartPageToken"] = str(next_start)
        return answer


def _mtime(path: Path) -> datetime:
    moment = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _not_found(file_id: str) -> _DriveError:
    return _DriveError(404, "notFound", f"File not found: {file_id}.", "fileId")


# --- HTTP -------------------------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # 20+ clients connecting at once must not overflow the listen backlog

    def __init__(self, address: tuple[str, int], emulator: DriveEmulator) -> None:
        self.emulator = emulator
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def close_connections(self) -> None:
        with self.connections_lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):  # already gone
                    connection.shutdown(socket.SHUT_RDWR)

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: tuple[str, int]
    ) -> None:
        error = sys.exc_info()[1]
        stopping = self.emulator._stopping.is_set()
        if isinstance(error, ConnectionError | TimeoutError) or (stopping and isinstance(error, OSError | ValueError)):
            return  # the client went away, or we cut it off in stop()
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries a Content-Length
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server
    _path: str
    _query: dict[str, str]

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the overridden signature
        """Silence the per-request log line; tests read :attr:`DriveEmulator.requests` instead."""

    def do_GET(self) -> None:
        self._read_request()
        try:
            self._answer_api()
        except _DriveError as error:
            self._send_json(error.status, error.body(), error.headers)

    def do_POST(self) -> None:
        form = dict(parse_qsl(self._read_request().decode("utf-8", "replace")))
        if self._path != "/token":
            self._send_json(404, _DriveError(404, "notFound", "Not Found").body())
            return
        try:
            token = self.server.emulator._grant(form)
        except _GrantError as error:
            self._send_json(400, {"error": error.error, "error_description": error.description})
            return
        lifetime = self.server.emulator.token_lifetime
        self._send_json(200, {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"})

    def _read_request(self) -> bytes:
        url = urlsplit(self.path)
        self._path, self._query = url.path, dict(parse_qsl(url.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _answer_api(self) -> None:
        emulator = self.server.emulator
        if not self._path.startswith(API_PREFIX + "/"):
            raise _DriveError(404, "notFound", "Not Found")
        if not emulator._is_authorized(self.headers.get("Authorization")):
            challenge = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}
            raise _DriveError(401, "authError", _AUTH_MESSAGE, "Authorization", challenge)
        route = self._path.removeprefix(API_PREFIX)
        file_id = unquote(route.removeprefix("/files/")) if route.startswith("/files/") else None
        is_media = self._query.get("alt") == "media"
        stall = emulator._take(emulator._stalls, file_id, is_media)
        if stall is not None and not (is_media and stall.after_bytes > 0):
            emulator._stopping.wait(stall.seconds)
            stall = None
        if status := emulator._fault(file_id, is_media):
            reason, message = _ERRORS.get(status) or (
                "backendError" if status >= 500 else "invalid",
                HTTPStatus(status).phrase,
            )
            raise _DriveError(status, reason, message, headers={"Retry-After": "1"} if status == 429 else None)
        if file_id and "/" not in file_id:
            if is_media:
                self._send_media(file_id, stall)
                return
            if self._query.get("alt", "json") != "json":
                raise _DriveError(400, "invalid", f"Invalid value '{self._query['alt']}' for alt", "alt")
            self._send_json(200, emulator._get_file(file_id, self._query))
        elif route in {"/files", "/changes", "/changes/startPageToken"}:
            answers = {"/files": emulator._list_files, "/changes": emulator._list_changes}
            self._send_json(200, answers[route](self._query) if route in answers else emulator._start_page_token())
        else:
            raise _DriveError(404, "notFound", "Not Found")

    def _send_media(self, file_id: str, stall: _Rule | None) -> None:
        source, size, mime_type = self.server.emulator._media_source(file_id)
        span = _parse_range(self.headers.get("Range"), size)
        start, end = span or (0, size - 1)
        headers = {"Content-Type": mime_type, "Accept-Ranges": "bytes"}
        if span:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        with source.open("rb") as handle:  # opened before the headers: a vanished file is still a clean error
            handle.seek(start)
            self._start(206 if span else 200, headers, end - start + 1)
            sent, length = 0, end - start + 1
            while sent < length:
                chunk = handle.read(min(_CHUNK, length - sent))
                if not chunk:  # the file shrank on disk under us: the promised length cannot be kept
                    self.close_connection = True
                    return
                if stall is not None and sent < stall.after_bytes <= sent + len(chunk):
                    cut = stall.after_bytes - sent
                    self.wfile.write(chunk[:cut])
                    self.server.emulator._stopping.wait(stall.seconds)
                    chunk = chunk[cut:]
                    sent += cut
                self.wfile.write(chunk)
                sent += len(chunk)

    def _send_json(self, status: int, body: Mapping[str, object], headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self._start(status, {"Content-Type": "application/json; charset=UTF-8", **(headers or {})}, len(data))
        self.wfile.write(data)

    def _start(self, status: int, headers: Mapping[str, str], length: int) -> None:
        """Log the answer (before the client can see it), then send the status line and headers."""
        entry = LoggedRequest(self.command, self._path, self._query, self.headers.get("Range"), status)
        self.server.emulator._log(entry)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve ROOT until SIGTERM or SIGINT, after printing one JSON line with the URLs and the credentials path."""
    parser = argparse.ArgumentParser(prog="python -m tests.drive_emulator", description=main.__doc__)
    parser.add_argument("root", type=Path, help="the folder to serve as a Drive folder")
    parser.add_argument("--port", type=int, default=0, help="the port to listen on (default: a free one)")
    parser.add_argument("--credentials", type=Path, help="where to write the service-account JSON")
    args = parser.parse_args(argv)
    stopped = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda _number, _frame: stopped.set())
    with DriveEmulator(Path(args.root), port=int(args.port)) as emulator:
        target = Path(args.credentials) if args.credentials else emulator._blobs / "credentials.json"
        credentials = emulator.write_credentials(target)
        summary = {"url": emulator.url, "api_url": emulator.api_url, "token_uri": emulator.token_uri}
        summary |= {"folder_id": emulator.folder_id, "credentials": str(credentials)}
        print(json.dumps(summary), flush=True)
        while not stopped.wait(0.2):
            pass


if __name__ == "__main__":
    main()
