"""`python -m vae_utils train`: the notebook's pipeline from a terminal."""
import argparse
import json
import subprocess
import sys

import pytest

import vae_utils as vu
from vae_utils.cli import build_parser, main


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
        main(["train", "--dataset", "cifar100", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "unknown data set 'cifar100' (did you mean 'cifar10'?): known data sets are ['celeba'" in \
        capsys.readouterr().err


def test_evaluate_prints_the_paper_metrics_as_json(idx_root, tmp_path, capsys):
    out = tmp_path / "run"
    main(["train", "--data-dir", str(idx_root), "--epochs", "1", "--batch-size", "16", "--latent-dim", "3",
          "--out", str(out), "--quiet"])
    capsys.readouterr()
    main(["evaluate", str(out / "last.pt"), "--data-dir", str(idx_root), "--iwae-k", "5", "--samples", "40",
          "--classifier", str(tmp_path / "clf.pt"), "--binarized"])
    report = json.loads(capsys.readouterr().out)
    assert {"neg_elbo", "iwae_nll", "iwae_k", "bits_per_dim", "kl", "active_units"} <= set(report)
    # random pixels have no classes to learn: the classifier is near chance, so no Fréchet distance, and a note
    assert "frechet_distance" not in report and any("near chance" in note for note in report["notes"])
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


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vae_utils", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def _train(idx_root, out, *extra):
    main(["train", "--data-dir", str(idx_root), "--batch-size", "16", "--latent-dim", "3", "--out", str(out),
          "--quiet", "--epochs", "1", *extra])


def test_stdout_carries_only_the_json_result_even_with_progress(idx_root, tmp_path):
    result = _cli("train", "--data-dir", idx_root, "--epochs", "1", "--batch-size", "16", "--latent-dim", "3",
                  "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["epochs"] == 1
    assert "epoch   1/1" in result.stderr  # the progress line went to stderr


def test_evaluate_outside_the_repository_uses_the_shipped_classifier(idx_root, tmp_path):
    _train(idx_root, tmp_path / "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _cli("evaluate", tmp_path / "run" / "last.pt", "--data-dir", idx_root, "--iwae-k", "2", "--samples", "40",
                  cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["classifier"] == str(vu.features.SHIPPED_DIR / "classifier-fashion-mnist.pt")
    assert len(report["classifier_sha256"]) == 64
    assert "training a feature classifier" not in result.stderr and not list(elsewhere.iterdir())
    assert "IWAE NLL (k=2)" in result.stderr  # the readable report goes to stderr


@pytest.mark.parametrize("content, message", [
    (b"# a README\n", "is not a vae_utils checkpoint: it is not a zip archive"),
    (b"105", "is not a vae_utils checkpoint: it is not a zip archive"),
])
def test_evaluating_a_file_that_is_no_checkpoint_is_one_line(tmp_path, content, message):
    (tmp_path / "afile.txt").write_bytes(content)
    result = _cli("evaluate", tmp_path / "afile.txt")
    assert result.returncode == 2 and message in result.stderr
    assert result.stderr.count("\n") == 1 and "weights_only" not in result.stderr and "Traceback" not in result.stderr
    assert not result.stderr.rstrip().endswith("105")


def test_evaluating_the_classifier_checkpoint_says_it_is_not_a_vae(tmp_path):
    result = _cli("evaluate", vu.features.SHIPPED_DIR / "classifier-fashion-mnist.pt")
    assert result.returncode == 2
    assert "holds a feature-classifier checkpoint: evaluate scores " in result.stderr and result.stderr.count("\n") == 1
    assert " vae, " in result.stderr and " vqvae-prior, " in result.stderr  # every generative family


@pytest.mark.parametrize("flags, message", [
    (["--samples", "0"], "--samples 0"), (["--samples", "1000000000"], "--samples 1000000000"),
    (["--iwae-k", "1000000000"], "--iwae-k"), (["--subset", "3"], "--subset 3"),
])
def test_evaluate_checks_its_sizes_before_any_work(idx_root, tmp_path, flags, message, monkeypatch, capsys):
    _train(idx_root, tmp_path / "run")
    monkeypatch.setattr(vu.commands, "load_dataset", lambda *a, **k: pytest.fail("loaded data before checking"))
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tmp_path / "run" / "last.pt"), *flags])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_subset_larger_than_the_data_is_refused(idx_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _train(idx_root, tmp_path / "run", "--subset", "100000")
    assert exit_info.value.code == 2 and "subset=100000 but fashion-mnist/train holds 64" in capsys.readouterr().err


def test_resume_takes_the_runs_settings_and_records_them(idx_root, tmp_path):
    out = tmp_path / "run"
    _train(idx_root, out, "--lr", "0.01", "--beta", "2")
    main(["train", "--data-dir", str(idx_root), "--out", str(out), "--quiet", "--epochs", "2",
          "--resume", str(out / "last.pt")])
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert config["lr"] == 0.01 and config["beta"] == 2.0 and config["model"]["latent_dim"] == 3


@pytest.mark.parametrize("flag", [["--lr", "0.5"], ["--latent-dim", "5"], ["--seed", "3"], ["--binarized"],
                                  ["--precision", "bf16"], ["--kl-warmup-epochs", "2"], ["--beta", "4"]])
def test_resume_refuses_flags_that_change_the_run(idx_root, tmp_path, flag, capsys):
    out = tmp_path / "run"
    _train(idx_root, out, "--precision", "fp32")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data-dir", str(idx_root), "--out", str(out), "--quiet", "--epochs", "2",
              "--resume", str(out / "last.pt"), *flag])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "resume with the run's own settings" in err or "latent_dim" in err


