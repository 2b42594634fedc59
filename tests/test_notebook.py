"""The notebook works for any data set by changing one name: folders of colour images, CIFAR-10 and CelebA."""
import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from torchvision import datasets

from conftest import write_celeba, write_cifar10, write_image_folder

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "vae_fashion_mnist.ipynb"


# The kernel is another process: this file, put on its PYTHONPATH, points torchvision's checksum tables at the small
# files the test wrote (as the CLI tests do with monkeypatch); the loaders themselves are the real ones.
SITECUSTOMIZE = """
import json, os
patch = json.loads(os.environ.get("VAE_TEST_TORCHVISION_MD5", "{}"))
if patch:
    from torchvision import datasets
    for cls, attrs in patch.items():
        for attr, value in attrs.items():
            setattr(getattr(datasets, cls), attr, value)
"""


def _run_notebook(tmp_path, monkeypatch, dataset, root, md5=None) -> str:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    for name, value in {"VAE_FAST": "1", "VAE_DATASET": dataset, "VAE_DATA_ROOT": str(root), "TQDM_DISABLE": "1",
                        "PYTHONPATH": str(tmp_path / "site"), "VAE_TEST_TORCHVISION_MD5": json.dumps(md5 or {})
                        }.items():
        monkeypatch.setenv(name, value)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.parametrize("flat", [True, False])
def test_every_section_runs_on_a_folder_of_colour_images(tmp_path, monkeypatch, flat):
    write_image_folder(tmp_path / "pics", flat=flat, n=90)
    text = _run_notebook(tmp_path, monkeypatch, "folder", tmp_path / "pics")
    assert "folder:pics" in text and "bits/dim" in text  # the discretized logistic gives bits/dim
    if flat:
        assert "has no class labels" in text


def test_every_section_runs_on_cifar10(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "data", monkeypatch)
    cls = datasets.CIFAR10
    text = _run_notebook(tmp_path, monkeypatch, "cifar10", tmp_path / "data",
                         {"CIFAR10": {"train_list": cls.train_list, "test_list": cls.test_list, "meta": cls.meta}})
    assert "cifar10/train" in text and "bits/dim" in text and "Fréchet distance" in text


def test_every_section_runs_on_celeba(tmp_path, monkeypatch):
    write_celeba(tmp_path / "data", monkeypatch, n=20)
    text = _run_notebook(tmp_path, monkeypatch, "celeba", tmp_path / "data",
                         {"CelebA": {"file_list": [list(entry) for entry in datasets.CelebA.file_list]}})
    assert "celeba/train" in text and "has no class labels" in text
