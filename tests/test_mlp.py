"""The gated-MLP networks of the VampPrior and Exemplar VAE papers, for every family built on the VAE's networks."""
import pytest
import torch

import vae_utils as vu
from vae_utils.nets import GatedDense

from conftest import blob_data


def test_a_gated_dense_layer_is_a_value_times_a_sigmoid_gate():
    layer = GatedDense(3, 2)
    x = torch.randn(5, 3)
    expected = (x @ layer.value.weight.T + layer.value.bias) * torch.sigmoid(x @ layer.gate.weight.T + layer.gate.bias)
    torch.testing.assert_close(layer(x), expected)


def test_the_papers_networks_have_the_papers_size():
    model = vu.VAE(vu.TrainConfig.recipe("paper-mlp").model)
    gated = lambda n_in, n_out: 2 * (n_in * n_out + n_out)  # noqa: E731
    encoder = gated(784, 300) + gated(300, 300) + 300 * 80 + 80
    decoder = gated(40, 300) + gated(300, 300) + 300 * 784 + 784
    assert sum(p.numel() for p in model.encoder.parameters()) == encoder
    assert sum(p.numel() for p in model.decoder.parameters()) == decoder
    assert model.decode(torch.zeros(2, 40)).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("kind, fields", [("vae", {}), ("iwae", {"k": 3}), ("vamp", {"pseudo_inputs": 8})])
def test_each_family_trains_saves_and_loads_with_them(tmp_path, kind, fields):
    family = vu.model_class(kind)
    config = vu.TrainConfig(epochs=1, batch_size=16, model=family.config_class(
        architecture="gated-mlp", latent_dim=4, hidden_dim=16, **fields), model_kind=kind)
    torch.manual_seed(0)
    model = family(config.model)
    vu.train(model, blob_data(32), blob_data(16, seed=1), config, out_dir=tmp_path, progress=False)
    loaded = vu.load_checkpoint(tmp_path / "last.pt")
    x = torch.stack([blob_data(4)[i][0] for i in range(4)])
    with torch.no_grad():
        torch.testing.assert_close(loaded.log_importance_weights(x, 5, torch.Generator().manual_seed(0)),
                                   model.log_importance_weights(x, 5, torch.Generator().manual_seed(0)))
        # no transposed convolutions: the sub-pixel form leaves the MLP decoder as it is
        torch.testing.assert_close(model.log_importance_weights(x, 5, torch.Generator().manual_seed(0)),
                                   model.log_importance_weights(x, 5, torch.Generator().manual_seed(0),
                                                                subpixel=False))


def test_bad_architectures_are_refused():
    with pytest.raises(ValueError, match="architecture='mlp'"):
        vu.VAEConfig(architecture="mlp")
    with pytest.raises(ValueError, match="hidden_dim=0"):
        vu.VAEConfig(architecture="gated-mlp", hidden_dim=0)
    with pytest.raises(ValueError, match="conditional networks are convolutional"):
        vu.model_class("cvae").config_class(architecture="gated-mlp")