def test_rerunning_into_a_folder_with_a_run_is_refused_unless_overwrite(idx_root, tmp_path, capsys):
    out = tmp_path / "run"
    _train(idx_root, out)
    with pytest.raises(SystemExit) as exit_info:
        _train(idx_root, out)
    assert exit_info.value.code == 2 and "--overwrite" in capsys.readouterr().err
    _train(idx_root, out, "--overwrite")


def test_resuming_a_finished_run_repairs_its_metrics(idx_root, tmp_path, capsys):
    out = tmp_path / "run"
    _train(idx_root, out)
    (out / "metrics.json").unlink()  # as if killed after the last checkpoint
    main(["train", "--data-dir", str(idx_root), "--out", str(out), "--quiet", "--resume", str(out / "last.pt")])
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 1
    assert "has already finished training" in capsys.readouterr().err


def test_a_diverging_run_ends_in_one_line(idx_root, tmp_path):
    result = _cli("train", "--data-dir", idx_root, "--epochs", "1", "--batch-size", "16", "--beta", "1e300",
                  "--out", tmp_path / "run", "--quiet")
    assert result.returncode == 1 and "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert "beta=1e+300" in result.stderr


def test_an_empty_output_folder_is_refused(idx_root):
    result = _cli("train", "--data-dir", idx_root, "--out", "")
    assert result.returncode == 2 and "--out is empty" in result.stderr


def test_the_classifier_command_refuses_zero_epochs_and_keeps_the_old_file(idx_root, tmp_path, capsys):
    target = tmp_path / "clf.pt"
    target.write_bytes(b"the previous classifier")
    with pytest.raises(SystemExit) as exit_info:
        main(["classifier", "--data-dir", str(idx_root), "--epochs", "0", "--out", str(target)])
    assert exit_info.value.code == 2 and target.read_bytes() == b"the previous classifier"


def test_the_classifier_command_writes_into_the_user_cache_by_default(idx_root, capsys):
    main(["classifier", "--data-dir", str(idx_root), "--epochs", "1", "--dataset", "mnist"])
    path = vu.features.cache_dir() / "classifiers" / "classifier-mnist.pt"
    assert json.loads(capsys.readouterr().out)["classifier"] == str(path) and path.is_file()


