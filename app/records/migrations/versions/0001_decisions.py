"""The decision log: one row per answered classification.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("decision_id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("item_id", sa.String(128), nullable=True),
        sa.Column("caller", sa.String(64), nullable=True),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("model_version", sa.Integer, nullable=False),
        sa.Column("policy_version", sa.String(16), nullable=False),
        sa.Column("review_threshold", sa.Float, nullable=True),
        sa.Column("class_id", sa.Integer, nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("top_k", sa.JSON, nullable=False),
        sa.Column("season", sa.String(32), nullable=False),
        sa.Column("bin", sa.String(64), nullable=False),
        sa.Column("zone", sa.String(16), nullable=False),
        sa.Column("needs_review", sa.Boolean, nullable=False),
        sa.Column("review_reasons", sa.JSON, nullable=False),
        sa.Column("box", sa.JSON, nullable=True),
        sa.Column("timings_ms", sa.JSON, nullable=False),
        sa.Column("photo_sha256", sa.String(64), nullable=True),
        sa.Column("audit", sa.Boolean, nullable=False),
    )
    op.create_index("ix_decisions_item_id", "decisions", ["item_id"])
    op.create_index("ix_decisions_review_queue", "decisions", ["needs_review", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_decisions_review_queue", "decisions")
    op.drop_index("ix_decisions_item_id", "decisions")
    op.drop_table("decisions")
