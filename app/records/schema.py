"""The decision log's tables, as SQLAlchemy Core. Alembic migrations (``migrations/versions``)
create them; a change here needs a new migration (``tests/app/records/test_migrations.py`` holds
the two to each other)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData()

ID_LENGTH = 36  # a UUID's text form
ITEM_ID_LENGTH = 128  # the most SORTER_MAX_ITEM_ID_LENGTH may be set to and still be stored

decisions = Table(
    "decisions",
    metadata,
    Column("decision_id", String(ID_LENGTH), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("item_id", String(ITEM_ID_LENGTH), nullable=True, index=True),
    Column("caller", String(64), nullable=True),  # the API key's name; null with keys off
    Column("model_name", String(64), nullable=False),
    Column("model_version", Integer, nullable=False),
    Column("policy_version", String(16), nullable=False),
    Column("review_threshold", Float, nullable=True),
    Column("class_id", Integer, nullable=False),
    Column("label", String(32), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("top_k", JSON, nullable=False),
    Column("season", String(32), nullable=False),
    Column("season_confidence", Float, nullable=True),  # null on decisions recorded before migration 0004
    Column("bin", String(64), nullable=False),
    Column("zone", String(16), nullable=False),
    Column("needs_review", Boolean, nullable=False),
    Column("review_reasons", JSON, nullable=False),
    Column("box", JSON, nullable=True),
    Column("timings_ms", JSON, nullable=False),
    Column("photo_sha256", String(64), nullable=True),  # the stored photo, when one is kept
    Column("audit", Boolean, nullable=False),  # in the random audit sample of auto-sorted items
    Index("ix_decisions_review_queue", "needs_review", "created_at"),
)

# A person's verdict on a decision. The first review of a decision has sequence 1; a correction
# names the review it corrects and takes the next number. (decision_id, sequence) is unique, so of
# two reviewers answering the same item at once exactly one is recorded.
reviews = Table(
    "reviews",
    metadata,
    Column("review_id", String(ID_LENGTH), primary_key=True),
    Column("decision_id", String(ID_LENGTH), ForeignKey("decisions.decision_id"), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("corrects", String(ID_LENGTH), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("reviewer", String(64), nullable=False),
    Column("class_id", Integer, nullable=False),
    Column("label", String(32), nullable=False),
    Column("season", String(32), nullable=False),
    Column("bin", String(64), nullable=False),
    Column("zone", String(16), nullable=False),
    Column("policy_version", String(16), nullable=False),
    UniqueConstraint("decision_id", "sequence", name="uq_reviews_decision_sequence"),
)

# What a shadow candidate would have answered for a live decision (written after the live answer).
shadow_decisions = Table(
    "shadow_decisions",
    metadata,
    Column("decision_id", String(ID_LENGTH), ForeignKey("decisions.decision_id"), primary_key=True),
    Column("candidate_version", Integer, primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("class_id", Integer, nullable=False),
    Column("label", String(32), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("season", String(32), nullable=True),  # season and its mass: null before migration 0005
    Column("season_confidence", Float, nullable=True),
    Column("bin", String(64), nullable=False),
    Column("needs_review", Boolean, nullable=False),
    Column("review_reasons", JSON, nullable=False),
    Column("agrees_on_class", Boolean, nullable=False),
    Column("agrees_on_bin", Boolean, nullable=False),
    Index("ix_shadow_disagreements", "agrees_on_bin", "agrees_on_class", "decision_id"),
)