@pytest.mark.parametrize("name", ["cifar10", "svhn", "celeba", "folder"])
def test_every_data_set_trains_and_evaluates_from_the_command_line_on_its_real_file_format(name, tmp_path, monkeypatch,
                                                                                            capsys):
    from conftest import write_celeba, write_cifar10, write_image_folder, write_svhn

    root = tmp_path / "data"
    {"cifar10": write_cifar10, "svhn": write_svhn, "celeba": write_celeba,
     "folder": lambda r, m: write_image_folder(r, n=120)}[name](root, monkeypatch)
    out = tmp_path / "run"
    extra = ["--image-size", "16"] if name == "folder" else []
    main(["train", "--dataset", name, "--data-dir", str(root), "--epochs", "1", "--batch-size", "8", "--out", str(out),
          "--quiet", *extra])
    metrics = json.loads((out / "metrics.json").read_text())
    config = vu.read_checkpoint(out / "last.pt")["model_config"]
    assert metrics["epochs"] == 1 and config["in_channels"] == 3
    assert config["likelihood"] == "discretized-logistic" and config["image_size"] == (16 if name == "folder" else
                                                                                     64 if name == "celeba" else 32)
    capsys.readouterr()
    main(["evaluate", str(out / "last.pt"), "--data-dir", str(root), "--iwae-k", "2", "--samples", "8"])
    report = json.loads(capsys.readouterr().out)
    assert report["bits_per_dim"] > 0 and report["dataset"] == name
    # CelebA has no class labels to train features on; on the random labels of the other miniatures the classifier
    # is mostly near chance, which the report then says instead of giving a Fréchet distance
    notes = " ".join(report["notes"])
    assert ("has no class labels" in notes) == (name == "celeba")
    assert name == "celeba" or ("frechet_distance" in report) != ("near chance" in notes)


def test_vqvae_then_its_prior_then_evaluate_from_the_command_line(idx_root, tmp_path, capsys):
    vq, prior = tmp_path / "vq", tmp_path / "prior"
    main(["train", "--model", "vqvae", "--codebook-size", "8", "--data-dir", str(idx_root), "--epochs", "1",
          "--batch-size", "16", "--out", str(vq), "--quiet"])
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["model_kind"] == "vqvae" and {"test_recon", "test_commitment", "test_bound"} <= set(metrics)
    assert vu.load_checkpoint(vq / "best.pt").config.codebook_size == 8
    main(["train-prior", str(vq / "best.pt"), "--data-dir", str(idx_root), "--epochs", "1", "--batch-size", "16",
          "--out", str(prior), "--quiet"])
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["model_kind"] == "vqvae-prior"
    assert json.loads((prior / "metrics.json").read_text())["config"]["lr"] == 1e-3  # the prior's default
    assert metrics["test_bound"] == pytest.approx(metrics["test_prior_nll"] + metrics["test_recon"], rel=1e-5)
    main(["train-prior", "--resume", str(prior / "last.pt"), "--epochs", "2", "--data-dir", str(idx_root),
          "--out", str(prior), "--quiet"])
    assert json.loads(capsys.readouterr().out)["epochs"] == 2
    main(["evaluate", str(prior / "best.pt"), "--data-dir", str(idx_root), "--samples", "40", "--classifier",
          str(tmp_path / "clf.pt"), "--temperature", "0.8"])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["prior"] == "learned" and report["temperature"] == 0.8 and report["n_test"] == 32
    assert {"bound", "bound_uniform", "codes_used", "perplexity"} <= set(report)  # (random data: no FD, see above)
    assert "bound on -log p(x)" in captured.err


def test_flags_of_the_other_family_are_refused(idx_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "vqvae", "--latent-dim", "3", "--data-dir", str(idx_root), "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "--latent-dim does not apply to a VQVAEConfig" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train-prior", "--out", str(tmp_path / "p")])
    assert "name the VQ-VAE checkpoint" in capsys.readouterr().err


def test_the_long_recipe_from_the_command_line_binarizes_and_keeps_its_model(idx_root, tmp_path, capsys):
    out = tmp_path / "long"
    main(["train", "--recipe", "long", "--data-dir", str(idx_root), "--epochs", "1", "--subset", "32", "--val-size",
          "16", "--out", str(out), "--quiet"])
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert config["binarize"] is True and config["model"]["latent_dim"] == 64 and config["epochs"] == 1
    assert config["val_size"] == 16 and config["patience"] == 51  # the papers' protocol, the split sized to the data
    assert vu.TrainConfig.recipe("long").val_size == 10_000


