"""How well single latent dimensions capture single generative factors, for data sets that carry their factors
(dSprites) and models with a Gaussian posterior: the mutual information gap (MIG, Chen et al., 2018) and the rest of
disentanglement_lib's suite (the β-VAE and FactorVAE scores, DCI, SAP, modularity), with its defaults.

MI between a latent dimension and a factor is estimated as disentanglement_lib does (Locatello et al., 2019): the
posterior means binned into equal-width bins, the discrete mutual information with the factor's index. Chen et al.
estimate it from the full posterior q(z|x) instead; the two agree in ranking models, not in every digit.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from .metrics import _require, latent_stats
from .capabilities import GaussianLatent

MIG_BINS = 20  # disentanglement_lib's default


def binned(codes: np.ndarray, bins: int = MIG_BINS) -> np.ndarray:
    """Each column of codes (N, D) as bin indices 0..bins-1 of equal-width bins over the column's range."""
    low, high = codes.min(0), codes.max(0)
    width = np.where(high > low, high - low, 1.0)
    return np.clip(np.floor((codes - low) / width * bins), 0, bins - 1).astype(np.int64)


def discrete_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats of two integer sequences of the same length, from their joint histogram."""
    from sklearn.metrics import mutual_info_score  # scikit-learn is needed by this metric only

    return float(mutual_info_score(a, b))


def mutual_information_gap(codes: Tensor, factors: Tensor, names: Sequence[str], bins: int = MIG_BINS) -> dict:
    """MIG of latent codes (N, D) against factor indices (N, F): for each factor with more than one value, the gap
    between the two latent dimensions that share the most information with it, divided by its entropy; the mean
    over those factors is `mig` (0: no dimension stands out, 1: one dimension holds the factor and no other)."""
    if len(codes) != len(factors) or len(codes) < 2:
        raise ValueError(f"codes {tuple(codes.shape)} and factors {tuple(factors.shape)}: expected the same number "
                         "(at least 2) of images")
    z = binned(codes.double().cpu().numpy(), bins)
    f = factors.cpu().numpy()
    gaps = {}
    for j, name in enumerate(names):
        if len(np.unique(f[:, j])) < 2:
            continue  # a constant factor (dSprites' colour) carries no information
        entropy = discrete_mutual_information(f[:, j], f[:, j])
        mi = sorted((discrete_mutual_information(z[:, d], f[:, j]) for d in range(z.shape[1])), reverse=True)
        gaps[name] = (mi[0] - (mi[1] if len(mi) > 1 else 0.0)) / entropy
    if not gaps:
        raise ValueError("every factor is constant over these images: MIG needs factors that vary")
    return {"mig": float(np.mean(list(gaps.values()))), "mig_per_factor": {k: round(v, 4) for k, v in gaps.items()},
            "mig_bins": bins, "mig_images": len(codes)}


@torch.no_grad()
def mig(model: nn.Module, dataset: Dataset, bins: int = MIG_BINS) -> dict:
    """MIG of the model's posterior means over an ImageDataset that carries its factors (e.g. dSprites)."""
    _require(model, GaussianLatent, "Gaussian posterior (posterior(x) -> mu, logvar)")
    return mutual_information_gap(latent_stats(model, dataset).mu, _factors(dataset), dataset.factor_names, bins)


def _factors(dataset: Dataset) -> Tensor:
    """The data set's factor indices (N, F); ValueError when it carries none."""
    factors = getattr(dataset, "factors", None)
    if factors is None:
        raise ValueError(f"{getattr(dataset, 'name', 'the data set')} carries no generative factors: the "
                         "disentanglement metrics need a set that does (dsprites, dsprites-generated)")
    return factors


# ---- the rest of disentanglement_lib's suite, on the same posterior means ----------------------------------------
# Each metric below takes the codes (N, D) of a pool of images and their factor indices (N, F) of the factors that
# vary, and uses disentanglement_lib's defaults (Locatello et al., 2019). Where disentanglement_lib draws fresh
# images from the data set's generator, these draw from the pool: the intervention scores pick images that share a
# factor's value, the classifier-based ones a training and a test part of it (disjoint, where disentanglement_lib's
# two draws may overlap). On a uniform sample of the grid (a dSprites split) the two are the same distribution.

