"""Everything a short GPU loan should measure, in one command: one JSON file named after the device, and a table.

    python benchmarks/gpu_check.py                       # make benchmark-gpu: on the CUDA device present
    python benchmarks/gpu_check.py --device cpu --tiny   # the same code paths in a minute (tests/test_gpu_check.py)

Sections, each timed and each allowed to fail on its own (its error is recorded, the others still run):

  peers       the default recipe, PyTorch's MLP example and pythae's VAE (when installed: pip install -e .[bench]),
              --epochs each on Fashion-MNIST: training seconds, images/s, test -ELBO, and our time over each peer's
  long        one epoch of the long binarized recipe (`--recipe long`): seconds per epoch, x 175 for the recipe
  iwae        the IWAE evaluation with k=5000 on the long recipe's network: test images per second in fp32 and in
              bf16 where the device has it, and the minutes for all 10,000 test images
  hvae-cifar  the conv HVAE's CIFAR-10 preset for --hvae-steps steps (CIFAR-10 from --data-dir, else random colour
              images, said so), scored in bits/dim on 500 test images five times along the way: the curve
  ddp         `torchrun -m vae_utils train` over every device present (nccl on CUDA, gloo on the CPU: two
              processes there), one epoch: its exit status and time

In full size it takes about 5 minutes on a recent GPU (under 8 in all, start-up included); --tiny cuts every data
set to a few dozen images and every loop to a few steps, to prove the code paths, not to measure. Where a GPU is
lent, run it and put its table in docs/speed.md with the device named.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import torch

import vae_utils as vu

sys.path.insert(0, str(Path(__file__).parent))
import train_speed  # noqa: E402  (the peers, as `make benchmark` trains them)
from results import record  # noqa: E402

RESULTS = Path(__file__).parent / "results"
FULL = dict(epochs=10, subset=None, long_subset=None, iwae_images=200, iwae_k=5000, hvae_steps=300, hvae_batch=None,
            ddp_subset=10_000)
TINY = dict(epochs=1, subset=32, long_subset=64, iwae_images=4, iwae_k=50, hvae_steps=5, hvae_batch=4,
            ddp_subset=41)


def device_name(device: torch.device) -> str:
    """The device in words: the GPU's name, or the CPU's."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else vu.repro.describe_cpu()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that a timer reads the work's time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peers(args: argparse.Namespace, size: dict, device: torch.device) -> dict:
    """The default recipe beside PyTorch's example and pythae's VAE, the same epochs and data."""
    runs, skipped = {}, {}
    for name, train in (("vae_utils-default", train_speed.train_default),
                        ("pytorch-example-mlp", train_speed.train_reference),
                        ("pythae-vae", train_speed.train_pythae)):
        if name == "pythae-vae" and not _importable("pythae"):
            skipped[name] = "pythae is not installed (pip install -e .[bench])"
            continue
        result = train(size["epochs"], 0, args.data_dir, device, subset=size["subset"])
        # in one process the peak memory is the largest so far, not this run's: left out (make benchmark has it)
        runs[name] = {k: result[k] for k in ("train_seconds", "images_per_second", "test_neg_elbo")}
    ours = runs["vae_utils-default"]["train_seconds"]
    ratios = {f"time_vs_{name}": ours / run["train_seconds"] for name, run in runs.items()
              if name != "vae_utils-default"}
    return {"epochs": size["epochs"], "runs": runs, "skipped": skipped, "ratios": ratios}


def long_epoch(args: argparse.Namespace, size: dict, device: torch.device) -> dict:
    """One epoch of the long binarized recipe, no validation split (the time of the training steps alone)."""
    config = dataclasses.replace(vu.TrainConfig.recipe("long"), epochs=1, val_size=0, patience=0,
                                 device=str(device))
    train = vu.load_dataset("fashion-mnist", "train", root=args.data_dir).subset(size["long_subset"])
    vu.set_seed(0)
    history = vu.train(vu.VAE(config.model), train, None, config, progress=False)
    seconds = history[0]["train_seconds"]
    return {"images": len(train), "epoch_seconds": seconds, "images_per_second": len(train) / seconds,
            "recipe_epochs": vu.TrainConfig.recipe("long").epochs}


