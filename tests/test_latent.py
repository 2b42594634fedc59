"""Walking the latent space: interpolation (linear, slerp), traversals, PCA and the 2-D manifold."""
import pytest
import torch

import vae_utils as vu
from conftest import SMALL, blob_data


def test_interpolation_starts_and_ends_at_the_reconstructions():
    model = vu.VAE(SMALL).eval()
    x = blob_data(2)[0][0], blob_data(2)[1][0]
    frames = vu.interpolate(model, x[0], x[1], steps=7)
    assert frames.shape == (7, 1, 28, 28)
    torch.testing.assert_close(frames[0], model.reconstruct(x[0][None])[0])
    torch.testing.assert_close(frames[-1], model.reconstruct(x[1][None])[0])


def test_interpolation_needs_two_steps_and_single_images():
    model, x = vu.VAE(SMALL), torch.rand(1, 28, 28)
    with pytest.raises(ValueError, match="steps"):
        vu.interpolate(model, x, x, steps=1)
    with pytest.raises(ValueError, match="one image"):
        vu.interpolate(model, torch.rand(2, 1, 28, 28), x)


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_slerp_keeps_the_norm_between_equal_norm_vectors(scale):
    a, b = torch.randn(16), torch.randn(16)
    a, b = scale * a / a.norm(), scale * b / b.norm()
    path = vu.slerp(a, b, torch.linspace(0, 1, 11))
    torch.testing.assert_close(path.norm(dim=1), torch.full((11,), scale), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)


def test_slerp_interpolation_and_traversals_decode_images():
    model = vu.VAE(SMALL).eval()
    x = blob_data(2)
    assert vu.interpolate(model, x[0][0], x[1][0], steps=5, method="slerp").shape == (5, 1, 28, 28)
    assert vu.traverse(model, x[0][0], dims=[0, 2], values=torch.linspace(-2, 2, 5)).shape == (10, 1, 28, 28)
    with pytest.raises(ValueError, match="out of range"):
        vu.traverse(model, x[0][0], dims=[9])
    with pytest.raises(ValueError, match="method"):
        vu.interpolate(model, x[0][0], x[1][0], method="cubic")


def test_pca_projects_onto_the_directions_of_largest_variance():
    torch.manual_seed(0)
    points = torch.randn(300, 5) * torch.tensor([10.0, 0.1, 3.0, 0.1, 0.1])
    projected = vu.pca_2d(points)
    assert projected.shape == (300, 2)
    assert projected[:, 0].var() > projected[:, 1].var() > 5


def test_manifold_grid_needs_a_two_dimensional_latent():
    model = vu.VAE(SMALL, latent_dim=2)
    assert vu.manifold_grid(model, n=4).shape == (16, 1, 28, 28)
    with pytest.raises(ValueError, match="latent_dim=2"):
        vu.manifold_grid(vu.VAE(SMALL))
