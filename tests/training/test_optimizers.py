"""The recipe's optimizer, built from Keras alone (the GPU check builds it on the JAX backend)."""

import keras
import pytest

from training.optimizers import learning_rate, make_optimizer


def test_cosine_schedule_warms_up_then_decays_to_zero():
    schedule = learning_rate(0.002, "cosine", warmup_epochs=2, epochs=10, steps_per_epoch=5)
    rates = [float(schedule(step)) for step in (0, 5, 10, 50)]
    assert rates[0] == 0.0 and rates[1] == pytest.approx(0.001) and rates[2] == pytest.approx(0.002)
    assert rates[3] == pytest.approx(0.0, abs=1e-9)
    assert learning_rate(0.002) == 0.002


def test_the_production_recipe_is_adamw_with_weight_decay():
    optimizer = make_optimizer(
        "adamw", 0.002, weight_decay=0.05, lr_schedule="cosine", warmup_epochs=2, epochs=10, steps_per_epoch=5
    )
    assert isinstance(optimizer, keras.optimizers.AdamW) and optimizer.weight_decay == pytest.approx(0.05)


@pytest.mark.parametrize(("name", "kind"), [("adam", keras.optimizers.Adam), ("sgd", keras.optimizers.SGD)])
def test_constant_rate_optimizers(name, kind):
    optimizer = make_optimizer(name, 0.01)
    assert isinstance(optimizer, kind) and float(optimizer.learning_rate) == pytest.approx(0.01)


def test_unknown_names_are_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"optimizer must be one of adam, adamw, sgd \(got 'rmsprop'\)"):
        make_optimizer("rmsprop", 0.01)
    with pytest.raises(ValueError, match="lr_schedule must be one of constant, cosine"):
        make_optimizer("adam", 0.01, lr_schedule="step")
