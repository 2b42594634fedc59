"""The notebook works for any data set by changing one name: here a flat folder of colour images (no labels)."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import write_image_folder

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "vae_fashion_mnist.ipynb"


@pytest.mark.parametrize("flat", [True, False])
def test_every_section_runs_on_a_folder_of_colour_images(tmp_path, monkeypatch, flat):
    write_image_folder(tmp_path / "pics", flat=flat, n=90)
    for name, value in {"VAE_FAST": "1", "VAE_DATASET": "folder", "VAE_DATA_ROOT": str(tmp_path / "pics"),
                        "TQDM_DISABLE": "1"}.items():
        monkeypatch.setenv(name, value)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "folder:pics" in text and "bits/dim" in text  # the discretized logistic gives bits/dim
    if flat:
        assert "has no class labels" in text
