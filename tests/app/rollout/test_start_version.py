"""Which version a (re)started service serves: the roll-out file's live one when there is a usable
file, so a restart keeps a roll back; the newest otherwise."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.config import load_settings
from app.main import create_app
from contract.versions import versions


def served_version(model_dir, tmp_path, rollout_text: str | None) -> int:
    rollout_file = tmp_path / "rollout.yaml"
    if rollout_text is not None:
        rollout_file.write_text(rollout_text)
    settings = load_settings(
        model_dir=str(model_dir), rollout_file=str(rollout_file), model_poll_s=0, data_dir=str(tmp_path / "data")
    )
    app = create_app(settings)
    with TestClient(app) as client:
        assert app.state.service.wait_ready(120)
        return int(client.get("/v1/model").json()["version"])


def test_a_restart_serves_the_roll_out_files_live_version(model_dir, tmp_path):
    older, newest = versions(model_dir)[0], versions(model_dir)[-1]
    assert older < newest
    assert served_version(model_dir, tmp_path, f"live: {older}\n") == older
    assert served_version(model_dir, tmp_path, "live: [broken\n") == newest  # unusable: the newest, and a log line
