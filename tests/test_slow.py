"""Slow checks on the real data set (not in the default run): `make test PYTEST_ARGS="-m slow"`."""
from pathlib import Path

import pytest

import vae_utils as vu

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fashion(monkeypatch):
    monkeypatch.undo()  # use the real data locations, not the isolated ones of conftest
    try:
        return vu.load_dataset("fashion-mnist", "train"), vu.load_dataset("fashion-mnist", "test")
    except FileNotFoundError as err:
        pytest.skip(str(err))


def test_one_epoch_of_the_default_recipe_learns_fashion_mnist(fashion):
    train, test = fashion
    vu.set_seed(0)
    config = vu.TrainConfig(epochs=1)
    model = vu.VAE(config.model)
    history = vu.train(model, train, test, config, progress=False)
    assert history[-1]["test_neg_elbo"] < 275  # from about 560 untrained


def test_importance_sampling_tightens_the_committed_models_bound(fashion):
    _, test = fashion
    model = vu.load_checkpoint(ROOT / "saved_models" / "fashion-mnist-vae.pt")
    subset = test.subset(200)
    elbo = vu.iwae_nll(model, subset, k=1)["iwae_nll"]
    k1000 = vu.iwae_nll(model, subset, k=1000)["iwae_nll"]
    assert k1000 < elbo - 1.0
