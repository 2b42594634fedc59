"""Where the default model's training step spends its time, and what makes it faster (issue #22).

Part 1, `layers`: the default recipe's step (TrainConfig(): VAE 16-32, batch 256, bf16 autocast where the CPU has
fast bf16, channels_last, fused Adam) on real Fashion-MNIST batches, timed layer by layer with module hooks,
forward and backward, beside each layer's FLOPs (torch.utils.flop_counter, counted on the layer alone) and its
achieved GFLOP/s as a share of the matmul peak measured in the same run; then what lies outside the layers (loss,
optimizer, batch, autograd's own work) and the whole step without hooks.

Part 2, `variants`: candidate steps, each timed against the current step in adjacent A/B pairs whose order
alternates from round to round (the machine is shared and drifts by 20-30% over minutes: compare the ratios, not
the seconds): ms per step, images/s, GFLOP/s, share of the peak, and the median and range over the rounds of each
pair's ratio of images/s.

Part 3, `casts`: the time autocast spends casting every weight to bf16 once: the most that bf16 weights with fp32
master copies could save per step.

Part 4, `binarize`: dynamic binarization of one real batch, torch.bernoulli against vae_utils' bernoulli_pixels.

    python benchmarks/step_profile.py [layers|variants|casts|binarize|all] [--steps 20] [--rounds 8]
                                      [--variants NAME ...] [--recipe long]

`--recipe long` profiles the long binarized recipe's step (latent 64, a 512-wide hidden layer, binarized batches).
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from functools import partial
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

import vae_utils as vu
from vae_utils.repro import autocast, resolve_precision
from vae_utils.subpixel import has_subpixel_form, unshuffled_conv

from train_speed import _step_flops as step_flops, matmul_peak_gflops


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Batches:
    """Real training batches, as `vu.train` makes them (`iterate_batches` over a fixed permutation, channels_last),
    an epoch after another."""

    def __init__(self, batch_size: int, device: torch.device,
                 binarize: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.data, self.size, self.device, self.binarize = vu.load_dataset("fashion-mnist", "train"), batch_size, \
            device, binarize
        self.order = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(0))
        self.epoch = iter(())

    def next(self) -> torch.Tensor:
        x = next(self.epoch, None)
        if x is None or len(x) < self.size:  # a new epoch; the short last batch is left out (FLOPs are per batch)
            self.epoch = vu.data.iterate_batches(self.data, self.size, self.device, self.order)
            x = next(self.epoch)
        if self.binarize is not None:
            x = self.binarize(x)
        return x.contiguous(memory_format=torch.channels_last)


# --- part 1: layer by layer -------------------------------------------------------------------------------------

class LayerClock:
    """Forward and backward seconds of every leaf module, from hooks around its own work.

    A module's backward ends when the gradient of its input is ready; for the first layer, whose input needs no
    gradient, when the last of its parameters' gradients has been accumulated."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.device, self.seconds, self.inputs, self.started = device, defaultdict(float), {}, {}
        self.leaves = {name: m for name, m in model.named_modules() if not list(m.children())
                       and not isinstance(m, nn.Flatten)}
        self.handles, self.waiting, self.accumulated = [], set(), defaultdict(int)
        for name, m in self.leaves.items():
            self.handles += [m.register_forward_pre_hook(partial(self._start, name, "forward")),
                             m.register_forward_hook(partial(self._stop_forward, name)),
                             m.register_full_backward_pre_hook(partial(self._start, name, "backward")),
                             m.register_full_backward_hook(partial(self._stop_backward, name))]
            self.handles += [p.register_post_accumulate_grad_hook(partial(self._accumulated, name))
                             for p in m.parameters()]

    def _start(self, name: str, phase: str, module: nn.Module, args) -> None:
        _sync(self.device)
        self.started[name, phase] = time.perf_counter()

    def _stop_forward(self, name: str, module: nn.Module, args, output) -> None:
        _sync(self.device)
        self.seconds[name, "forward"] += time.perf_counter() - self.started.pop((name, "forward"))
        self.inputs.setdefault(name, (args[0].shape, args[0].dtype, args[0].requires_grad,
                                      args[0].is_contiguous(memory_format=torch.channels_last)))

    def _stop_backward(self, name: str, module: nn.Module, grad_input, grad_output) -> None:
        if all(g is None for g in grad_input):  # no input gradient: wait for the parameters' gradients
            self.waiting.add(name)
            return
        _sync(self.device)
        self.seconds[name, "backward"] += time.perf_counter() - self.started.pop((name, "backward"))

    def _accumulated(self, name: str, parameter: nn.Parameter) -> None:
        self.accumulated[name] += 1
        if name in self.waiting and self.accumulated[name] == len(list(self.leaves[name].parameters())):
            self.waiting.discard(name)
            self.accumulated[name] = 0
            _sync(self.device)
            self.seconds[name, "backward"] += time.perf_counter() - self.started.pop((name, "backward"))
        elif name not in self.waiting and self.accumulated[name] >= len(list(self.leaves[name].parameters())):
            self.accumulated[name] = 0

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def layer_flops(module: nn.Module, shape, requires_grad: bool, channels_last: bool,
                device: torch.device) -> tuple[int, int]:
    """(forward, backward) FLOPs of one module on an input like the step's, counted on the module alone (in fp32:
    the count does not depend on the precision)."""
    x = torch.randn(shape, device=device)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(requires_grad)
    with FlopCounterMode(display=False) as forward:
        y = module(x)
    with FlopCounterMode(display=False) as backward:
        y.backward(torch.ones_like(y))
    module.zero_grad(set_to_none=True)
    return forward.get_total_flops(), backward.get_total_flops()


