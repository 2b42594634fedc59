"""The papers' numbers under the papers' protocol: dynamically binarized Fashion-MNIST with the networks of the
VampPrior and Exemplar VAE papers (gated MLPs of 300 units, latent 40; `TrainConfig.recipe("paper-mlp")`), trained on
50,000 images with 10,000 held out for validation (binarized once), early stopping on the validation -ELBO
(patience 51, as the reference code's `e > 50`) up to an epoch cap, and the test NLL by importance sampling with
k = 5000 on all 10,000 test images binarized once (seed 0), scored once with the chosen epoch's weights.

    python benchmarks/reproduce.py [--families vae vamp iwae iaf] [--seeds 3] [--epochs 100] [--iwae-k 5000]
                                   [--out runs/reproduce] [--json benchmarks/results/reproduce.json]

Norouzi et al. (2020, Exemplar VAE, Table 1) report 228.70 nats for the VAE and 227.35 for the VampPrior (K = 500
pseudo-inputs). Each seed trains its own run (seed s: its validation split, initial weights and data order), and
the table gives mean ± sd over the seeds; "met" only where the paper's figure lies inside mean ± 2 sd. The first
seed's model is also scored on --draws other binarizations of the test set (seeds 0, 1, ...), the spread that one
fixed draw hides. Everything resumes: a run continues from OUT/<family>/seed<s>/last.pt, a scored seed is read back
from its result.json (or, when OUT is gone, from the --json file's row), so a second call (or the next session)
only does what is left.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).parent))
import vae_utils as vu  # noqa: E402
from protocol import protocol_run  # noqa: E402
from results import kept_result, mean_sd, versus_paper, write_results  # noqa: E402

PAPER = {"vae": 228.70, "vamp": 227.35}  # Exemplar VAE, Table 1, dynamic binarization (no IWAE figure there)
FIELDS = {"vae": {}, "vamp": {"pseudo_inputs": 500}, "iwae": {"k": 5}, "iaf": {"flow_steps": 2}}  # IAF: 2 steps of 320 units


def train_and_score(config: vu.TrainConfig, out: Path, train_ds, test, iwae_k: int,
                    results: Optional[Path] = None) -> dict:
    """Train (or resume, or read back) one seed's run and its test figures; the result is kept in out/result.json,
    and a seed scored in a session whose out/ is gone is read back from the results file's row."""
    result_file = out / "result.json"
    if (kept := kept_result(result_file, results, config, iwae_k=iwae_k)) is not None:
        return kept
    model, history, chosen = protocol_run(config, out, train_ds, test)  # the chosen epoch's weights
    start = time.perf_counter()
    nll = vu.iwae_nll(model, test, k=iwae_k, precision="fp32", progress=True)
    result = {"family": config.model_kind, "seed": config.seed, "epochs": len(history), "selected_epoch":
              chosen["epoch"], "stopped": vu.stop_reason(history, config) or f"epoch cap ({config.epochs})",
              "val_neg_elbo": chosen["val_neg_elbo"], "test_neg_elbo": chosen["test_neg_elbo"],
              "iwae_nll": nll["iwae_nll"], "iwae_k": iwae_k, "test_images": len(test),
              "train_seconds": round(sum(h["train_seconds"] for h in history), 1),
              "eval_seconds": round(time.perf_counter() - start, 1),
              "parameters": sum(p.numel() for p in model.parameters()), "config": config.to_dict()}
    vu.files.atomic_write(result_file, lambda f: f.write(json.dumps(result, indent=2).encode()))
    return result


