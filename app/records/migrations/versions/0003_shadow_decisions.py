"""Shadow decisions: what a candidate model version would have answered, beside the live decision.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shadow_decisions",
        sa.Column("decision_id", sa.String(36), sa.ForeignKey("decisions.decision_id"), primary_key=True),
        sa.Column("candidate_version", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("class_id", sa.Integer, nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("bin", sa.String(64), nullable=False),
        sa.Column("needs_review", sa.Boolean, nullable=False),
        sa.Column("review_reasons", sa.JSON, nullable=False),
        sa.Column("agrees_on_class", sa.Boolean, nullable=False),
        sa.Column("agrees_on_bin", sa.Boolean, nullable=False),
    )
    op.create_index("ix_shadow_disagreements", "shadow_decisions", ["agrees_on_bin", "agrees_on_class", "decision_id"])


def downgrade() -> None:
    op.drop_index("ix_shadow_disagreements", "shadow_decisions")
    op.drop_table("shadow_decisions")
