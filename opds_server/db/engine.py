"""The database engine and its migrations.

SQLite (the default, ``opds.db`` in the data dir) runs in WAL mode with foreign keys on and a busy
timeout; Postgres comes from ``DATABASE_URL`` through psycopg. ``migrate`` brings the schema up to
date under a lock (a Postgres advisory lock, or a lock file beside the SQLite database), so several
workers starting together never race each other.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from opds_server.waiting import wait_until_answers

log = logging.getLogger(__name__)

STARTUP_WAIT_SECONDS = 30.0
"""How long start-up waits for the user database (Postgres starting in the container beside us)."""

_MIGRATION_LOCK = 7_061_732_115  # pg_advisory_lock key: "opds" migrations
DATABASE_DOWN: tuple[type[SQLAlchemyError], ...] = (OperationalError, InterfaceError, PoolTimeoutError)
"""What the database raises when it cannot answer (down, restarting, unreachable, SQLite locked past
its timeout), as opposed to a bug: a 503 with Retry-After, never a 500."""
CONNECT_TIMEOUT_SECONDS = 3
"""How long a connection attempt to a database server may take: a request waits no longer than this
to learn that the server is down."""

HEAD_REVISION = "0005"
"""The newest migration (tests check it is alembic's head). A database already there is not
migrated, so a worker never imports alembic (11 MB of resident memory per worker)."""


class DatabaseError(Exception):
    """The user database cannot be reached or brought up to date."""


def database_url(configured: str | None, data_dir: Path) -> str:
    """``DATABASE_URL`` as given (``postgresql://`` means psycopg 3), or the SQLite file in the data dir."""
    if not configured:
        return f"sqlite:///{data_dir / 'opds.db'}"
    url = make_url(configured)
    if url.drivername in {"postgresql", "postgres"}:
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA busy_timeout = 5000")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get their folder created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 5})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # pre-ping: a connection the server dropped (a restart) is replaced, not handed to a request.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        pool_timeout=10,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Any]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
            try:
                yield connection
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK})
                connection.commit()
        return
    database = engine.url.database or ":memory:"
    lock_path = Path(f"{database}.migrate.lock") if database != ":memory:" else None
    if lock_path is None:
        with engine.connect() as connection:
            yield connection
        return
    with lock_path.open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        with engine.connect() as connection:
            yield connection


def wait_for(
    engine: Engine, *, seconds: float = STARTUP_WAIT_SECONDS, clock: Callable[[], float] = time.monotonic
) -> None:
    """Wait until the database answers (a container starting beside it), saying so, at most ``seconds``.

    Raises:
        DatabaseError: it did not answer in time; the message names it (password hidden) and why.
    """
    where = engine.url.render_as_string(hide_password=True)

    def ask() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    exc = wait_until_answers(
        ask, (SQLAlchemyError,), what=f"the user database at {where}", seconds=seconds, clock=clock
    )
    if exc is not None:
        reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["no answer"])[0]
        raise DatabaseError(f"the user database at {where} did not answer in {seconds:.0f} s: {reason}") from exc


def migrate(engine: Engine) -> None:
    """Bring the schema up to the newest migration.

    Raises:
        DatabaseError: the database is unreachable or a migration failed; the message says which.
    """
    if current_revision(engine) == HEAD_REVISION:
        return
    from alembic import command  # noqa: PLC0415 - only when there is something to migrate
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", str(files("opds_server.db") / "migrations"))
    try:
        with _migration_lock(engine) as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()
    except SQLAlchemyError as exc:
        where = engine.url.render_as_string(hide_password=True)
        raise DatabaseError(f"the user database at {where} cannot be brought up to date: {exc}") from exc


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at; ``None`` for a new or unreachable database (``migrate``
    then says what is wrong)."""
    try:
        with engine.connect() as connection:
            row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
    except SQLAlchemyError:
        return None
    return str(row[0]) if row else None
