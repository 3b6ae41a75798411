"""Book files and covers read from Google Drive (``GOOGLE_DRIVE_CREDENTIALS``, ``GOOGLE_DRIVE_FOLDER_ID``).

The Drive folder mirrors the library folder: ``Author/Title (12)/Title - Author.epub`` inside it is
the file Calibre lists at that path. ``metadata.db`` is the local library folder's, or, when none
is given, a copy of the Drive folder's kept in the data dir (``mirror_metadata``).

**The path map.** Drive knows files by id, Calibre by path. The map from one to the other is made
once by listing every file the service account can see (``files.list``, 1,000 a page: a 100,000-book
library is a few hundred requests, where walking folder by folder would be 100,000) and keeping
those under the folder; then kept fresh from the changes feed (``changes.list``), read every
``GOOGLE_DRIVE_POLL_SECONDS``, after each Calibre write and whenever a book's file is asked for and missing. The page
token is taken before the listing, so nothing that changes meanwhile is lost. The map (with its
token) is kept in Redis when ``REDIS_URL`` is set, else in the data dir, so a restart or another
instance starts from it and only reads the changes since.

The bytes themselves come through ``opds_server.storage.drive_api``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import io
import logging
import os
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import msgspec

from opds_server.storage.drive_api import FILE_FIELDS, FOLDER_TYPE, READ_AHEAD, DriveApi, DriveChunks, DriveReader
from opds_server.storage.files import StorageError, StoredFile, is_safe_relative

log = logging.getLogger(__name__)

POLL_SECONDS = 30.0
MISS_POLL_SECONDS = 5.0
"""A missing file, or Calibre's write, makes the changes feed be read at once, but not more often than this."""
METADATA = "metadata.db"
FIRST_LOAD_WAIT = 20.0
"""For this long after start-up, a lookup waits for the first map (read from the cache in a second;
a first listing of a large library takes minutes): past it, lookups answer at once, books appearing
as the map arrives, so a health check or a feed never hangs on Drive."""


class DriveNode(msgspec.Struct, frozen=True, array_like=True):
    """One file or folder of the Drive, as the map keeps it (arrays: a 100,000-book map stays small)."""

    id: str
    name: str
    parent: str
    is_folder: bool
    size: int = 0
    mtime_ns: int = 0


class DriveMap(msgspec.Struct, kw_only=True):
    """What is kept between runs: every node under (and beside) the folder, and the changes token."""

    folder_id: str
    token: str
    generation: str
    nodes: list[DriveNode]


class MapCache(Protocol):
    def load(self) -> bytes | None: ...

    def save(self, data: bytes) -> None: ...


class FileMapCache:
    """The map in the data dir (one instance, or instances sharing a disk)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except OSError:
            return None

    def save(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".part")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        Path(temporary).replace(self.path)


class RedisMapCache:
    """The map in Redis, shared by every instance."""

    def __init__(self, url: str, key: str) -> None:
        import redis  # noqa: PLC0415  # only with REDIS_URL

        self.client = redis.Redis.from_url(url, socket_timeout=10)
        self.key = key

    def load(self) -> bytes | None:
        try:
            found = self.client.get(self.key)
        except Exception as exc:  # noqa: BLE001  # redis-py raises many kinds; the map can be rebuilt
            log.warning("Google Drive: the path map could not be read from Redis: %s", exc)
            return None
        return found if isinstance(found, bytes) else None

    def save(self, data: bytes) -> None:
        try:
            self.client.set(self.key, data)
        except Exception as exc:  # noqa: BLE001
            log.warning("Google Drive: the path map could not be saved to Redis: %s", exc)


def _parse_time(value: object) -> int:
    """Drive's RFC 3339 ``modifiedTime`` in nanoseconds since the epoch."""
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return 0
    return int(moment.timestamp() * 1_000_000) * 1000


def _node(item: Mapping[str, Any]) -> DriveNode | None:
    parents = item.get("parents") or []
    if not parents or item.get("trashed"):
        return None
    is_folder = item.get("mimeType") == FOLDER_TYPE
    return DriveNode(
        id=str(item["id"]),
        name=str(item.get("name", "")),
        parent=str(parents[0]),
        is_folder=is_folder,
        size=0 if is_folder else int(item.get("size") or 0),
        mtime_ns=_parse_time(item.get("modifiedTime")),
    )


def find_metadata(api: DriveApi, folder_id: str) -> DriveNode | None:
    """The folder's ``metadata.db``, asked of Drive directly (one request: no map needed).

    Raises:
        StorageError: Drive did not answer.
    """
    found = api.request(
        "files",
        {
            "q": f"'{folder_id}' in parents and name = '{METADATA}' and trashed = false",
            "fields": f"files({FILE_FIELDS})",
            "supportsAllDrives": "true",
            "includeItemsFromAllDrives": "true",
        },
    ).json()
    nodes = [node for item in found.get("files", []) if (node := _node(item)) is not None]
    return max(nodes, key=lambda node: node.mtime_ns) if nodes else None


