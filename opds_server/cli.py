"""The ``opds-server`` command line (see INTERFACE.md): ``serve``, ``demo-library``, ``covers push``.

Exit code 0 on success; otherwise a one-line message on stderr and a non-zero code.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from opds_server.account_commands import AccountCommandError, add_account_commands
from opds_server.config import DEMO_FOLDER, DRIVE_FOLDER, Settings, SettingsError, settings_from_env

EXIT_USAGE = 2
EXIT_FAILURE = 1
PUSH_WAIT_SECONDS = 600


class CommandError(Exception):
    """A command cannot do what it was asked; the message is for the user."""


def resolve_library(settings: Settings, home: Path) -> tuple[Path, bool]:
    """The library to serve and whether it is the demo: --library / OPDS_LIBRARY, then the copy of
    Google Drive's ``metadata.db`` when Drive is set, then ``~/Calibre Library`` when it exists, else
    the demo library in the data dir (built if missing)."""
    if settings.library is not None:
        return settings.library.expanduser(), False
    if settings.google_drive_folder_id is not None:
        return settings.data_dir / DRIVE_FOLDER, False
    personal = home / "Calibre Library"
    if (personal / "metadata.db").is_file():
        return personal, False
    return settings.data_dir / DEMO_FOLDER, True


def fetch_drive_library(settings: Settings, library: Path) -> None:
    """With Google Drive and no library folder given, fetch the Drive folder's ``metadata.db`` into
    the data dir (the server keeps it fresh from then on)."""
    if settings.library is not None or library != settings.data_dir / DRIVE_FOLDER:
        return
    assert settings.google_drive_credentials is not None
    assert settings.google_drive_folder_id is not None
    from opds_server.storage.drive import find_metadata, mirror_metadata  # noqa: PLC0415
    from opds_server.storage.drive_api import DriveApi  # noqa: PLC0415
    from opds_server.storage.files import StorageError  # noqa: PLC0415

    try:
        api = DriveApi(settings.google_drive_credentials, settings.google_drive_api_url)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    try:
        node = find_metadata(api, settings.google_drive_folder_id)
        if node is None:
            raise CommandError(
                f"Google Drive folder {settings.google_drive_folder_id} has no metadata.db: share the Calibre"
                " library's folder itself with the service account, or set --library to a local copy"
            )
        if mirror_metadata(api, node, library / "metadata.db"):
            print(f"metadata.db fetched from Google Drive into {library}", flush=True)
    except StorageError as exc:
        if not (library / "metadata.db").is_file():
            raise CommandError(f"metadata.db could not be fetched from Google Drive: {exc}") from exc
        print(f"Google Drive did not answer ({exc}); serving the copy of metadata.db fetched before", flush=True)
    finally:
        api.close()


def _serve(arguments: argparse.Namespace) -> None:
    settings = settings_from_env(os.environ, {"library": arguments.library})
    library, is_demo = resolve_library(settings, Path.home())
    if is_demo and not (library / "metadata.db").exists():
        from opds_server.calibre.demo import write_demo_library  # noqa: PLC0415 - only when needed

        write_demo_library(library)
        print(f"No Calibre library given and none at ~/Calibre Library: built a demo library in {library}")
    fetch_drive_library(settings, library)
    if not (library / "metadata.db").is_file():
        raise CommandError(f"library not found: {library} has no metadata.db (set --library or OPDS_LIBRARY)")
    os.environ["OPDS_LIBRARY"] = str(library)
    os.environ["OPDS_DATA_DIR"] = str(settings.data_dir)
    settings_from_env(os.environ)  # fail here, not in every worker
    # Workers are new processes: two malloc arenas instead of eight per core keep a worker's
    # resident memory close to what it uses (glibc reads this when the process starts).
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    # /metrics sums every worker's counters (prometheus_client's multiprocess mode); each run starts afresh.
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        metrics_dir = settings.data_dir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    from granian import Granian  # noqa: PLC0415 - keeps `demo-library` light
    from granian.constants import Interfaces  # noqa: PLC0415

    shown = "localhost" if arguments.host in {"127.0.0.1", "::1"} else arguments.host
    print(f"Serving {library} on http://{shown}:{arguments.port}/opds (OPDS 2.0: /opds/v2)", flush=True)
    Granian(
        "opds_server.app:create_app",
        address=arguments.host,
        port=arguments.port,
        interface=Interfaces.ASGI,
        workers=arguments.workers,
        factory=True,
        log_access=False,
    ).serve()


def _covers_push(arguments: argparse.Namespace) -> None:
    """Upload the covers and thumbnails that changed to S3 (INTERFACE.md: ``covers push``)."""
    settings = settings_from_env(os.environ, {"library": arguments.library})
    library, _is_demo = resolve_library(settings, Path.home())
    fetch_drive_library(settings, library)
    if not (library / "metadata.db").is_file():
        raise CommandError(f"library not found: {library} has no metadata.db (set --library or OPDS_LIBRARY)")
    if settings.s3_bucket is None:
        raise CommandError("no S3 bucket is configured: set S3_BUCKET (and S3_ENDPOINT_URL, S3_REGION, keys as needed)")
    from opds_server.errors import LibraryUnavailableError  # noqa: PLC0415 - the whole server, only here
    from opds_server.state import Services  # noqa: PLC0415
    from opds_server.storage.files import StorageError  # noqa: PLC0415
    from opds_server.storage.s3 import CoverBucketError  # noqa: PLC0415

    services = Services(msgspec.structs.replace(settings, library=library))
    try:
        if services.drive is not None:
            services.drive.load()
        services.library.snapshot()
        report = services.covers.push_alone()
        waited = 0
        while report is None and waited < PUSH_WAIT_SECONDS:
            if waited == 0:
                print("another push of these covers is running (a server, after a library change): waiting for it")
            time.sleep(1)
            waited += 1
            report = services.covers.push_alone()
        if report is None:
            raise CommandError(f"another push of these covers is still running after {PUSH_WAIT_SECONDS} s; try later")
    except (CoverBucketError, StorageError, LibraryUnavailableError) as exc:
        raise CommandError(str(exc)) from exc
    finally:
        services.covers.close()
        services.files.close()
        services.library.close()
        services.engine.dispose()
    print(
        f"{report.uploaded_books} books uploaded ({report.uploaded_objects} objects), {report.unchanged} unchanged,"
        f" {report.deleted_objects} old objects deleted, {len(report.failed)} failed, in {report.seconds:.1f} s"
    )
    for line in report.failed[:20]:
        print(f"  {line}", file=sys.stderr)
    if report.failed:
        raise CommandError(f"{len(report.failed)} covers could not be pushed (see above); the others were")


def _demo_library(arguments: argparse.Namespace) -> None:
    from opds_server.calibre.demo import write_demo_library  # noqa: PLC0415

    target = Path(arguments.path).expanduser()
    try:
        write_demo_library(target)
    except FileExistsError as exc:
        raise CommandError(f"{target} already holds a Calibre library; choose an empty folder") from exc
    print(f"Demo library written to {target}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opds-server", description="OPDS catalogue for a Calibre library")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a Calibre library")
    serve.add_argument("--library", help="folder holding metadata.db (default: $OPDS_LIBRARY, ~/Calibre Library, demo)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.set_defaults(run=_serve)
    demo = commands.add_parser("demo-library", help="write a small demo Calibre library to PATH")
    demo.add_argument("path")
    demo.set_defaults(run=_demo_library)
    covers = commands.add_parser("covers", help="covers in S3").add_subparsers(dest="covers_command", required=True)
    push = covers.add_parser("push", help="upload the covers and thumbnails that changed to the S3 bucket")
    push.add_argument("--library", help="folder holding metadata.db (default: $OPDS_LIBRARY, ~/Calibre Library)")
    push.set_defaults(run=_covers_push)
    add_account_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        arguments.run(arguments)
    except (CommandError, SettingsError, AccountCommandError) as exc:
        print(f"opds-server: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
