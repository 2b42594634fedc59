"""IWAE evaluation speed: the decoder's last stages in sub-pixel form against the plain transposed convolutions.

Times `vu.log_importance_weights` on the same images and noise both ways, alternating (A B A B ...) so that the
machine's drift shows, in fp32 and in bf16 where the CPU has it, and prints decoder samples per second, the ratio
and the largest difference between the log-weights. The model is the long recipe's architecture (its decoder is
what k = 5000 runs 50 million times), with trained weights when a checkpoint is given.

    python benchmarks/iwae_speed.py [--checkpoint runs/long/last.pt] [--images 20] [--k 1000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import vae_utils as vu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="default: the long recipe's model, untrained")
    parser.add_argument("--images", type=int, default=20, help="test images per call (the IWAE batch)")
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = (vu.load_checkpoint(args.checkpoint) if args.checkpoint else
             vu.VAE(vu.TrainConfig.recipe("long").model)).eval()
    x = vu.binarize(vu.load_dataset("fashion-mnist", "test"), seed=0).images[:args.images].float() / 255
    precisions = ["fp32"] + (["bf16"] if vu.resolve_precision("auto", torch.device("cpu")) == "bf16" else [])
    print(f"machine: {vu.repro.describe_cpu()}; torch {torch.__version__}; {args.images} images x k={args.k}")
    model.to(memory_format=torch.channels_last)  # as iwae_nll runs it
    with torch.no_grad():
        for precision in precisions:
            seconds: dict[bool, list[float]] = {True: [], False: []}
            weights = {}
            for _ in range(args.repeats + 1):  # the first round warms up and is not counted
                for subpixel in (False, True):
                    start = time.perf_counter()
                    weights[subpixel] = vu.log_importance_weights(model, x, args.k, torch.Generator().manual_seed(1),
                                                                  check_range=False, precision=precision,
                                                                  subpixel=subpixel)
                    seconds[subpixel].append(time.perf_counter() - start)
            plain, sub = (statistics.median(seconds[s][1:]) for s in (False, True))
            n = args.images * args.k
            diff = (weights[True] - weights[False]).abs().max().item()
            print(f"{precision}: plain {n / plain:8.0f} samples/s, sub-pixel {n / sub:8.0f} samples/s, "
                  f"ratio {plain / sub:.2f}x; largest log-weight difference {diff:.2g} nats")


if __name__ == "__main__":
    main()
