"""Held-out validation: the split, what it chooses (best.pt, the returned model), early stopping, and a test split
that training does not read until the end."""
import json
import math

import pytest
import torch

import vae_utils as vu
from conftest import SMALL, blob_data
from vae_utils.cli import main
from vae_utils.training import epochs_without_improvement


class CountingImages(torch.utils.data.Dataset):
    """A test set that counts the images read from it."""

    def __init__(self, data: vu.ImageDataset) -> None:
        self.data, self.reads = data, 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        self.reads += 1
        return self.data[i]


def _config(**overrides) -> vu.TrainConfig:
    return vu.TrainConfig(**{"epochs": 2, "batch_size": 16, "precision": "fp32", "model": SMALL, "val_size": 16,
                             **overrides})


def test_the_split_is_disjoint_complete_and_a_function_of_the_seed_alone():
    train_rows, val_rows = vu.validation_split(100, 20, seed=7)
    assert len(val_rows) == 20 and len(train_rows) == 80
    assert set(train_rows.tolist()).isdisjoint(val_rows.tolist())
    assert sorted(train_rows.tolist() + val_rows.tolist()) == list(range(100))
    assert train_rows.tolist() == sorted(train_rows.tolist())  # file order: a subset takes the first of them
    again = vu.validation_split(100, 20, seed=7)
    assert torch.equal(again[0], train_rows) and torch.equal(again[1], val_rows)
    assert not torch.equal(vu.validation_split(100, 20, seed=8)[1], val_rows)


@pytest.mark.parametrize("val_size", [64, 100])
def test_a_validation_split_as_large_as_the_data_is_refused(val_size):
    with pytest.raises(ValueError, match="val_size=.* holds 64 images"):
        vu.train(vu.VAE(SMALL), blob_data(64), None, _config(val_size=val_size), progress=False)


def test_patience_without_a_validation_split_is_refused():
    with pytest.raises(ValueError, match="patience=.*pass val_size"):
        vu.TrainConfig(patience=3)


def test_training_never_sees_a_validation_image(monkeypatch):
    data, seen = blob_data(64), []
    real = vu.training.iterate_batches

    def spy(dataset, batch_size, device, order=None, **kwargs):
        seen.extend(order.tolist())
        return real(dataset, batch_size, device, order, **kwargs)

    monkeypatch.setattr(vu.training, "iterate_batches", spy)
    vu.train(vu.VAE(SMALL), data, None, _config(), progress=False)
    train_rows, val_rows = vu.validation_split(64, 16, seed=0)
    assert sorted(seen) == sorted(train_rows.tolist() * 2)  # each training image once per epoch, no validation one


def test_a_subset_is_taken_from_the_images_left_after_the_validation_split(monkeypatch):
    seen = []
    real = vu.training.iterate_batches
    monkeypatch.setattr(vu.training, "iterate_batches",
                        lambda d, b, dev, order=None, **kw: seen.extend(order.tolist()) or real(d, b, dev, order, **kw))
    vu.train(vu.VAE(SMALL), blob_data(64), None, _config(epochs=1, subset=10), progress=False)
    assert sorted(seen) == vu.validation_split(64, 16, seed=0)[0][:10].tolist()
    with pytest.raises(ValueError, match="subset=49 but 48 training images remain"):
        vu.train(vu.VAE(SMALL), blob_data(64), None, _config(subset=49), progress=False)


def test_training_reads_no_test_image_until_it_scores_the_chosen_epoch_once():
    test = CountingImages(blob_data(24, seed=1))
    reads_per_epoch = []
    history = vu.train(vu.VAE(SMALL), blob_data(64), test, _config(epochs=3), progress=False,
                       on_epoch_end=lambda record: reads_per_epoch.append(test.reads))
    assert reads_per_epoch == [1, 1, 1]  # one image, read to check its shape before training; none while training
    assert test.reads == 1 + len(test)  # then the whole split once, at the end
    assert sum("test_neg_elbo" in h for h in history) == 1


def test_test_every_epoch_scores_the_test_split_after_each_epoch_and_chooses_nothing_with_it():
    test = CountingImages(blob_data(24, seed=1))
    history = vu.train(vu.VAE(SMALL), blob_data(64), test, _config(epochs=3, test_every_epoch=True), progress=False)
    assert test.reads == 1 + 3 * len(test)  # not again at the end: the chosen epoch already has its figures
    assert all("test_neg_elbo" in h for h in history)
    assert vu.selected_epoch(history) == min(history, key=lambda h: h["val_neg_elbo"])["epoch"]


def _scripted_validation(monkeypatch, figures: list[float]) -> None:
    """The validation -ELBO after epoch i is figures[i - 1] (the test split is scored for real)."""
    real, calls = vu.training.evaluate, iter(figures)

    def evaluate(model, dataset, **kwargs):
        scores = real(model, dataset, **kwargs)
        if len(dataset) == 16:  # the validation split of _config
            scores["neg_elbo"] = next(calls)
        return scores

    monkeypatch.setattr(vu.training, "evaluate", evaluate)


def test_early_stopping_stops_after_patience_epochs_without_a_better_validation_figure(monkeypatch, tmp_path):
    _scripted_validation(monkeypatch, [9.0, 5.0, 6.0, 5.0, 7.0, 1.0, 0.5])
    model = vu.VAE(SMALL)
    history = vu.train(model, blob_data(64), blob_data(24, seed=1), _config(epochs=7, patience=3), progress=False,
                       out_dir=tmp_path / "run")
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]  # epochs 3, 4 and 5 are no better than epoch 2's 5.0
    assert vu.selected_epoch(history) == 2 and "test_neg_elbo" in history[1]
    reason = vu.stop_reason(history, _config(epochs=7, patience=3))
    assert "after epoch 5" in reason and "for 3 epochs" in reason and "at epoch 2" in reason
    best, last = (vu.read_checkpoint(tmp_path / "run" / name) for name in ("best.pt", "last.pt"))
    assert len(best["history"]) == 2 and len(last["history"]) == 5  # best.pt: the best validation epoch
    assert all(torch.equal(v, best["model_state"][k]) for k, v in model.state_dict().items())  # its weights returned


