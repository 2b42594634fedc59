"""One run under the papers' protocol, resumable: train (or continue, or read back) a recipe whose config holds out a
validation split, and give back the model with the chosen epoch's weights, its history and the chosen record, whose
`test_*` figures are the test split's, scored once.

    model, history, chosen = protocol_run(config, Path("runs/x"), train_ds, binarized_test)
"""
from __future__ import annotations

from pathlib import Path

import torch

import vae_utils as vu


def protocol_run(config: vu.TrainConfig, out: Path, train_ds, test, skip_training: bool = False,
                 **train_options) -> tuple[torch.nn.Module, list[dict], dict]:
    """Train config into out (resuming out/last.pt, a finished or early-stopped run trains nothing more); with
    skip_training, score out/best.pt as it is. Returns (model with the chosen weights, history, chosen record)."""
    last = out / "last.pt"
    if skip_training:
        history = vu.read_checkpoint(last)["history"]
        model = vu.load_checkpoint(out / "best.pt")
        chosen = dict(history[vu.selected_epoch(history, getattr(model, "best_metric", "neg_elbo")) - 1])
        chosen.update({f"test_{k}": v for k, v in vu.evaluate(model, test, seed=config.seed).items()})
        return model, history, chosen
    vu.set_seed(config.seed)
    model = vu.model_class(config.model_kind)(config.model)
    history = vu.train(model, train_ds, test, config, out_dir=out, resume=last if last.is_file() else None,
                       allow_finished=True, **train_options)
    return model, history, history[vu.selected_epoch(history, getattr(model, "best_metric", "neg_elbo")) - 1]
