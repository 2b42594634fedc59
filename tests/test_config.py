"""Configuration values that make no sense are refused before any work, naming the value and what is allowed."""
import pytest

import vae_utils as vu


@pytest.mark.parametrize("field, value, allowed", [
    ("latent_dim", 0, "integer from 1"),
    ("latent_dim", -3, "integer from 1"),
    ("latent_dim", 2.5, "integer"),
    ("in_channels", 2, "one of"),
    ("image_size", 4, "integer from 8"),
    ("channels", (), "at least one"),
    ("channels", (8, 0), "integer from 1"),
    ("channels", (8, 8, 8, 8, 8, 8), "at most"),
    ("likelihood", "poisson", "bernoulli"),
    ("gaussian_std", 0.0, "> 0"),
    ("hidden_dim", -1, "integer from 0"),
])
def test_bad_model_config_is_a_value_error(field, value, allowed):
    with pytest.raises(ValueError, match=rf"{field}=.*{allowed}"):
        vu.VAEConfig(**{field: value})


@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("batch_size", 0), ("lr", 0.0), ("lr", -1e-3), ("lr", float("nan")), ("beta", -1.0),
    ("precision", "fp8"), ("subset", 0), ("seed", -1), ("weight_decay", -0.1), ("weight_decay", 1.0),
    ("weight_decay", float("nan")),
])
def test_bad_train_config_is_a_value_error(field, value):
    with pytest.raises(ValueError, match=rf"{field}="):
        vu.TrainConfig(**{field: value})


def test_configs_round_trip_through_plain_dicts():
    cfg = vu.TrainConfig(epochs=3, model=vu.VAEConfig(latent_dim=5, channels=(8, 16)))
    assert vu.TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_fields_are_named():
    with pytest.raises(ValueError, match="latent_size"):
        vu.VAEConfig.from_dict({"latent_size": 3})


def test_unknown_device_is_a_value_error():
    with pytest.raises(ValueError, match="tpu"):
        vu.resolve_device("tpu")


def test_the_cpu_description_names_the_model_threads_and_bf16_units(monkeypatch):
    import torch
    from vae_utils.repro import describe_cpu
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    text = describe_cpu()
    assert text.endswith(f"{torch.get_num_threads()} threads (no AMX, AVX-512-BF16)")
    assert not text.startswith(",")  # a model name (or at least the architecture) comes first


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_cuda_on_a_machine_without_one_is_a_value_error():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        vu.resolve_device("cuda")


@pytest.mark.parametrize("model", [vu.VAEConfig(), vu.VQVAEConfig(codebook_size=64), vu.PriorConfig(width=32)])
def test_a_train_config_round_trips_with_any_model_family(model):
    config = vu.TrainConfig(model=model)
    assert config.model_kind == {"VAEConfig": "vae", "VQVAEConfig": "vqvae", "PriorConfig": "vqvae-prior"}[
        type(model).__name__]
    assert vu.TrainConfig.from_dict(config.to_dict()) == config


def test_a_train_config_saved_before_model_kind_existed_holds_a_vae():
    old = {k: v for k, v in vu.TrainConfig().to_dict().items() if k != "model_kind"}
    assert vu.TrainConfig.from_dict(old).model == vu.VAEConfig()


def test_the_long_recipe_is_a_binarized_run_of_a_wider_vae():
    config = vu.TrainConfig.recipe("long", epochs=3)
    assert config.binarize and config.epochs == 3 and config.model.latent_dim == 64
    recipes = "\\['hvae-binarized', 'ladder-binarized', 'ladder-vamp-binarized', 'long', 'paper-mlp'\\]"
    with pytest.raises(ValueError, match=f"no recipe 'short': recipes are {recipes}"):
        vu.TrainConfig.recipe("short")
