"""A family registered with @register_model is first-class: trained, saved, loaded, scored and on the CLI."""
from dataclasses import dataclass
from typing import NamedTuple

import pytest
import torch
from torch import nn

import vae_utils as vu
from vae_utils import registry
from vae_utils.cli import main, model_options

from conftest import blob_data


@pytest.fixture
def families(monkeypatch):
    """The registry as importing vae_utils left it, restored after the test (families defined here vanish)."""
    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))


@dataclass(frozen=True)
class AEConfig(vu.Config):
    in_channels: int = 1  # grey
    image_size: int = 28  # side
    width: int = 8  # hidden units
    widths: tuple[int, ...] = (3, 4)  # a tuple field, to check that it round-trips as a tuple

    @classmethod
    def for_images(cls, image_size: int, in_channels: int, **overrides) -> "AEConfig":
        return cls(in_channels=in_channels, image_size=image_size, **overrides)


class AETerms(NamedTuple):
    total: torch.Tensor
    sse: torch.Tensor


def _autoencoder():
    """A deterministic autoencoder: a family with a loss and nothing else."""
    class AutoEncoder(nn.Module):
        config_class = AEConfig
        best_metric = "sse"

        def __init__(self, config: AEConfig = AEConfig()) -> None:
            super().__init__()
            self.config = config
            self.image_shape = (config.in_channels, config.image_size, config.image_size)
            pixels = config.in_channels * config.image_size ** 2
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(pixels, config.width), nn.Linear(config.width, pixels))

        def loss(self, x, config=None, epochs_done=0.0, **options):
            sse = (self.net(x).view_as(x) - x).pow(2).flatten(1).sum(1).mean()
            return AETerms(sse, sse.detach())

    return AutoEncoder


def test_registration_gives_the_kind_and_the_defaults_it_does_not_set(families):
    cls = vu.register_model("ae")(_autoencoder())
    assert cls.kind == "ae" and cls.total_name == "loss" and cls.best_metric == "sse"
    assert vu.model_class("ae") is cls and "ae" in vu.registered_models()
    assert vu.TrainConfig(model=AEConfig()).model_kind == "ae"


def test_defining_the_family_again_replaces_it_but_another_class_cannot_take_the_kind(families):
    first = vu.register_model("ae")(_autoencoder())
    again = vu.register_model("ae")(_autoencoder())  # a notebook cell run twice
    assert vu.model_class("ae") is again and again is not first

    class Other(nn.Module):
        config_class = AEConfig

    with pytest.raises(ValueError, match="'vae' is already registered by vae_utils.models.vae.VAE"):
        vu.register_model("vae")(Other)


@pytest.mark.parametrize("kind", ["", "Has Space", "UPPER", None, "../x"])
def test_a_kind_that_no_file_or_flag_could_carry_is_refused(kind):
    with pytest.raises(ValueError, match="is not allowed"):
        vu.register_model(kind)


def test_a_class_without_a_config_dataclass_is_refused(families):
    class NoConfig(nn.Module):
        pass

    with pytest.raises(TypeError, match="needs a class with a `config_class`"):
        vu.register_model("none")(NoConfig)


def test_a_family_of_your_own_trains_saves_loads_and_is_scored(families, tmp_path):
    cls = vu.register_model("ae")(_autoencoder())
    config = vu.TrainConfig(epochs=2, batch_size=16, lr=1e-2, model=AEConfig(widths=(5,)), val_size=16,
                            test_every_epoch=True)
    model = cls(config.model)
    history = vu.train(model, blob_data(64), blob_data(32, seed=1), config, out_dir=tmp_path, progress=False)
    assert history[-1]["test_loss"] < history[0]["train_loss"] and "val_sse" in history[-1]
    assert vu.read_checkpoint(tmp_path / "best.pt")["history"][-1]["val_sse"] == min(
        h["val_sse"] for h in history)  # best.pt follows the family's best_metric on validation
    loaded = vu.load_checkpoint(tmp_path / "last.pt")
    assert type(loaded) is cls and loaded.config == config.model and loaded.config.widths == (5,)
    assert vu.TrainConfig.from_dict(vu.read_checkpoint(tmp_path / "last.pt")["train_config"]) == config
    report = vu.evaluation_report(loaded, blob_data(32, seed=1))
    assert report["model_kind"] == "ae" and report["loss"] == pytest.approx(history[-1]["test_loss"])
    assert "offers no importance weights and no bound" in report["notes"][0]
    assert "loss" in vu.format_report(report)


def test_the_cli_makes_flags_from_the_config_and_trains_the_family(families, tmp_path, idx_root):
    vu.register_model("ae")(_autoencoder())
    options = {o.field: o for o in model_options()}
    assert options["width"].flag == "--width" and "ae" in options["width"].kinds  # shared with the ladder's width
    assert options["widths"].argparse["nargs"] == "+" and "in_channels" not in options
    assert {"vae", "vqvae"} <= set(options["likelihood"].kinds) and "ae" not in options["likelihood"].kinds
    main(["train", "--model", "ae", "--width", "4", "--widths", "2", "2", "--data-dir", str(idx_root), "--epochs",
          "1", "--out", str(tmp_path / "run"), "--quiet"])
    assert vu.load_checkpoint(tmp_path / "run" / "last.pt").config == AEConfig(width=4, widths=(2, 2))
    with pytest.raises(SystemExit) as info:
        main(["train", "--model", "ae", "--latent-dim", "3", "--data-dir", str(idx_root), "--out", str(tmp_path)])
    assert info.value.code == 2


def test_the_report_asks_capabilities_not_kinds():
    assert vu.offers(vu.VAE()) == ["ImportanceWeighted", "GaussianLatent", "Sampler"]
    assert vu.offers(vu.VQVAE()) == ["DiscreteCodes"]
    assert vu.offers(vu.CodePrior()) == ["Sampler", "DiscreteCodes", "LearnedPrior"]
    with pytest.raises(ValueError, match="VQVAE offers no Gaussian posterior"):
        vu.latent_stats(vu.VQVAE(), blob_data(8))
