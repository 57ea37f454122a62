"""bench.server: where a started server keeps its decisions."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench.server import server_environment


def test_a_server_gets_a_data_dir_of_its_own_whatever_this_process_names(monkeypatch):
    monkeypatch.setenv("SORTER_DATA_DIR", "/srv/the-warehouse-log")  # as tests/conftest.py or an operator sets it
    first, first_own = server_environment({"SORTER_MODEL_DIR": "models/fashion-cnn"})
    second, second_own = server_environment(None)
    try:
        assert first_own and second_own
        dirs = {first["SORTER_DATA_DIR"], second["SORTER_DATA_DIR"]}
        assert len(dirs) == 2 and "/srv/the-warehouse-log" not in dirs
        assert all(Path(d).is_dir() and not os.listdir(d) for d in dirs)
        assert first["SORTER_MODEL_DIR"] == "models/fashion-cnn" and first["TF_CPP_MIN_LOG_LEVEL"] == "2"
    finally:
        for d in (first["SORTER_DATA_DIR"], second["SORTER_DATA_DIR"]):
            shutil.rmtree(d, ignore_errors=True)


def test_a_data_dir_the_caller_names_is_used_and_kept(tmp_path):
    environment, own = server_environment({"SORTER_DATA_DIR": str(tmp_path)})
    assert environment["SORTER_DATA_DIR"] == str(tmp_path) and not own
