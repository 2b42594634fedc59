"""What a convolutional hierarchy costs on this machine, before training one (docs/hierarchical.md, "Cost first" and
"Smaller still"): for each 28x28 grey HVAE config, its parameters, the time of a training step extrapolated to an
epoch, and the importance-weighting speed that decides how long the papers' k=5000 evaluation takes.

    python benchmarks/hvae_cost.py [--steps 40] [--batch 128] [--images 20] [--k 500] [--json FILE]

Each config trains --steps steps of --batch binarized training images (Adam, bf16 autocast where the CPU has it;
the first step is not timed) and computes the log-weights of --images test images with --k samples each, in fp32
and in bf16; k=5000 on 10,000 images is extrapolated from the faster. One config at a time, alone on the machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import vae_utils as vu  # noqa: E402
from results import write_results  # noqa: E402

CONFIGS = {  # name: HVAEConfig fields over the 28x28 grey preset (widths 32, 16; groups 2, 2; cells 1; z 4)
    "preset": {},
    "cells 0": dict(cells=0),
    "widths 48, 24": dict(widths=(48, 24)),
    "groups 3, 3": dict(groups=(3, 3)),
    "widths 32, 16; groups 1, 1; cells 0": dict(groups=(1, 1), cells=0),
    "widths 16, 8; groups 2, 2; cells 0": dict(widths=(16, 8), cells=0),
    "widths 16, 8; groups 1, 1; cells 0; z 2": dict(widths=(16, 8), groups=(1, 1), cells=0, z_channels=2),
    "one 7x7 level: width 32; groups 2; cells 0; z 8": dict(widths=(32,), groups=(2,), cells=0, z_channels=8),
}


def step_seconds(model: vu.HVAE, config: vu.TrainConfig, x: torch.Tensor, steps: int, precision: str) -> float:
    """Median seconds of a training step (forward, backward, Adam) on batches drawn from x."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    times = []
    for step in range(steps + 1):
        batch = vu.data.bernoulli_pixels(x[torch.randint(len(x), (config.batch_size,))])
        start = time.perf_counter()
        with vu.repro.autocast(torch.device("cpu"), precision):
            terms = model.loss(batch, config, 0.0)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()
        if step:  # the first step pays for allocations
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def samples_per_second(model: vu.HVAE, x: torch.Tensor, k: int, precision: str) -> float:
    """Importance samples per second of vu.log_importance_weights on x with k samples per image."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        start = time.perf_counter()
        vu.log_importance_weights(model, x, k, generator, precision=precision)
        return len(x) * k / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epoch-images", type=int, default=50_000, help="images per epoch the step time is scaled to")
    parser.add_argument("--images", type=int, default=20, help="test images scored with k samples each")
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--json", type=Path, default=None, help="write the results file here")
    args = parser.parse_args()

    train = vu.load_dataset("fashion-mnist", "train").subset(args.batch * 8)
    x_train = train.images.float() / 255
    x_test = vu.binarize(vu.load_dataset("fashion-mnist", "test").subset(args.images)).images.float() / 255
    bf16 = vu.resolve_precision("auto", torch.device("cpu"))
    preset = vu.TrainConfig.for_dataset("fashion-mnist", model_kind="hvae", batch_size=args.batch)
    rows = []
    for name in args.configs:
        config = replace(preset, model=replace(preset.model, **CONFIGS[name]))
        vu.set_seed(0)
        model = vu.HVAE(config.model)
        step = step_seconds(model, config, x_train, args.steps, bf16)
        model.eval()
        fp32, fast = (samples_per_second(model, x_test, args.k, p) for p in ("fp32", bf16))
        rows.append({"config": name, "fields": CONFIGS[name], "parameters": sum(p.numel() for p in model.parameters()),
                     "step_seconds": round(step, 4), "epoch_seconds": round(step * args.epoch_images / args.batch, 1),
                     "iwae_samples_per_s_fp32": round(fp32), f"iwae_samples_per_s_{bf16}": round(fast),
                     "k5000_on_10000_minutes": round(5000 * 10_000 / max(fp32, fast) / 60)})
        print(rows[-1], flush=True)
    print(f"\n{vu.repro.describe_cpu()}, torch {torch.__version__}; steps of {args.batch} images ({bf16}), epochs of "
          f"{args.epoch_images:,} images; k={args.k} on {args.images} test images\n")
    print(f"| 28x28 grey config | parameters | epoch (s) | IWAE samples/s, fp32 / {bf16} | k=5000 on 10,000 images |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['parameters']:,} | {r['epoch_seconds']:.0f} | {r['iwae_samples_per_s_fp32']:,} / "
              f"{r[f'iwae_samples_per_s_{bf16}']:,} | {r['k5000_on_10000_minutes']} min |")
    if args.json:
        print("wrote", write_results(args.json, rows=rows, steps=args.steps, batch=args.batch, k=args.k,
                                     images=args.images))


if __name__ == "__main__":
    main()