def test_help_and_argument_errors_load_no_torchvision_matplotlib_or_data_code():
    """`--help` answers in about the time of `import torch`: the work's modules load only once a command runs."""
    probe = ("import sys\nfrom vae_utils.cli import main\n"
             "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
             "try:\n    main(['train', '--no-such-flag'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('torchvision', 'matplotlib', 'PIL', 'vae_utils.data', 'vae_utils.training')"
             " if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout[-500:]


def test_the_help_lists_every_data_set():
    from vae_utils.cli import DATASET_NAMES

    assert DATASET_NAMES == sorted(vu.DATASETS)


def test_a_folder_run_remembers_its_folder_for_evaluate(tmp_path, capsys):
    from conftest import write_image_folder

    write_image_folder(tmp_path / "pics", n=90)
    main(["train", "--dataset", "folder", "--data-dir", str(tmp_path / "pics"), "--image-size", "16", "--epochs", "1",
          "--batch-size", "8", "--out", str(tmp_path / "run"), "--quiet"])
    config = vu.read_checkpoint(tmp_path / "run" / "last.pt")["train_config"]
    assert config["data_root"] == str((tmp_path / "pics").resolve())
    capsys.readouterr()
    main(["evaluate", str(tmp_path / "run" / "last.pt"), "--iwae-k", "2", "--samples", "8"])  # no --data-dir
    assert json.loads(capsys.readouterr().out)["n_test"] > 0


def test_resume_without_out_continues_in_the_checkpoints_folder(idx_root, tmp_path, capsys):
    main(["train", "--data-dir", str(idx_root), "--epochs", "1", "--batch-size", "16", "--latent-dim", "3",
          "--out", str(tmp_path / "run"), "--quiet"])
    main(["train", "--resume", str(tmp_path / "run" / "last.pt"), "--epochs", "2", "--quiet"])  # as the Ctrl-C hint
    assert len(vu.read_checkpoint(tmp_path / "run" / "last.pt")["history"]) == 2


def test_sample_writes_a_repeatable_grid_for_a_family_that_samples(tmp_path, capsys):
    model = vu.save_checkpoint(vu.VAE(latent_dim=2), tmp_path / "vae.pt")
    main(["sample", str(model), "--n", "12", "--nrow", "4", "--out", str(tmp_path / "a.png")])
    main(["sample", str(model), "--n", "12", "--nrow", "4", "--out", str(tmp_path / "b.png")])
    assert json.loads(capsys.readouterr().out.split("}\n")[0] + "}")["n"] == 12
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()  # seed 0 both times
    from PIL import Image

    assert Image.open(tmp_path / "a.png").size == (4 * 30 + 2, 3 * 30 + 2)  # 4 x 3 images of 28 + 2 padding


@pytest.mark.parametrize("argv, message", [
    (["--n", "0"], "--n 0"),
    (["--temperature", "0"], "--temperature 0"),
    (["--out", "grid.jpg"], "name a .png file"),
])
def test_sample_refuses_bad_arguments_in_one_line(tmp_path, capsys, argv, message):
    model = vu.save_checkpoint(vu.VAE(latent_dim=2), tmp_path / "vae.pt")
    out = ["--out", str(tmp_path / "grid.png")] if "--out" not in argv else []
    with pytest.raises(SystemExit) as info:
        main(["sample", str(model), *out, *argv])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_sample_says_a_vqvae_alone_cannot_sample(tmp_path, capsys):
    path = vu.save_checkpoint(vu.VQVAE(), tmp_path / "vq.pt")
    with pytest.raises(SystemExit):
        main(["sample", str(path), "--out", str(tmp_path / "g.png")])
    assert "cannot sample" in capsys.readouterr().err


def test_every_flag_of_the_help_has_its_own_placeholder():
    parser = build_parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    metavars = [a.metavar for a in train._actions if a.metavar is not None and isinstance(a.metavar, str)]
    assert len(metavars) == len(set(metavars)), sorted(m for m in metavars if metavars.count(m) > 1)
    assert "--model-ema-decay MODEL_EMA_DECAY" in train.format_help()
