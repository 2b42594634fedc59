"""Ex-post density estimation in latent space (Ghosh et al., 2020; pythae's GaussianMixtureSampler): a Gaussian
mixture fitted to the posterior means of the training images replaces the prior when sampling."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from .capabilities import GaussianLatent
from .data import is_conditional, model_batches


class GMMSampler(nn.Module):
    """Samples of a model with a Gaussian posterior, decoded from a Gaussian mixture (scikit-learn's, full
    covariances) fitted to the posterior means of train_data; `reconstruct` is the model's own."""

    name = "gmm"  # the prefix of its figures in the report (gmm_frechet_distance, ...)

    def __init__(self, model: nn.Module, train_data: Dataset, components: int = 10, seed: int = 0,
                 batch_size: int = 1000) -> None:
        super().__init__()
        if not isinstance(model, GaussianLatent):
            raise ValueError(f"{type(model).__name__} has no Gaussian posterior (posterior(x) -> mu, logvar): the "
                             "GMM sampler fits its mixture to posterior means; use the model's own sampler")
        if is_conditional(model):
            raise ValueError(f"{type(model).__name__} decodes z together with a label: a mixture over z alone does "
                             "not sample it; use its own sampler (sample(n, labels=...), `sample --label`)")
        if not isinstance(components, int) or isinstance(components, bool) or not 1 <= components <= len(train_data):
            raise ValueError(f"components={components!r}: expected from 1 to the {len(train_data):,} training images")
        from sklearn.mixture import GaussianMixture  # here: only this sampler needs scikit-learn

        with torch.no_grad():
            means = torch.cat([model.posterior(x)[0].float().cpu() for x in model_batches(model, train_data,
                                                                                         batch_size)])
        self.model, self.components = model, components
        self.mixture = GaussianMixture(components, covariance_type="full", random_state=seed)
        self.mixture.fit(means.double().numpy())

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the model's images."""
        return self.model.image_shape

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """n images (n, C, H, W) in [0, 1] decoded from draws of the mixture; the generator seeds the draws."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n={n!r}: expected a positive number of samples")
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=getattr(generator, "device", "cpu")))
        self.mixture.random_state = seed
        z, _ = self.mixture.sample(n)  # grouped by component: the order does not matter to the scores
        device = next(self.model.parameters()).device
        return self.model.decode(torch.from_numpy(z).float().to(device))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The model's reconstruction of x."""
        return self.model.reconstruct(x)