def test_an_early_stopped_run_is_finished_until_the_patience_grows(monkeypatch, tmp_path):
    _scripted_validation(monkeypatch, [9.0, 5.0, 6.0, 6.0, 4.0, 7.0, 7.0])
    config = _config(epochs=7, patience=2)
    vu.train(vu.VAE(SMALL), blob_data(64), None, config, progress=False, out_dir=tmp_path / "run")
    with pytest.raises(ValueError, match="stopped early after epoch 4.*patience above 2"):
        vu.train(vu.VAE(SMALL), blob_data(64), None, config, progress=False, out_dir=tmp_path / "run",
                 resume=tmp_path / "run" / "last.pt")
    history = vu.train(vu.VAE(SMALL), blob_data(64), None, _config(epochs=7, patience=3), progress=False,
                       out_dir=tmp_path / "run", resume=tmp_path / "run" / "last.pt")
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6, 7]
    assert vu.selected_epoch(history) == 5


@pytest.mark.parametrize("figures, warmup, expected", [
    ([3, 2, 1], 0, 0), ([1, 2, 3], 0, 2), ([1, 2, 0.5, 0.7], 0, 1),
    ([1, 2, 3, 4], 3, 2),  # epochs 1 and 2 fall inside the KL warm-up and do not count
])
def test_epochs_without_improvement_counts_from_the_best_figure(figures, warmup, expected):
    history = [{"epoch": i + 1, "val_neg_elbo": v} for i, v in enumerate(figures)]
    assert epochs_without_improvement(history, warmup_epochs=warmup) == expected


def test_the_returned_model_and_best_pt_hold_the_best_validation_epoch(tmp_path):
    model = vu.VAE(SMALL)
    data = blob_data(64)
    history = vu.train(model, data, None, _config(epochs=4, lr=3e-2), progress=False, out_dir=tmp_path / "run")
    chosen = vu.selected_epoch(history)
    assert history[chosen - 1]["val_neg_elbo"] == min(h["val_neg_elbo"] for h in history)
    best = vu.read_checkpoint(tmp_path / "run" / "best.pt")
    assert best["history"][-1]["epoch"] == chosen
    val = data.take(vu.validation_split(64, 16, seed=0)[1])
    assert vu.evaluate(model, val)["neg_elbo"] == pytest.approx(history[chosen - 1]["val_neg_elbo"], rel=1e-6)


def test_the_split_is_the_same_after_a_resume(tmp_path):
    def run(epochs, folder, resume=None):
        vu.set_seed(0)
        return vu.train(vu.VAE(SMALL), blob_data(64), None, _config(epochs=epochs, lr_schedule="constant"),
                        progress=False, out_dir=tmp_path / folder, resume=resume)
    full = run(2, "a")
    run(1, "b")
    resumed = run(2, "b", tmp_path / "b" / "last.pt")
    strip = lambda h: [{k: v for k, v in r.items() if k != "train_seconds"} for r in h]
    assert strip(resumed) == strip(full)
    with pytest.raises(vu.CheckpointError, match="val_size=16, not 8"):
        vu.train(vu.VAE(SMALL), blob_data(64), None, _config(epochs=3, val_size=8, lr_schedule="constant"),
                 progress=False,
                 out_dir=tmp_path / "b", resume=tmp_path / "b" / "last.pt")


def test_a_binarized_run_draws_its_validation_pixels_once():
    config = _config(binarize=True)
    _, _, val = vu.training.split_training_data(blob_data(64), config)
    _, _, again = vu.training.split_training_data(blob_data(64), config)
    assert set(val.images.unique().tolist()) <= {0, 255} and torch.equal(val.images, again.images)


def test_without_a_validation_split_nothing_is_chosen(tmp_path):
    history = vu.train(vu.VAE(SMALL), blob_data(64), blob_data(24, seed=1), _config(val_size=0), progress=False,
                       out_dir=tmp_path / "run")
    assert vu.selected_epoch(history) == 2 and "test_neg_elbo" in history[-1] and "test_neg_elbo" not in history[0]
    assert len(vu.read_checkpoint(tmp_path / "run" / "best.pt")["history"]) == 2  # best.pt is the last epoch


def test_the_command_line_holds_out_validation_stops_early_and_says_so(idx_root, tmp_path):
    main(["train", "--data-dir", str(idx_root), "--epochs", "3", "--val-size", "16", "--patience", "1",
          "--batch-size", "16", "--latent-dim", "3", "--out", str(tmp_path / "run"), "--quiet", "--no-tensorboard"])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["val_size"] == 16 and metrics["config"]["patience"] == 1
    chosen = metrics["history"][metrics["selected_epoch"] - 1]
    assert metrics["test_neg_elbo"] == chosen["test_neg_elbo"] and metrics["val_neg_elbo"] == chosen["val_neg_elbo"]
    assert "validation" in metrics["selection"]
    stopped_early = len(metrics["history"]) < 3
    assert metrics["stopped"].startswith("stopped early") == stopped_early
    assert 'val_size = 16' in (tmp_path / "run" / "config.toml").read_text()
    assert math.isfinite(metrics["test_neg_elbo"])
