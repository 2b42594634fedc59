"""Ex-post density estimation in latent space: a density fitted to the training images' codes replaces the prior
when sampling. A Gaussian mixture (Ghosh et al., 2020; pythae's GaussianMixtureSampler), a masked autoregressive
flow (pythae's MAFSampler) and a second-stage VAE (Dai & Wipf, 2019)."""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from .capabilities import GaussianLatent
from .data import is_conditional, model_batches


class LatentSampler(nn.Module):
    """A model's images decoded from codes drawn by something other than its prior: subclasses say how
    (`draw(n, generator)` -> (n, D) codes on the CPU); `reconstruct` is the model's own."""

    name = "latent"  # the prefix of its figures in the report (gmm_frechet_distance, ...)

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the model's images."""
        return self.model.image_shape

    def draw(self, n: int, generator: Optional[torch.Generator]) -> Tensor:
        """n codes (n, D) of the fitted density, seeded by generator: each sampler's own."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """n images (n, C, H, W) in [0, 1] decoded from n drawn codes; the generator seeds the draws."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n={n!r}: expected a positive number of samples")
        return self.model.decode(self.draw(n, generator).float().to(next(self.model.parameters()).device))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The model's reconstruction of x."""
        return self.model.reconstruct(x)


class GMMSampler(LatentSampler):
    """Samples of a model with a Gaussian posterior, decoded from a Gaussian mixture (scikit-learn's, full
    covariances) fitted to the posterior means of train_data; `reconstruct` is the model's own."""

    name = "gmm"  # the prefix of its figures in the report (gmm_frechet_distance, ...)

    def __init__(self, model: nn.Module, train_data: Dataset, components: int = 10, seed: int = 0,
                 batch_size: int = 1000) -> None:
        super().__init__(model)
        _check_latent_model(model, "GMM sampler's mixture")
        if not isinstance(components, int) or isinstance(components, bool) or not 1 <= components <= len(train_data):
            raise ValueError(f"components={components!r}: expected from 1 to the {len(train_data):,} training images")
        from sklearn.mixture import GaussianMixture  # here: only this sampler needs scikit-learn

        means = posterior_means(model, train_data, batch_size)
        self.components = components
        self.mixture = GaussianMixture(components, covariance_type="full", random_state=seed)
        self.mixture.fit(means.double().numpy())

    def draw(self, n: int, generator: Optional[torch.Generator]) -> Tensor:
        """n draws of the mixture (grouped by component: the order does not matter to the scores)."""
        self.mixture.random_state = int(torch.randint(2**31 - 1, (1,), generator=generator,
                                                      device=getattr(generator, "device", "cpu")))
        return torch.from_numpy(self.mixture.sample(n)[0])


def posterior_means(model: nn.Module, data: Dataset, batch_size: int = 1000) -> Tensor:
    """The posterior means (N, D) of a model with a Gaussian posterior over data, on the CPU."""
    with torch.no_grad():
        return torch.cat([model.posterior(x)[0].float().cpu() for x in model_batches(model, data, batch_size)])


def _check_latent_model(model: nn.Module, what: str) -> None:
    """ValueError unless the model has a Gaussian posterior over z alone."""
    if not isinstance(model, GaussianLatent):
        raise ValueError(f"{type(model).__name__} has no Gaussian posterior (posterior(x) -> mu, logvar): the {what} "
                         "is fitted to posterior means; use the model's own sampler")
    if is_conditional(model):
        raise ValueError(f"{type(model).__name__} decodes z together with a label: a density over z alone does not "
                         "sample it; use its own sampler (sample(n, labels=...), `sample --label`)")


