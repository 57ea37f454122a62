"""The season a shadow candidate chose and its probability mass, so that the candidate's review
threshold can be measured on the live decisions' verdicts before it is promoted
(`garment-sorter review-threshold --candidate`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: shadow answers recorded before this revision never had them.
    op.add_column("shadow_decisions", sa.Column("season", sa.String(32), nullable=True))
    op.add_column("shadow_decisions", sa.Column("season_confidence", sa.Float, nullable=True))


def downgrade() -> None:
    op.drop_column("shadow_decisions", "season_confidence")
    op.drop_column("shadow_decisions", "season")
