"""The user database: accounts, credentials and each reader's own library.

SQLite in the data dir by default, Postgres when ``DATABASE_URL`` says so; one schema, managed by
the alembic migrations beside this file. SQLAlchemy is used only inside this package and ORM rows
never leave it: stores return frozen Structs. Nothing here ever touches Calibre's ``metadata.db``.
"""
