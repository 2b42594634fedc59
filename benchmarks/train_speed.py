"""Training speed and quality: PyTorch's example MLP VAE vs vae_utils' default recipe, side by side.

Both train for the same number of epochs on Fashion-MNIST on this machine, each in a fresh child process
(so peak memory is its own), and are scored with the same single-sample test -ELBO (nats per image,
summed over pixels, one fixed-seed z per test image, evaluation excluded from training time).

    python benchmarks/train_speed.py [--epochs 10] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode
from torchvision import datasets, transforms

import vae_utils as vu
from vae_utils.repro import autocast, resolve_precision


class ExampleMLPVAE(nn.Module):
    """The model of pytorch/examples vae/main.py: 784-400-20-400-784."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> vu.VAEOutput:
        h = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h), self.fc22(h)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = self.fc4(F.relu(self.fc3(z))).view(-1, 1, 28, 28)  # scored by vu's loss: same BCE, from logits
        return vu.VAEOutput(logits, mu, logvar, z)

    def loss(self, x: torch.Tensor, config=None, epochs_done: float = 0.0,
             generator: Optional[torch.Generator] = None, check_range: bool = True) -> vu.LossTerms:
        """The plain negative ELBO, as vu.evaluate scores every model."""
        return vu.vae_loss(self(x, generator), x, check_range=check_range)


def train_reference(epochs: int, seed: int, root: str, device: torch.device) -> dict:
    """The example's recipe: DataLoader + ToTensor, batch 128, Adam 1e-3, BCE summed per image."""
    vu.set_seed(seed)
    model = ExampleMLPVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(datasets.FashionMNIST(root, train=True, transform=transforms.ToTensor()),
                                         batch_size=128, shuffle=True)
    test = vu.load_dataset("fashion-mnist", "test", root=root)
    history, seconds = [], 0.0
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        for x, _ in loader:
            x = x.to(device)
            out = model(x)
            bce = F.binary_cross_entropy_with_logits(out.x_logits, x, reduction="sum")
            loss = bce - 0.5 * torch.sum(1 + out.logvar - out.mu.pow(2) - out.logvar.exp())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds += time.perf_counter() - start
        history.append({"epoch": epoch, "seconds": seconds, **vu.evaluate(model, test)})
    flops = _step_flops(model, torch.rand(128, 1, 28, 28, device=device), "fp32", device)
    return _summary("pytorch-example-mlp", model, history, len(loader.dataset), epochs, flops * len(loader), "fp32")


