"""Settings: one frozen Struct, decoded from the environment once at start-up.

Nothing else reads ``os.environ``. A bad value stops start-up with the variable's name, the value
received and what is accepted.
"""

from __future__ import annotations

import ast
import itertools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import msgspec

DEMO_FOLDER = "demo-library"
DRIVE_FOLDER = "drive-library"
"""Where, with Google Drive and no library folder given, the Drive folder's metadata.db is kept."""


class SettingsError(ValueError):
    """A setting has a value we cannot use."""


def default_data_dir() -> Path:
    """The per-user data folder: ``$XDG_DATA_HOME/opds-server`` or ``~/.local/share/opds-server``."""
    xdg = os.environ.get("XDG_DATA_HOME")
    root = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return root / "opds-server"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the server is told from outside."""

    library: Path | None = None
    """Folder holding Calibre's `metadata.db`. Unset: `--library`; with Google Drive, a copy of the
    Drive folder's `metadata.db` kept in the data dir; then `~/Calibre Library` if it exists, else a
    demo library built in the data dir."""

    data_dir: Path = msgspec.field(default_factory=default_data_dir)
    """Where thumbnails, drawn covers, the demo library (and later the user DB and the secret) live.
    Default: `$XDG_DATA_HOME/opds-server`, else `~/.local/share/opds-server`."""

    base_url: str | None = None
    """Public URL prefix, e.g. `https://books.example.org/calibre`, for links behind a reverse
    proxy. Unset: taken from each request's own scheme, host and port."""

    page_size: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50
    """Entries per page of a feed (1-500); a client may ask for fewer with `?limit=`."""

    group_threshold: Annotated[int, msgspec.Meta(ge=1)] = 100
    """A list of titles, authors, series or publishers longer than this is first offered by initial letter."""

    library_name: str = "Calibre Library"
    """The catalogue's title, as readers show it."""

    thumbnail_width: Annotated[int, msgspec.Meta(ge=32, le=2000)] = 300
    """Width in pixels of the thumbnails made from covers (32-2000)."""

    secret_key: Annotated[str, msgspec.Meta(min_length=32)] | None = None
    """Signs tokens and keys credential hashes; at least 32 characters. Unset: generated once and kept
    in the data dir as `secret.key`. Every instance behind one load balancer needs the same."""

    database_url: str | None = None
    """The user database, e.g. `postgresql+psycopg://user@127.0.0.1:5432/opds`. Unset: SQLite,
    `opds.db` in the data dir."""

    redis_url: str | None = None
    """Redis for the credential cache, rate limits and the credential epoch shared by all instances,
    e.g. `redis://127.0.0.1:6379/0`. Unset: kept in each process."""

    redis_prefix: str = "opds:"
    """Prefix of every Redis key, so several deployments can share one Redis."""

    kobo_page_size: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100
    """Books per page of a Kobo's library sync (1-500); a page also stops at 200 KB of JSON and at
    8 s of work, well inside what a Kobo waits for."""

    kobo_kepub: bool = True
    """Send Kobos a KEPUB made from each EPUB (Kobo keeps reading positions, statistics and
    highlights only for KEPUBs); `false` sends the EPUB as it is."""

    kobo_store_proxy: bool = False
    """Forward what is not ours to the Kobo store (store books, purchases, wishlists) for readers who
    also buy from Kobo; off, every Kobo call is answered by this server alone."""

    kobo_store_url: str = "https://storeapi.kobo.com"
    """The Kobo store's API, when `OPDS_KOBO_STORE_PROXY` is on."""

    kosync_registration: bool = False
    """Let KOReader's sync plugin register new users (`POST /kosync/users/create`, five per address
    an hour); off, KOReader logs in with an existing user's password or app password."""

    anonymous_browsing: bool = False
    """Serve the catalogue without a login even when users exist; personal feeds and the API still
    need one. With no user at all, the catalogue is open until the first one is added."""

    cors_origins: tuple[str, ...] = ()
    """Web origins allowed to call the server from a browser script (CORS), comma-separated, e.g.
    `https://reader.example.org`. Unset: none (e-readers and apps need no CORS)."""

    s3_bucket: str | None = None
    """S3 bucket for covers and thumbnails, served as presigned redirects (`opds-server covers
    push` uploads them). Unset: covers are served from disk."""

    s3_prefix: str = ""
    """Key prefix of every object in `S3_BUCKET`, e.g. `opds/`; several libraries can share a bucket."""

    s3_endpoint_url: str | None = None
    """An S3-compatible endpoint (MinIO, R2, a local test server). Unset: AWS for `S3_REGION`."""

    s3_region: str | None = None
    """The bucket's region, e.g. `eu-west-1`. Unset: boto3's default chain."""

    aws_access_key_id: str | None = None
    """Access key for S3. Unset: boto3's default chain (instance role, `~/.aws`)."""

    aws_secret_access_key: str | None = None
    """Secret key for S3, with `AWS_ACCESS_KEY_ID`."""

    google_drive_credentials: Path | None = None
    """Service-account JSON file allowed to read `GOOGLE_DRIVE_FOLDER_ID`. Set both and book files
    come from Google Drive; `metadata.db` stays in the library folder."""

    google_drive_folder_id: str | None = None
    """The Drive folder that mirrors the library folder (`Author/Title (id)/file.epub` inside it)."""

    google_drive_api_url: str = "https://www.googleapis.com/drive/v3"
    """Base URL of the Drive v3 API (a local emulator in tests); tokens come from the credentials
    file's `token_uri`."""

    google_drive_poll_seconds: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 30
    """How often Drive's changes feed is read (1-3600 s); also read after each Calibre write and
    when a book's file is missing."""


