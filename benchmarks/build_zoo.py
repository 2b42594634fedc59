"""Build the model zoo (saved_models/zoo/): each pretrained model's weights as config.json + model.safetensors (no
optimizer state, no pickle), a model card, and zoo.json with its test figure on the full test split and the check
figure on the first 500 test images that tests/test_zoo.py reproduces.

    python benchmarks/build_zoo.py [--ladder runs/ladder-binarized/seed0/best.pt] [--reproduce runs/reproduce]

It reads the checkpoints that the committed commands wrote (each entry names its command): `make refresh` writes the
main notebook's VAE, the VQ-VAE's prior and the family notebook's runs (saved_models/family-<kind>/best.pt, the epoch
chosen on the validation split), `make benchmark-hierarchical` the ladder's seeds and `make benchmark-reproduce` the
papers' gated-MLP VAE and VampPrior (seed 0 of each goes in). Where a source is missing, the zoo's folder and
row from an earlier build are kept as they are (each row's "built" names the build that wrote it: commit, date,
command), so that retraining one family needs only its checkpoint; a source never built is skipped. Both are said.
A model whose weights are already there keeps its model.safetensors byte for byte (vu.save_pretrained leaves it).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

import vae_utils as vu
from vae_utils.files import atomic_write
from vae_utils.hub import CONFIG_NAME, WEIGHTS_NAME
from vae_utils.zoo import INDEX_NAME, ZOO_DIR

sys.path.insert(0, str(Path(__file__).parent))
from results import record  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHECK_IMAGES = 500  # the first test images whose figure tests/test_zoo.py reproduces
FAMILY_RUN = "make refresh (notebooks/vae_family.ipynb: 10 epochs, 10,000 training images held out for validation)"
GREY = "Fashion-MNIST, grey levels"
BUILT = ("git_commit", "date", "command")  # what each row says of the build that wrote its folder


@dataclass(frozen=True)
class Entry:
    """One zoo model: its name, the checkpoint it comes from, the data it was trained on, the command."""

    name: str
    source: str
    data: str
    command: str
    binarized: bool = False


def entries(ladder: str, reproduce: str) -> list[Entry]:
    """The zoo's members, in the order of the README's table."""
    family = [Entry(f"fashion-mnist-{kind}", f"saved_models/family-{kind}/best.pt", GREY, FAMILY_RUN)
              for kind in ("iwae", "vamp", "btcvae", "cvae", "iaf", "infovae", "wae", "dipvae", "hvae")]
    return [Entry("fashion-mnist-vae", "saved_models/fashion-mnist-vae.pt", GREY,
                  "make refresh (notebooks/vae_fashion_mnist.ipynb: 10 epochs, 10,000 held out for validation)"),
            *family,
            Entry("fashion-mnist-vqvae-prior", "saved_models/fashion-mnist-vqvae-prior.pt", GREY,
                  "make refresh (notebooks/vqvae.ipynb: the VQ-VAE, then its transformer prior)"),
            Entry("binarized-fashion-mnist-ladder", ladder, "Fashion-MNIST, binarized (the papers' protocol)",
                  "python benchmarks/hierarchical.py binarized --recipe ladder-binarized --seeds 3 (seed 0; "
                  "benchmarks/results/ladder-binarized.json)", binarized=True),
            *[Entry(f"binarized-fashion-mnist-{kind}-mlp", f"{reproduce}/{kind}/seed0/best.pt",
                    "Fashion-MNIST, binarized (the papers' protocol)",
                    f"python benchmarks/reproduce.py --families vae vamp --seeds 3 (seed 0; "
                    "benchmarks/results/reproduce.json)", binarized=True) for kind in ("vae", "vamp")]]


def figure(model: torch.nn.Module, data: vu.ImageDataset) -> dict:
    """The model's total loss term on data (one fixed-seed sample per image): its name and value."""
    terms = vu.evaluate(model, data, seed=0)
    metric = "neg_elbo" if "neg_elbo" in terms else next(iter(terms))
    return {"metric": metric, "value": round(terms[metric], 4), "images": len(data)}


def earlier_row(index: dict, name: str, zoo_dir: Path) -> dict | None:
    """An earlier zoo.json's row for name, with "built" (its own, or the file's commit, date and command), where its
    folder is still there; else None."""
    row = index.get("models", {}).get(name)
    if row is None or not (zoo_dir / name / CONFIG_NAME).is_file():
        return None
    return {**row, "built": row.get("built") or {k: index[k] for k in BUILT if k in index}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ladder", default="runs/ladder-binarized/seed0/best.pt",
                        help="the ladder's chosen epoch (make benchmark-hierarchical writes it there)")
    parser.add_argument("--reproduce", default="runs/reproduce", help="the papers' MLP runs (make benchmark-reproduce)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    test = vu.load_dataset("fashion-mnist", "test")
    binarized_test = vu.binarize(test, seed=0)  # once, with the protocol's seed
    index_file = ZOO_DIR / INDEX_NAME
    earlier = json.loads(index_file.read_text()) if index_file.is_file() else {}
    built = {k: v for k, v in record().items() if k in BUILT}
    models = {}
    for entry in entries(args.ladder, args.reproduce):
        source = Path(entry.source) if Path(entry.source).is_absolute() else ROOT / entry.source
        if not source.is_file():
            kept = earlier_row(earlier, entry.name, ZOO_DIR)
            if kept is not None:
                models[entry.name] = kept
                print(f"{entry.name}: {source} is missing; kept as built at {kept['built'].get('git_commit', '?')[:7]}",
                      file=sys.stderr)
            else:
                print(f"{entry.name}: {source} is missing, skipped (run: {entry.command})", file=sys.stderr)
            continue
        model = vu.load_checkpoint(source)  # a moving average of the weights where the run kept one
        data = binarized_test if entry.binarized else test
        test_figure, check = figure(model, data), figure(model, data.subset(CHECK_IMAGES))
        card = vu.model_card(model, {f"test {test_figure['metric']}": test_figure["value"]}, entry.command, entry.data)
        folder = vu.save_pretrained(model, ZOO_DIR / entry.name, card)  # unchanged weights keep their file's bytes
        megabytes = round((folder / WEIGHTS_NAME).stat().st_size / 1e6, 2)
        models[entry.name] = {"family": model.kind, "data": entry.data, "binarized": entry.binarized,
                              "test": test_figure, "check": check, "megabytes": megabytes, "command": entry.command,
                              "built": built}
        print(f"{entry.name:32s} {model.kind:8s} test {test_figure['metric']} {test_figure['value']:.2f}  "
              f"{megabytes:5.1f} MB", file=sys.stderr)
    total = sum(m["megabytes"] for m in models.values())
    print(f"{len(models)} models, {total:.1f} MB in all", file=sys.stderr)
    content = record(models=models, check_images=CHECK_IMAGES, megabytes=round(total, 2))
    atomic_write(index_file, lambda f: f.write((json.dumps(content, indent=2) + "\n").encode()))


if __name__ == "__main__":
    main()
