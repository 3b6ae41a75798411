"""Alembic migrations of the user database, run on start and by ``opds-server db upgrade``."""
