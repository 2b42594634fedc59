"""The conditional VAE (Sohn et al., 2015): the label enters encoder and decoder; the ELBO bounds log p(x|y)."""
import json

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

import vae_utils as vu
from vae_utils.cli import main
from vae_utils.models.cvae import ConditionalVAE, CVAEConfig

from conftest import SMALL, blob_data, write_image_folder


def _refused(args: list[str], capsys) -> str:
    """The one-line error the command line exits with (status 2), after any progress bar of reading the data."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ")
    return last


def _model(classes: int = 4) -> ConditionalVAE:
    torch.manual_seed(0)
    return vu.model_class("cvae")(CVAEConfig(**SMALL.to_dict(), num_classes=classes))


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    data = blob_data(n)
    return torch.stack([data[i][0] for i in range(n)]).round(), data.labels  # binary pixels, labels 0-3


def test_the_loss_is_the_conditional_elbo_by_hand():
    model, (x, y) = _model(), _batch()
    with torch.no_grad():
        terms = model.loss(x, generator=torch.Generator().manual_seed(2), labels=y)
        mu, logvar = model.encoder(x, y)
        eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(2))
        q = Normal(mu, torch.exp(0.5 * logvar))
        logits = model.decoder(q.loc + q.scale * eps, y)
        recon = -Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1).mean()
        kl = kl_divergence(q, Normal(0.0, 1.0)).sum(1).mean()
    torch.testing.assert_close(terms.recon, recon, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(terms.kl, kl, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(terms.total, recon + kl, rtol=1e-5, atol=1e-3)


def test_a_class_vector_is_the_one_hot_label_concatenated_to_the_first_layer():
    model, y = _model(), _batch()[1]
    head = model.decoder.head
    first = head[0]  # Linear(latent_dim, hidden_dim)
    z = torch.randn(len(y), model.latent_dim)
    concat = torch.nn.Linear(model.latent_dim + model.n_classes, first.out_features)
    with torch.no_grad():
        concat.weight.copy_(torch.cat([first.weight, model.decoder.label.weight.T], 1))
        concat.bias.copy_(first.bias)
        by_concat = head[1:](concat(torch.cat([z, torch.nn.functional.one_hot(y, model.n_classes).float()], 1)))
        torch.testing.assert_close(model.decoder.given(y).head(z), by_concat)


def test_the_label_changes_what_is_decoded():
    model = _model()
    z = torch.randn(1, model.latent_dim).expand(4, -1)
    with torch.no_grad():
        images = model.decode(z, torch.arange(4))
    assert all(not torch.allclose(images[0], images[i]) for i in (1, 2, 3))


def test_importance_weights_with_k_1_are_the_elbo_and_the_subpixel_form_changes_nothing():
    model, (x, y) = _model(), _batch()
    with torch.no_grad():
        log_w = model.log_importance_weights(x, 1, torch.Generator().manual_seed(5), labels=y)
        plain = model.log_importance_weights(x, 1, torch.Generator().manual_seed(5), labels=y, subpixel=False)
        mu, logvar = model.encoder(x, y)
        q = Normal(mu, torch.exp(0.5 * logvar))
        z = mu + q.scale * torch.randn((len(x), 1, mu.shape[1]), generator=torch.Generator().manual_seed(5))[:, 0]
        elbo = (Bernoulli(logits=model.decoder(z, y)).log_prob(x).flatten(1).sum(1)
                + Normal(0.0, 1.0).log_prob(z).sum(1) - q.log_prob(z).sum(1))
        many = model.log_importance_weights(x, 6, torch.Generator().manual_seed(5), labels=y, chunk_images=16)
        each = torch.stack([model.log_importance_weights(x[i:i + 1], 6, None, labels=y[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(log_w[:, 0], elbo, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(plain, log_w, rtol=1e-5, atol=1e-3)
    assert many.shape == (8, 6) and each.shape == (2, 1, 6)  # chunks of samples keep each image's label


def test_labels_are_checked():
    model, (x, y) = _model(), _batch()
    with pytest.raises(ValueError, match="needs the images' labels"):
        model.loss(x)
    with pytest.raises(ValueError, match="classes 0 to 3"):
        model.loss(x, labels=y + 4)
    with pytest.raises(ValueError, match="expected 8 integer class indices"):
        model.loss(x, labels=y[:3])
    with pytest.raises(ValueError, match="expected 2 integer"):
        model.sample(2, labels=torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="num_classes"):
        CVAEConfig(num_classes=0)


def test_samples_of_a_class_and_a_row_per_class():
    model = _model(3)
    g = torch.Generator().manual_seed(0)
    assert model.sample(5, g, labels=2).shape == (5, 1, 28, 28)
    rows = model.sample_by_class(4, torch.Generator().manual_seed(0))
    assert rows.shape == (12, 1, 28, 28)
    torch.testing.assert_close(rows[4:8], model.sample(12, torch.Generator().manual_seed(0),
                                                       labels=torch.arange(3).repeat_interleave(4))[4:8])


def test_it_trains_on_labelled_data_resumes_bit_exactly_and_reports_conditional_accuracy(tmp_path):
    config = vu.TrainConfig(epochs=2, batch_size=16, lr_schedule="constant", model=_model().config,
                            model_kind="cvae")
    straight = _model()
    vu.train(straight, blob_data(64), blob_data(32, seed=1), config, out_dir=tmp_path / "a", progress=False)
    first = _model()
    vu.train(first, blob_data(64), blob_data(32, seed=1), vu.TrainConfig(**{**config.__dict__, "epochs": 1}),
             out_dir=tmp_path / "b", progress=False)
    resumed = _model()
    history = vu.train(resumed, blob_data(64), blob_data(32, seed=1), config, out_dir=tmp_path / "b",
                       resume=tmp_path / "b" / "last.pt", progress=False)
    assert all(torch.equal(p, q) for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()))
    assert {"test_neg_elbo", "test_recon", "test_kl"} <= set(history[-1])
    loaded = vu.load_checkpoint(tmp_path / "b" / "last.pt")
    assert isinstance(loaded, ConditionalVAE) and loaded.n_classes == 4

    classifier = vu.FeatureClassifier(n_classes=4)
    with torch.no_grad():  # a classifier that always answers 3, whatever the image
        classifier.head.weight.zero_()
        classifier.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 1.0]))
    report = vu.evaluation_report(loaded, blob_data(32, seed=1), classifier=classifier, n_samples=40, iwae_k=4)
    # every sample of class 3 counts, none of the others
    assert report["conditional_accuracy_per_class"] == [0, 0, 0, 1] and report["conditional_accuracy"] == 0.25
    assert "conditional accuracy" in vu.format_report(report)
    assert any("-log p(x|y)" in note for note in report["notes"])


def test_training_on_unlabelled_images_is_refused_before_any_work():
    unlabelled = vu.ImageDataset(blob_data(16).images)
    with pytest.raises(ValueError, match="no class labels"):
        vu.train(_model(), unlabelled, progress=False)
    with pytest.raises(ValueError, match="labels up to 3 but the ConditionalVAE knows 2 classes"):
        vu.train(_model(2), blob_data(16), progress=False)


def test_the_command_line_trains_samples_and_refuses_what_does_not_apply(idx_root, tmp_path, capsys):
    main(["train", "--model", "cvae", "--data-dir", str(idx_root), "--epochs", "1", "--batch-size", "16",
          "--out", str(tmp_path / "run"), "--quiet"])
    metrics = json.loads(capsys.readouterr().out)
    checkpoint = str(tmp_path / "run" / "last.pt")
    assert metrics["model_kind"] == "cvae" and vu.load_checkpoint(checkpoint).n_classes == 10
    assert main(["sample", checkpoint, "--out", str(tmp_path / "rows.png"), "--n", "20"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 20  # two per class, one row per class
    assert main(["sample", checkpoint, "--out", str(tmp_path / "seven.png"), "--n", "4", "--label", "7"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == 7
    assert "--label 10: expected a number from 0 to 9" in _refused(
        ["sample", checkpoint, "--out", str(tmp_path / "bad.png"), "--label", "10"], capsys)
    assert "decodes z with a label" in _refused(["evaluate", checkpoint, "--sampler", "gmm", "--data-dir",
                                                 str(idx_root)], capsys)


def test_the_command_line_refuses_it_on_a_set_without_labels(tmp_path, capsys):
    write_image_folder(tmp_path / "flat", flat=True)
    assert "needs class labels" in _refused(["train", "--model", "cvae", "--dataset", "folder", "--data-dir",
                                             str(tmp_path / "flat"), "--epochs", "1", "--out", str(tmp_path / "run"),
                                             "--quiet"], capsys)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_label_for_an_unconditional_model_is_refused(tmp_path, capsys):
    model = vu.VAE(SMALL)
    vu.save_checkpoint(model, tmp_path / "vae.pt")
    assert "not conditioned on a label" in _refused(["sample", str(tmp_path / "vae.pt"), "--out",
                                                     str(tmp_path / "x.png"), "--label", "1"], capsys)
