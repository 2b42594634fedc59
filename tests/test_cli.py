"""`python -m vae_utils train`: the notebook's pipeline from a terminal."""
import json
import subprocess
import sys

import pytest

import vae_utils as vu
from vae_utils.cli import main


def test_train_writes_a_checkpoint_and_metrics(idx_root, tmp_path):
    out = tmp_path / "run"
    main(["train", "--data-dir", str(idx_root), "--epochs", "2", "--subset", "32", "--batch-size", "16",
          "--latent-dim", "3", "--out", str(out), "--quiet"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"test_neg_elbo", "test_recon", "test_kl", "train_seconds", "epochs"} <= set(metrics)
    assert metrics["epochs"] == 2 and metrics["train_seconds"] > 0
    assert metrics["test_neg_elbo"] == pytest.approx(metrics["test_recon"] + metrics["test_kl"])
    assert vu.load_checkpoint(out / "last.pt").latent_dim == 3


def test_bad_arguments_exit_with_a_one_line_message(idx_root, tmp_path):
    result = subprocess.run([sys.executable, "-m", "vae_utils", "train", "--data-dir", str(idx_root),
                             "--latent-dim", "0", "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "latent_dim=0" in result.stderr and "Traceback" not in result.stderr


def test_an_unknown_dataset_lists_the_known_ones(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--dataset", "cifar10", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "unknown data set 'cifar10': known data sets are ['fashion-mnist', 'mnist']" in capsys.readouterr().err


def test_evaluate_prints_the_paper_metrics_as_json(idx_root, tmp_path, capsys):
    out = tmp_path / "run"
    main(["train", "--data-dir", str(idx_root), "--epochs", "1", "--batch-size", "16", "--latent-dim", "3",
          "--out", str(out), "--quiet"])
    capsys.readouterr()
    main(["evaluate", str(out / "last.pt"), "--data-dir", str(idx_root), "--iwae-k", "5", "--samples", "40",
          "--classifier", str(tmp_path / "clf.pt"), "--binarized"])
    report = json.loads(capsys.readouterr().out)
    assert {"neg_elbo", "iwae_nll", "iwae_k", "bits_per_dim", "kl", "active_units", "frechet_distance"} <= set(report)
    assert report["iwae_k"] == 5 and report["binarized"] is True and report["n_test"] == 32
    assert (tmp_path / "clf.pt").is_file()  # the classifier is cached for the next evaluation


def test_classifier_command_trains_and_caches_the_feature_classifier(idx_root, tmp_path, capsys):
    main(["classifier", "--data-dir", str(idx_root), "--epochs", "1", "--out", str(tmp_path / "clf.pt")])
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["test_accuracy"] <= 1 and (tmp_path / "clf.pt").is_file()


def test_resume_from_the_command_line_continues_to_the_total_epochs(idx_root, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data-dir", str(idx_root), "--batch-size", "16", "--latent-dim", "3", "--out", str(out),
            "--quiet"]
    main(args + ["--epochs", "1"])
    main(["train", "--data-dir", str(idx_root), "--batch-size", "16", "--out", str(out), "--quiet", "--epochs", "2",
          "--resume", str(out / "last.pt")])  # no --latent-dim: the checkpoint's architecture is used
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and [h["epoch"] for h in metrics["history"]] == [1, 2]
