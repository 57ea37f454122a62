import json

import keras
import pytest
from smoke_runs import SMOKE_PARAMS

from training.train import TrainConfig, train


def test_smoke_run_writes_the_run_directory(smoke_run):
    run_dir = smoke_run.run_dir
    for name in ("best.keras", "history.csv", "history.json", "learning_curves.png", "run.json", "config.json"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tensorboard").rglob("*.tfevents*"))
    assert any((run_dir / "tensorboard" / "gradients").rglob("*.tfevents*"))
    history = json.loads((run_dir / "history.json").read_text())
    assert history["epoch"] == [0.0, 1.0]
    assert set(history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert smoke_run.epochs_run == 2 and smoke_run.params == SMOKE_PARAMS
    # 2 epochs on 2,000 images learn something real: far above the 10 % of chance.
    assert smoke_run.val_accuracy > 0.5 and smoke_run.test_accuracy > 0.5


class Interrupted(Exception):
    pass


class StopAfterSecondEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise Interrupted()


def test_resume_continues_from_the_last_finished_epoch(tmp_path):
    out = tmp_path / "resumable"
    config = TrainConfig(arch="a3-model2", epochs=3, limit_train=500, seed=1, histograms=False)
    with pytest.raises(Interrupted):
        train(config, out, verbose=0, extra_callbacks=[StopAfterSecondEpoch()])
    assert (out / "backup").is_dir()

    result = train(config, out, resume=True, verbose=0)
    # Only the third epoch ran again: the CSV holds epochs 0, 1 from the first attempt and 2 after it.
    rows = (out / "history.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [0, 1, 2]
    assert result.epochs_run == 3
    assert not (out / "backup").exists()  # a finished run leaves no backup


def test_init_from_starts_where_the_run_ended_and_refuses_another_architecture(smoke_run, tmp_path):
    # A learning rate too small to move anything: what it measures are the starting weights.
    config = TrainConfig(
        arch="a3-model2",
        epochs=1,
        limit_train=200,
        learning_rate=1e-12,
        histograms=False,
        init_from=str(smoke_run.run_dir),
    )
    result = train(config, tmp_path / "tuned", verbose=0)
    assert result.test_accuracy == pytest.approx(smoke_run.test_accuracy, abs=0.002)
    with pytest.raises(ValueError, match="is a a3-model2 run; this one trains a3-model1"):
        train(
            TrainConfig(
                arch="a3-model1", epochs=1, limit_train=200, histograms=False, init_from=str(smoke_run.run_dir)
            ),
            tmp_path / "other",
            verbose=0,
        )
