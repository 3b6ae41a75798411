"""The credential epoch: one counter every credential change bumps in its own transaction.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    epoch = op.create_table(
        "credential_epoch",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(epoch, [{"id": 1, "value": 0}])


def downgrade() -> None:
    op.drop_table("credential_epoch")
