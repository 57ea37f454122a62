"""`garment-sorter-client classify` against the real keyed server: its lines, its JSON and its exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from client_helpers import REPO, REVIEWER_KEY, SCANNER_KEY, Photo

from bench.server import Server, free_port
from garment_sorter_client.cli import API_KEY_ENV, main

pytestmark = pytest.mark.slow


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, SCANNER_KEY)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(["classify", *argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_one_line_per_photo(sorter: Server, photos: list[Photo], keyed: None, capsys: pytest.CaptureFixture[str]):
    boot, pullover = photos[0].path, photos[1].path
    code, lines, _ = run(
        capsys, "--url", sorter.url, "--item-id", "SKU-1", "--item-id", "SKU-2", str(boot), str(pullover)
    )
    assert code == 0
    assert len(lines) == 2
    assert lines[0].startswith(f"{boot} [SKU-1]: Ankle boot 0.")
    assert ", season winter, bin " in lines[0] and ", decision " in lines[0]
    assert ("sorted" in lines[0]) != ("needs review (" in lines[0])
    assert lines[1].startswith(f"{pullover} [SKU-2]: ")


def test_json_lines_and_a_refused_photo(
    sorter: Server, photos: list[Photo], keyed: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    scan = tmp_path / "scan.pdf"
    scan.write_bytes(b"%PDF-1.4 not an image")
    code, lines, _ = run(capsys, "--url", sorter.url, "--json", "--top-k", "2", str(photos[0].path), str(scan))
    assert code == 1  # one photo refused, the other still classified
    first, second = (json.loads(line) for line in lines)
    assert (first["file"], first["item_id"], first["error"]) == (str(photos[0].path), None, None)
    assert first["result"]["label"] == "Ankle boot" and len(first["result"]["top_k"]) == 2
    assert second["result"] is None
    assert {k: second["error"][k] for k in ("status", "code")} == {"status": 415, "code": "not_an_image"}
    assert second["error"]["request_id"]


def test_batch_and_as_of(sorter: Server, photos: list[Photo], keyed: None, capsys: pytest.CaptureFixture[str]):
    paths = [str(photo.path) for photo in photos]
    code, lines, _ = run(capsys, "--url", sorter.url, "--batch", "--json", "--as-of", "2025-07-01", *paths)
    assert code == 0
    answers = [json.loads(line) for line in lines]
    assert [answer["file"] for answer in answers] == paths
    assert answers[0]["result"]["label"] == "Ankle boot" and answers[0]["result"]["zone"] == "reserve"


def test_exit_codes_for_usage_keys_and_an_unreachable_service(
    sorter: Server, photos: list[Photo], capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch
):
    boot = str(photos[0].path)
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    assert run(capsys, "--url", sorter.url, str(tmp_path / "missing.jpg"))[0] == 2
    with pytest.raises(SystemExit) as usage:
        main(["classify", "--url", sorter.url, "--item-id", "only-one", boot, boot])
    assert usage.value.code == 2
    assert "1 --item-id for 2 photos" in capsys.readouterr().err
    # A refused key stops at the first photo: every other one would be refused too.
    code, lines, _ = run(capsys, "--url", sorter.url, "--api-key", REVIEWER_KEY, boot, boot)
    assert code == 3 and len(lines) == 1 and " error 403 forbidden: " in lines[0]
    code, lines, _ = run(capsys, "--url", sorter.url, boot)
    assert code == 3 and " error 401 unauthorized: " in lines[0]
    closed = f"http://127.0.0.1:{free_port()}"
    code, lines, err = run(capsys, "--url", closed, "--max-attempts", "2", boot)
    assert (code, lines) == (3, [])
    assert "could not be made" in err


def test_the_module_runs_as_a_command(sorter: Server, photos: list[Photo]):
    environment = {**os.environ, API_KEY_ENV: SCANNER_KEY, "GARMENT_SORTER_URL": sorter.url}
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO / "clients" / "python"), str(REPO)])
    done = subprocess.run(
        [sys.executable, "-m", "garment_sorter_client", "classify", str(photos[0].path)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert ": Ankle boot 0." in done.stdout
