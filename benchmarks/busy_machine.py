"""Training on a busy machine: the default recipe's step alone and beside competing CPU work, per thread setting.

    python benchmarks/busy_machine.py [--steps 20] [--rounds 2] [--loads spin torch]
                                      [--json benchmarks/results/busy_machine.json]

With torch's default threads (one per core) and other work on the cores, OpenMP's threads wait for each other at
every parallel region while the scheduler runs the other work, and steps get several times slower. Each setting
runs in a fresh process (OpenMP reads its environment when torch loads) and times --steps training steps of the
default recipe quietly, then beside each kind of competing work: `spin`, one busy single-threaded process per
core (a build, a browser tab); `torch`, a second PyTorch process multiplying matrices on all cores (another
training). The order of the settings rotates every round. It prints, per setting and load, the median seconds per
step over the rounds and the ratios issue #36 asks for: quiet against torch's default, busy against one thread
quiet. `vae_utils (threads=0)` is what `vu.train` does: `ThreadGovernor` (vae_utils/threads.py) looks at the load
once a second and gives torch the cores left free.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
CORES = os.cpu_count() or 1
OMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
GOVERNED = "vae_utils (threads=0)"

# name -> (environment before torch loads, torch.set_num_threads or None, interop threads or None)
SETTINGS: dict[str, tuple[dict[str, str], int | None, int | None]] = {
    "torch default (threads = cores)": ({}, None, None),
    "threads = 1": ({}, 1, None),
    **({f"threads = {CORES - 1}": ({}, CORES - 1, None)} if CORES > 2 else {}),
    "OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, None, None),
    "GOMP_SPINCOUNT=10000": ({"GOMP_SPINCOUNT": "10000"}, None, None),
    "PASSIVE, 1 interop thread": ({"OMP_WAIT_POLICY": "PASSIVE"}, None, 1),
    GOVERNED: ({}, None, None),
}
LOADS = {  # kind -> the competing processes' commands
    "spin": [[sys.executable, "-c", "while True: pass"]] * CORES,
    "torch": [[sys.executable, "-c", "import torch\na = torch.randn(512, 512)\nwhile True: a @ a"]],
}


def worker(name: str, steps: int) -> None:
    """Time `steps` training steps of the default recipe under setting `name`; print one JSON line."""
    env, threads, interop = SETTINGS[name]
    import torch
    if interop is not None:
        torch.set_num_interop_threads(interop)
    if threads is not None:
        torch.set_num_threads(threads)
    import vae_utils as vu
    from step_profile import _timed, make_step

    device = torch.device("cpu")
    step, _, batch = make_step(vu.TrainConfig(), device)
    if name == GOVERNED:
        from vae_utils.threads import ThreadGovernor
        governor, plain = ThreadGovernor(0), step

        def step() -> None:
            governor.step()
            plain()
    _timed(step, 3, device)  # warm-up: allocator, oneDNN primitives
    blocks = [_timed(step, max(1, steps // 4), device) for _ in range(4)]
    print(json.dumps({"seconds_per_step": statistics.median(blocks), "threads": torch.get_num_threads(),
                      "batch": batch}))


def run_setting(name: str, steps: int, load: str | None) -> dict:
    """One fresh process under setting `name`, quiet (load None) or beside the competing processes of `load`."""
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARIABLES}
    env.update(SETTINGS[name][0])
    hogs = [subprocess.Popen(cmd, env=env) for cmd in LOADS[load]] if load else []
    try:
        time.sleep(1.0 if hogs else 0)  # let the competing work start
        done = subprocess.run([sys.executable, __file__, "--worker", name, "--steps", str(steps)], env=env,
                              capture_output=True, text=True, timeout=1800, cwd=HERE)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    if done.returncode != 0:
        raise SystemExit(f"setting {name!r} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run (after 3 of warm-up)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--loads", nargs="+", default=list(LOADS), choices=list(LOADS))
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--json", type=Path, default=None, help="write the results file here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        return worker(args.worker, args.steps)

    from tqdm import tqdm
    conditions = [None, *args.loads]
    runs = [(r, i, c) for r in range(args.rounds) for i in range(len(args.settings)) for c in conditions]
    times: dict[tuple[str, str | None], list[float]] = {}
    for round_, i, load in tqdm(runs, desc="runs"):
        name = args.settings[(i + round_) % len(args.settings)]  # rotated: no setting always runs first
        started = time.perf_counter()
        result = run_setting(name, args.steps, load)
        times.setdefault((name, load), []).append(result["seconds_per_step"])
        tqdm.write(f"{name:34s} {load or 'quiet':6s} {1000 * result['seconds_per_step']:8.1f} ms/step "
                   f"({result['threads']} threads at the end; run {time.perf_counter() - started:.0f} s)")

    median = {key: statistics.median(v) for key, v in times.items()}
    base = median.get(("torch default (threads = cores)", None))
    one = median.get(("threads = 1", None))
    rows = []
    print(f"\n{CORES} cores, {args.steps} steps a run, medians of {args.rounds} runs; busy = beside "
          f"{' / '.join(args.loads)} (in that order)\n")
    print(f"| setting | quiet ms/step | quiet vs torch default | "
          f"{' | '.join(f'{load}: ms/step, vs 1 thread quiet' for load in args.loads)} |")
    print("|---|---|---|" + "---|" * len(args.loads))
    for name in args.settings:
        quiet = median[(name, None)]
        row = {"setting": name, "quiet_ms": round(1000 * quiet, 2), "quiet_vs_default": base and round(quiet / base, 3),
               "runs_ms": {load or "quiet": [round(1000 * t, 2) for t in times[(name, load)]] for load in conditions}}
        cells = []
        for load in args.loads:
            busy = median[(name, load)]
            row[f"{load}_ms"] = round(1000 * busy, 2)
            row[f"{load}_vs_one_thread_quiet"] = one and round(busy / one, 3)
            cells.append(f"{1000 * busy:.1f}, {row[f'{load}_vs_one_thread_quiet']}x")
        rows.append(row)
        print(f"| {name} | {row['quiet_ms']:.1f} | {row['quiet_vs_default']} | {' | '.join(cells)} |")
    if args.json is not None:
        from results import write_results
        path = write_results(args.json, cores=CORES, steps=args.steps, rounds=args.rounds, loads=args.loads,
                             rows=rows)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
