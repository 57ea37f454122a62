import pytest

from training import architectures

STUDY_PARAMS = {
    "a3-model1": 387_466,
    "a3-model2": 34_826,
    "a3-model3": 431_626,
    "seq2": 842_570,
    "seq3": 824_842,
    "seq4": 128_066,
    "seq5": 420_602,
    "seq6": 220_042,
}


@pytest.mark.parametrize(("name", "params"), sorted(STUDY_PARAMS.items()))
def test_study_parameter_counts_match_the_study(name, params):
    model = architectures.build(name)
    assert model.count_params() == params
    assert model.output_shape == (None, 10)
    assert model.get_layer("logits").output.shape == (None, 10)


def test_every_study_architecture_is_listed():
    assert set(architectures.STUDY_ARCHITECTURES) == set(STUDY_PARAMS)


def test_production_model_fits_the_parameter_budget():
    model = architectures.build("fashion-cnn")
    assert model.count_params() <= 1_500_000
    assert model.output_shape == (None, 10)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(architectures.UnknownArchitecture) as err:
        architectures.build("resnet")
    assert str(err.value) == (
        "unknown architecture 'resnet'; known: a3-model1, a3-model2, a3-model3, "
        "seq2, seq3, seq4, seq5, seq6, fashion-cnn"
    )
