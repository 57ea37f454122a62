"""The model card of a run trained on all 60,000 images credits its held-out twin for every validation figure."""

import json

import pytest
from smoke_runs import train_smoke

from contract.metadata import METADATA_FILE
from training import export, model_card
from training.calibrate import calibrate_run
from training.ensemble import Ensemble

SPEED = {"float32": {1: 900.0, 64: 3500.0, 256: 3600.0}, "bfloat16": {1: 1000.0, 64: 6500.0, 256: 7000.0}}


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    twin, full = root / "runs" / "twin", root / "runs" / "full"
    train_smoke(twin, histograms=False)
    twin_calibration = calibrate_run(Ensemble((twin,)), root / "twin-figures")
    train_smoke(full, histograms=False, full_train=True)
    calibrate_run(Ensemble((full,)), root / "figures", held_out_twin=twin)
    written = {}
    for name, run in (("twin", twin), ("full", full)):
        version_dir = export.export_run(run, root / "models")
        card = model_card.write_card(version_dir, root / f"{name}-figures", root / f"{name}.md", SPEED)
        written[name] = (card.read_text().splitlines(), json.loads((version_dir / METADATA_FILE).read_text()))
    return twin, full, root, twin_calibration, written


def test_full_train_card_labels_the_twins_validation_figures(cards):
    twin, _, _, twin_calibration, written = cards
    lines, meta = written["full"]
    assert meta["calibrated_by"]["runs"] == [str(twin)] and meta["validation_accuracy"] is None
    assert "Trained on all 60,000 training images (train + validation) with the recipe chosen on validation." in lines
    assert (
        f"| validation (held-out twin) | {_pct(twin_calibration['ece_validation_before'])} | "
        f"{_pct(twin_calibration['ece_validation_after'])} |"
    ) in lines
    sorting = twin_calibration["sorting_validation"]
    assert (
        f"| validation (held-out twin) | {_pct(sorting['season_accuracy'])} | {_pct(sorting['review_share'])} | "
        f"{_pct(sorting['wrong_bin_rate'])} |"
    ) in lines
    assert any(
        line.startswith(
            f"Test accuracy: **{_pct(meta['test_accuracy'])}** (trained on validation too; "
            f"its held-out twin `{twin}` scored {_pct(twin_calibration['validation_accuracy'])}"
        )
        for line in lines
    )
    assert not any("| validation |" in line for line in lines)


def test_full_train_card_reproduces_the_twin_first(cards):
    twin, full, root, _, written = cards
    lines, _ = written["full"]
    commands = [line for line in lines if line.startswith(".venv/bin/garment-sorter calibrate")]
    assert commands == [
        f".venv/bin/garment-sorter calibrate --run {twin}",
        f".venv/bin/garment-sorter calibrate --run {full} --out {root / 'full-figures'} --held-out-twin {twin}",
    ]
    outs = [line.strip() for line in lines if line.strip().startswith("--patience")]
    assert outs == [f"--patience 50 --seed 3 --out {twin}", f"--patience 50 --seed 3 --full-train --out {full}"]


def test_held_out_card_keeps_its_own_validation_figures(cards):
    twin, _, root, twin_calibration, written = cards
    lines, meta = written["twin"]
    assert "calibrated_by" not in meta
    assert (
        f"| validation | {_pct(twin_calibration['ece_validation_before'])} | "
        f"{_pct(twin_calibration['ece_validation_after'])} |"
    ) in lines
    assert (
        "Trained on the 50,000-image train split only (not retrained on all 60,000: the validation split stays" in lines
    )
    assert [line for line in lines if line.startswith(".venv/bin/garment-sorter calibrate")] == [
        f".venv/bin/garment-sorter calibrate --run {twin} --out {root / 'twin-figures'}"
    ]


def test_reproduce_calibrates_unsure_only_members_apart_for_the_twin_and_the_full_model():
    training = {
        "epochs": 45,
        "batch_size": 128,
        "optimizer": "adamw",
        "learning_rate": 2e-3,
        "weight_decay": 0.05,
        "label_smoothing": 0.1,
        "lr_schedule": "cosine",
        "warmup_epochs": 2,
        "patience": 50,
        "seed": 1,
        "full_train": True,
    }
    members = [
        {"run": "runs/a-full", "training": training},
        {"run": "runs/b-full", "training": training},
        {"run": "runs/c-full", "training": training, "unsure_only": True},
    ]
    text = model_card._reproduce_text(members, "reports/x", False, ["runs/a", "runs/b", "runs/c"], 0.6)
    assert [line for line in text.splitlines() if line.startswith(".venv/bin/garment-sorter calibrate")] == [
        (
            ".venv/bin/garment-sorter calibrate --run runs/a --flip-below 0.6 --ensemble-with runs/b"
            " --unsure-with runs/c"
        ),
        (
            ".venv/bin/garment-sorter calibrate --run runs/a-full --out reports/x --flip-below 0.6"
            " --held-out-twin runs/a --ensemble-with runs/b-full --unsure-with runs/c-full"
        ),
    ]
