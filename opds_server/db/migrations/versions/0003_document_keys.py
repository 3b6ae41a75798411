"""KOReader document keys of the files served for each book.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "document_keys",
        sa.Column("key", sa.String(32), primary_key=True),
        sa.Column("book_id", sa.Integer, primary_key=True),
        sa.Column("format", sa.String(16), primary_key=True),
        sa.Column("variant", sa.String(16), primary_key=True),
        sa.Column("file_size", sa.BigInteger, nullable=False),
        sa.Column("file_mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("indexed_at", _WHEN, nullable=False),
    )
    op.create_index("ix_document_keys_book", "document_keys", ["book_id"])


def downgrade() -> None:
    op.drop_table("document_keys")
