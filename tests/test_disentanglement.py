"""dSprites (the release's file, and the same grid drawn offline) and disentanglement_lib's metrics: the mutual
information gap (MIG), the β-VAE and FactorVAE scores, DCI, SAP and modularity."""
import json
import math

import numpy as np
import pytest
import torch

import vae_utils as vu
from vae_utils import dsprites
from vae_utils.cli import main
from vae_utils.disentanglement import binned, discrete_mutual_information

GRID = (1, 3, 6, 40, 32, 32)


def test_the_grid_is_the_releases_in_its_order():
    assert dsprites.FACTOR_SIZES == GRID and math.prod(GRID) == 737_280
    f = dsprites.grid_factors(torch.tensor([0, 1, 32, 737_279]))
    assert f.tolist() == [[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0], [0, 2, 5, 39, 31, 31]]
    values = dsprites.factor_values()
    assert values[2].tolist() == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert values[3][0] == 0 and values[3][-1] == pytest.approx(2 * math.pi) and len(values[3]) == 40


def test_the_splits_partition_the_grid_and_any_prefix_is_a_uniform_sample():
    test, train = dsprites.split_rows("test"), dsprites.split_rows("train")
    assert len(test) == 73_728 and len(train) == 737_280 - 73_728
    assert torch.cat([test, train]).unique().numel() == 737_280
    shapes = dsprites.grid_factors(test[:3000])[:, 1]
    assert all(abs(float((shapes == s).float().mean()) - 1 / 3) < 0.05 for s in range(3))


def _render(**given) -> torch.Tensor:
    row = dict(color=0, shape=0, scale=5, orientation=0, pos_x=16, pos_y=16) | given
    return dsprites.render(torch.tensor([[row[n] for n in dsprites.FACTOR_NAMES]]))[0, 0] > 0


def _cropped(mask: torch.Tensor) -> torch.Tensor:
    rows, cols = mask.nonzero().T
    return mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def test_the_drawn_shapes_follow_their_factors():
    square = _render()
    rows, cols = square.nonzero().T
    height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
    assert int(square.sum()) == height * width and height == width  # a filled, upright square
    turned = _render(orientation=5)  # 45 degrees: a diamond, as wide as the square's diagonal
    assert int(turned.any(0).sum()) == pytest.approx(math.sqrt(2) * width, abs=2)
    assert int(turned.sum()) == pytest.approx(int(square.sum()), rel=0.1)  # turning keeps the area
    heart = _cropped(_render(shape=2))
    assert torch.equal(heart, heart.flip(1))  # mirror-symmetric at orientation 0
    assert heart[0].sum() < heart[len(heart) // 3].sum() and heart[-1].sum() <= 3  # two lobes on top, a tip below
    ellipse = _render(shape=1)
    assert ellipse.any(0).sum() > 1.5 * ellipse.any(1).sum()  # wider than tall at orientation 0
    small, large = _render(scale=0).sum().item(), _render(scale=5).sum().item()
    assert large / small == pytest.approx(4, rel=0.25)  # area grows with the square of the scale (0.5 -> 1)
    left, right = _render(pos_x=0).nonzero()[:, 1].float().mean(), _render(pos_x=31).nonzero()[:, 1].float().mean()
    assert right - left == pytest.approx(32, abs=1)  # from centre 16 to 48 px
    assert _render(pos_y=31).nonzero()[:, 0].float().mean() > 40  # position y grows downwards, as in the release


def test_the_generated_set_carries_its_factors_and_shape_labels():
    ds = vu.load_dataset("dsprites-generated", "test", subset=300)
    assert len(ds) == 300 and ds.image_shape == (1, 64, 64) and ds.name == "dsprites-generated/test"
    assert ds.factor_names == dsprites.FACTOR_NAMES and torch.equal(ds.labels, ds.factors[:, 1])
    assert ds.classes == ["square", "ellipse", "heart"]
    assert set(ds.images.unique().tolist()) == {0, 255}
    assert torch.equal(ds.factors, dsprites.grid_factors(dsprites.split_rows("test")[:300]))
    assert torch.equal(ds.take(torch.tensor([5, 7])).factors, ds.factors[[5, 7]])
    assert torch.equal(vu.binarize(ds).factors, ds.factors)
    with pytest.raises(ValueError, match="subset=80000 but dsprites-generated/test holds 73728"):
        vu.load_dataset("dsprites-generated", "test", subset=80_000)


def _small_release(tmp_path, monkeypatch, **replace):
    """A file in the release's layout on a small grid (the module's grid patched to it)."""
    grid = (1, 3, 2, 2, 2, 2)
    monkeypatch.setattr(dsprites, "FACTOR_SIZES", grid)
    n = math.prod(grid)
    factors = dsprites.grid_factors(torch.arange(n))
    arrays = dict(imgs=(torch.rand(n, 64, 64) > 0.5).numpy().astype(np.uint8), latents_classes=factors.numpy(),
                  latents_values=factors.double().numpy())
    arrays.update(replace)
    path = tmp_path / dsprites.RELEASE_FILE
    np.savez_compressed(path, **{k: v for k, v in arrays.items() if v is not None})
    return path, arrays


def test_the_release_is_read_in_the_same_split(tmp_path, monkeypatch):
    path, arrays = _small_release(tmp_path, monkeypatch)
    ds = vu.load_dataset("dsprites", "test", root=tmp_path)
    rows = dsprites.split_rows("test")
    assert len(ds) == len(rows) == 4 and ds.name == "dsprites/test"
    assert torch.equal(ds.images[:, 0], torch.from_numpy(arrays["imgs"][rows.numpy()]) * 255)
    assert torch.equal(ds.factors, torch.from_numpy(arrays["latents_classes"])[rows])


@pytest.mark.parametrize("damage, message", [
    (dict(latents_classes=None), r"lacks the key\(s\) \['latents_classes'\]"),
    (dict(imgs=np.zeros((5, 64, 64), np.uint8)), r"imgs holds uint8 of shape \(5, 64, 64\)"),
    (dict(imgs=np.full((48, 64, 64), 255, np.uint8)), "pixels other than 0/1"),
])
def test_a_file_that_is_not_the_release_is_one_clear_error(tmp_path, monkeypatch, damage, message):
    _small_release(tmp_path, monkeypatch, **damage)
    with pytest.raises(ValueError, match=message):
        vu.load_dataset("dsprites", "train", root=tmp_path)


def test_a_missing_or_unreadable_release_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="dsprites-generated"):
        vu.load_dataset("dsprites", "train", root=tmp_path)
    (tmp_path / dsprites.RELEASE_FILE).write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable .npz file"):
        vu.load_dataset("dsprites", "train", root=tmp_path)