def iwae_speed(args: argparse.Namespace, size: dict, device: torch.device) -> dict:
    """Importance-weighted NLL with k samples on binarized test images, on the long recipe's network."""
    model = vu.VAE(vu.TrainConfig.recipe("long").model).to(device).eval()
    test = vu.load_dataset("fashion-mnist", "test", root=args.data_dir)
    test = vu.binarize(test, seed=0).subset(size["iwae_images"])
    out = {"images": len(test), "k": size["iwae_k"]}
    for precision in ("fp32", "bf16"):
        if precision == "bf16" and vu.resolve_precision("auto", device) != "bf16":
            out["bf16"] = "not supported on this device"
            continue
        vu.iwae_nll(model, test.subset(min(2, len(test))), k=size["iwae_k"], precision=precision)  # warm-up
        synchronize(device)
        start = time.perf_counter()
        nll = vu.iwae_nll(model, test, k=size["iwae_k"], precision=precision)["iwae_nll"]
        synchronize(device)
        seconds = time.perf_counter() - start
        out[precision] = {"seconds": seconds, "images_per_second": len(test) / seconds, "iwae_nll": nll,
                          "minutes_for_10000": 10_000 / (len(test) / seconds) / 60}
    return out


def hvae_cifar(args: argparse.Namespace, size: dict, device: torch.device) -> dict:
    """The conv HVAE's CIFAR-10 preset for a few hundred steps: test bits/dim five times along the way."""
    config = vu.TrainConfig.for_dataset("cifar10", model_kind="hvae", device=str(device))
    batch = size["hvae_batch"] or config.batch_size
    steps_per_epoch = max(1, size["hvae_steps"] // 5)
    try:
        train = vu.load_dataset("cifar10", "train", root=args.data_dir, download=False)
        test, data = vu.load_dataset("cifar10", "test", root=args.data_dir, download=False), "CIFAR-10"
    except (OSError, ValueError) as err:  # no CIFAR-10 on disk and no network: the cost is the same on noise
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (steps_per_epoch * batch + 500, 3, 32, 32), dtype=torch.uint8, generator=g)
        train = vu.ImageDataset(images[500:], name="noise/train")
        test = vu.ImageDataset(images[:500], name="noise/test")
        data = f"random colour images (CIFAR-10 is not available: {str(err).splitlines()[0][:120]})"
    train, test = train.subset(steps_per_epoch * batch), test.subset(min(500, len(test)))
    config = dataclasses.replace(config, epochs=5, batch_size=batch, val_size=0, test_every_epoch=True)
    vu.set_seed(0)
    model = vu.HVAE(config.model)
    dims = 3 * 32 * 32 * torch.log(torch.tensor(2.0)).item()
    history = vu.train(model, train, test, config, progress=False)
    curve = [{"step": h["epoch"] * steps_per_epoch, "seconds": sum(r["train_seconds"] for r in history[:i + 1]),
              "bits_per_dim": h["test_neg_elbo"] / dims} for i, h in enumerate(history)]
    return {"data": data, "batch_size": batch, "steps": 5 * steps_per_epoch,
            "steps_per_second": 5 * steps_per_epoch / curve[-1]["seconds"], "curve": curve}


def ddp(args: argparse.Namespace, size: dict, device: torch.device) -> dict:
    """One epoch of `torchrun -m vae_utils train` over every device present: nccl on CUDA, gloo (2 processes) on CPU."""
    procs = torch.cuda.device_count() if device.type == "cuda" else 2
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", "-m",
               "vae_utils", "train", "--data-dir", args.data_dir, "--epochs", "1", "--subset", str(size["ddp_subset"]),
               "--val-size", str(max(8, size["ddp_subset"] // 6)), "--device", device.type, "--out",
               str(Path(out) / "run"), "--quiet", "--no-tensorboard"]
        env = {**os.environ, "TMPDIR": out, **({"OMP_NUM_THREADS": "1"} if device.type == "cpu" else {})}
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"torchrun exited with {done.returncode}: {_last_line(done.stderr)}")
        metrics = json.loads((Path(out) / "run" / "metrics.json").read_text())
    return {"processes": procs, "backend": "nccl" if device.type == "cuda" else "gloo", "seconds": seconds,
            "train_seconds": metrics["train_seconds"], "test_neg_elbo": metrics["test_neg_elbo"],
            "command": shlex.join(["torchrun", *cmd[3:]])}