POINTS_TRAIN, POINTS_TEST = 10_000, 5_000  # disentanglement_lib's num_train / num_eval (num_test)
BATCH = 64  # images per point of the β-VAE and FactorVAE scores
PRUNE_SD = 0.05  # the FactorVAE score ignores latent dimensions whose sd over the data is below this


@contextmanager
def _reference_iterations() -> Iterator[None]:
    """Silence scikit-learn's ConvergenceWarning: disentanglement_lib's classifiers stop at their default iteration
    counts (100 for the logistic regression, 1,000 for the SVM), and the reference's figures come from the same stop."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


class _SameFactor:
    """The pool's indices grouped by one factor's value, to draw images that share it."""

    def __init__(self, column: np.ndarray):
        self.order = np.argsort(column, kind="stable")
        values, self.start, self.count = np.unique(column[self.order], return_index=True, return_counts=True)
        self.group = np.searchsorted(values, column)  # (N,) each image's group

    def draw(self, items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """For each index in items (any shape), a random index of the pool with the same value of this factor."""
        g = self.group[items]
        return self.order[self.start[g] + (rng.random(g.shape) * self.count[g]).astype(np.int64)]


def _as_arrays(codes: Tensor, factors: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(codes (N, D) float64, factors (N, F) int64) as numpy, checked."""
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors) or len(codes) < 4:
        raise ValueError(f"codes {tuple(codes.shape)} and factors {tuple(factors.shape)}: expected (N, D) and (N, F) "
                         "with the same N of at least 4 images")
    return codes.double().cpu().numpy(), factors.long().cpu().numpy()