def _fit(net: nn.Module, loss_of: Callable[[Tensor], Tensor], codes: Tensor, epochs: int, seed: int,
         batch_size: int = 256, lr: float = 1e-3) -> list[float]:
    """Adam on loss_of(batch of codes) for `epochs` passes over codes in a seeded order; the mean loss per epoch."""
    order = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    curve = []
    for _ in range(epochs):
        total = 0.0
        for rows in torch.randperm(len(codes), generator=order).split(batch_size):
            loss = loss_of(codes[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        curve.append(total / len(codes))
    return curve


class MAF(nn.Module):
    """A masked autoregressive flow (Papamakarios et al., 2017): x = u * exp(a) + m, (m, a) = MADE(x_<d), K steps
    with the order reversed between them, u ~ N(0, I); exact log-density, sequential sampling."""

    def __init__(self, dim: int, steps: int = 5, hidden: int = 128) -> None:
        super().__init__()
        from .models.iaf import MADE

        self.dim = dim
        self.steps = nn.ModuleList(MADE(dim, hidden) for _ in range(steps))

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) of x (N, D): (N,) nats, by change of variables to u."""
        log_det = torch.zeros(len(x))
        for step in self.steps:
            m, a = step(x)
            a = a.clamp(-8, 8)
            x = ((x - m) * torch.exp(-a)).flip(-1)  # u of this step, reversed for the next
            log_det = log_det - a.sum(-1)
        return -0.5 * (x.pow(2) + math.log(2 * math.pi)).sum(-1) + log_det

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """n draws (n, D): each step inverted one dimension at a time (D passes of its MADE)."""
        x = torch.randn((n, self.dim), generator=generator)
        for step in reversed(self.steps):
            u, x = x.flip(-1), torch.zeros_like(x)
            for d in range(self.dim):
                m, a = step(x)
                x[:, d] = u[:, d] * torch.exp(a[:, d].clamp(-8, 8)) + m[:, d]
        return x


class MAFSampler(LatentSampler):
    """Samples of a model with a Gaussian posterior decoded from a masked autoregressive flow fitted by maximum
    likelihood to the posterior means of train_data (pythae's MAFSampler)."""

    name = "maf"

    def __init__(self, model: nn.Module, train_data: Dataset, steps: int = 5, hidden: int = 128, epochs: int = 20,
                 seed: int = 0, batch_size: int = 1000) -> None:
        super().__init__(model)
        _check_latent_model(model, "masked autoregressive flow")
        means = posterior_means(model, train_data, batch_size)
        self.shift, self.scale = means.mean(0), means.std(0).clamp(min=1e-6)  # the flow sees standardised codes
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.flow = MAF(means.shape[1], steps, hidden)
        self.curve = _fit(self.flow, lambda z: -self.flow.log_prob(z).mean(), (means - self.shift) / self.scale,
                          epochs, seed)  # mean -log p per epoch, nats of the standardised codes

    def draw(self, n: int, generator: Optional[torch.Generator]) -> Tensor:
        """n draws of the flow, in the codes' own scale."""
        return self.flow.sample(n, _cpu(generator)) * self.scale + self.shift


class TwoStageVAE(nn.Module):
    """The second stage of Dai & Wipf (2019): an MLP VAE on latent codes u -> z with a learned scalar decoder
    variance gamma, whose -ELBO per code is D/2 log(2 pi gamma) + |z - mean|^2 / (2 gamma) + KL."""

    def __init__(self, dim: int, hidden: int = 256, depth: int = 3) -> None:
        super().__init__()

        def mlp(n_out: int) -> nn.Sequential:
            layers: list[nn.Module] = []
            for n_in in [dim] + [hidden] * (depth - 1):
                layers += [nn.Linear(n_in, hidden), nn.ReLU()]
            return nn.Sequential(*layers, nn.Linear(hidden, n_out))

        self.dim, self.encoder, self.decoder = dim, mlp(2 * dim), mlp(dim)
        self.log_gamma = nn.Parameter(torch.zeros(()))  # the decoder's variance, learned (their key point)

    def neg_elbo(self, z: Tensor) -> Tensor:
        """-ELBO (N,) of codes z (N, D), nats: one sampled u per code."""
        mu, logvar = self.encoder(z).chunk(2, dim=-1)
        u = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        recon = 0.5 * ((z - self.decoder(u)).pow(2) / self.log_gamma.exp()
                       + self.log_gamma + math.log(2 * math.pi)).sum(-1)
        return recon + 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """n codes (n, D) of the second stage's model: u ~ N(0, I), z ~ N(decoder(u), gamma I)."""
        u = torch.randn((n, self.dim), generator=generator)
        return self.decoder(u) + self.log_gamma.exp().sqrt() * torch.randn((n, self.dim), generator=generator)


class TwoStageSampler(LatentSampler):
    """Samples of a model with a Gaussian posterior decoded from a second VAE trained on its training codes z ~
    q(z|x) (Dai & Wipf, 2019; pythae's TwoStageVAESampler): the second stage learns the aggregate posterior the
    first stage left unlike N(0, I). Sized for a CPU: 3 layers of 256 units each way and 20 epochs (the paper: 1024
    units, hundreds of epochs on a GPU)."""

    name = "two_stage"

    def __init__(self, model: nn.Module, train_data: Dataset, hidden: int = 256, depth: int = 3, epochs: int = 20,
                 seed: int = 0, batch_size: int = 1000) -> None:
        super().__init__(model)
        _check_latent_model(model, "second-stage VAE")
        noise = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # one posterior sample per training image, as the paper's second stage takes
            codes = torch.cat([_posterior_sample(model, x, noise) for x in model_batches(model, train_data, batch_size)])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.second = TwoStageVAE(codes.shape[1], hidden, depth)
            self.curve = _fit(self.second, lambda z: self.second.neg_elbo(z).mean(), codes, epochs, seed)

    def draw(self, n: int, generator: Optional[torch.Generator]) -> Tensor:
        """n codes of the second stage's model."""
        return self.second.sample(n, _cpu(generator))


def _posterior_sample(model: nn.Module, x: Tensor, generator: torch.Generator) -> Tensor:
    """One z ~ q(z|x) per image, (B, D) on the CPU."""
    mu, logvar = (t.float().cpu() for t in model.posterior(x))
    return mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator)


def _cpu(generator: Optional[torch.Generator]) -> Optional[torch.Generator]:
    """A CPU generator seeded from generator (these samplers' networks live on the CPU)."""
    if generator is None or generator.device.type == "cpu":
        return generator
    return torch.Generator().manual_seed(int(torch.randint(2**31 - 1, (1,), generator=generator,
                                                          device=generator.device)))


SAMPLERS = {"gmm": GMMSampler, "maf": MAFSampler, "two-stage": TwoStageSampler}  # evaluate --sampler NAME
