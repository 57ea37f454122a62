"""The whole loop on a small set, with real parts: scanner photos classified by a real service ->
reviewed through the API -> `garment-sorter dataset export` -> fine-tuned one short epoch with
`--extra-data` -> exported as a version -> a service loads it and answers with it."""

from __future__ import annotations

import csv
import datetime as dt
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.cli import main
from app.config import load_settings
from app.main import create_app
from bench.scanner import render
from contract.classes import CLASS_NAMES
from contract.metadata import read_metadata
from contract.versions import latest
from contract.warehouse import FORMAT, read_warehouse_set

pytestmark = pytest.mark.slow
PHOTOS = 40  # training images (never test images), four of each class


def scanner_photos(fashion) -> tuple[list[bytes], list[int]]:
    chosen = np.concatenate([np.flatnonzero(fashion.y_train == c)[:4] for c in range(len(CLASS_NAMES))])
    return [render("mid-grey background", fashion.x_train[i], seed=int(i)) for i in chosen], [
        int(fashion.y_train[i]) for i in chosen
    ]


def test_classify_review_export_finetune_export_serve(fashion, smoke_run, tmp_path, monkeypatch):
    data_dir, export_dir, model_root = tmp_path / "data", tmp_path / "warehouse", tmp_path / "models"
    monkeypatch.setenv("SORTER_DATA_DIR", str(data_dir))
    photos, labels = scanner_photos(fashion)

    # 1. Classified by a service (the null model: what it says does not matter here), every photo
    #    kept (audit rate 1), then reviewed with the true class through the API.
    settings = load_settings(model_backend="null", audit_rate=1.0, data_dir=str(data_dir))
    app = create_app(settings)
    with TestClient(app) as client:
        assert app.state.service.wait_ready(60)
        for number, (photo, label) in enumerate(zip(photos, labels, strict=True)):
            answer = client.post("/classify", files={"file": ("scan.jpg", photo)}, data={"item_id": f"SKU-{number}"})
            assert answer.status_code == 200, answer.text
            review = client.post(f"/v1/decisions/{answer.json()['decision_id']}/review", json={"class_id": label})
            assert review.status_code == 201, review.text

    # 2. Exported as a training set.
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert main(["dataset", "export", "--since", today, "--out", str(export_dir)]) == 0
    manifest = json.loads((export_dir / "manifest.json").read_text())
    assert (manifest["format"], manifest["items"], manifest["skipped_without_photo"]) == (FORMAT, PHOTOS, 0)
    assert manifest["by_class"] == dict.fromkeys(sorted(CLASS_NAMES), 4)
    with (export_dir / "items.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [int(row["class_id"]) for row in rows] == labels  # oldest decision first
    assert [row["item_id"] for row in rows] == [f"SKU-{n}" for n in range(PHOTOS)]
    assert (export_dir / rows[0]["original"]).read_bytes() == photos[0]
    warehouse = read_warehouse_set(export_dir)
    held_out = int(warehouse.held_out().sum())
    assert warehouse.images.shape == (PHOTOS, 28, 28) and 0 < held_out < PHOTOS
    assert main(["dataset", "export", "--since", today, "--out", str(export_dir)]) == 2  # never overwritten

    # 3. Fine-tuned from a trained run, one short epoch, with the warehouse photos mixed in.
    run_dir = tmp_path / "runs" / "finetuned"
    code = main(
        [
            "train",
            "--arch",
            "a3-model2",
            "--epochs",
            "1",
            "--limit-train",
            "500",
            "--no-histograms",
            "--extra-data",
            str(export_dir),
            "--init-from",
            str(smoke_run.run_dir),
            "--out",
            str(run_dir),
        ]
    )
    assert code == 0
    run = json.loads((run_dir / "run.json").read_text())
    assert run["warehouse"]["images"] == {"trained_on": PHOTOS - held_out, "held_out": held_out}
    assert 0.0 <= run["warehouse"]["held_out_accuracy"] <= 1.0
    assert run["test_accuracy"] > 0.5  # it started from the smoke run's weights, not from scratch

    # 4. Exported as a version, and served.
    assert main(["export", "--run", str(run_dir), "--model-root", str(model_root)]) == 0
    version_dir = latest(model_root)
    assert read_metadata(version_dir).model_extra["warehouse"] == run["warehouse"]
    served = create_app(load_settings(model_dir=str(model_root), data_dir=str(tmp_path / "served")))
    with TestClient(served) as client:
        assert served.state.service.wait_ready(120)
        assert client.get("/v1/model").json()["version"] == int(version_dir.name)
        answer = client.post("/classify", files={"file": ("scan.jpg", photos[0])})
        assert answer.status_code == 200 and answer.json()["model"]["version"] == int(version_dir.name)
