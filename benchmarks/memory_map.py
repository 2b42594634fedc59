"""Data larger than memory: a folder whose decoded set is several times the memory a process may use, trained from
the memory-mapped cache, against the in-memory path.

    python benchmarks/memory_map.py [--gigabytes 6] [--limit-mb 2560] [--steps 200] [--folder runs/mmap-folder]

Writes a folder of 64x64 RGB PNGs (smooth random blobs) whose decoded size is --gigabytes, then runs each case in a
process of its own: decoding into the cache and training --steps steps of the celeba-sized VAE preset (batch 128,
a Bernoulli likelihood) from the memory map, inside a memory cgroup limited to --limit-mb when this machine lets us
make one (cgroup v1 or v2, as root), and the in-memory path on a set that fits (--fit-images: the first images,
copied out of the map) without a limit, and on the big set under the limit (where it is expected to be killed).
For each: images/s, the peak of the process's own memory (RssAnon, sampled) and of its whole resident set (VmHWM,
which counts the pages of the map it has touched), and how it ended.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIDE = 64
CGROUP_V1, CGROUP_V2 = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")


def write_folder(folder: Path, n: int, seed: int = 0) -> None:
    """n PNGs of smooth random colour blobs (compressible, like photographs), written once."""
    from PIL import Image

    done = folder / ".complete"
    if done.is_file() and int(done.read_text()) == n:
        return
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    base = np.linspace(0, 1, SIDE)
    for i in range(n):
        cx, cy, r = rng.uniform(0.2, 0.8, 2).tolist() + [rng.uniform(0.1, 0.4)]
        blob = np.exp(-((base[None, :] - cx) ** 2 + (base[:, None] - cy) ** 2) / (2 * r * r))
        colour = rng.uniform(0, 255, 3)
        pixels = (blob[..., None] * colour + (1 - blob[..., None]) * rng.uniform(0, 80)).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:07d}.png", compress_level=1)
    done.write_text(str(n))


def worker(args: argparse.Namespace) -> None:
    """One case, in this process: load (decode if needed), train --steps steps, print a JSON line."""
    import torch

    import vae_utils as vu

    peak = {"anon": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak["anon"] = max(peak["anon"], _status("RssAnon"))
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    start = time.perf_counter()
    data = vu.load_dataset("folder", "train", root=args.folder, image_size=SIDE, channels=3,
                           memory_map=bool(args.fit_images) or args.mapped == "yes", test_fraction=0.01)
    if args.fit_images:  # the set that fits: its first images, copied out of the map into memory (take by index)
        data = data.take(torch.arange(min(args.fit_images, len(data))))
    load_s = time.perf_counter() - start
    # the preset's networks with a Bernoulli likelihood at lr 1e-3: its discretized logistic diverges within 50
    # steps on these smooth blobs at lr 2e-3 and 1e-3 (its settings were chosen on photographs)
    config = vu.TrainConfig.for_dataset("celeba", epochs=1, batch_size=128, lr=1e-3,
                                        subset=min(len(data), 128 * args.steps))
    config = replace(config, model=replace(config.model, likelihood="bernoulli"))
    model = vu.VAE(config.model)
    start = time.perf_counter()
    vu.train(model, data, None, config, progress=False)
    train_s = time.perf_counter() - start
    stop.set()
    print(json.dumps({"images": len(data), "set_mb": data.images.numel() / 2**20, "mapped": data.mapped,
                      "load_s": round(load_s, 1), "images_per_s": round(config.subset / train_s, 1),
                      "peak_anon_mb": round(peak["anon"] / 2**20), "peak_rss_mb": round(_status("VmHWM") / 2**20)}))


def _status(key: str) -> int:
    """A field of /proc/self/status in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def make_cgroup(limit_mb: int) -> Path | None:
    """A memory cgroup limited to limit_mb (cgroup v1 or v2), or None where this process may not make one."""
    for base, limit_file in ((CGROUP_V1, "memory.limit_in_bytes"), (CGROUP_V2, "memory.max")):
        if not (base / limit_file).exists() and not (base / "cgroup.controllers").exists():
            continue
        group = base / f"vae-bench-{os.getpid()}"
        try:
            group.mkdir(exist_ok=True)
            (group / limit_file).write_text(str(limit_mb << 20))
            return group
        except OSError:
            continue
    return None


def drop_page_cache() -> bool:
    """Empty the kernel's page cache (as root), so that pages of the map read by an earlier case are neither resident
    nor charged to another cgroup; False where this machine does not let us."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1")
        return True
    except OSError:
        return False


def run_case(name: str, argv: list[str], group: Path | None) -> dict:
    """Run one worker (inside group when given), from an empty page cache where we may; its JSON line, or how it
    ended."""
    dropped = drop_page_cache()
    command = [sys.executable, __file__, "--worker", *argv]
    if group is not None:
        command = ["sh", "-c", f'echo $$ > "{group}/cgroup.procs" && exec "$@"', "sh", *command]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if done.returncode == 0 and lines else {
        "ended": f"exit status {done.returncode}" + (" (killed: out of memory)" if done.returncode in (-9, 137)
                                                      else ""), "stderr": done.stderr.strip()[-300:]}
    result.update(case=name, wall_s=round(time.perf_counter() - start, 1), page_cache_dropped=dropped)
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gigabytes", type=float, default=6.0, help="decoded size of the folder's training split")
    parser.add_argument("--limit-mb", type=int, default=2560, help="the memory cgroup's limit: a process that has "
                        "imported torch (the CUDA build) and built the model already holds about 1.4 GB here")
    parser.add_argument("--steps", type=int, default=200, help="training steps of 128 images per case")
    parser.add_argument("--fit-images", type=int, default=20_000, help="images of the in-memory case that fits")
    parser.add_argument("--folder", type=Path, default=ROOT / "runs" / "mmap-folder")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mapped", choices=("yes", "no"), default="yes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    n = int(args.gigabytes * 2**30 / (3 * SIDE * SIDE) / 0.99)  # 1% go to the test split
    print(f"writing {n:,} images to {args.folder} (once)", flush=True)
    write_folder(args.folder, n)
    group = make_cgroup(args.limit_mb)
    print(f"memory cgroup: {group or 'none could be made here; peak memory is reported instead'}", flush=True)
    common = ["--folder", str(args.folder), "--steps", str(args.steps)]
    rows = [run_case(f"mapped, limit {args.limit_mb} MB" if group else "mapped", [*common, "--mapped", "yes",
                                                                               "--fit-images", "0"], group),
            run_case(f"in memory, {args.fit_images:,} images, no limit",
                     [*common, "--mapped", "no", "--fit-images", str(args.fit_images)], None)]
    if group is not None:
        rows.append(run_case(f"in memory, limit {args.limit_mb} MB", [*common, "--mapped", "no", "--fit-images", "0"],
                             group))
        group.rmdir()
    print("\n| case | set (MB) | images/s | peak own memory, RssAnon (MB) | peak resident, VmHWM (MB) | ended |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r.get('set_mb', 0):,.0f} | {r.get('images_per_s', '–')} | "
              f"{r.get('peak_anon_mb', '–')} | {r.get('peak_rss_mb', '–')} | {r.get('ended', 'trained')} |")


if __name__ == "__main__":
    main()
