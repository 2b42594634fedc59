"""The model zoo: every pretrained model loads by name from any folder, in the ecosystem's format (safetensors, no
pickle), and reproduces the figure recorded for it on the first 500 test images."""
import json
import subprocess
import sys
from dataclasses import replace

import pytest

import vae_utils as vu
from vae_utils.zoo import INDEX_NAME, ZOO_DIR, zoo_index
from test_readme import SYSTEM_FASHION_MNIST

ZOO = zoo_index()
MAX_MEGABYTES = 60  # the zoo stays small: fp32 weights, no optimizer state


def test_the_zoo_is_built_and_small():
    assert ZOO, f"no {ZOO_DIR / INDEX_NAME}: python benchmarks/build_zoo.py writes it"
    sizes = {name: (ZOO_DIR / name / "model.safetensors").stat().st_size / 1e6 for name in ZOO}
    assert sum(sizes.values()) <= MAX_MEGABYTES, sizes
    for name in ZOO:  # weights and config only: nothing a pickle could hide code in
        assert sorted(p.name for p in (ZOO_DIR / name).iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_pretrained_without_a_name_lists_every_model_with_its_figure_and_command():
    listed = {entry["name"]: entry for entry in vu.pretrained()}
    assert set(ZOO) <= set(listed) and set(vu.checkpoints.PRETRAINED) <= set(listed)
    for name in ZOO:
        assert {"family", "data", "test", "command", "megabytes"} <= set(listed[name])
        assert listed[name]["test"]["images"] == 10_000


def test_the_zoo_command_prints_the_table_and_the_json(tmp_path):
    result = subprocess.run([sys.executable, "-m", "vae_utils", "zoo"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [m["name"] for m in json.loads(result.stdout)["models"]][:len(ZOO)] == list(ZOO)
    assert all(name in result.stderr for name in ZOO)


@pytest.mark.parametrize("name", list(ZOO))
def test_each_zoo_model_loads_from_any_folder_and_reproduces_its_figure(name, tmp_path, monkeypatch):
    if not SYSTEM_FASHION_MNIST.is_dir():
        pytest.skip("needs Debian's dataset-fashion-mnist (make data)")
    import vae_utils.data as data

    real = replace(data.DATASETS["fashion-mnist"], system_dirs=(str(SYSTEM_FASHION_MNIST),))
    monkeypatch.setitem(data.DATASETS, "fashion-mnist", real)  # the test isolation hides system copies
    monkeypatch.chdir(tmp_path)
    entry = ZOO[name]
    model = vu.pretrained(name)
    assert model.kind == entry["family"] and not model.training
    test = vu.load_dataset("fashion-mnist", "test")
    test = vu.binarize(test, seed=0) if entry["binarized"] else test
    check = entry["check"]
    figure = vu.evaluate(model, test.subset(check["images"]), seed=0)[check["metric"]]
    assert figure == pytest.approx(check["value"], abs=2e-4)  # recorded to 4 decimals; threads move the 5th


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="no pretrained model 'fashion-mnist-gan': known are .*fashion-mnist-vae"):
        vu.pretrained("fashion-mnist-gan")
