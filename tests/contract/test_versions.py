"""The version layout: which directory is the newest version, and which number the next export takes."""

from __future__ import annotations

import pytest
from contract_helpers import make_version

from contract.versions import VersionError, latest, next_version, versions


def test_highest_complete_integer_version_wins(tmp_path):
    for name in ("1", "2", "10"):
        make_version(tmp_path, name)
    make_version(tmp_path, "11", with_model=False)  # incomplete: skipped
    make_version(tmp_path, ".12.tmp-abc")  # an export in progress: not a version
    make_version(tmp_path, "latest")
    assert latest(tmp_path) == tmp_path / "10"
    assert versions(tmp_path) == [1, 2, 10, 11]
    assert next_version(tmp_path) == 12  # above the incomplete one too: versions are never reused


def test_missing_models_are_reported_clearly(tmp_path):
    with pytest.raises(VersionError, match=f"model directory {tmp_path / 'absent'} does not exist"):
        latest(tmp_path / "absent")
    with pytest.raises(VersionError, match=f"no version directory with a saved_model.pb under {tmp_path}"):
        latest(tmp_path)
    assert versions(tmp_path / "absent") == []
    assert next_version(tmp_path / "absent") == 1
