"""The migrations build exactly the schema the models describe, on SQLite and on Postgres."""

from __future__ import annotations

from importlib.resources import files

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from opds_server.db.engine import HEAD_REVISION, DatabaseError, current_revision, make_engine, migrate, wait_for
from opds_server.db.schema import Base


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_migrating_twice_changes_nothing(engine: Engine) -> None:
    before = sorted(inspect(engine).get_table_names())
    migrate(engine)
    assert sorted(inspect(engine).get_table_names()) == before
    assert "alembic_version" in before


def test_head_revision_is_alembics_head(engine: Engine) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(files("opds_server.db") / "migrations"))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION
    assert current_revision(engine) == HEAD_REVISION  # the fixture's engine was migrated


def test_start_up_waits_a_bounded_time_for_an_unreachable_database_and_names_it() -> None:
    engine = make_engine("postgresql+psycopg://opds:secret-password@127.0.0.1:9/opds")
    ticks = iter([0.0, 0.1, 0.6, 1.2])
    try:
        with pytest.raises(DatabaseError, match=r"127\.0\.0\.1:9/opds did not answer in 1 s") as refused:
            wait_for(engine, seconds=1.0, clock=lambda: next(ticks))
    finally:
        engine.dispose()
    assert "secret-password" not in str(refused.value)


def test_start_up_goes_on_at_once_when_the_database_answers(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        wait_for(engine, seconds=0.0)
    finally:
        engine.dispose()
