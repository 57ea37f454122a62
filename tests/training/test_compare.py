import json

from training import compare

STUDY_ROW = {
    "arch": "seq5",
    "study_name": "Sequential 5",
    "params": 420_602,
    "train_accuracy": 0.9431,
    "val_accuracy": 0.9256,
    "test_accuracy": 0.9154,
    "epochs_run": 10,
    "best_epoch": 8,
    "wall_time_s": 171.0,
    "augment": False,
    "batch_size": 128,
    "run_dir": "runs/compare/seq5",
    "study_train_val_test": [83.08, 82.26, 80.94],
}
TRAINING = {"epochs_run": 45, "best_epoch": 45, "wall_time_s": 1800.0, "augment": True, "batch_size": 128}


def served_metadata(version: int, **extra) -> dict:
    return {
        "version": version,
        "params": 578_132,
        "train_accuracy": 0.97,
        "validation_accuracy": 0.9530,
        "test_accuracy": 0.9462,
        "tta_flip": False,
        "training": TRAINING,
        **extra,
    }


def test_served_model_row_describes_the_graph_and_replaces_older_versions(tmp_path):
    (tmp_path / compare.COMPARISON_JSON).write_text(json.dumps({"rows": [STUDY_ROW], "note": "Budget: 10 epochs."}))
    compare.add_served_model(served_metadata(3, params=289_066, tta_flip=True), tmp_path)
    members = [
        {"run": "runs/a", "training": TRAINING},
        {"run": "runs/b", "training": {**TRAINING, "wall_time_s": 1700.0}},
    ]
    payload = compare.add_served_model(served_metadata(4, ensemble_members=members), tmp_path)

    assert [r["arch"] for r in payload["rows"]] == ["seq5", "fashion-cnn v4"]  # v3's row replaced
    assert payload["selected_study_model"] == "seq5"
    lines = (tmp_path / compare.COMPARISON_MD).read_text().splitlines()
    assert (
        "| `fashion-cnn v4` | production, served (2 networks averaged) | 578,132 | n/a | 95.30 | 94.62 "
        "| 45 (45) | 3500 | n/a |" in lines
    )
    assert "Budget: 10 epochs." in lines  # the saved note survives


def test_a_single_network_served_as_trained_keeps_its_train_accuracy(tmp_path):
    payload = compare.add_served_model(served_metadata(2, params=289_066), tmp_path)
    assert payload["rows"][0]["study_name"] == "production, served"
    assert payload["rows"][0]["train_accuracy"] == 0.97 and payload["selected_study_model"] is None


def test_a_model_trained_on_all_60000_says_so_and_claims_no_validation_figure(tmp_path):
    members = [{"run": "runs/a-full", "training": TRAINING}, {"run": "runs/b-full", "training": TRAINING}]
    metadata = served_metadata(
        5, ensemble_members=members, validation_accuracy=None, calibrated_by={"runs": ["runs/a", "runs/b"]}
    )
    payload = compare.add_served_model(metadata, tmp_path)
    row = payload["rows"][0]
    assert (
        row["study_name"]
        == "production, served (2 networks averaged, trained on all 60,000, calibrated by its held-out twin)"
    )
    assert row["val_accuracy"] is None and row["train_accuracy"] is None
    assert "| n/a | n/a | 94.62 |" in (tmp_path / compare.COMPARISON_MD).read_text()


def test_flip_averaging_of_unsure_images_names_its_threshold(tmp_path):
    payload = compare.add_served_model(served_metadata(5, params=289_066, flip_below=0.6), tmp_path)
    assert payload["rows"][0]["study_name"] == "production, served (flip averaging below p = 0.6)"
    assert payload["rows"][0]["train_accuracy"] is None  # run.json measured one view, not what is served


def test_unsure_only_members_are_counted_apart_from_the_averaged_ones(tmp_path):
    members = [
        {"run": "runs/a", "training": TRAINING},
        {"run": "runs/b", "training": TRAINING},
        {"run": "runs/c", "training": TRAINING, "unsure_only": True},
    ]
    payload = compare.add_served_model(served_metadata(7, ensemble_members=members, flip_below=0.6), tmp_path)
    assert payload["rows"][0]["study_name"] == (
        "production, served (2 networks averaged, flip averaging below p = 0.6, 1 more network there)"
    )
    assert payload["rows"][0]["wall_time_s"] == 3 * 1800.0