def _split(n: int, rng: np.random.Generator, num_train: int, num_test: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint training and test indices of a pool of n: up to num_train and num_test, at most 2/3 and 1/3 of it."""
    order = rng.permutation(n)
    n_train = min(num_train, 2 * n // 3)
    return order[:n_train], order[n_train:n_train + min(num_test, n - n_train)]


def beta_vae_score(codes: Tensor, factors: Tensor, seed: int = 0, batch_size: int = BATCH,
                   num_train: int = POINTS_TRAIN, num_eval: int = POINTS_TEST) -> dict:
    """The β-VAE score (Higgins et al., 2017): a linear classifier's test accuracy in telling, from the mean absolute
    difference of codes over `batch_size` pairs of images that share one factor's value, which factor it was
    (1: always; chance is 1/F)."""
    from sklearn.linear_model import LogisticRegression

    z, f = _as_arrays(codes, factors)
    rng, same = np.random.default_rng(seed), [_SameFactor(f[:, j]) for j in range(f.shape[1])]

    def points(n: int) -> tuple[np.ndarray, np.ndarray]:
        k = rng.integers(f.shape[1], size=n)  # the factor each point fixes
        first = rng.integers(len(z), size=(n, batch_size))
        second = np.empty_like(first)
        for j in range(f.shape[1]):
            second[k == j] = same[j].draw(first[k == j], rng)
        return np.abs(z[first] - z[second]).mean(1), k  # (n, D), (n,)

    x_train, y_train = points(num_train)
    x_eval, y_eval = points(num_eval)
    with _reference_iterations():
        classifier = LogisticRegression(random_state=seed).fit(x_train, y_train)  # disentanglement_lib's, as it is
    return {"beta_vae_score": float(classifier.score(x_eval, y_eval)),
            "beta_vae_score_train": float(classifier.score(x_train, y_train))}


def factor_vae_score(codes: Tensor, factors: Tensor, seed: int = 0, batch_size: int = BATCH,
                     num_train: int = POINTS_TRAIN, num_eval: int = POINTS_TEST, num_variance: int = 10_000,
                     prune_sd: float = PRUNE_SD) -> dict:
    """The FactorVAE score (Kim & Mnih, 2018): fix one factor over `batch_size` images, take the latent dimension
    whose variance (over those images, relative to the whole data's) is smallest, and score a majority-vote
    classifier from dimension to factor on test votes (1: each dimension points at one factor; chance 1/F).
    Dimensions with sd below prune_sd take no part; with none left the score is 0."""
    z, f = _as_arrays(codes, factors)
    rng, same, n_factors = np.random.default_rng(seed), [_SameFactor(f[:, j]) for j in range(f.shape[1])], f.shape[1]
    scale = z[rng.integers(len(z), size=num_variance)].var(0, ddof=1)  # (D,)
    active = np.sqrt(scale) >= prune_sd
    if not active.any():
        return {"factor_vae_score": 0.0, "factor_vae_score_train": 0.0, "factor_vae_active_dims": 0}

    def votes(n: int) -> np.ndarray:
        k = rng.integers(n_factors, size=n)
        batch = np.repeat(rng.integers(len(z), size=(n, 1)), batch_size, 1)  # (n, B) anchors, then their peers
        for j in range(n_factors):
            batch[k == j] = same[j].draw(batch[k == j], rng)
        local = z[batch][..., active].var(1, ddof=1) / scale[active]  # (n, active dims)
        table = np.zeros((z.shape[1], n_factors))
        np.add.at(table, (np.flatnonzero(active)[local.argmin(1)], k), 1)
        return table  # (D, F) votes

    train, test = votes(num_train), votes(num_eval)
    guess = train.argmax(1)  # each dimension's factor
    return {"factor_vae_score": float(test[np.arange(len(guess)), guess].sum() / test.sum()),
            "factor_vae_score_train": float(train[np.arange(len(guess)), guess].sum() / train.sum()),
            "factor_vae_active_dims": int(active.sum())}


def dci(codes: Tensor, factors: Tensor, seed: int = 0, num_train: int = POINTS_TRAIN,
        num_test: int = POINTS_TEST) -> dict:
    """DCI (Eastwood & Williams, 2018) with gradient-boosted trees, as disentanglement_lib: each factor predicted
    from all codes; from the trees' feature importances R (D, F), disentanglement (each dimension informs one
    factor), completeness (each factor is held by one dimension), both 1 - entropy weighted by importance, and
    informativeness (the classifiers' mean accuracy, on training and test codes)."""
    from scipy.stats import entropy
    from sklearn.ensemble import GradientBoostingClassifier

    z, f = _as_arrays(codes, factors)
    train, test = _split(len(z), np.random.default_rng(seed), num_train, num_test)

    def fit(j: int) -> tuple[np.ndarray, float, float]:
        trees = GradientBoostingClassifier(random_state=seed).fit(z[train], f[train, j])
        return np.abs(trees.feature_importances_), trees.score(z[train], f[train, j]), trees.score(z[test], f[test, j])

    # one factor per thread (the trees are grown without the GIL); each fit is seeded, so the count changes nothing
    with ThreadPoolExecutor(max_workers=min(f.shape[1], os.cpu_count() or 1)) as pool:
        fits = list(pool.map(fit, range(f.shape[1])))
    importance = np.stack([importance for importance, _, _ in fits], 1)  # (D, F)
    accuracy_train, accuracy_test = [a for _, a, _ in fits], [a for _, _, a in fits]
    if importance.sum() == 0:
        importance = np.ones_like(importance)
    per_code = 1 - entropy(importance.T + 1e-11, base=f.shape[1]) if f.shape[1] > 1 else np.ones(z.shape[1])
    per_factor = 1 - entropy(importance + 1e-11, base=z.shape[1]) if z.shape[1] > 1 else np.ones(f.shape[1])
    total = importance.sum()
    return {"dci_disentanglement": float((per_code * importance.sum(1) / total).sum()),
            "dci_completeness": float((per_factor * importance.sum(0) / total).sum()),
            "dci_informativeness_train": float(np.mean(accuracy_train)),
            "dci_informativeness_test": float(np.mean(accuracy_test))}


def sap_score(codes: Tensor, factors: Tensor, seed: int = 0, num_train: int = POINTS_TRAIN,
              num_test: int = POINTS_TEST) -> dict:
    """SAP (Kumar et al., 2018), discrete factors as disentanglement_lib: for every (dimension, factor) the test
    accuracy of a linear SVM predicting the factor from that dimension alone; per factor the gap between its best
    two dimensions, averaged (0: no dimension stands out; a binary factor copied into one dimension gives about
    0.5, the best accuracy 1 less a balanced classifier's 0.5 on any other)."""
    from sklearn.svm import LinearSVC

    z, f = _as_arrays(codes, factors)
    if z.shape[1] < 2:
        raise ValueError("SAP compares the two best latent dimensions: it needs at least two")
    train, test = _split(len(z), np.random.default_rng(seed), num_train, num_test)
    score = np.zeros((z.shape[1], f.shape[1]))
    with _reference_iterations():
        for i in range(z.shape[1]):
            for j in range(f.shape[1]):
                svm = LinearSVC(C=0.01, class_weight="balanced").fit(z[train, i:i + 1], f[train, j])
                score[i, j] = np.mean(svm.predict(z[test, i:i + 1]) == f[test, j])
    top = np.sort(score, axis=0)
    return {"sap": float(np.mean(top[-1] - top[-2]))}


def modularity(codes: Tensor, factors: Tensor, seed: int = 0, num_train: int = POINTS_TRAIN,
               num_test: int = POINTS_TEST, bins: int = MIG_BINS) -> dict:
    """Modularity and explicitness (Ridgeway & Mozer, 2018), as disentanglement_lib: modularity is 1 minus how far
    each dimension's squared mutual information with the factors is from all on one factor, averaged over
    dimensions (1: each dimension informs one factor); explicitness the mean ROC AUC of a logistic regression from
    all codes to each factor, on training and test codes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    z, f = _as_arrays(codes, factors)
    if f.shape[1] < 2:
        raise ValueError("modularity compares a dimension's information about two or more factors: one varies here")
    train, test = _split(len(z), np.random.default_rng(seed), num_train, num_test)
    levels = binned(z[train], bins)
    squared = np.array([[discrete_mutual_information(levels[:, i], f[train, j]) for j in range(f.shape[1])]
                        for i in range(z.shape[1])]) ** 2  # (D, F)
    best = squared.max(1)
    spread = (squared.sum(1) - best) / np.where(best > 0, best * (f.shape[1] - 1), 1.0)
    per_code = np.where(best > 0, 1 - spread, 0.0)
    auc_train, auc_test = [], []
    for j in range(f.shape[1]):
        with _reference_iterations():
            classifier = LogisticRegression(random_state=seed).fit(z[train], f[train, j])
        for rows, out in ((train, auc_train), (test, auc_test)):
            proba = classifier.predict_proba(z[rows])
            if len(classifier.classes_) == 2:
                out.append(roc_auc_score(f[rows, j] == classifier.classes_[1], proba[:, 1]))
            else:
                present = np.isin(classifier.classes_, f[rows, j])  # a class absent from these rows has no AUC
                truth = f[rows, j][:, None] == classifier.classes_[present][None]
                out.append(roc_auc_score(truth, proba[:, present], average="macro"))
    return {"modularity": float(per_code.mean()), "explicitness_train": float(np.mean(auc_train)),
            "explicitness_test": float(np.mean(auc_test))}


SUITE = {"mig": None, "beta_vae_score": beta_vae_score, "factor_vae_score": factor_vae_score, "dci": dci,
         "sap": sap_score, "modularity": modularity}  # name -> function of (codes, factors, seed)


def disentanglement_suite(codes: Tensor, factors: Tensor, names: Sequence[str], seed: int = 0,
                          metrics: Sequence[str] = tuple(SUITE)) -> dict:
    """The six metrics of disentanglement_lib on the codes (N, D) of a pool of images with their factor indices
    (N, F), the factors that take a single value left out: MIG, the β-VAE and FactorVAE scores, DCI, SAP and
    modularity (with explicitness); one flat dict, each metric's keys as its own function returns them."""
    unknown = sorted(set(metrics) - set(SUITE))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}: choose from {list(SUITE)}")
    varying = [j for j in range(factors.shape[1]) if len(torch.unique(factors[:, j])) > 1]
    if not varying:
        raise ValueError("every factor is constant over these images: the metrics need factors that vary")
    out = {}
    for name in metrics:
        if name == "mig":
            out.update(mutual_information_gap(codes, factors, names))
        else:
            out.update(SUITE[name](codes, factors[:, varying], seed=seed))
    return out | {"disentanglement_images": len(codes)}


@torch.no_grad()
def disentanglement_scores(model: nn.Module, dataset: Dataset, seed: int = 0,
                           metrics: Sequence[str] = tuple(SUITE)) -> dict:
    """`disentanglement_suite` on the model's posterior means over an ImageDataset that carries its factors."""
    _require(model, GaussianLatent, "Gaussian posterior (posterior(x) -> mu, logvar)")
    factors = _factors(dataset)
    return disentanglement_suite(latent_stats(model, dataset).mu, factors, dataset.factor_names, seed, metrics)