def mirror_metadata(api: DriveApi, node: DriveNode, target: Path) -> bool:
    """Make ``target`` a copy of this version of Drive's ``metadata.db``; whether it was fetched.

    Written beside the target and renamed over it, so a reader sees the old file or the new one,
    never half of one; the version fetched is kept in a file beside it (``.metadata.db.drive``),
    and a lock keeps two worker processes from fetching the same version at once.

    Raises:
        StorageError: Drive did not give the file.
    """
    version = f"{node.id}:{node.mtime_ns}:{node.size}\n"
    marker = target.with_name(f".{target.name}.drive")
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file() and marker.is_file() and marker.read_text(encoding="utf-8") == version:
            return False
        started = time.perf_counter()
        stored = StoredFile(relative=METADATA, size=node.size, mtime_ns=node.mtime_ns, remote_id=node.id)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out, DriveChunks(api, stored, 0, node.size) as chunks:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            Path(temporary).replace(target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        marker.write_text(version, encoding="utf-8")
    log.info("Google Drive: metadata.db fetched (%d bytes) in %.1f s", node.size, time.perf_counter() - started)
    return True


class DriveFiles:
    """The library's files in a Google Drive folder (``LibraryFiles``)."""

    def __init__(
        self,
        api: DriveApi,
        folder_id: str,
        cache: MapCache,
        data_dir: Path,
        *,
        poll_seconds: float = POLL_SECONDS,
        mirror: Path | None = None,
    ) -> None:
        self.api = api
        self.folder_id = folder_id
        self.poll_seconds = poll_seconds
        self.mirror = mirror
        """Where to keep a copy of the folder's ``metadata.db`` (``mirror_metadata``), if anywhere."""
        self.cache = cache
        self.copies = data_dir / "drive" / "copies"
        self._lock = threading.Lock()
        self._map: DriveMap | None = None
        self._nodes: dict[str, DriveNode] = {}
        self._paths: dict[str, DriveNode] = {}
        self._folded: dict[str, DriveNode] = {}
        self._loaded = threading.Event()
        self._tried = threading.Event()
        """Set once the first load has succeeded or failed: lookups stop waiting for it."""
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._last_poll = 0.0
        self._thread: threading.Thread | None = None
        self.load_error: str | None = None
        self._wait_until = 0.0
        self.on_change: Callable[[], None] | None = None
        """Called (on the map's thread) after a poll found files under the folder changed."""

    # The map

    @property
    def generation(self) -> str:
        current = self._map
        return current.generation if current is not None else "drive:loading"

    def start(self) -> None:
        """Load the map (from the cache, else by listing the Drive) and keep it fresh, in a thread."""
        self._wait_until = time.monotonic() + FIRST_LOAD_WAIT
        self._thread = threading.Thread(target=self._run, name="drive-map", daemon=True)
        self._thread.start()

    @property
    def is_loaded(self) -> bool:
        """Whether the path map is there (read from the cache or listed)."""
        return self._loaded.is_set()

    def _run(self) -> None:
        while not self._closing.is_set() and not self._loaded.is_set():
            try:
                self.load()
                self._mirror()
            except StorageError as exc:
                self.load_error = str(exc)
                self._tried.set()  # Drive is down: lookups stop waiting for it
                log.warning("Google Drive: the folder could not be listed (%s); trying again in 30 s", exc)
                self._closing.wait(self.poll_seconds)
        while not self._closing.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            early = self._last_poll + min(MISS_POLL_SECONDS, self.poll_seconds) - time.monotonic()
            if early > 0:  # asked again right after a poll: once more, a little later
                self._closing.wait(early)
            if self._closing.is_set():
                return
            try:
                touched = self.poll()
                if touched:
                    self._mirror()
            except StorageError as exc:
                log.warning("Google Drive: the changes feed could not be read: %s", exc)
                continue
            if touched and self.on_change is not None:
                self.on_change()

    def load(self) -> None:
        """The map from the cache when it is this folder's, else from a full listing.

        Raises:
            StorageError: Drive could not be listed.
        """
        cached = self.cache.load()
        if cached is not None:
            try:
                found = msgspec.msgpack.decode(cached, type=DriveMap)
            except msgspec.DecodeError:
                found = None
            if found is not None and found.folder_id == self.folder_id:
                self._install(found)
                log.info("Google Drive: path map of %d files read from the cache", len(self._paths))
                self.poll()
                return
        started = time.perf_counter()
        token = self.api.start_token()  # before the listing: a change made meanwhile is read next poll
        nodes = [node for item in self.api.list_all() if (node := _node(item)) is not None]
        self._install(DriveMap(folder_id=self.folder_id, token=token, generation=f"drive:{token}", nodes=nodes))
        self._save()
        log.info(
            "Google Drive: %d files under folder %s mapped in %.1f s",
            len(self._paths),
            self.folder_id,
            time.perf_counter() - started,
        )

    def poll(self) -> bool:
        """Apply the changes since the last poll; whether any touched the library folder.

        Raises:
            StorageError: Drive did not answer.
        """
        current = self._map
        if current is None:
            return False
        self._last_poll = time.monotonic()
        changes, token = self.api.changes(current.token)
        if not changes and token == current.token:
            return False
        nodes = dict(self._nodes)
        before = self._paths
        for change in changes:
            file_id = str(change.get("fileId", ""))
            node = None if change.get("removed") else _node(change.get("file") or {})
            if node is None:
                nodes.pop(file_id, None)
            else:
                nodes[node.id] = node
        candidate = DriveMap(
            folder_id=self.folder_id, token=token, generation=current.generation, nodes=list(nodes.values())
        )
        paths = _paths(nodes, self.folder_id)
        touched = paths != before
        if touched:
            candidate.generation = f"drive:{token}"
            log.info("Google Drive: %d changes applied, %d files under the folder", len(changes), len(paths))
        self._install(candidate, paths=paths)
        self._save()
        return touched

    def _install(self, found: DriveMap, *, paths: dict[str, DriveNode] | None = None) -> None:
        nodes = {node.id: node for node in found.nodes}
        paths = paths if paths is not None else _paths(nodes, self.folder_id)
        folded = {unicodedata.normalize("NFC", path): node for path, node in paths.items()}
        with self._lock:
            self._nodes, self._paths, self._folded, self._map = nodes, paths, folded, found
        self._loaded.set()
        self._tried.set()

    def _save(self) -> None:
        current = self._map
        if current is not None:
            self.cache.save(msgspec.msgpack.encode(current))

    def _mirror(self) -> None:
        """Bring the copy of ``metadata.db`` up to date, when there is one to keep.

        Raises:
            StorageError: Drive did not give the file.
        """
        if self.mirror is None:
            return
        node = self._paths.get(METADATA)
        if node is None:
            log.warning("Google Drive: folder %s has no %s; the catalogue stays as it was", self.folder_id, METADATA)
            return
        mirror_metadata(self.api, node, self.mirror)

    # LibraryFiles

    def stat(self, relative: str) -> StoredFile | None:
        if not is_safe_relative(relative):
            return None
        if not self._loaded.is_set():
            self._tried.wait(max(0.0, self._wait_until - time.monotonic()))
        node = self._paths.get(relative) or self._folded.get(unicodedata.normalize("NFC", relative))
        if node is None:
            return None
        return StoredFile(relative=relative, size=node.size, mtime_ns=node.mtime_ns, remote_id=node.id)

    def read_chunks(self, stored: StoredFile, start: int, length: int) -> AbstractContextManager[Iterator[bytes]]:
        return DriveChunks(self.api, stored, start, length)

    def open(self, stored: StoredFile) -> BinaryIO:
        return io.BufferedReader(DriveReader(self.api, stored), buffer_size=READ_AHEAD)

    def local_copy(self, stored: StoredFile, *, keep: bool) -> Path:
        suffix = Path(stored.relative).suffix
        kept = self.copies / f"{stored.remote_id}-{stored.version}{suffix}"
        if keep and kept.is_file():
            return kept
        self.copies.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.copies, prefix=".", suffix=suffix)
        try:
            with os.fdopen(handle, "wb") as out, self.read_chunks(stored, 0, stored.size) as chunks:
                for chunk in chunks:
                    out.write(chunk)
            if not keep:
                return Path(temporary)
            for older in self.copies.glob(f"{stored.remote_id}-*"):
                older.unlink(missing_ok=True)
            Path(temporary).replace(kept)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return kept

    def request_refresh(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.api.close()


def _paths(nodes: Mapping[str, DriveNode], root: str) -> dict[str, DriveNode]:
    """Every file under the folder ``root`` by its path there; of two with one path, the newest."""
    folders: dict[str, str | None] = {root: ""}

    def folder_path(folder_id: str) -> str | None:
        trail: list[str] = []
        current = folder_id
        while current not in folders:
            node = nodes.get(current)
            if node is None or not node.is_folder or len(trail) > 64:
                for seen in [folder_id, *trail]:
                    folders.setdefault(seen, None)
                return None
            trail.append(current)
            current = node.parent
        base = folders[current]
        for folder in reversed(trail):
            base = None if base is None else f"{base}{nodes[folder].name}/"
            folders[folder] = base
        return folders[folder_id]

    paths: dict[str, DriveNode] = {}
    for node in nodes.values():
        if node.is_folder:
            continue
        parent = folder_path(node.parent)
        if parent is None:
            continue
        path = parent + node.name
        if path not in paths or paths[path].mtime_ns < node.mtime_ns:
            paths[path] = node
    return paths