SECTIONS: dict[str, Callable[[argparse.Namespace, dict, torch.device], dict]] = {
    "peers": peers, "long": long_epoch, "iwae": iwae_speed, "hvae-cifar": hvae_cifar, "ddp": ddp}


def _importable(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def table(results: dict[str, Any]) -> str:
    """The figures a reader compares, one line per section."""
    lines = [f"device: {results['device_name']} ({results['device']}); torch {results['torch']}; "
             f"{'tiny (code paths only)' if results['tiny'] else 'full size'}"]
    for name, section in results["sections"].items():
        if "error" in section:
            lines.append(f"{name:11s} FAILED after {section['wall_seconds']:.0f} s: {section['error']}")
            continue
        if name == "peers":
            figures = "; ".join(f"{k} {v['train_seconds']:.1f} s, -ELBO {v['test_neg_elbo']:.2f}"
                                for k, v in section["runs"].items())
            ratios = ", ".join(f"{k} {v:.2f}x" for k, v in section["ratios"].items())
            figures += f"; ours {ratios}" if ratios else ""
        elif name == "long":
            minutes = section["epoch_seconds"] * section["recipe_epochs"] / 60
            figures = (f"{section['epoch_seconds']:.1f} s per epoch of {section['images']:,} images "
                       f"(x {section['recipe_epochs']} epochs = {minutes:.1f} min)")
        elif name == "iwae":
            figures = "; ".join(f"{p} {v['images_per_second']:.2f} images/s, {v['minutes_for_10000']:.1f} min for "
                                "10,000" if isinstance(v, dict) else f"{p}: {v}" for p, v in section.items()
                                if p in ("fp32", "bf16")) + f" (k={section['k']})"
        elif name == "hvae-cifar":
            curve = " -> ".join(f"{c['bits_per_dim']:.3f}" for c in section["curve"])
            figures = (f"{section['steps_per_second']:.1f} steps/s of {section['batch_size']}; bits/dim {curve} "
                       f"({section['data'][:40]})")
        else:
            figures = (f"{section['processes']} x {section['backend']}: {section['seconds']:.1f} s, test -ELBO "
                       f"{section['test_neg_elbo']:.2f}")
        lines.append(f"{name:11s} {section['wall_seconds']:6.1f} s  {figures}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto (default: the GPU when there is one)")
    parser.add_argument("--tiny", action="store_true", help="a few images and steps per section: the code paths only")
    parser.add_argument("--data-dir", default=str(vu.data.default_root()), help="where Fashion-MNIST (and CIFAR-10, "
                        "if present) are, as for `train --data-dir`")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--json", type=Path, default=None, help="the results file (default: benchmarks/results/"
                        "gpu_check-<device>.json; none with --tiny unless given)")
    args = parser.parse_args(argv)
    device = vu.resolve_device(args.device)
    size = TINY if args.tiny else FULL
    own = Path(args.data_dir).resolve() == vu.data.default_root().resolve()  # unpacked into torchvision's layout there,
    for split in ("train", "test"):  # where the example's torchvision loader reads: once, outside the timings
        vu.load_dataset("fashion-mnist", split, root=None if own else args.data_dir)
    results: dict[str, Any] = {"device": str(device), "device_name": device_name(device), "torch": torch.__version__,
                               "tiny": args.tiny, "sections": {}}
    for name in args.sections:
        start = time.perf_counter()
        print(f"{name} ...", file=sys.stderr, flush=True)
        try:
            section = SECTIONS[name](args, size, device)
        except Exception as err:  # noqa: BLE001  (one section's failure must not cost the loan the others)
            section = {"error": f"{type(err).__name__}: {' '.join(str(err).split())[:300]}",
                       "traceback": traceback.format_exc(limit=5)}
        section["wall_seconds"] = time.perf_counter() - start
        results["sections"][name] = section
    print(table(results))
    slug = re.sub(r"[^a-z0-9]+", "-", results["device_name"].lower()).strip("-")
    path = args.json or (None if args.tiny else RESULTS / f"gpu_check-{slug}.json")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        vu.files.atomic_write(path, lambda f: f.write((json.dumps(record(**results), indent=2) + "\n").encode()))
        print(f"written: {path}", file=sys.stderr)
    return results


if __name__ == "__main__":
    failed = [name for name, s in main()["sections"].items() if "error" in s]
    sys.exit(1 if failed else 0)
