import pytest
from smoke_runs import train_smoke

from training import data


@pytest.fixture(scope="session")
def fashion():
    """The real dataset from the Debian package (or $FASHION_MNIST_DIR); never downloaded in tests."""
    return data.load_fashion_mnist(allow_download=False)


@pytest.fixture(scope="session")
def split(fashion):
    return data.split_train_validation(fashion)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """A finished run with histograms; tests that calibrate a run copy it first, so it stays uncalibrated."""
    return train_smoke(tmp_path_factory.mktemp("runs") / "smoke")


@pytest.fixture(scope="session")
def other_run(tmp_path_factory):
    """Another seed and a single epoch: a second network that answers differently."""
    return train_smoke(tmp_path_factory.mktemp("runs") / "other", seed=4, epochs=1, histograms=False)
