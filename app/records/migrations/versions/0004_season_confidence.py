"""The chosen season's probability mass on each decision, so that the review threshold can be
chosen again on the warehouse's own reviewed items (`garment-sorter review-threshold`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: decisions recorded before this revision never had it, and none is invented for them.
    op.add_column("decisions", sa.Column("season_confidence", sa.Float, nullable=True))


def downgrade() -> None:
    op.drop_column("decisions", "season_confidence")
