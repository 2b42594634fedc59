"""Sample quality on the papers' scale: FID and KID on the standard Inception's pool features (torch-fidelity's
port of the TensorFlow InceptionV3 that the FID reference code uses, 2048 features per image)."""
from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from .data import iterate_batches
from .features import frechet_distance

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's name for the converted weights
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILE
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000  # torch-fidelity's defaults (and Bińkowski et al.'s)


def inception_weights(path: Union[str, Path, None] = None, download: bool = True) -> Path:
    """The Inception weights: `path` if given, else torch's hub cache (where torch-fidelity keeps them), downloaded
    there once when missing; FileNotFoundError in one line saying which file and where to put it."""
    if path is not None:
        found = Path(path).expanduser()
        if not found.is_file():
            raise FileNotFoundError(f"--inception-weights {found}: no such file (expected torch-fidelity's "
                                    f"{INCEPTION_FILE}, from {INCEPTION_URL})")
        return found
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if cached.is_file():
        return cached
    reason = "not downloaded (download=False)"
    if download:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(INCEPTION_URL, str(cached), progress=False)  # a temporary file, renamed
            return cached
        except (OSError, urllib.error.URLError) as err:
            reason = f"the download failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    raise FileNotFoundError(f"the standard Inception weights {INCEPTION_FILE} are not in {cached.parent} and were "
                            f"{reason}; download {INCEPTION_URL} into that folder, or pass --inception-weights FILE")


class InceptionFeatures:
    """The pool features of a network that reads 8-bit RGB images (N, 3, H, W) and resizes them itself: by default
    the standard Inception; grey images are repeated to three channels and every image is quantised to 8 bits as
    a saved PNG is (torchvision's save_image), so that the figures are those of the images a reader sees."""

    def __init__(self, weights: Union[str, Path, None] = None, network: Optional[nn.Module] = None,
                 device: Union[str, torch.device] = "cpu", batch_size: int = 100) -> None:
        if network is None:
            try:
                from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
            except ImportError as err:
                raise ImportError("the standard Inception comes with torch-fidelity, which is not installed: pip "
                                  "install torch-fidelity (or pip install .[fid])") from err
            network = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                  feature_extractor_weights_path=str(inception_weights(weights)))
        self.network, self.device, self.batch_size = network.to(device).eval(), torch.device(device), batch_size

    @torch.no_grad()
    def __call__(self, images: Union[Tensor, Dataset]) -> Tensor:
        """Features (N, F), float64 on the CPU, of images in [0, 1] (a tensor (N, C, H, W) or a data set)."""
        batches = (images.split(self.batch_size) if isinstance(images, Tensor)
                   else iterate_batches(images, self.batch_size, self.device))
        return torch.cat([self._features(batch) for batch in batches])

    def _features(self, batch: Tensor) -> Tensor:
        if batch.dim() != 4 or batch.shape[1] not in (1, 3):
            raise ValueError(f"expected images (N, 1 or 3, H, W) in [0, 1], got shape {tuple(batch.shape)}")
        batch = batch.to(self.device).float().expand(-1, 3, -1, -1)
        pixels = batch.mul(255).add(0.5).clamp(0, 255).to(torch.uint8)  # as save_image writes a PNG
        out = self.network(pixels)
        return (out[0] if isinstance(out, (tuple, list)) else out).double().cpu()


def inception_scores(features: InceptionFeatures, real: Union[Tensor, Dataset], fake: Tensor, seed: int = 0,
                     kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE) -> dict[str, float]:
    """FID (this package's Fréchet distance, equal to torch-fidelity's) and KID (torch-fidelity's unbiased estimator,
    cubic polynomial kernel, mean and sd over subsets of at most kid_subset_size images) of fake against real."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    real_features, fake_features = features(real), features(fake)
    size = min(kid_subset_size, len(real_features), len(fake_features))
    kid = kid_features_to_metric(real_features, fake_features, kid_subsets=kid_subsets, kid_subset_size=size,
                                 rng_seed=seed, verbose=False)
    return {"fid": frechet_distance(fake_features, real_features), "kid": kid[KEY_METRIC_KID_MEAN],
            "kid_sd": kid[KEY_METRIC_KID_STD], "kid_subset_size": size}
