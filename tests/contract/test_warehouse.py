"""The warehouse export's layout as training reads it: a fixed held-out slice, strict reading."""

from __future__ import annotations

import json

import pytest

from contract.warehouse import FORMAT, HELD_OUT_SHARE, WarehouseDataError, held_out, read_warehouse_set


def test_the_held_out_slice_is_fixed_per_item_and_about_its_share():
    ids = [f"01a22de4-{n:04x}-7000-8000-000000000000" for n in range(4000)]
    first = [held_out(i) for i in ids]
    assert first == [held_out(i) for i in ids]  # the same item, the same side, every time
    assert abs(sum(first) / len(ids) - HELD_OUT_SHARE) < 0.02


def test_a_directory_that_is_not_an_export_is_refused(tmp_path):
    with pytest.raises(WarehouseDataError, match=r"no readable manifest\.json"):
        read_warehouse_set(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something-else/1", "items": 0}))
    with pytest.raises(WarehouseDataError, match="expected 'garment-sorter-warehouse/1'"):
        read_warehouse_set(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": FORMAT, "items": 1}))
    (tmp_path / "items.csv").write_text(
        "decision_id,item_id,class_id,label,source,model_label,decided_at,reviewed_at,seen,original\n"
    )
    with pytest.raises(WarehouseDataError, match=r"0 rows in items\.csv, the manifest says 1"):
        read_warehouse_set(tmp_path)
