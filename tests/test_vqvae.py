"""The VQ-VAE: straight-through gradients, the EMA codebook, dead-code restarts, usage and perplexity, training."""
import math

import pytest
import torch

import vae_utils as vu
from conftest import blob_data
from vae_utils.metrics import code_counts
from vae_utils.models.vqvae import Codebook

TINY = vu.VQVAEConfig(channels=(8, 16), res_blocks=1, codebook_size=16, code_dim=4, dead_code_steps=0)


def test_the_decoder_gradient_reaches_the_encoder_unchanged():
    model = vu.VQVAE(TINY, commitment=0.0).train()  # only the reconstruction's gradient flows back
    seen = {}

    def keep(name, tensor):
        tensor.retain_grad()
        seen[name] = tensor

    model.encoder.register_forward_hook(lambda module, inputs, out: keep("z_e", out))
    model.decoder.register_forward_pre_hook(lambda module, inputs: keep("z_q", inputs[0]))
    x = blob_data(8).images.float() / 255
    model.loss(x).total.backward()
    assert seen["z_q"].grad is not None and seen["z_q"].grad.abs().sum() > 0
    torch.testing.assert_close(seen["z_e"].grad, seen["z_q"].grad, rtol=0, atol=0)


def test_the_decoder_sees_the_codebook_entries():
    model = vu.VQVAE(TINY).eval()
    x = blob_data(4).images.float() / 255
    codes = model.codes(x)
    z_q = model.codebook.lookup(codes).permute(0, 3, 1, 2)
    torch.testing.assert_close(model.decode_logits(codes), model.decoder(z_q))


def test_the_ema_update_matches_a_hand_computation():
    book = Codebook(size=3, dim=2, decay=0.9, epsilon=0.1, dead_code_steps=0)
    book.initialized.fill_(True)
    book.embedding.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))
    book.ema_sum.copy_(book.embedding)
    z = torch.tensor([[0.2, 0.0], [0.0, 0.4], [1.2, 0.8]])
    book.update(z, torch.tensor([0, 0, 1]))
    count = 0.9 * torch.ones(3) + 0.1 * torch.tensor([2.0, 1.0, 0.0])  # [1.1, 1.0, 0.9]
    sums = 0.9 * torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]) + 0.1 * torch.tensor([[0.2, 0.4], [1.2, 0.8],
                                                                                          [0.0, 0.0]])
    n = count.sum()
    smoothed = (count + 0.1) / (n + 3 * 0.1) * n  # Laplace smoothing
    torch.testing.assert_close(book.ema_count, count)
    torch.testing.assert_close(book.embedding, sums / smoothed[:, None])
    assert book.idle_steps.tolist() == [0, 0, 1]


def test_the_first_training_step_puts_the_entries_on_encoder_outputs():
    book = Codebook(size=4, dim=2, dead_code_steps=0)
    z = torch.randn(50, 2) * 10 + 100  # far from the random initial entries
    book.update(z, book.nearest(z))
    assert bool(book.initialized)
    assert all(((z - e).norm(dim=1) < 5).any() for e in book.embedding)  # each entry near some output


def test_a_code_unused_for_n_steps_is_restarted_on_a_recent_encoder_output():
    book = Codebook(size=3, dim=2, decay=0.9, dead_code_steps=2)
    book.initialized.fill_(True)
    book.embedding.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [50.0, 50.0]]))
    z = torch.tensor([[0.1, 0.0], [0.9, 1.0]])
    book.update(z, book.nearest(z))
    assert book.embedding[2].tolist() != z[0].tolist() and book.idle_steps[2] == 1  # idle once: kept
    book.update(z, book.nearest(z))
    assert any(torch.equal(book.embedding[2], row) for row in z)  # idle twice: moved onto an output
    assert book.idle_steps[2] == 0 and book.ema_count[2] == 1.0


@pytest.mark.parametrize("k", [1, 7, 512])
def test_perplexity_of_uniform_use_over_k_codes_is_k(k):
    assert vu.perplexity(torch.full((k,), 5)) == pytest.approx(k)


def test_perplexity_of_one_code_is_one_and_unused_codes_do_not_count():
    assert vu.perplexity(torch.tensor([0, 12, 0, 0])) == pytest.approx(1.0)
    assert vu.perplexity(torch.tensor([3, 1, 0])) == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))


def test_usage_counts_every_grid_cell_of_the_whole_set_whatever_the_batch_size():
    model = vu.VQVAE(TINY).eval()
    data = blob_data(40)
    counts = code_counts(model, data, batch_size=7)
    assert counts.sum() == 40 * 7 * 7
    assert torch.equal(counts, code_counts(model, data, batch_size=1000))
    usage = vu.codebook_usage(model, data)
    assert usage["codes_used"] == int((counts > 0).sum()) and 1 <= usage["perplexity"] <= usage["codes_used"]


def test_the_bound_adds_the_uniform_prior_to_the_reconstruction():
    model = vu.VQVAE(TINY).eval()
    terms = model.loss(blob_data(8).images.float() / 255)
    assert terms.bound.item() == pytest.approx(terms.recon.item() + 49 * math.log(16), rel=1e-6)


def test_evaluation_leaves_the_codebook_alone():
    model = vu.VQVAE(TINY)
    before = {k: v.clone() for k, v in model.codebook.state_dict().items()}
    vu.evaluate(model, blob_data(16))
    assert all(torch.equal(before[k], v) for k, v in model.codebook.state_dict().items())


def test_a_tiny_set_is_overfitted():
    data = blob_data(16)
    model = vu.VQVAE(TINY, ema_decay=0.9)
    start = vu.evaluate(model, data)["recon"]
    vu.train(model, data, data, vu.TrainConfig(model=model.config, epochs=200, batch_size=8, lr=3e-3,
                                               precision="fp32"), progress=False)
    end = vu.evaluate(model, data)["recon"]
    entropy = vu.reconstruction_loss(torch.logit(data.images.float() / 255, eps=1e-6), data.images.float() / 255
                                     ).mean().item()  # the floor of BCE on grey levels: a perfect reconstruction
    assert end - entropy < 0.05 * (start - entropy)  # 0.012 measured


@pytest.mark.parametrize("size, channels, grid", [(28, 1, 7), (32, 3, 8), (64, 3, 8), (16, 1, 8)])
def test_every_image_size_gets_a_small_grid_and_the_right_output(size, channels, grid):
    config = vu.VQVAEConfig.for_images(size, channels, codebook_size=8, code_dim=2)
    model = vu.VQVAE(config).eval()
    x = torch.rand(2, channels, size, size)
    if config.likelihood == "discretized-logistic":
        x = (x * 255).round() / 255
    assert model.codes(x).shape == (2, grid, grid)
    assert model.reconstruct(x).shape == x.shape
    assert torch.isfinite(model.loss(x).total)


def test_wrong_images_get_a_clear_error():
    model = vu.VQVAE(TINY)
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1, 28, 28\).*VQVAE"):
        model.codes(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="codebook_size"):
        vu.VQVAEConfig(codebook_size=1)
