import json

from training import explore


def test_exploration_report_from_the_real_data(fashion, tmp_path):
    written = explore.write_report(fashion, tmp_path)
    names = sorted(p.name for p in written)
    assert names == [
        "class_distribution.png",
        "dataset_summary.json",
        "exploration.md",
        "first_image.png",
        "samples_3x3.png",
    ]
    for path in written:
        assert path.stat().st_size > 0
    facts = json.loads((tmp_path / "dataset_summary.json").read_text())
    assert facts["x_train"] == {"shape": [60000, 28, 28], "ndim": 3, "dtype": "uint8", "size": 47_040_000}
    assert facts["y_test"] == {"shape": [10000], "ndim": 1, "dtype": "uint8", "size": 10000}
    assert set(facts["class_counts_train"].values()) == {6000}
    assert facts["balanced_train"] is True and facts["balanced_test"] is True
    text = (tmp_path / "exploration.md").read_text()
    assert "The train set is perfectly balanced: 6,000 images in every class." in text
    assert "The test set is perfectly balanced: 1,000 images in every class." in text