def test_discrete_mutual_information_by_hand():
    a, b = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    assert discrete_mutual_information(a, a) == pytest.approx(math.log(2))  # = H(a)
    assert discrete_mutual_information(a, b) == pytest.approx(0.0)
    assert binned(np.array([[0.0], [0.49], [0.51], [1.0]]), 2)[:, 0].tolist() == [0, 0, 1, 1]


def test_mig_is_one_for_one_dimension_per_factor_and_zero_for_a_copied_one():
    factors = dsprites.grid_factors(torch.randperm(737_280, generator=torch.Generator().manual_seed(0))[:20_000])
    names = dsprites.FACTOR_NAMES
    codes = factors[:, 1:].double() + 0.01 * torch.randn(len(factors), 5, dtype=torch.float64)
    result = vu.mutual_information_gap(codes, factors, names, bins=40)
    assert result["mig"] == pytest.approx(1.0, abs=0.03)  # less the estimator's small bias on 20,000 images
    assert set(result["mig_per_factor"]) == set(names[1:])
    copied = torch.cat([codes, codes[:, :1]], 1)  # the shape in two dimensions: no gap for it
    gaps = vu.mutual_information_gap(copied, factors, names, bins=40)["mig_per_factor"]
    assert gaps["shape"] == pytest.approx(0.0, abs=1e-9) and gaps["scale"] == pytest.approx(1.0, abs=0.02)
    noise = vu.mutual_information_gap(torch.randn(20_000, 5), factors, names)
    assert noise["mig"] < 0.05


def test_the_report_and_evaluate_give_mig_on_dsprites(tmp_path, capsys):
    torch.manual_seed(0)
    model = vu.VAE(vu.VAEConfig.for_dataset("dsprites-generated", channels=(8, 8, 8, 8), hidden_dim=16))
    test = vu.load_dataset("dsprites-generated", "test", subset=200)
    report = vu.evaluation_report(model, test, iwae_k=2)
    assert 0 <= report["mig"] <= 1 and report["mig_images"] == 200 and "MIG" in vu.format_report(report)
    for key in ("beta_vae_score", "factor_vae_score", "dci_disentanglement", "dci_completeness", "sap", "modularity"):
        assert 0 <= report[key] <= 1, key
    assert "FactorVAE score" in vu.format_report(report) and "DCI" in vu.format_report(report)
    vu.save_checkpoint(model, tmp_path / "m.pt", train_config=vu.TrainConfig.for_dataset("dsprites-generated",
                                                                                         model=model.config).to_dict())
    assert main(["evaluate", str(tmp_path / "m.pt"), "--subset", "200", "--iwae-k", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == "dsprites-generated" and result["mig_images"] == 200 and "sap" in result
    assert any("generative factors" in note for note in result["notes"]) and "frechet_distance" not in result


def test_mig_needs_factors_and_a_gaussian_posterior():
    model = vu.VAE(vu.VAEConfig(latent_dim=2, channels=(4,), hidden_dim=0))
    with pytest.raises(ValueError, match="carries no generative factors"):
        vu.mig(model, vu.ImageDataset(torch.zeros(4, 1, 28, 28, dtype=torch.uint8)))
    with pytest.raises(ValueError, match="expected factors of shape"):
        vu.ImageDataset(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), factors=torch.zeros(4, 2), factor_names=("a",))


# ---- the rest of the suite: hand-made codes whose scores are known --------------------------------------------------

def _uniform_factors(sizes=(2, 4, 5), n=6_000, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(s, (n,), generator=g) for s in sizes], 1)