def train_default(epochs: int, seed: int, root: str, device: torch.device) -> dict:
    """vae_utils' defaults (TrainConfig()), the recipe of the notebook."""
    config = vu.TrainConfig(epochs=epochs, seed=seed)
    train_ds, test = vu.load_dataset(config.dataset, "train", root=root), vu.load_dataset(config.dataset, "test", root=root)
    vu.set_seed(seed)
    model = vu.VAE(config.model)
    records = vu.train(model, train_ds, test, config, progress=False)
    history, seconds = [], 0.0
    for r in records:
        seconds += r["train_seconds"]
        history.append({"epoch": r["epoch"], "seconds": seconds, "neg_elbo": r["test_neg_elbo"],
                        "recon": r["test_recon"], "kl": r["test_kl"]})
    precision = resolve_precision(config.precision, device)
    x = torch.rand(config.batch_size, 1, 28, 28, device=device).contiguous(memory_format=torch.channels_last)
    steps = -(-len(train_ds) // config.batch_size)
    flops = _step_flops(model.train(), x, precision, device) * steps
    return _summary("vae_utils-default", model, history, len(train_ds), epochs, flops, precision, config.to_dict())


def _step_flops(model: nn.Module, x: torch.Tensor, precision: str, device: torch.device) -> int:
    """FLOPs of one training step (forward + backward), counted by torch.utils.flop_counter."""
    with FlopCounterMode(display=False) as counter:
        with autocast(device, precision):
            out = model(x)
        vu.vae_loss(out, x, check_range=False).total.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def _summary(name, model, history, n_train, epochs, flops_per_epoch, precision, config=None) -> dict:
    seconds = history[-1]["seconds"]
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {
        "name": name, "precision": precision, "config": config,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": seconds, "images_per_second": n_train * epochs / seconds,
        "peak_memory_mb": peak / 2**20, "test_neg_elbo": history[-1]["neg_elbo"],
        "train_gflop_per_s": flops_per_epoch * epochs / seconds / 1e9, "history": history,
    }


def matmul_peak_gflops(dtype: torch.dtype, device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """Measured peak of an n x n matmul on this machine, GFLOP/s."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def time_to_reach(history: list[dict], target: float) -> Optional[float]:
    """Training seconds at the end of the first epoch whose test -ELBO is at or below target."""
    return next((h["seconds"] for h in history if h["neg_elbo"] <= target), None)


def _child(fn_name: str, queue: mp.Queue, *args) -> None:
    queue.put(globals()[fn_name](*args))


def run_isolated(fn_name: str, *args) -> dict:
    """Run one training in a fresh process, so that its peak memory and warm caches are its own."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn_name, queue, *args))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=str(vu.data.default_root()))
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    device = vu.resolve_device("auto")
    vu.load_dataset("fashion-mnist", "train", root=args.data_dir)  # unpack the IDX files once, outside the timings
    vu.load_dataset("fashion-mnist", "test", root=args.data_dir)
    ref = run_isolated("train_reference", args.epochs, args.seed, args.data_dir, device)
    ours = run_isolated("train_default", args.epochs, args.seed, args.data_dir, device)
    peaks = {p: matmul_peak_gflops(dtype, device) for p, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    target = ref["test_neg_elbo"]
    for r in (ref, ours):
        r["matmul_peak_gflop_per_s"] = peaks[r["precision"]]
        r["fraction_of_peak"] = r["train_gflop_per_s"] / peaks[r["precision"]]
        r["seconds_to_reference_elbo"] = time_to_reach(r["history"], target)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {device}"
    print(f"machine: {machine}; torch {torch.__version__}; {args.epochs} epochs; seed {args.seed}")
    print(f"matmul peak (2048^2): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
    header = f"{'':22}{'train s':>9}{'img/s':>9}{'peak MB':>9}{'test -ELBO':>12}{'s to ref':>10}{'GFLOP/s':>9}{'of peak':>9}"
    print(header)
    for r in (ref, ours):
        reach = r["seconds_to_reference_elbo"]
        print(f"{r['name']:22}{r['train_seconds']:9.1f}{r['images_per_second']:9.0f}{r['peak_memory_mb']:9.0f}"
              f"{r['test_neg_elbo']:12.2f}{reach if reach is not None else float('nan'):10.1f}"
              f"{r['train_gflop_per_s']:9.1f}{r['fraction_of_peak']:9.1%}")
    ratios = {
        "train_time_ratio": ours["train_seconds"] / ref["train_seconds"],
        "throughput_ratio": ours["images_per_second"] / ref["images_per_second"],
        "memory_ratio": ours["peak_memory_mb"] / ref["peak_memory_mb"],
        "neg_elbo_gain_nats": ref["test_neg_elbo"] - ours["test_neg_elbo"],
        "time_to_reference_ratio": (ours["seconds_to_reference_elbo"] / ref["train_seconds"]
                                    if ours["seconds_to_reference_elbo"] is not None else None),
    }
    print("ratios (vae_utils / reference): " + ", ".join(
        f"{k} {v:.3f}" if v is not None else f"{k} n/a" for k, v in ratios.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "torch": str(torch.__version__), "epochs": args.epochs,
                       "matmul_peak_gflop_per_s": peaks, "reference": ref, "vae_utils": ours, "ratios": ratios}, f,
                      indent=2)


if __name__ == "__main__":
    main()