def binarization_spread(out: Path, grey_test, draws: int, iwae_k: int, results: Optional[Path] = None) -> dict:
    """One trained model (its best.pt) scored on `draws` binarizations of the test set: -ELBO and IWAE NLL; kept in
    out/spread.json (or the results file, when out/ is gone), so a second call reads it back."""
    kept, saved = out / "spread.json", None
    if kept.is_file():
        saved = json.loads(kept.read_text())
    elif results is not None and results.is_file():  # the same family's seed 0, whatever OUT was then
        saved = json.loads(results.read_text()).get("binarization_spread") or {}
        saved = saved if Path(saved.get("run", "")).parts[-2:] == out.parts[-2:] else None
    if saved and saved.get("draws") == draws and saved.get("iwae_k") == iwae_k:
        return saved
    model = vu.load_checkpoint(out / "best.pt")
    elbo, nll = [], []
    for seed in range(draws):
        test = vu.binarize(grey_test, seed=seed)
        elbo.append(vu.evaluate(model, test)["neg_elbo"])
        nll.append(vu.iwae_nll(model, test, k=iwae_k, precision="fp32", progress=True)["iwae_nll"])
    (e_mean, e_sd), (n_mean, n_sd) = mean_sd(elbo), mean_sd(nll)
    spread = {"run": str(out), "draws": draws, "iwae_k": iwae_k, "neg_elbo": elbo, "iwae_nll": nll,
              "neg_elbo_mean_sd": [round(e_mean, 3), round(e_sd, 3)],
              "iwae_nll_mean_sd": [round(n_mean, 3), round(n_sd, 3)]}
    vu.files.atomic_write(kept, lambda f: f.write(json.dumps(spread, indent=2).encode()))
    return spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=["vae", "vamp", "iaf"], choices=sorted(FIELDS))
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 ... S-1 per family (default 3)")
    parser.add_argument("--epochs", type=int, default=None, help="the epoch cap (default: the recipe's)")
    parser.add_argument("--warmup-epochs", type=int, default=None, help="KL warm-up (default: the recipe's)")
    parser.add_argument("--iwae-k", type=int, default=5000)
    parser.add_argument("--draws", type=int, default=5, help="test binarizations for the first seed's spread (0: "
                        "none)")
    parser.add_argument("--draws-k", type=int, default=1000, help="importance samples for that spread (default "
                        "1000: five k=5000 evaluations cost as much as five seeds)")
    parser.add_argument("--out", type=Path, default=Path("runs/reproduce"))
    parser.add_argument("--json", type=Path, default=None, help="write the results file here (e.g. "
                        "benchmarks/results/reproduce.json)")
    args = parser.parse_args()

    overrides = {k: v for k, v in (("epochs", args.epochs), ("kl_warmup_epochs", args.warmup_epochs)) if v is not None}
    recipe = vu.TrainConfig.recipe("paper-mlp", **overrides)
    train_ds, grey_test = vu.load_dataset("fashion-mnist", "train"), vu.load_dataset("fashion-mnist", "test")
    test = vu.binarize(grey_test, seed=0)
    rows, summary, spread = [], {}, None

    def save() -> None:  # after every seed: a stopped run leaves the results it has
        if args.json:
            write_results(args.json, recipe=recipe.to_dict(), rows=rows, summary=summary, binarization_spread=spread)

    for kind in args.families:
        family = vu.model_class(kind)
        base = replace(recipe, model=family.config_class(**recipe.model.to_dict(), **FIELDS[kind]), model_kind=kind)
        for seed in range(args.seeds):
            rows.append(train_and_score(replace(base, seed=seed), args.out / kind / f"seed{seed}", train_ds, test,
                                        args.iwae_k, args.json))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "config"}), flush=True)
            mine = [r for r in rows if r["family"] == kind]
            summary[kind] = {"iwae_nll": versus_paper([r["iwae_nll"] for r in mine], PAPER.get(kind)),
                             "test_neg_elbo": versus_paper([r["test_neg_elbo"] for r in mine], None),
                             "epochs": [r["epochs"] for r in mine],
                             "selected_epochs": [r["selected_epoch"] for r in mine]}
            save()
        if spread is None and args.draws:
            spread = binarization_spread(args.out / kind / "seed0", grey_test, args.draws, args.draws_k, args.json)
            save()

    print(f"\n{vu.repro.describe_cpu()}; recipe paper-mlp: epoch cap {recipe.epochs}, patience {recipe.patience}, "
          f"val_size {recipe.val_size}, batch {recipe.batch_size}, lr {recipe.lr} constant, KL warm-up "
          f"{recipe.kl_warmup_epochs} epochs; the papers: up to 2,000 epochs, patience 51, KL warm-up 100\n")
    print(f"| family | seeds | epochs trained (selected) | test -ELBO | IWAE NLL (k={args.iwae_k}) | paper | gap | "
          "inside mean ± 2 sd |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, s in summary.items():
        nll, elbo = s["iwae_nll"], s["test_neg_elbo"]
        paper = "—" if nll["paper"] is None else f"{nll['paper']:.2f}"
        gap = "—" if nll["paper"] is None else f"{nll['gap']:+.2f}"
        met = "—" if nll["paper"] is None else ("yes" if nll["met"] else "no")
        epochs = ", ".join(f"{e} ({c})" for e, c in zip(s["epochs"], s["selected_epochs"]))
        print(f"| {kind} | {nll['seeds']} | {epochs} | {elbo['mean']:.2f} ± {elbo['sd']:.2f} | "
              f"{nll['mean']:.2f} ± {nll['sd']:.2f} | {paper} | {gap} | {met} |")
    if spread is not None:
        print(f"\none model ({spread['run']}) over {spread['draws']} test binarizations: -ELBO "
              f"{spread['neg_elbo_mean_sd'][0]:.2f} ± {spread['neg_elbo_mean_sd'][1]:.3f}, IWAE NLL (k={args.draws_k}) "
              f"{spread['iwae_nll_mean_sd'][0]:.2f} ± {spread['iwae_nll_mean_sd'][1]:.3f}")
    if args.json:
        print("wrote", args.json)


if __name__ == "__main__":
    main()
