import subprocess
import sys
from pathlib import Path

import pytest

from training import cli

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd or REPO,
    )


def test_unknown_architecture_is_one_line_and_exit_2(tmp_path):
    result = run_cli("train", "--arch", "resnet", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "python -m training: error: unknown architecture 'resnet'; known: a3-model1, a3-model2, "
        "a3-model3, seq2, seq3, seq4, seq5, seq6, fashion-cnn"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epochs", "0"], "argument --epochs: expected a positive integer, got 0"),
        (["--batch-size", "x"], "argument --batch-size: expected a positive integer, got 'x'"),
        (["--strategy", "magic"], "--strategy must be one of default, mirrored, multiworker (got magic)"),
        (["--label-smoothing", "1.5"], "--label-smoothing must be in [0, 1) (got 1.5)"),
        (["--zoom", "-0.1"], "--zoom must be in [0, 1) (got -0.1)"),
        (["--scanner"], "--scanner needs --augment"),
    ],
)
def test_bad_flag_values_exit_2_with_the_reason(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--arch", "a3-model2", "--out", str(tmp_path / "run"), *flags])
    assert exit_info.value.code == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line.startswith("python -m training") and last_line.endswith(f"error: {message}")
    assert not (tmp_path / "run").exists()


def test_missing_dataset_exit_2_and_nothing_written(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FASHION_MNIST_DIR": str(tmp_path / "nowhere")}
    result = run_cli("explore", "--out", str(tmp_path / "reports"), env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"python -m training: error: $FASHION_MNIST_DIR={tmp_path / 'nowhere'} "
        "does not hold the four Fashion-MNIST IDX files"
    )
    assert not (tmp_path / "reports").exists()


def test_export_of_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export", "--run", str(tmp_path), "--model-root", str(tmp_path / "models")])
    assert exit_info.value.code == 2
    assert not (tmp_path / "models").exists()
