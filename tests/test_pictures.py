"""The notebook's pictures from a terminal: reconstruct, interpolate and traverse write their grids for every family
where they apply, and refuse the others in one line."""
import json

import pytest
import torch
from PIL import Image

import vae_utils as vu
from vae_utils.cli import main

from conftest import SMALL, write_mnist_like


@pytest.fixture
def checkpoints(tmp_path):
    """A VAE, a hierarchical VAE and a VQ-VAE, saved untrained with the small Fashion-MNIST they read from."""
    root = tmp_path / "data"
    write_mnist_like(root, n_test=40)
    paths = {}
    for name, model in (("vae", vu.VAE(SMALL)), ("hvae", vu.HVAE(groups=(1, 2), widths=(8, 8), z_channels=2)),
                        ("vqvae", vu.VQVAE(vu.VQVAEConfig(channels=(8, 8), codebook_size=8, code_dim=4)))):
        config = vu.TrainConfig(model=model.config, model_kind=model.kind, data_root=str(root))
        paths[name] = vu.save_checkpoint(model, tmp_path / f"{name}.pt", train_config=config.to_dict())
    return paths


def _run(argv, capsys) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size  # (width, height)


def test_reconstruct_writes_the_test_images_over_their_reconstructions(checkpoints, tmp_path, capsys):
    out = tmp_path / "recon.png"
    assert _run(["reconstruct", str(checkpoints["vae"]), "--out", str(out), "--n", "6"], capsys)["rows"] == 2
    assert _size(out) == (2 + 6 * 30, 2 + 2 * 30)  # make_grid: 28-pixel images, 2-pixel padding
    result = _run(["reconstruct", str(checkpoints["hvae"]), "--out", str(out), "--n", "4"], capsys)
    assert result["rows"] == 1 + 3  # the originals, then from the top 1, 2 and 3 groups


def test_interpolate_decodes_paths_between_pairs_of_test_images(checkpoints, tmp_path, capsys):
    out = tmp_path / "interp.png"
    result = _run(["interpolate", str(checkpoints["vae"]), "--out", str(out), "--pairs", "3", "--steps", "7",
                   "--method", "slerp"], capsys)
    assert result["method"] == "slerp" and _size(out) == (2 + 7 * 30, 2 + 3 * 30)


def test_traverse_varies_the_most_active_dimensions(checkpoints, tmp_path, capsys):
    out = tmp_path / "traverse.png"
    result = _run(["traverse", str(checkpoints["vae"]), "--out", str(out), "--dims", "3", "--steps", "5"], capsys)
    model = vu.load_checkpoint(checkpoints["vae"])
    stats = vu.latent_stats(model, vu.load_dataset("fashion-mnist", "test", root=tmp_path / "data"))
    assert result["dims"] == stats.kl_per_dim.argsort(descending=True)[:3].tolist()
    assert _size(out) == (2 + 5 * 30, 2 + 3 * 30)


@pytest.mark.parametrize("command", ["interpolate", "traverse"])
@pytest.mark.parametrize("family", ["hvae", "vqvae"])
def test_a_picture_a_family_cannot_draw_is_refused_in_one_line(checkpoints, tmp_path, capsys, command, family):
    with pytest.raises(SystemExit) as exit_:
        main([command, str(checkpoints[family]), "--out", str(tmp_path / "x.png")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"holds a {family} model: {command} needs a Gaussian posterior" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_bad_arguments_are_refused_before_any_work(checkpoints, tmp_path, capsys):
    for argv, message in [(["reconstruct", str(checkpoints["vae"]), "--out", str(tmp_path / "x.jpg")], "name a .png"),
                          (["interpolate", str(checkpoints["vae"]), "--out", str(tmp_path / "x.png"), "--steps", "1"],
                           "--steps 1: expected a number from 2"),
                          (["traverse", str(checkpoints["vae"]), "--out", str(tmp_path / "x.png"), "--span", "0"],
                           "--span 0.0"),
                          (["reconstruct", str(checkpoints["vae"]), "--out", str(tmp_path / "x.png"), "--n", "41"],
                           "40 images, fewer than the 41")]:
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err
    assert torch.tensor(0).item() == 0 and not list(tmp_path.glob("x.*"))
