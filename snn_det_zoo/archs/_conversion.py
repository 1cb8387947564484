"""ANN-to-SNN conversion of the ReLU YOLO cores (reference/spicalib.md §7.2): structure, scales, p search.

Structure (:func:`spiking_core`, a module swap, no FX trace): every Conv2d followed by a BatchNorm2d in the
same parent is folded into one biased conv (:func:`snn_det_zoo.nn.fuse_conv_bn`; the BN becomes
``nn.Identity``); every conv becomes a :class:`ScaledInputConv2d`; every ``nn.ReLU`` a burst IF neuron
(:class:`~snn_det_zoo.neurons.BurstIFNode`, or :class:`~snn_det_zoo.neurons.SpiCalibIFNode` with calibration);
every ``nn.MaxPool2d`` a :class:`~snn_det_zoo.neurons.LosslessMaxPool2d` (or kept per step: the naive pool);
the identity shortcut of a residual block a :class:`ChannelScale`. Zero padding, upsampling, concatenation and
residual sums act on spike counts or currents unchanged (they are linear).

Neurons emit integer spike counts. A neuron divides its input current by its layer's scale ``lambda``; each
consumer multiplies the counts it receives back by their source's ``lambda`` per channel (``in_scale``), so
the convolutions see spike counts (for energy accounting) and compute in the ANN's units. Those per-channel
source scales are found by :func:`probe_input_scales` (one step in which every neuron emits its ``lambda``).

Scales (:class:`ActivationSample`, :func:`set_scales`): the p-th percentile of each ReLU's post-activation
values on a calibration list (BrainCog's definition: all elements, zeros included, index ``int(N * p)``), from
a fixed-seed uniform sample of at most ``max_values`` values per layer plus the exact maximum; ``torch.quantile``
is not used (it refuses more than 2**24 elements, pytorch#64947).

``p`` (:func:`detection_objective`, :func:`search_p`): given, or chosen by Bayesian optimisation over
[0.95, 1.0] with the library the authors used (``bayes_opt``, pip ``bayesian-optimization``, extra ``spicalib``;
``init_points=5, n_iter=30, random_state=1`` as their script) against a detection-aware objective: the
Bernoulli KL divergences of objectness and class probabilities plus the squared error of the raw box outputs,
SNN (averaged over T) against ANN, per anchor and cell (reference/spicalib.md §4.2; the paper's own detection
objective is unknown).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional
from torch import nn

from ..errors import InvalidArgumentError, MissingDependencyError
from ..neurons import BurstIFNode, LosslessMaxPool2d, SpiCalibIFNode
from ..nn.spike_conv import fuse_conv_bn

__all__ = [
    "POOLS",
    "ActivationSample",
    "ChannelScale",
    "FoldedTime",
    "ScaledInputConv2d",
    "detection_objective",
    "fold_batchnorm",
    "fold_time",
    "neurons_of",
    "percentile",
    "probe_input_scales",
    "record_activations",
    "search_p",
    "set_scales",
    "spiking_core",
]

POOLS = ("lossless", "naive")


class ScaledInputConv2d(nn.Conv2d):
    """A conv over spike counts of sources with per-channel scales: ``conv(x * in_scale)``.

    ``in_scale`` ([in_channels], a buffer) holds each input channel's source ``lambda``; ``spike_input`` (a
    0-d bool buffer) says whether the input is spike counts at all (False: the analog image of the stem).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.register_buffer("in_scale", torch.ones(self.in_channels, **factory))
        self.register_buffer("spike_input", torch.zeros((), dtype=torch.bool, device=self.weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x * self.in_scale.view(1, -1, 1, 1).to(x.dtype))


class ChannelScale(nn.Module):
    """The identity shortcut of a converted residual block: spike counts times their source's ``lambda``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.view(1, -1, 1, 1).to(x.dtype)


def _as_scaled_conv(conv: nn.Conv2d) -> ScaledInputConv2d:
    new = ScaledInputConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                            conv.dilation, conv.groups, bias=conv.bias is not None, padding_mode=conv.padding_mode,
                            device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(conv.weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _neuron(gamma: int, allowance: int, faithful: bool) -> BurstIFNode:
    if allowance:
        return SpiCalibIFNode(allowance, faithful=faithful, gamma=gamma, step_mode="s")
    return BurstIFNode(gamma, step_mode="s")


@torch.no_grad()
def fold_batchnorm(core: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d in the same parent into it (in place; the BN
    becomes ``nn.Identity``); returns ``core``. Equal to the original in eval mode up to rounding."""
    for parent in list(core.modules()):
        names = list(parent._modules)
        for name, after in itertools.pairwise(names):
            conv, bn = parent._modules[name], parent._modules[after]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                parent._modules[name] = fuse_conv_bn(conv.eval(), bn.eval())
                parent._modules[after] = nn.Identity()
    return core


def spiking_core(core: nn.Module, gamma: int, allowance: int, faithful: bool = True,
                 pool: str = "lossless") -> nn.Module:
    """Convert ``core`` (an ANN core in eval semantics) in place into its single-step spiking twin; returns it.

    ``allowance = 0`` gives burst IF neurons without calibration; ``pool`` is ``'lossless'`` or ``'naive'``
    (a per-step max-pool of the spike counts, SpikingJelly's default).
    """
    if pool not in POOLS:
        raise InvalidArgumentError(f"pool must be one of {POOLS}, got {pool!r}")
    fold_batchnorm(core)
    for parent in list(core.modules()):
        if isinstance(getattr(parent, "downsample", None), nn.Identity):  # a residual block's identity shortcut
            parent.downsample = ChannelScale(parent.conv2.out_channels)
        for name, child in list(parent._modules.items()):
            if isinstance(child, nn.Conv2d) and not isinstance(child, ScaledInputConv2d):
                parent._modules[name] = _as_scaled_conv(child)
            elif isinstance(child, nn.ReLU):
                parent._modules[name] = _neuron(gamma, allowance, faithful)
            elif isinstance(child, nn.MaxPool2d) and pool == "lossless":
                parent._modules[name] = LosslessMaxPool2d(child.kernel_size, child.stride, child.padding,
                                                          child.dilation, child.ceil_mode, step_mode="s")
    return core


class FoldedTime:
    """Hooks that let a core run several time steps folded into the batch (``[steps * B, ...]``): stateless
    layers see one big batch, and every stateful module (neuron, lossless pool) runs multi-step on
    ``[steps, B, ...]``. Set :attr:`steps` before a call (1: plain single steps)."""

    def __init__(self) -> None:
        self.steps = 1
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def unfold(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[torch.Tensor]:
        x = args[0]
        return (x.view(self.steps, x.shape[0] // self.steps, *x.shape[1:]),)

    @staticmethod
    def refold(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor:
        return out.flatten(0, 1)


def fold_time(core: nn.Module) -> FoldedTime:
    """Put every neuron and lossless pool of ``core`` in multi-step mode behind :class:`FoldedTime` hooks."""
    folded = FoldedTime()
    for m in core.modules():
        if isinstance(m, BurstIFNode | LosslessMaxPool2d):
            m.step_mode = "m"
            folded.handles += [m.register_forward_pre_hook(folded.unfold), m.register_forward_hook(folded.refold)]
    return folded


def neurons_of(core: nn.Module) -> dict[str, BurstIFNode]:
    """The converted core's neurons by module name (the names of the ANN's ReLUs)."""
    return {name: m for name, m in core.named_modules() if isinstance(m, BurstIFNode)}


@torch.no_grad()
def probe_input_scales(core: nn.Module, example: torch.Tensor) -> None:
    """Set every :class:`ScaledInputConv2d`'s ``in_scale``/``spike_input`` and every :class:`ChannelScale`.

    One step on a zero image in which every neuron emits its own ``lambda``: what reaches a consumer is then
    its sources' ``lambda`` per channel (pooling, upsampling, padding and concatenation preserve a constant
    map). A consumer that receives 0 reads the analog image (the stem).
    """
    consumers = [m for m in core.modules() if isinstance(m, ScaledInputConv2d | ChannelScale)]
    for m in consumers:
        (m.in_scale if isinstance(m, ScaledInputConv2d) else m.scale).fill_(1.0)
    seen: dict[nn.Module, torch.Tensor] = {}
    handles = [n.register_forward_hook(lambda mod, args, out: torch.full_like(out, float(mod.scale)))
               for n in neurons_of(core).values()]
    handles += [m.register_forward_pre_hook(lambda mod, args: seen.__setitem__(mod, args[0].amax(dim=(0, 2, 3))))
                for m in consumers]
    functional.reset_net(core)
    try:
        core(torch.zeros_like(example[:1]))
    finally:
        for h in handles:
            h.remove()
        functional.reset_net(core)
    for m in consumers:
        scale = seen[m]
        if isinstance(m, ScaledInputConv2d):
            analog = bool((scale == 0).all())
            if not analog and not bool((scale > 0).all()):
                raise RuntimeError("a convolution reads spikes and analog values at once; the core cannot be converted")
            m.spike_input.fill_(not analog)
            m.in_scale.copy_(torch.ones_like(scale) if analog else scale)
        else:
            m.scale.copy_(scale)


# ------------------------------------------------------------------------------------------------ scales


@dataclass
class ActivationSample:
    """Per ReLU (by module name): a uniform random sample of its post-activation values, their count and max."""

    values: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    maxima: dict[str, float] = field(default_factory=dict)

    def scale(self, name: str, p: float) -> float:
        """The p-th percentile of layer ``name`` (p = 1: the exact maximum), at least 1e-6."""
        return max(percentile(torch.cat(self.values[name]), p) if p < 1 else self.maxima[name], 1e-6)

    def scales(self, p: float) -> dict[str, float]:
        return {name: self.scale(name, p) for name in self.values}


def percentile(values: torch.Tensor, p: float) -> float:
    """BrainCog's percentile: the element at sorted index ``int(N * p) - 1`` (zeros included), by kthvalue."""
    if not 0 < p <= 1:
        raise InvalidArgumentError(f"the percentile p must be in (0, 1], got {p!r}")
    flat = values.flatten().float()
    k = min(max(int(flat.numel() * p), 1), flat.numel())
    return float(flat.kthvalue(k).values)


@torch.no_grad()
def record_activations(ann_core: nn.Module, batches: Iterable[torch.Tensor], max_values: int = 1 << 20,
                       seed: int = 0) -> ActivationSample:
    """Sample every ``nn.ReLU``'s outputs of ``ann_core`` (eval mode) over the calibration batches."""
    batches = list(batches)
    if not batches:
        raise InvalidArgumentError("the calibration list is empty")
    per_batch = max(1, max_values // len(batches))
    generator = torch.Generator().manual_seed(seed)
    sample = ActivationSample()

    def hook(name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: Any, out: torch.Tensor) -> None:
            flat = out.detach().flatten().float().cpu()
            pick = flat if flat.numel() <= per_batch else flat[torch.randint(flat.numel(), (per_batch,),
                                                                              generator=generator)]
            sample.values.setdefault(name, []).append(pick)
            sample.counts[name] = sample.counts.get(name, 0) + flat.numel()
            sample.maxima[name] = max(sample.maxima.get(name, 0.0), float(flat.max()))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in ann_core.named_modules() if isinstance(m, nn.ReLU)]
    was_training = ann_core.training
    ann_core.eval()
    try:
        for x in batches:
            ann_core(x)
    finally:
        for h in handles:
            h.remove()
        ann_core.train(was_training)
    return sample


@torch.no_grad()
def set_scales(core: nn.Module, scales: dict[str, float], example: torch.Tensor) -> None:
    """Give every neuron of the converted ``core`` its ``lambda`` and re-probe the consumers' input scales."""
    neurons = neurons_of(core)
    if set(neurons) != set(scales):
        raise InvalidArgumentError(f"scales for {sorted(set(scales) ^ set(neurons))[:4]}... do not match the "
                                   "core's neurons")
    for name, node in neurons.items():
        node.scale.fill_(scales[name])
    probe_input_scales(core, example)


# ---------------------------------------------------------------------------------------------- p search


def detection_objective(snn_raw: Sequence[torch.Tensor], ann_raw: Sequence[torch.Tensor],
                        beta: float = 1.0) -> float:
    """Mean over anchors and cells of the Bernoulli KL(ANN || SNN) of objectness and each class probability
    plus ``beta`` times the mean squared difference of the raw box outputs (lower is better)."""
    total, cells = 0.0, 0
    for s, a in zip(snn_raw, ann_raw, strict=True):
        s, a = s.double().flatten(0, -2), a.double().flatten(0, -2)
        q_log, q_log1m = F.logsigmoid(s[:, 4:]), F.logsigmoid(-s[:, 4:])
        p = a[:, 4:].sigmoid()
        kl = p * (F.logsigmoid(a[:, 4:]) - q_log) + (1 - p) * (F.logsigmoid(-a[:, 4:]) - q_log1m)
        total += float(kl.sum() + beta * ((s[:, :4] - a[:, :4]) ** 2).mean(dim=1).sum())
        cells += s.shape[0]
    return total / max(cells, 1)


def search_p(objective: Callable[[float], float], bounds: tuple[float, float] = (0.95, 1.0), init_points: int = 5,
             n_iter: int = 30, seed: int = 1) -> tuple[float, list[dict[str, float]]]:
    """Minimise ``objective(p)`` over ``bounds`` by Bayesian optimisation (``bayes_opt``, GP-UCB as the
    authors ran it); returns the best p and the trace ``[{'p', 'objective'}, ...]`` in evaluation order."""
    try:
        from bayes_opt import BayesianOptimization
    except ImportError as exc:
        raise MissingDependencyError(
            "choosing p by Bayesian optimisation needs the bayesian-optimization package: pip install "
            "'snn-det-zoo[spicalib]' (or give p explicitly)") from exc
    low, high = bounds
    if not 0 < low < high <= 1:
        raise InvalidArgumentError(f"p bounds must satisfy 0 < low < high <= 1, got {bounds!r}")
    trace: list[dict[str, float]] = []

    def target(p: float) -> float:
        value = objective(float(p))
        trace.append({"p": float(p), "objective": value})
        return -value

    optimizer = BayesianOptimization(f=target, pbounds={"p": (low, high)}, random_state=seed, verbose=0)
    optimizer.maximize(init_points=init_points, n_iter=n_iter)
    best = min(trace, key=lambda row: row["objective"])
    return best["p"], trace