def profile_layers(config: vu.TrainConfig, device: torch.device, steps: int, peak: float) -> None:
    """Print the per-layer table of the default step, and the step's time outside the layers."""
    precision = resolve_precision(config.precision, device)
    batches = Batches(config.batch_size, device, vu.data.bernoulli_pixels if config.binarize else None)
    vu.set_seed(0)
    model = vu.VAE(config.model).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)
    parts = defaultdict(float)

    def step(clock: bool) -> None:
        _sync(device)
        t0 = time.perf_counter()
        x = batches.next()
        _sync(device)
        t1 = time.perf_counter()
        with autocast(device, precision):
            terms = model.loss(x, check_range=False)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        _sync(device)
        t2 = time.perf_counter()
        optimizer.step()
        _sync(device)
        t3 = time.perf_counter()
        if clock:
            parts["batch"] += t1 - t0
            parts["forward+backward"] += t2 - t1
            parts["optimizer"] += t3 - t2

    for _ in range(5):
        step(False)
    clock = LayerClock(model, device)
    for _ in range(steps):
        step(True)
    clock.remove()
    for _ in range(3):
        step(False)
    plain = []
    for _ in range(steps):
        _sync(device)
        start = time.perf_counter()
        step(False)
        _sync(device)
        plain.append(time.perf_counter() - start)

    print(f"\ndefault step: {vu.repro.describe_cpu() if device.type == 'cpu' else torch.cuda.get_device_name(device)}"
          f", {precision}, batch {config.batch_size}, {steps} steps, per step (ms); peak = the {precision} matmul "
          f"peak, {peak:.0f} GFLOP/s")
    print(f"{'layer':28}{'input':>18}{'fwd ms':>8}{'bwd ms':>8}{'fwd MFLOP':>11}{'bwd MFLOP':>11}{'fwd GF/s':>10}"
          f"{'bwd GF/s':>10}{'% peak':>8}")
    total_ms = total_flops = 0.0
    for name, module in clock.leaves.items():
        if name not in clock.inputs:
            continue
        shape, _, grad, cl = clock.inputs[name]
        fwd_f, bwd_f = layer_flops(module, shape, grad, cl, device)
        fwd_s, bwd_s = clock.seconds[name, "forward"] / steps, clock.seconds[name, "backward"] / steps
        total_ms, total_flops = total_ms + (fwd_s + bwd_s) * 1e3, total_flops + fwd_f + bwd_f
        rate = lambda flops, s: flops / s / 1e9 if s > 0 else 0.0  # noqa: E731
        share = rate(fwd_f + bwd_f, fwd_s + bwd_s) / peak
        print(f"{name + ' ' + type(module).__name__:28}{'x'.join(map(str, shape[1:])):>18}{fwd_s * 1e3:8.2f}"
              f"{bwd_s * 1e3:8.2f}{fwd_f / 1e6:11.1f}{bwd_f / 1e6:11.1f}{rate(fwd_f, fwd_s):10.1f}"
              f"{rate(bwd_f, bwd_s):10.1f}{share:8.1%}")
    step_ms = statistics.median(plain) * 1e3
    flops = step_flops(model, batches.next(), precision, device)
    hooked = {k: v / steps * 1e3 for k, v in parts.items()}
    print(f"{'all layers (hooked)':28}{'':18}{total_ms:16.2f}{total_flops / 1e6:22.1f}"
          f"{total_flops / total_ms / 1e6:20.1f}{total_flops / total_ms / 1e6 / peak:8.1%}")
    print(f"outside the layers (hooked step): batch {hooked['batch']:.2f} ms, loss + autograd + hooks "
          f"{hooked['forward+backward'] - total_ms:.2f} ms, optimizer (fused Adam) {hooked['optimizer']:.2f} ms")
    print(f"whole step without hooks: {step_ms:.2f} ms (median of {steps}), {flops / 1e9:.2f} GFLOP, "
          f"{flops / step_ms / 1e6:.1f} GFLOP/s = {flops / step_ms / 1e6 / peak:.1%} of the peak; "
          f"{config.batch_size / step_ms * 1e3:.0f} images/s")