def _copying(factors: torch.Tensor) -> torch.Tensor:
    """One latent dimension per factor holding its index, and a little noise: a perfectly disentangled code."""
    return factors.double() + 0.01 * torch.randn(factors.shape, dtype=torch.float64,
                                                 generator=torch.Generator().manual_seed(1))


def _noise(factors: torch.Tensor) -> torch.Tensor:
    return torch.randn(factors.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))


def test_beta_vae_and_factor_vae_scores_are_one_for_a_copying_code_and_chance_for_noise():
    from vae_utils.disentanglement import beta_vae_score, factor_vae_score

    factors = _uniform_factors()
    assert beta_vae_score(_copying(factors), factors, num_train=2_000, num_eval=1_000)["beta_vae_score"] == 1.0
    assert factor_vae_score(_copying(factors), factors, num_train=2_000, num_eval=1_000)["factor_vae_score"] == 1.0
    chance = 1 / factors.shape[1]
    assert beta_vae_score(_noise(factors), factors, num_train=2_000, num_eval=1_000)["beta_vae_score"] == \
        pytest.approx(chance, abs=0.05)
    # noise: every dimension votes for whichever factor came up, so the majority vote is right about a third of the time
    assert factor_vae_score(_noise(factors), factors, num_train=2_000, num_eval=1_000)["factor_vae_score"] == \
        pytest.approx(chance, abs=0.06)


def test_the_factor_vae_score_ignores_dimensions_that_do_not_vary():
    from vae_utils.disentanglement import factor_vae_score

    factors = _uniform_factors()
    codes = torch.cat([_copying(factors), torch.zeros(len(factors), 2, dtype=torch.float64)], 1)  # two dead dims
    result = factor_vae_score(codes, factors, num_train=1_000, num_eval=500)
    assert result["factor_vae_active_dims"] == 3 and result["factor_vae_score"] == 1.0
    assert factor_vae_score(torch.zeros(100, 3), factors[:100])["factor_vae_score"] == 0.0


def test_dci_is_one_for_a_copying_code_and_low_for_noise():
    from vae_utils.disentanglement import dci

    factors = _uniform_factors(n=3_000)
    perfect = dci(_copying(factors), factors)
    assert perfect["dci_disentanglement"] == pytest.approx(1.0, abs=0.02)
    assert perfect["dci_completeness"] == pytest.approx(1.0, abs=0.02)
    assert perfect["dci_informativeness_test"] == 1.0
    noise = dci(_noise(factors), factors)
    assert noise["dci_disentanglement"] < 0.2 and noise["dci_completeness"] < 0.2
    assert noise["dci_informativeness_test"] < 0.5  # chance: (1/2 + 1/4 + 1/5) / 3 = 0.32


def test_sap_is_the_gap_between_the_two_best_dimensions():
    from vae_utils.disentanglement import sap_score

    factors = _uniform_factors(sizes=(2, 2), n=3_000)
    one_each = _copying(factors)
    # a binary factor in one dimension: accuracy 1 there, about 0.5 (a balanced guess) in the other
    assert sap_score(one_each, factors)["sap"] == pytest.approx(0.5, abs=0.05)
    both_in_two = torch.cat([one_each, one_each], 1)  # each factor held by two dimensions: no gap
    assert sap_score(both_in_two, factors)["sap"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="at least two"):
        sap_score(one_each[:, :1], factors)


def test_modularity_by_hand_one_modular_dimension_and_one_that_mixes_two_factors():
    from vae_utils.disentanglement import modularity

    factors = _uniform_factors(sizes=(2, 2), n=12_000)
    a, b = factors[:, 0].double(), factors[:, 1].double()
    # dimension 0 holds a alone (per-dimension modularity 1); dimension 1 holds a and b equally (I = ln 2 each:
    # squared MIs equal, modularity 0); the mean is 1/2 up to the finite-sample MI of dimension 0 with b
    result = modularity(torch.stack([a, a + 2 * b], 1), factors)
    assert result["modularity"] == pytest.approx(0.5, abs=0.01)
    assert modularity(_copying(factors), factors)["modularity"] == pytest.approx(1.0, abs=1e-3)
    assert result["explicitness_test"] == pytest.approx(1.0, abs=0.01)
    assert modularity(_noise(factors), factors)["explicitness_test"] == pytest.approx(0.5, abs=0.05)


def test_the_suite_leaves_out_constant_factors_and_names_an_unknown_metric():
    factors = torch.cat([torch.zeros(3_000, 1, dtype=torch.long), _uniform_factors(n=3_000)], 1)  # dSprites' colour
    names = ("color", "a", "b", "c")
    result = vu.disentanglement_suite(_copying(factors[:, 1:]), factors, names, metrics=("mig", "beta_vae_score"))
    assert set(result["mig_per_factor"]) == {"a", "b", "c"} and result["beta_vae_score"] == 1.0
    assert result["disentanglement_images"] == 3_000
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['irs'\]"):
        vu.disentanglement_suite(_copying(factors[:, 1:]), factors, names, metrics=("irs",))