_ENV_NAMES: Mapping[str, str] = {
    "OPDS_LIBRARY": "library",
    "OPDS_DATA_DIR": "data_dir",
    "OPDS_BASE_URL": "base_url",
    "OPDS_PAGE_SIZE": "page_size",
    "OPDS_GROUP_THRESHOLD": "group_threshold",
    "OPDS_LIBRARY_NAME": "library_name",
    "OPDS_THUMBNAIL_WIDTH": "thumbnail_width",
    "OPDS_SECRET_KEY": "secret_key",
    "DATABASE_URL": "database_url",
    "REDIS_URL": "redis_url",
    "OPDS_REDIS_PREFIX": "redis_prefix",
    "OPDS_ANONYMOUS_BROWSING": "anonymous_browsing",
    "OPDS_KOBO_PAGE_SIZE": "kobo_page_size",
    "OPDS_KOBO_KEPUB": "kobo_kepub",
    "OPDS_KOBO_STORE_PROXY": "kobo_store_proxy",
    "OPDS_KOBO_STORE_URL": "kobo_store_url",
    "OPDS_KOSYNC_REGISTRATION": "kosync_registration",
    "OPDS_CORS_ORIGINS": "cors_origins",
    "S3_BUCKET": "s3_bucket",
    "S3_PREFIX": "s3_prefix",
    "S3_ENDPOINT_URL": "s3_endpoint_url",
    "S3_REGION": "s3_region",
    "AWS_ACCESS_KEY_ID": "aws_access_key_id",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
    "GOOGLE_DRIVE_CREDENTIALS": "google_drive_credentials",
    "GOOGLE_DRIVE_FOLDER_ID": "google_drive_folder_id",
    "GOOGLE_DRIVE_API_URL": "google_drive_api_url",
    "GOOGLE_DRIVE_POLL_SECONDS": "google_drive_poll_seconds",
}
_FIELD_TO_ENV = {field: env for env, field in _ENV_NAMES.items()}
_SECRET_FIELDS = {"secret_key", "aws_secret_access_key"}


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def settings_from_env(environ: Mapping[str, str], overrides: Mapping[str, object] | None = None) -> Settings:
    """Decode settings from environment variables (and a ``.env`` file in the working directory).

    Args:
        environ: the environment; variables win over the ``.env`` file.
        overrides: field values given on the command line; they win over both.

    Raises:
        SettingsError: a value does not fit; the message names the variable.
    """
    env_file = Path(environ.get("OPDS_ENV_FILE", ".env"))
    merged = {**(_read_env_file(env_file) if env_file.is_file() else {}), **environ}
    raw: dict[str, object] = {field: merged[env] for env, field in _ENV_NAMES.items() if merged.get(env)}
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if isinstance(raw.get("cors_origins"), str):
        raw["cors_origins"] = [o.strip().rstrip("/") for o in str(raw["cors_origins"]).split(",") if o.strip()]
    if isinstance(raw.get("base_url"), str):
        raw["base_url"] = str(raw["base_url"]).rstrip("/")
    try:
        settings = msgspec.convert(raw, Settings, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(exc, raw)) from exc
    _check_storage(settings)
    return settings


def _check_storage(settings: Settings) -> None:
    """Settings that only make sense together, and the Drive credentials file, checked at start-up."""
    drive = (settings.google_drive_credentials, settings.google_drive_folder_id)
    if any(drive) and not all(drive):
        given, missing = (
            ("GOOGLE_DRIVE_CREDENTIALS", "GOOGLE_DRIVE_FOLDER_ID")
            if drive[0]
            else ("GOOGLE_DRIVE_FOLDER_ID", "GOOGLE_DRIVE_CREDENTIALS")
        )
        raise SettingsError(f"{given} is set but {missing} is not: books come from Google Drive only with both")
    credentials = settings.google_drive_credentials
    if credentials is not None and not credentials.is_file():
        raise SettingsError(
            f"GOOGLE_DRIVE_CREDENTIALS={str(credentials)!r} is not accepted: no such file (a service-account JSON file)"
        )
    for name, value in (
        ("S3_ENDPOINT_URL", settings.s3_endpoint_url),
        ("GOOGLE_DRIVE_API_URL", settings.google_drive_api_url),
    ):
        if value is not None and not value.startswith(("http://", "https://")):
            raise SettingsError(f"{name}={value!r} is not accepted: an http:// or https:// URL is expected")
    if (settings.aws_access_key_id is None) != (settings.aws_secret_access_key is None):
        raise SettingsError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together: set both, or neither")


def settings_table() -> str:
    """The README's settings table, made from the field docstrings above (a test keeps them in step)."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    settings = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    defaults = {f.name: f.default for f in msgspec.structs.fields(Settings)}
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    body = settings.body
    for node, following in itertools.pairwise(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        if not (isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)):
            continue
        field = node.target.id
        default = defaults[field]
        shown = f"`{str(default).lower()}`" if isinstance(default, bool) else "see meaning"
        if isinstance(default, int | str) and not isinstance(default, bool):
            shown = f"`{default}`" if default != "" else "empty"
        meaning = " ".join(str(following.value.value).split())
        rows.append(f"| `{_FIELD_TO_ENV[field]}` | {shown} | {meaning} |")
    return "\n".join(rows) + "\n"


def _decode_path(kind: type, value: object) -> object:
    if kind is Path and isinstance(value, str | Path):
        return Path(value).expanduser()
    raise NotImplementedError


def _explain(exc: msgspec.ValidationError, raw: Mapping[str, object]) -> str:
    message = str(exc)
    for field, env in _FIELD_TO_ENV.items():
        if f"$.{field}" in message:
            shown = "(hidden)" if field in _SECRET_FIELDS else repr(raw.get(field))
            return f"{env}={shown} is not accepted: {message.split(' - at', maxsplit=1)[0]}"
    return message
