"""Training speed and quality: vae_utils' default recipe against two peers, side by side in one run.

Peers: PyTorch's example MLP VAE (its DataLoader + ToTensor recipe) and pythae's `VAE` trained by pythae's own
`TrainingPipeline` (default MLP nets, latent 16, BCE, Adam 1e-3, batch 128; `pip install -e .[bench]`). All train
for the same number of epochs on Fashion-MNIST, each in a fresh child process (so peak memory is its own), in an
order rotated every repeat so that the machine's drift shows, and all are scored with the same single-sample test
-ELBO (nats per image, summed over pixels, one fixed-seed z per test image, evaluation excluded from training
time). Medians over the repeats are printed, with ratios against the better peer on each line.

    python benchmarks/train_speed.py [--epochs 10] [--repeats 3] [--json out.json] [--plot anytime.png]
                                     [--recipes NAME ...] [--candidates latent-16:9 ...]

vae_utils-default+compile trains the default recipe with TrainConfig(compile=True) (issue "Speed, round three").
Round four's verdicts compare the default with pythae: median training time, the gain over the better peer, the
spread of the runs' times, and the anytime curve (the test -ELBO of the last epoch finished, against training
seconds, medians over the runs per epoch), which --plot draws for every run. --candidates NAME:EPOCHS adds
recipe_search.py's candidates (the default with that candidate's overrides, for EPOCHS epochs) to the same run, each
judged by the same verdicts: the test of issue #39's "adopt the winner only if `make benchmark` meets the target".
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import tempfile
import time
from dataclasses import replace
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode
from torchvision import datasets, transforms

import vae_utils as vu
from results import write_results
from vae_utils.compiling import check_compilable
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


def train_reference(epochs: int, seed: int, root: str, device: torch.device, subset: Optional[int] = None) -> dict:
    """The example's recipe: DataLoader + ToTensor, batch 128, Adam 1e-3, BCE summed per image (subset: the first
    N training and test images only, for a quick check of the code path)."""
    vu.set_seed(seed)
    model = ExampleMLPVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_set = datasets.FashionMNIST(root, train=True, transform=transforms.ToTensor())
    train_set = train_set if subset is None else torch.utils.data.Subset(train_set, range(subset))
    loader = torch.utils.data.DataLoader(train_set, batch_size=128, shuffle=True)
    test = vu.load_dataset("fashion-mnist", "test", root=root).subset(subset)
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


def train_default(epochs: int, seed: int, root: str, device: torch.device, name: str = "vae_utils-default",
                  log: bool = False, compile: bool = False, subset: Optional[int] = None,
                  model_overrides: Optional[dict] = None, train_overrides: Optional[dict] = None) -> dict:
    """vae_utils' defaults (TrainConfig()), the recipe of the notebook; log=True also writes its TensorBoard log,
    compile=True trains with TrainConfig(compile=True); the overrides change the model's and training's fields."""
    config = vu.TrainConfig(epochs=epochs, seed=seed, compile=compile,
                            test_every_epoch=True)  # the peers' per-epoch test curve, beside theirs; chooses nothing
    config = replace(config, model=replace(config.model, **(model_overrides or {})), **(train_overrides or {}))
    train_ds = vu.load_dataset(config.dataset, "train", root=root).subset(subset)
    test = vu.load_dataset(config.dataset, "test", root=root).subset(subset)
    vu.set_seed(seed)
    model = vu.VAE(config.model)
    with tempfile.TemporaryDirectory() as log_dir:
        records = vu.train(model, train_ds, test, config, progress=False, log_dir=log_dir if log else None)
    history, seconds = [], 0.0
    for r in records:
        seconds += r["train_seconds"]
        history.append({"epoch": r["epoch"], "seconds": seconds, "neg_elbo": r["test_neg_elbo"],
                        "recon": r["test_recon"], "kl": r["test_kl"]})
    precision = resolve_precision(config.precision, device)
    x = torch.rand(config.batch_size, 1, 28, 28, device=device).contiguous(memory_format=torch.channels_last)
    steps = -(-len(train_ds) // config.batch_size)
    flops = _step_flops(model.train(), x, precision, device) * steps
    return _summary(name, model, history, len(train_ds), epochs, flops, precision, config.to_dict())


def train_default_logged(epochs: int, seed: int, root: str, device: torch.device) -> dict:
    """The default recipe writing its TensorBoard log, as every CLI run does (issue #21: no measurable cost)."""
    return train_default(epochs, seed, root, device, "vae_utils-default+tensorboard", log=True)


def train_default_compiled(epochs: int, seed: int, root: str, device: torch.device) -> dict:
    """The default recipe under torch.compile (issue #22), compilation included in its time (warm cache after a
    machine's first compiled run)."""
    return train_default(epochs, seed, root, device, "vae_utils-default+compile", compile=True)


def train_candidate(epochs: int, seed: int, root: str, device: torch.device, candidate: str,
                    subset: Optional[int] = None) -> dict:
    """recipe_search.py's candidate of that name (the default with its overrides) for `epochs` epochs."""
    from recipe_search import CANDIDATES
    model_overrides, train_overrides = CANDIDATES[candidate]
    return train_default(epochs, seed, root, device, candidate_name(candidate, epochs), subset=subset,
                         model_overrides=model_overrides, train_overrides=train_overrides)


def candidate_name(candidate: str, epochs: int) -> str:
    """The recipe name a candidate's runs carry in the table and the results file."""
    return f"vae_utils-{candidate}-{epochs}ep"


def parse_candidate(spec: str) -> tuple[str, int]:
    """'latent-16:9' -> ('latent-16', 9); a clear error for an unknown name or a bad epoch count."""
    from recipe_search import CANDIDATES
    name, _, epochs = spec.partition(":")
    if name not in CANDIDATES:
        raise argparse.ArgumentTypeError(f"unknown candidate {name!r}: choose from {', '.join(CANDIDATES)}")
    if not epochs.isdigit() or int(epochs) < 1:
        raise argparse.ArgumentTypeError(f"{spec!r}: write NAME:EPOCHS with EPOCHS a whole number >= 1, e.g. "
                                         "latent-16:9")
    return name, int(epochs)


class PythaeScored(nn.Module):
    """pythae's VAE seen through vae_utils' scoring: the same single-sample BCE + KL in nats per image.

    pythae's decoder ends in a sigmoid; its logits are recovered with logit() in float64, exact except where the
    sigmoid saturates to 1.0 in fp32 (BCE terms of ~1e-7 nats there)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def loss(self, x: torch.Tensor, config=None, epochs_done: float = 0.0,
             generator: Optional[torch.Generator] = None, check_range: bool = True, batch_rows=None) -> vu.LossTerms:
        encoded = self.model.encoder(x)
        mu, logvar = encoded.embedding, encoded.log_covariance
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator, device=mu.device)
        probs = self.model.decoder(z)["reconstruction"].double()
        logits = torch.logit(probs, eps=1e-12).float().view_as(x)
        return vu.vae_loss(vu.VAEOutput(logits, mu, logvar, z), x, check_range=check_range)


def train_pythae(epochs: int, seed: int, root: str, device: torch.device, subset: Optional[int] = None) -> dict:
    """pythae's VAE through its own TrainingPipeline, evaluated by a callback after every epoch (not timed)."""
    try:
        from pythae.models import VAE as PythaeVAE, VAEConfig as PythaeVAEConfig
        from pythae.pipelines import TrainingPipeline
        from pythae.trainers import BaseTrainerConfig
        from pythae.trainers.training_callbacks import TrainingCallback
    except ImportError as err:
        raise SystemExit(f"the pythae peer needs pythae: pip install -e .[bench] ({err})") from None
    train_ds = vu.load_dataset("fashion-mnist", "train", root=root).subset(subset)
    test = vu.load_dataset("fashion-mnist", "test", root=root).subset(subset)
    model = PythaeVAE(PythaeVAEConfig(input_dim=(1, 28, 28), latent_dim=16, reconstruction_loss="bce"))
    scored, history, clock = PythaeScored(model), [], {"eval": 0.0}

    class EpochScore(TrainingCallback):
        def on_epoch_end(self, training_config, **kwargs):
            start = time.perf_counter()
            was = model.training
            record = vu.evaluate(scored, test)
            model.train(was)
            clock["eval"] += time.perf_counter() - start
            history.append({"epoch": len(history) + 1, "seconds": time.perf_counter() - clock["start"] - clock["eval"],
                            **record})

    with tempfile.TemporaryDirectory() as out:
        config = BaseTrainerConfig(output_dir=out, num_epochs=epochs, learning_rate=1e-3, seed=seed,
                                   per_device_train_batch_size=128, per_device_eval_batch_size=128,
                                   no_cuda=device.type != "cuda")
        clock["start"] = time.perf_counter()
        TrainingPipeline(model=model, training_config=config)(train_data=train_ds.images.float() / 255,
                                                              callbacks=[EpochScore()])
    return _summary("pythae-vae", model, history, len(train_ds), epochs, None, "fp32")


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
        "train_gflop_per_s": flops_per_epoch * epochs / seconds / 1e9 if flops_per_epoch else None,
        "history": history,
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


def elbo_at(history: list[dict], seconds: float) -> Optional[float]:
    """The test -ELBO of the last epoch finished within `seconds` of training (None if none was)."""
    done = [h["neg_elbo"] for h in history if h["seconds"] <= seconds]
    return done[-1] if done else None


def median_curve(runs: list[dict]) -> list[tuple[float, float]]:
    """(seconds, test -ELBO) per epoch: the medians over the runs of the epoch's end time and its -ELBO."""
    epochs = min(len(r["history"]) for r in runs)
    return [(statistics.median(r["history"][e]["seconds"] for r in runs),
             statistics.median(r["history"][e]["neg_elbo"] for r in runs)) for e in range(epochs)]


def curve_at(curve: list[tuple[float, float]], seconds: float) -> Optional[float]:
    """A curve's -ELBO at `seconds`: that of the last epoch finished by then (None before its first)."""
    done = [elbo for t, elbo in curve if t <= seconds]
    return done[-1] if done else None


def below_everywhere(ours: list[tuple[float, float]], theirs: list[tuple[float, float]]) -> list[float]:
    """The times after our first epoch (every epoch end of either curve) where ours is not below theirs: empty
    when the anytime curve is below at every point. Before their first epoch ends, theirs has no figure: ours wins."""
    times = sorted({t for t, _ in ours + theirs if t >= ours[0][0]})
    return [t for t in times if (b := curve_at(theirs, t)) is not None and curve_at(ours, t) >= b]


def round_four_verdicts(runs: dict[str, list[dict]], med: dict[str, dict],
                         name: str = "vae_utils-default") -> dict[str, dict]:
    """Issue #39's target against pythae for the recipe `name`: each criterion with its figure and met or not."""
    ours, pythae = runs[name], runs["pythae-vae"]
    best_peer = min(med[p]["test_neg_elbo"] for p in PEERS if p in med)
    spread = {who: max(r["train_seconds"] for r in rs) - min(r["train_seconds"] for r in rs)
              for who, rs in (("ours", ours), ("pythae", pythae))}
    losing = below_everywhere(median_curve(ours), median_curve(pythae))
    ratio = med[name]["train_seconds"] / med["pythae-vae"]["train_seconds"]
    gain = best_peer - med[name]["test_neg_elbo"]
    return {
        "time_vs_pythae": {"value": round(ratio, 3), "target": "<= 1.0", "met": ratio <= 1.0},
        "gain_over_better_peer_nats": {"value": round(gain, 2), "target": ">= 4", "met": gain >= 4.0},
        "time_spread_seconds": {"value": [round(spread["ours"], 1), round(spread["pythae"], 1)],
                                "target": "ours <= pythae's", "met": spread["ours"] <= spread["pythae"]},
        "anytime_below_pythae": {"value": [round(t, 1) for t in losing], "target": "no time after our first epoch "
                                 "where ours is not below", "met": not losing},
    }


def plot_anytime(runs: dict[str, list[dict]], path: str) -> None:
    """Test -ELBO against training seconds, one thin line per run and a thick one through the medians."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (name, rs) in enumerate(runs.items()):
        colour = f"C{i}"
        for r in rs:
            ax.plot([h["seconds"] for h in r["history"]], [h["neg_elbo"] for h in r["history"]], color=colour,
                    alpha=0.35, linewidth=0.8)
        curve = median_curve(rs)
        ax.plot(*zip(*curve), color=colour, linewidth=2, marker="o", markersize=3, label=f"{name} (median)")
    ax.set(xlabel="training seconds", ylabel="test -ELBO (nats per image)", title="anytime: quality per second")
    top = max(r["history"][1]["neg_elbo"] for rs in runs.values() for r in rs if len(r["history"]) > 1)
    ax.set_ylim(top=top + 2)  # from the second epoch on, where the curves separate
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def target_verdicts(ratios: dict) -> list[str]:
    """Issue #10's targets against the better peer on each line, each as 'met' or 'not met' with its figure."""
    to_best = ratios["time_to_best_peer_elbo_vs_fastest_peer"]
    checks = [
        ("1a training time <= 1.0x the fastest peer's", ratios["train_time_vs_fastest_peer"] <= 1.0,
         f"{ratios['train_time_vs_fastest_peer']:.2f}x"),
        ("1b test -ELBO >= 6 nats below the best peer's", ratios["neg_elbo_gain_over_best_peer_nats"] >= 6.0,
         f"{ratios['neg_elbo_gain_over_best_peer_nats']:.2f} nats"),
        ("2  best peer's -ELBO reached in <= 0.33x the fastest peer's time", to_best is not None and to_best <= 0.33,
         "never" if to_best is None else f"{to_best:.2f}x"),
    ]
    return [f"target {name}: {'met' if ok else 'NOT met'} ({figure})" for name, ok, figure in checks]


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


RECIPES = {"pytorch-example-mlp": "train_reference", "pythae-vae": "train_pythae", "vae_utils-default": "train_default",
           "vae_utils-default+tensorboard": "train_default_logged",
           "vae_utils-default+compile": "train_default_compiled"}
DEFAULT_NEG_ELBO = 239.56  # the default recipe's committed test -ELBO (issue #22: keep it within 0.2 nats)
PEERS = ("pytorch-example-mlp", "pythae-vae")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each recipe, in a rotated order")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=str(vu.data.default_root()))
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--plot", default=None, help="draw the anytime curves of every run to this PNG")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES),
                        help="a subset (vae_utils-default and at least one peer among them)")
    parser.add_argument("--candidates", nargs="+", default=[], type=parse_candidate, metavar="NAME:EPOCHS",
                        help="recipe_search.py candidates to train beside them, e.g. latent-16:9")
    args = parser.parse_args()
    if "vae_utils-default" not in args.recipes or not set(PEERS) & set(args.recipes):
        parser.error("--recipes needs vae_utils-default and at least one of " + ", ".join(PEERS))
    device = vu.resolve_device("auto")
    vu.load_dataset("fashion-mnist", "train", root=args.data_dir)  # unpack the IDX files once, outside the timings
    vu.load_dataset("fashion-mnist", "test", root=args.data_dir)
    names = list(args.recipes)
    if "vae_utils-default+compile" in names:
        try:
            check_compilable(device)
        except vu.CompileUnavailableError as err:
            print(f"vae_utils-default+compile left out: {err}")
            names.remove("vae_utils-default+compile")
    jobs = {name: (RECIPES[name], args.epochs) for name in names}
    jobs.update({candidate_name(c, e): ("train_candidate", e, c) for c, e in args.candidates})
    names = list(jobs)
    runs = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:  # A B C, then B C A, ...
            fn, epochs, *extra = jobs[name]
            runs[name].append(run_isolated(fn, epochs, args.seed, args.data_dir, device, *extra))
            print(f"  {name}: {runs[name][-1]['train_seconds']:.1f} s, -ELBO {runs[name][-1]['test_neg_elbo']:.2f}",
                  flush=True)
    peaks = {p: matmul_peak_gflops(dtype, device) for p, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    med = {name: {key: statistics.median(r[key] for r in rs) for key in
                  ("train_seconds", "images_per_second", "peak_memory_mb", "test_neg_elbo")}
           for name, rs in runs.items()}
    peers = [p for p in PEERS if p in med]
    best_elbo = min(med[p]["test_neg_elbo"] for p in peers)
    fastest = min(med[p]["train_seconds"] for p in peers)
    for name, rs in runs.items():
        reach = [time_to_reach(r["history"], best_elbo) for r in rs]
        at = [elbo_at(r["history"], fastest) for r in rs]
        med[name]["seconds_to_best_peer_elbo"] = statistics.median(reach) if None not in reach else None
        med[name]["elbo_at_fastest_peer_time"] = statistics.median(at) if None not in at else None
        med[name]["spread_train_seconds"] = [round(r["train_seconds"], 1) for r in rs]
    machine = f"{vu.repro.describe_cpu()}, {device}" + (f" ({torch.cuda.get_device_name(device)})"
                                                         if device.type == "cuda" else "")
    print(f"machine: {machine}; torch {torch.__version__}; {args.epochs} epochs; seed {args.seed}; "
          f"{args.repeats} repeats (medians)")
    print(f"matmul peak (2048^2): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
    print(f"{'':22}{'train s':>9}{'img/s':>9}{'peak MB':>9}{'test -ELBO':>12}{'s to best':>11}{'-ELBO at':>10}"
          f"   runs (s)")
    fmt = lambda v, spec: format(v, spec) if v is not None else f"{'n/a':>{spec.split('.')[0]}}"  # noqa: E731
    for name, m in med.items():
        print(f"{name:22}{m['train_seconds']:9.1f}{m['images_per_second']:9.0f}{m['peak_memory_mb']:9.0f}"
              f"{m['test_neg_elbo']:12.2f}{fmt(m['seconds_to_best_peer_elbo'], '11.1f')}"
              f"{fmt(m['elbo_at_fastest_peer_time'], '10.2f')}   {m['spread_train_seconds']}")
    for name, rs in runs.items():  # compute efficiency, where FLOPs were counted (torch.utils.flop_counter)
        if rs[0]["train_gflop_per_s"] is not None:
            gflops = statistics.median(r["train_gflop_per_s"] for r in rs)
            print(f"{name}: {gflops:.1f} GFLOP/s = {gflops / peaks[rs[0]['precision']]:.1%} of the "
                  f"{rs[0]['precision']} matmul peak")
    ours = med["vae_utils-default"]
    ratios = {
        "train_time_vs_fastest_peer": ours["train_seconds"] / fastest,
        "throughput_vs_fastest_peer": ours["images_per_second"] / max(med[p]["images_per_second"] for p in peers),
        "memory_vs_leanest_peer": ours["peak_memory_mb"] / min(med[p]["peak_memory_mb"] for p in peers),
        "neg_elbo_gain_over_best_peer_nats": best_elbo - ours["test_neg_elbo"],
        "time_to_best_peer_elbo_vs_fastest_peer": (ours["seconds_to_best_peer_elbo"] / fastest
                                                   if ours["seconds_to_best_peer_elbo"] is not None else None),
    }
    print(f"best peer -ELBO {best_elbo:.2f}, fastest peer {fastest:.1f} s; vae_utils against them: " + ", ".join(
        f"{k} {v:.3f}" if v is not None else f"{k} n/a" for k, v in ratios.items()))
    for line in target_verdicts(ratios):
        print(line)
    for name in ("vae_utils-default", "vae_utils-default+compile"):  # issue #22's target 2
        if name in med:
            time_ratio, elbo = med[name]["train_seconds"] / fastest, med[name]["test_neg_elbo"]
            ok = time_ratio <= 1.0 and abs(elbo - DEFAULT_NEG_ELBO) <= 0.2
            print(f"speed round three, target 2 ({name}): training time <= 1.0x the fastest peer's with the test "
                  f"-ELBO within 0.2 of {DEFAULT_NEG_ELBO}: {'met' if ok else 'NOT met'} ({time_ratio:.2f}x, "
                  f"{elbo:.2f})")
            if name != "vae_utils-default":  # the default's is train_time_vs_fastest_peer above
                ratios[f"train_time_vs_fastest_peer[{name}]"] = time_ratio
    if "vae_utils-default+tensorboard" in med:
        logged = med["vae_utils-default+tensorboard"]["train_seconds"] / ours["train_seconds"]
        print(f"TensorBoard log (every CLI run writes one): training time with / without = {logged:.3f}")
        ratios["tensorboard_log_time_ratio"] = logged
    judged = ["vae_utils-default"] + [candidate_name(c, e) for c, e in args.candidates]
    verdicts = {name: round_four_verdicts(runs, med, name) for name in judged} if "pythae-vae" in runs else {}
    for name, checks in verdicts.items():
        for check, v in checks.items():
            print(f"speed round four, {name}, {check} ({v['target']}): {'met' if v['met'] else 'NOT met'} "
                  f"({v['value']})")
    if args.plot:
        plot_anytime(runs, args.plot)
        print("anytime curves:", args.plot)
    if args.json:
        write_results(args.json, device=machine, epochs=args.epochs, repeats=args.repeats,
                      matmul_peak_gflop_per_s=peaks, medians=med, runs=runs, ratios=ratios, round_four=verdicts)

if __name__ == "__main__":
    main()
