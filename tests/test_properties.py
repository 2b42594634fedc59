"""Property: any config and input shape either works or is a clear ValueError, never a raw torch traceback."""
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vae_utils as vu

anything = st.one_of(st.integers(-5, 80), st.floats(allow_nan=True), st.none(), st.text(max_size=3), st.booleans())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    in_channels=st.one_of(st.integers(0, 4), anything),
    image_size=st.one_of(st.sampled_from([7, 8, 16, 28, 32, 33, 64]), anything),
    latent_dim=st.one_of(st.integers(-1, 6), anything),
    channels=st.one_of(st.lists(st.integers(-1, 6), max_size=7).map(tuple), anything),
    hidden_dim=st.one_of(st.integers(-1, 8), anything),
    likelihood=st.sampled_from(["bernoulli", "gaussian", "laplace", 3]),
    batch=st.integers(0, 3),
    x_channels=st.integers(1, 3),
    x_size=st.sampled_from([8, 16, 28, 32, 64]),
)
def test_model_configs_and_inputs_work_or_raise_value_error(in_channels, image_size, latent_dim, channels, hidden_dim,
                                                            likelihood, batch, x_channels, x_size):
    try:
        model = vu.VAE(in_channels=in_channels, image_size=image_size, latent_dim=latent_dim, channels=channels,
                       hidden_dim=hidden_dim, likelihood=likelihood)
    except ValueError as err:
        assert "=" in str(err) and "expected" in str(err)  # names the value and what is allowed
        return
    x = torch.rand(batch, x_channels, x_size, x_size)
    try:
        terms = vu.vae_loss(model(x), x)
    except ValueError as err:
        assert "expected images of shape" in str(err) or "[0, 1]" in str(err)
        return
    assert model.image_shape == (x_channels, x_size, x_size)
    assert terms.total.shape == ()


@settings(max_examples=100, deadline=None)
@given(epochs=anything, batch_size=anything, lr=anything, beta=anything, seed=anything, subset=anything,
       device=st.sampled_from(["auto", "cpu", "cuda:7", "tpu", "", "gpu"]))
def test_train_configs_are_valid_or_value_errors(epochs, batch_size, lr, beta, seed, subset, device):
    try:
        config = vu.TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, beta=beta, seed=seed, subset=subset,
                                device=device)
        vu.resolve_device(config.device)
    except ValueError as err:
        assert "=" in str(err)
        return
    assert config.epochs >= 1 and config.batch_size >= 1 and config.lr > 0
