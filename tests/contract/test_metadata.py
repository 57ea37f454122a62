"""metadata.json: what the service refuses, and what it reads from the shipped versions."""

from __future__ import annotations

import json
import re

import pytest
from contract_helpers import MODEL_DIR, make_version

from contract.classes import CLASS_NAMES
from contract.metadata import MetadataError, parse_metadata, read_metadata
from contract.versions import versions

BOTH = {"float32": "serving_default", "bfloat16": "serving_bfloat16"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("class_names"), "class_names: Field required"),
        (lambda m: m.update(class_names=["a"] * 10), "class_names: class_names has duplicates (got ['a',"),
        (lambda m: m.update(class_names=["a", "b"]), "class_names: class_names must list the 10 class names"),
        (lambda m: m.update(temperature=0), "temperature: Input should be greater than 0 (got 0)"),
        (lambda m: m.update(temperature="warm"), "temperature: Input should be a valid number (got 'warm')"),
        (lambda m: m.update(review_threshold=2), "review_threshold: Input should be less than or equal to 1 (got 2)"),
        (lambda m: m.update(review_threshold=True), "review_threshold: Input should be a valid number (got True)"),
        (lambda m: m.update(flip_below="unsure"), "flip_below: Input should be a valid number (got 'unsure')"),
        (lambda m: m.update(ensemble_size=1.5), "ensemble_size: Input should be a valid integer (got 1.5)"),
        (lambda m: m.update(unsure_members=-1), "unsure_members: Input should be greater than or equal to 0 (got -1)"),
        (
            lambda m: m.update(calibrated_by=["runs/a"]),
            "calibrated_by: Input should be a valid dictionary or instance of CalibratedBy (got ['runs/a'])",
        ),
        (
            lambda m: m.update(calibrated_by={"runs": [1]}),
            "calibrated_by.runs.0: Input should be a valid string (got 1)",
        ),
    ],
)
def test_metadata_is_checked(tmp_path, shipped_metadata, change, message):
    change(shipped_metadata)
    version = make_version(tmp_path, "3")
    (version / "metadata.json").write_text(json.dumps(shipped_metadata))
    with pytest.raises(MetadataError, match=re.escape(f"{version / 'metadata.json'}: {message}")):
        read_metadata(version)


def test_missing_or_broken_metadata(tmp_path):
    version = make_version(tmp_path, "1")
    path = version / "metadata.json"
    with pytest.raises(MetadataError, match=re.escape(f"{path} is missing; every exported version carries")):
        read_metadata(version)
    path.write_text("{not json")
    with pytest.raises(MetadataError, match=re.escape(f"{path} cannot be read as JSON")):
        read_metadata(version)
    path.write_text("[1, 2]")
    with pytest.raises(MetadataError, match=re.escape(f"{path}: expected a JSON object")):
        read_metadata(version)


def test_every_shipped_version_is_valid_and_keeps_its_extra_figures():
    for version in versions(MODEL_DIR):
        metadata = read_metadata(MODEL_DIR / str(version))
        assert metadata.version == version
        assert metadata.class_names == CLASS_NAMES
        assert metadata.model_extra is not None and "training" in metadata.model_extra


def test_exported_signatures_default_to_float32_for_older_versions():
    minimal = {"class_names": list(CLASS_NAMES)}
    assert parse_metadata(minimal).exported_signatures() == {"float32": "serving_default"}
    assert parse_metadata({**minimal, "signatures": BOTH}).exported_signatures() == BOTH
    only_unknown = {**minimal, "signatures": {"int8": "serving_int8"}}
    assert parse_metadata(only_unknown).exported_signatures() == {"float32": "serving_default"}


def test_the_served_precision_has_its_own_threshold_and_accuracy_where_the_export_measured_them():
    metadata = parse_metadata(
        {
            "class_names": list(CLASS_NAMES),
            "review_threshold": 0.9,
            "validation_accuracy": 0.95,
            "test_accuracy": 0.94,
            "sorting_by_precision": {"bfloat16": {"review_threshold": 0.91, "test": {"review_share": 0.1}}},
            "accuracy_by_precision": {"bfloat16": {"test": 0.945}},
        }
    )
    assert metadata.review_threshold_for("bfloat16") == 0.91
    assert metadata.review_threshold_for("float32") == 0.9
    assert metadata.accuracy_for("bfloat16") == {"validation": None, "test": 0.945}
    assert metadata.accuracy_for("float32") == {"validation": 0.95, "test": 0.94}
