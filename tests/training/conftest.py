import pytest

from training import data


@pytest.fixture(scope="session")
def fashion():
    """The real dataset from the Debian package (or $FASHION_MNIST_DIR); never downloaded in tests."""
    return data.load_fashion_mnist(allow_download=False)


@pytest.fixture(scope="session")
def split(fashion):
    return data.split_train_validation(fashion)
