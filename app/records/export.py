"""`garment-sorter dataset export`: the reviewed items, with their photos, as a training set in
the layout contract/warehouse.py describes."""

from __future__ import annotations

import csv
import datetime as dt
import json
import mimetypes
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from app.records.photos import PhotoStore, media_type
from app.records.queries import verdicts
from app.records.schema import decisions
from contract.classes import CLASS_NAMES
from contract.warehouse import FORMAT, ITEM_COLUMNS, ITEMS, MANIFEST, ORIGINALS_DIR, SEEN_DIR


def _reviewed_since(engine: Engine, since: dt.datetime) -> list[Any]:
    """Each decision's latest review (the verdict), reviewed at or after ``since``, oldest decision first."""
    verdict = verdicts()
    query = (
        select(
            decisions.c.decision_id,
            decisions.c.item_id,
            decisions.c.created_at,
            decisions.c.label.label("model_label"),
            decisions.c.audit,
            decisions.c.photo_sha256,
            verdict.c.class_id,
            verdict.c.created_at.label("reviewed_at"),
        )
        .join(verdict, verdict.c.decision_id == decisions.c.decision_id)
        .where(verdict.c.created_at >= since)
        .order_by(decisions.c.decision_id)
    )
    with engine.connect() as connection:
        return list(connection.execute(query))


def export_reviewed(engine: Engine, photos: PhotoStore, since: dt.datetime, out: Path) -> dict[str, Any]:
    """Write the export to ``out`` (which must not exist yet: a finished export is never mixed
    with another); return its manifest. Items whose photo is gone (purged) are counted, not written."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; export into a new directory")
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent if out.parent.exists() else None))
    (staging / SEEN_DIR).mkdir()
    (staging / ORIGINALS_DIR).mkdir()
    rows, skipped = [], 0
    for record in _reviewed_since(engine, since):
        seen = None if record.photo_sha256 is None else photos.read(record.photo_sha256, seen=True)
        original = None if record.photo_sha256 is None else photos.read(record.photo_sha256)
        if seen is None or original is None:
            skipped += 1
            continue
        extension = mimetypes.guess_extension(media_type(original)) or ".bin"
        seen_name = f"{SEEN_DIR}/{record.decision_id}.png"
        original_name = f"{ORIGINALS_DIR}/{record.decision_id}{extension}"
        (staging / seen_name).write_bytes(seen)
        (staging / original_name).write_bytes(original)
        rows.append(
            {
                "decision_id": record.decision_id,
                "item_id": record.item_id or "",
                "class_id": record.class_id,
                "label": CLASS_NAMES[record.class_id],
                "source": "audit" if record.audit else "review",
                "model_label": record.model_label,
                "decided_at": _iso(record.created_at),
                "reviewed_at": _iso(record.reviewed_at),
                "seen": seen_name,
                "original": original_name,
            }
        )
    with (staging / ITEMS).open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=ITEM_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    manifest = {
        "format": FORMAT,
        "exported_at": dt.datetime.now(dt.UTC).isoformat(),
        "since": since.isoformat(),
        "items": len(rows),
        "by_class": dict(sorted(Counter(row["label"] for row in rows).items())),
        "by_source": dict(sorted(Counter(row["source"] for row in rows).items())),
        "skipped_without_photo": skipped,
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(staging, out)
    return manifest


def _iso(value: dt.datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
