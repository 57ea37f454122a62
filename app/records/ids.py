"""Record ids (decisions, reviews): UUIDv7, so ids sort by time (an index on them is an index on
arrival order) and replicas mint them without coordination."""

from __future__ import annotations

from uuid6 import uuid7


def new_id() -> str:
    return str(uuid7())