# --- part 2: variants side by side ------------------------------------------------------------------------------

def _adam(model: nn.Module, lr: float, kind: str) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=lr, **({"fused": True} if kind == "fused" else {"foreach": True}))


class SubpixelDecoder(nn.Module):
    """The decoder with every transposed convolution run as a 3x3 convolution to 4x the channels and a
    pixel_shuffle (vae_utils.subpixel's gather from the layer's own weights: the same function, the same
    parameters, gradients to them); 2.25x the multiply-adds, no scatter, no single-channel output."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.inner = decoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        d = self.inner
        h = d.head(z).view(-1, d.channels, d.side, d.side)
        for layer in d.deconvs:
            if has_subpixel_form(layer):
                weight, bias = unshuffled_conv(layer, 1)
                h = F.pixel_shuffle(F.conv2d(h, weight, bias, padding=1), 2)
            else:
                h = layer(h)
        return h


def subpixel(model: nn.Module) -> None:
    """Train through SubpixelDecoder (in place)."""
    model.decoder = SubpixelDecoder(model.decoder)


def subpixel_last(model: nn.Module) -> None:
    """Only the last transposed convolution (to the image's channels) in sub-pixel form (in place)."""
    last = model.decoder.deconvs[-1]
    model.decoder.deconvs[-1] = SubpixelLayer(last)


class SubpixelLayer(nn.Module):
    """One ConvTranspose2d(4, 2, 1) as a 3x3 convolution to 4x its channels and a pixel_shuffle, same parameters."""

    def __init__(self, layer: nn.ConvTranspose2d) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        weight, bias = unshuffled_conv(self.layer, 1)
        return F.pixel_shuffle(F.conv2d(h, weight, bias, padding=1), 2)


class SpaceToDepthConv(nn.Module):
    """A Conv2d(kernel 4, stride 2, padding 1) run as pad 1, pixel_unshuffle(2) and a 2x2 stride-1 convolution on 4x
    the channels: the same multiply-adds, the same parameters (rearranged on the fly, gradients to them), no stride."""

    def __init__(self, layer: nn.Conv2d) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.layer.weight  # (O, C, 4, 4) -> taps (2 dy + sy, 2 dx + sx) -> (O, C * 4 [c, sy, sx], 2 [dy], 2 [dx])
        o, c = w.shape[:2]
        w = w.view(o, c, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(o, 4 * c, 2, 2)
        return F.conv2d(F.pixel_unshuffle(F.pad(x, (1, 1, 1, 1)), 2), w, self.layer.bias)


class Contiguous(nn.Module):
    """x in the default (NCHW) memory format."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous()


class ChannelsLast(nn.Module):
    """x in the channels_last memory format."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)


def nchw_before_flatten(model: nn.Module) -> None:
    """Copy the encoder's last conv output to NCHW before its activation, so that the activation, the flatten and
    their gradients meet one memory format (in place; the same numbers)."""
    convs = model.encoder.convs
    last = max(i for i, layer in enumerate(convs) if isinstance(layer, nn.Conv2d))
    convs.insert(last + 1, Contiguous())


def channels_last_decoder(model: nn.Module) -> None:
    """Give the decoder's first transposed convolution its input in channels_last, as its weights are (in place)."""
    model.decoder.deconvs.insert(0, ChannelsLast())


def layout_fixes(model: nn.Module) -> None:
    """The three exact changes that each helped: NCHW before the flatten, channels_last into the decoder's first
    transposed convolution, the last layer in sub-pixel form (in place)."""
    nchw_before_flatten(model)
    channels_last_decoder(model)
    subpixel_last(model)


class UnfoldConv(nn.Module):
    """A Conv2d as im2col: F.unfold and one matmul with the layer's own weights (same function, same parameters)."""

    def __init__(self, layer: nn.Conv2d) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        cols = F.unfold(x, layer.kernel_size, padding=layer.padding, stride=layer.stride)  # (B, C k k, positions)
        side = (x.shape[-1] + 2 * layer.padding[0] - layer.kernel_size[0]) // layer.stride[0] + 1
        return (layer.weight.flatten(1) @ cols + layer.bias[:, None]).unflatten(-1, (-1, side))


class FoldDeconv(nn.Module):
    """A ConvTranspose2d as col2im: one matmul with the layer's own weights and F.fold (same function, parameters)."""

    def __init__(self, layer: nn.ConvTranspose2d) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        cols = layer.weight.flatten(1).t() @ h.flatten(2)  # (B, O k k, positions)
        side = (h.shape[-1] - 1) * layer.stride[0] - 2 * layer.padding[0] + layer.kernel_size[0]
        out = F.fold(cols, (side, side), layer.kernel_size, padding=layer.padding, stride=layer.stride)
        return out + layer.bias[:, None, None]


def im2col_ends(model: nn.Module) -> None:
    """The first convolution (from the image's channels) through UnfoldConv and the last transposed convolution (to
    them) through FoldDeconv: the two layers oneDNN runs at 2-3% of the peak (in place)."""
    model.encoder.convs[0] = UnfoldConv(model.encoder.convs[0])
    model.decoder.deconvs[-1] = FoldDeconv(model.decoder.deconvs[-1])


def space_to_depth(model: nn.Module) -> None:
    """Every stride-2 encoder convolution through SpaceToDepthConv (in place)."""
    convs = model.encoder.convs
    for i, layer in enumerate(convs):
        if isinstance(layer, nn.Conv2d) and layer.kernel_size == (4, 4) and layer.stride == (2, 2):
            convs[i] = SpaceToDepthConv(layer)


def make_step(config: vu.TrainConfig, device: torch.device, *, precision: str = "auto", channels_last: bool = True,
              adam: str = "fused", compiled: bool = False, batch_size: int = 0,
              transform: Callable[[nn.Module], None] | None = None,
              binarizer: Callable[[torch.Tensor], torch.Tensor] = vu.data.bernoulli_pixels,
              ) -> tuple[Callable[[], None], int, int]:
    """A training step with the given changes from the default: (step(), FLOPs per step, images per step)."""
    precision = resolve_precision(config.precision if precision == "auto" else precision, device)
    batch = batch_size or config.batch_size
    batches = Batches(batch, device, binarizer if config.binarize else None)
    vu.set_seed(0)
    model = vu.VAE(config.model).to(device).train()
    if transform is not None:
        transform(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = _adam(model, config.lr, adam)
    flops = step_flops(model, batches.next(), precision, device)

    def forward_backward(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, precision):
            terms = model.loss(x, check_range=False)
        terms.total.backward()
        return terms.total.detach()

    run = torch.compile(forward_backward) if compiled else forward_backward

    def step() -> None:
        x = batches.next()
        if not channels_last:
            x = x.contiguous()
        optimizer.zero_grad(set_to_none=True)
        loss = run(x)
        optimizer.step()
        bool(torch.isfinite(loss))  # the training loop's one host sync per step

    return step, flops, batch


VARIANTS: dict[str, dict] = {
    "current": {},
    "fp32": {"precision": "fp32"},
    "contiguous (no channels_last)": {"channels_last": False},
    "foreach Adam": {"adam": "foreach"},
    "batch 512": {"batch_size": 512},
    "batch 1024": {"batch_size": 1024},
    "torch.compile fwd+bwd": {"compiled": True},
    "sub-pixel decoder": {"transform": subpixel},
    "sub-pixel last layer only": {"transform": subpixel_last},
    "space-to-depth encoder": {"transform": space_to_depth},
    "NCHW before the flatten": {"transform": nchw_before_flatten},
    "channels_last decoder input": {"transform": channels_last_decoder},
    "the three layout changes": {"transform": layout_fixes},
    "the three + torch.compile": {"transform": layout_fixes, "compiled": True},
    "unfold/fold first and last layers": {"transform": im2col_ends},
    "torch.bernoulli binarization": {"binarizer": torch.bernoulli},  # before bernoulli_pixels; binarized recipes
}


def _timed(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Seconds per step over `steps` steps."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def compare_variants(config: vu.TrainConfig, device: torch.device, names: list[str], steps: int, rounds: int,
                     peak: float) -> None:
    """Time each variant against the current step in adjacent A/B pairs (the order alternating from round to
    round, the variants rotating), so that each ratio compares two blocks of steps a second apart: the machine
    drifts by 20-30% over minutes. Prints medians, and the median over the rounds of each pair's ratio."""
    names = ["current", *(name for name in names if name != "current")]
    built = {}
    for name in names:
        step, flops, images = make_step(config, device, **VARIANTS[name])
        start = time.perf_counter()
        for _ in range(3):  # warm-up (and compilation)
            step()
        _sync(device)
        built[name] = (step, flops, images, time.perf_counter() - start)
    times, ratios = defaultdict(list), defaultdict(list)
    others = names[1:]
    for r in range(rounds):
        for name in others[r % len(others):] + others[:r % len(others)]:
            pair = ("current", name) if r % 2 == 0 else (name, "current")
            seconds = {n: _timed(built[n][0], steps, device) for n in pair}
            for n, t in seconds.items():
                times[n].append(t)
            ratios[name].append(seconds["current"] / seconds[name] * built[name][2] / built["current"][2])
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {ratios[n][-1]:.2f}x" for n in others), flush=True)
    print(f"\n{'variant':32}{'ms/step':>9}{'images/s':>10}{'GFLOP/s':>9}{'% peak':>8}{'vs current':>12}"
          f"{'range':>13}{'warm-up s':>11}")
    for name in names:
        _, flops, images, warm = built[name]
        seconds = statistics.median(times[name])
        vs = statistics.median(ratios[name]) if name != "current" else 1.0
        spread = (f"{min(ratios[name]):.2f}-{max(ratios[name]):.2f}" if name != "current" else "")
        print(f"{name:32}{seconds * 1e3:9.2f}{images / seconds:10.0f}{flops / seconds / 1e9:9.1f}"
              f"{flops / seconds / 1e9 / peak:8.1%}{vs:11.2f}x{spread:>13}{warm:11.1f}")


def weight_casts(config: vu.TrainConfig, device: torch.device, rounds: int = 30, repeats: int = 20) -> None:
    """What bf16 weights with fp32 master copies could save at most: autocast casts every fp32 weight to bf16 once
    per forward (and a master-copy scheme would copy them once per update instead); prints that cast's time."""
    weights = [p.detach() for p in vu.VAE(config.model).to(device).parameters()]
    times = [_timed(lambda: [w.to(torch.bfloat16) for w in weights], repeats, device) for _ in range(rounds + 1)][1:]
    print(f"{sum(w.numel() for w in weights):,} weights: casting all of them to bf16 takes "
          f"{statistics.median(times) * 1e3:.2f} ms (median of {rounds} x {repeats})")


def binarizations(config: vu.TrainConfig, device: torch.device, rounds: int = 30, repeats: int = 20) -> None:
    """What dynamic binarization costs per step: torch.bernoulli against vae_utils' bernoulli_pixels on the same
    real batch, in alternating blocks; prints the medians."""
    x = Batches(config.batch_size, device).next().contiguous()  # as the trainer binarizes it: before channels_last
    ways = {"torch.bernoulli": torch.bernoulli, "bernoulli_pixels": vu.data.bernoulli_pixels}
    times = defaultdict(list)
    for r in range(rounds + 1):
        for name, way in (ways.items() if r % 2 == 0 else reversed(ways.items())):
            times[name].append(_timed(partial(way, x), repeats, device))
    print(f"binarizing a batch of {len(x)}: " + ", ".join(f"{name} {statistics.median(t[1:]) * 1e3:.2f} ms"
                                                          for name, t in times.items())
          + f" (median of {rounds} x {repeats}, alternating)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", default="all", choices=["layers", "variants", "casts", "binarize", "all"])
    parser.add_argument("--steps", type=int, default=20, help="steps per timing")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of A/B pairs (current, variant)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--recipe", default=None, help="a VAE recipe of TrainConfig.recipe (e.g. long) instead of "
                                                       "the default recipe")
    args = parser.parse_args()
    device = vu.resolve_device("auto")
    config = vu.TrainConfig() if args.recipe is None else vu.TrainConfig.recipe(args.recipe)
    precision = resolve_precision(config.precision, device)
    peaks = {p: matmul_peak_gflops(dtype, device) for p, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    print(f"torch {torch.__version__}; matmul peak (2048^2): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 "
          f"{peaks['bf16']:.0f} GFLOP/s; the step runs in {precision}")
    if args.part in ("layers", "all"):
        profile_layers(config, device, args.steps, peaks[precision])
    if args.part in ("variants", "all"):
        names = [n for n in args.variants if config.binarize or "binarizer" not in VARIANTS[n]]  # grey: no draw
        compare_variants(config, device, names, args.steps, args.rounds, peaks[precision])
    if args.part in ("casts", "all"):
        weight_casts(config, device)
    if args.part in ("binarize", "all"):
        binarizations(config, device)


if __name__ == "__main__":
    main()
