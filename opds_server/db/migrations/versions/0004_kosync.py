"""KOReader sync: argon2 hashes of md5(password) for users and app passwords, and raw positions.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("users") as users:
        users.add_column(sa.Column("kosync_hash", sa.String(255), nullable=True))
    with op.batch_alter_table("app_passwords") as app_passwords:
        app_passwords.add_column(sa.Column("kosync_hash", sa.String(255), nullable=True))
    op.create_table(
        "kosync_progress",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("document", sa.String(128), primary_key=True),
        sa.Column("progress", sa.Text, nullable=False),
        sa.Column("percentage", sa.Float, nullable=False),
        sa.Column("device", sa.Text, nullable=False),
        sa.Column("device_id", sa.Text, nullable=True),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("book_id", sa.Integer, nullable=True),
        sa.Column("metadata_json", sa.Text, nullable=True),
    )
    op.create_index("ix_kosync_progress_book", "kosync_progress", ["user_id", "book_id"])


def downgrade() -> None:
    op.drop_table("kosync_progress")
    with op.batch_alter_table("app_passwords") as app_passwords:
        app_passwords.drop_column("kosync_hash")
    with op.batch_alter_table("users") as users:
        users.drop_column("kosync_hash")
