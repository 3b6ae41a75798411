"""Kobo devices, their sync snapshots and tombstones, and Kobo reading states.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "kobo_devices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("sync_key", sa.String(64), nullable=False),
        sa.Column("access_token", sa.String(64), nullable=False),
        sa.Column("shelves_only", sa.Boolean, nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("last_seen_at", _WHEN, nullable=True),
        sa.Column("revoked_at", _WHEN, nullable=True),
    )
    op.create_index("ix_kobo_devices_user_id", "kobo_devices", ["user_id"])
    op.create_index("ix_kobo_devices_access_token", "kobo_devices", ["access_token"])
    op.create_table(
        "kobo_device_shelves",
        sa.Column("device_id", sa.Integer, sa.ForeignKey("kobo_devices.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("shelf_id", sa.Integer, sa.ForeignKey("shelves.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_table(
        "kobo_snapshots",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("device_id", sa.Integer, sa.ForeignKey("kobo_devices.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("completed_at", _WHEN, nullable=True),
        sa.Column("stamp", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_kobo_snapshots_device", "kobo_snapshots", ["device_id", "id"])
    op.create_table(
        "kobo_tombstones",
        sa.Column("device_id", sa.Integer, sa.ForeignKey("kobo_devices.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("book_id", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("removed_at", _WHEN, nullable=False),
    )
    op.create_table(
        "kobo_reading_states",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("book_id", sa.Integer, primary_key=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("last_modified", _WHEN, nullable=False),
        sa.Column("bookmark", sa.Text, nullable=True),
        sa.Column("statistics", sa.Text, nullable=True),
        sa.Column("status_info", sa.Text, nullable=True),
        sa.Column("received_at", _WHEN, nullable=False),
        sa.Column("origin_device", sa.Integer, nullable=False),
    )
    op.create_index("ix_kobo_reading_states_received", "kobo_reading_states", ["user_id", "received_at"])


def downgrade() -> None:
    for table in ("kobo_reading_states", "kobo_tombstones", "kobo_snapshots", "kobo_device_shelves", "kobo_devices"):
        op.drop_table(table)
