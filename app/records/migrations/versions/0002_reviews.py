"""Reviews: a person's verdict on a decision, corrections kept beside what they correct.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("review_id", sa.String(36), primary_key=True),
        sa.Column("decision_id", sa.String(36), sa.ForeignKey("decisions.decision_id"), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("corrects", sa.String(36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("class_id", sa.Integer, nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("season", sa.String(32), nullable=False),
        sa.Column("bin", sa.String(64), nullable=False),
        sa.Column("zone", sa.String(16), nullable=False),
        sa.Column("policy_version", sa.String(16), nullable=False),
        sa.UniqueConstraint("decision_id", "sequence", name="uq_reviews_decision_sequence"),
    )


def downgrade() -> None:
    op.drop_table("reviews")
