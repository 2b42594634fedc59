"""Short probes of the dense ladder on binarized Fashion-MNIST (issue "Depth", docs/hierarchical.md): the ladder
recipe cut to --epochs (its own 1cycle), on the recipe's 50,000 training images, with model overrides or trained on
the k-sample importance-weighted bound instead of the ELBO; prints one JSON line: training seconds, and for the
epoch the recipe's early stopping chose, the validation -ELBO and the IWAE NLL (k=500) of the first 1,000 of the
10,000 held-out validation images (binarized once). Probes are compared on validation; the test split is not read.

    python benchmarks/ladder_probes.py --epochs 50                                   # the recipe, 852 s here
    python benchmarks/ladder_probes.py --epochs 50 --latent-dims 32 32 32 32 64 --cells 2   # deeper
    python benchmarks/ladder_probes.py --epochs 25 --train-k 2                       # the k=2 bound

--train-k patches LadderVAE.loss in this process only: a probe of the objective, not a feature of the package.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch

import vae_utils as vu
from vae_utils.losses import reconstruction_loss
from vae_utils.models.hvae import HVAETerms, gaussian_kl, gaussian_log_prob, kl_warmup_factor


def iwae_objective(k: int):
    """LadderVAE.loss with the k-sample bound (Burda et al., 2016) over all groups in training, the KL warm-up on
    the log-ratio; without a training config (the test -ELBO) the plain loss."""
    plain = vu.LadderVAE.loss

    def loss(self, x, config=None, epochs_done=0.0, generator=None, check_range=True, batch_rows=None):
        if config is None:
            return plain(self, x, None, epochs_done, generator, check_range, batch_rows)
        c, B, G = self.config, len(x), self.n_groups
        self.check_input(x)
        features = [f.repeat_interleave(k, 0) for f in self.bottom_up(x)]
        noise = [torch.randn((B * k, *s), generator=generator, device=x.device) for s in self.group_shapes]
        logits, groups = self._top_down(features, B * k, noise, [1.0] * G, G)
        recon = reconstruction_loss(logits, x.repeat_interleave(k, 0), c.likelihood, c.gaussian_std, check_range)
        log_ratio = sum(gaussian_log_prob(g.z, g.p_mu, g.p_logvar) - gaussian_log_prob(g.z, g.q_mu, g.q_logvar)
                        for g in groups)
        beta = config.beta * kl_warmup_factor(epochs_done, config.kl_warmup_epochs)
        bound = torch.logsumexp((-recon + beta * log_ratio).view(B, k), 1) - math.log(k)
        kl = sum(gaussian_kl(g.q_mu, g.q_logvar, g.p_mu, g.p_logvar).flatten(1).sum(1) for g in groups).mean()
        return HVAETerms(-bound.mean(), recon.mean(), kl)
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--latent-dims", type=int, nargs="+", default=None)
    parser.add_argument("--cells", type=int, default=None)
    parser.add_argument("--train-k", type=int, default=1, help="importance samples of the training bound (1: ELBO)")
    parser.add_argument("--out", type=Path, default=Path("runs/ladder-probe"))
    args = parser.parse_args()
    overrides = {name: value for name, value in (("latent_dims", args.latent_dims), ("cells", args.cells))
                 if value is not None}
    base = vu.TrainConfig.recipe("ladder-binarized")
    config = replace(base, epochs=args.epochs, model=replace(base.model, **overrides))
    if args.train_k > 1:
        vu.LadderVAE.loss = iwae_objective(args.train_k)
    train = vu.load_dataset("fashion-mnist", "train")
    vu.set_seed(config.seed)
    model = vu.LadderVAE(config.model)
    history = vu.train(model, train, None, config, out_dir=args.out, overwrite=True, progress=False)
    val = vu.training.split_training_data(train, config)[2]  # probes are compared on validation, never on test
    start = time.perf_counter()
    nll = vu.iwae_nll(model, val.subset(1000), k=500, precision="auto")["iwae_nll"]  # the chosen epoch's weights
    chosen = history[vu.selected_epoch(history) - 1]
    print(json.dumps({"epochs": args.epochs, "selected_epoch": chosen["epoch"], "model": overrides,
                      "train_k": args.train_k, "params": sum(p.numel() for p in model.parameters()),
                      "train_s": round(sum(h["train_seconds"] for h in history), 1),
                      "eval_s": round(time.perf_counter() - start, 1),
                      "val_neg_elbo": round(chosen["val_neg_elbo"], 3), "val_iwae_nll_k500_1000": round(nll, 3)}))


if __name__ == "__main__":
    main()
