"""The neurons and the max-pool of ANN-to-SNN conversion (reference/spicalib.md §2, §3, §5).

- :class:`BurstIFNode`: integrate-and-fire with soft reset (reset by subtraction) and bursts: per step
  ``v += x / scale``, ``s = clamp(floor(v / threshold), 0, gamma)``, ``v -= threshold * s``. ``gamma = 1`` is the
  plain IF neuron (equal to SpikingJelly's ``IFNode(v_reset=None)``). It emits the integer spike counts ``s``;
  the layer's scale ``lambda`` (the p-th percentile of the ANN's activations) divides the input current, so
  ``scale * mean(s)`` approximates ``min(ReLU(a), gamma * scale)``.
- :class:`SpiCalibIFNode`: the burst IF neuron followed by Spike Calibration (Li et al., arXiv:2207.02702, as
  BrainCog's public ``SpiCalib`` module does it): each neuron tracks its mean inter-spike interval; once it has
  been silent for longer than that mean plus ``allowance`` steps it emits one negative spike (-1) per step until
  its net emitted count is back to 0. ``faithful=True`` reproduces BrainCog's bookkeeping (the net count may go
  below 0, muting later spikes until it climbs back); ``faithful=False`` only withdraws spikes it emitted.
- :class:`LosslessMaxPool2d`: max-pooling of spike trains whose running output sum equals the max-pool of the
  running input sum at every step, for any kernel, stride, padding, dilation and ceil mode: the output is
  ``maxpool(A(t)) - maxpool(A(t-1))`` with ``A`` the cumulative input, built on SpikingJelly 2.0's
  ``TDModule`` (accumulate, apply the ANN operator, emit the difference). BrainCog's LIPool keeps its
  inhibition on the input side and only works for 2x2/s2 windows; the state here is on the output side.

All state is registered as SpikingJelly memories, so ``functional.reset_net`` clears it (BrainCog's model reset
skips SpiCalib's state). Every module takes ``step_mode`` ``'s'`` (one step ``[N, ...]``) or ``'m'``
(``[T, N, ...]``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import base
from spikingjelly.activation_based.ann2snn.operators import TDModule

from ..errors import InvalidArgumentError

__all__ = ["BurstIFNode", "LosslessMaxPool2d", "SpiCalibIFNode"]


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class BurstIFNode(base.MemoryModule):
    """IF neuron with soft reset and up to ``gamma`` spikes per step; outputs integer spike counts.

    Args:
        gamma: the most spikes one step may emit (1: the plain IF neuron).
        v_threshold: the firing threshold (1 after normalisation).
        scale: the layer's normalisation ``lambda`` (a buffer, saved with the weights): the input current is
            divided by it.
        step_mode: ``'s'`` or ``'m'``.
    """

    def __init__(self, gamma: int = 1, v_threshold: float = 1.0, scale: float = 1.0, step_mode: str = "s") -> None:
        super().__init__()
        self.gamma = _check_int("gamma", gamma, 1)
        if not v_threshold > 0:
            raise InvalidArgumentError(f"v_threshold must be positive, got {v_threshold!r}")
        if not scale > 0:
            raise InvalidArgumentError(f"scale must be positive, got {scale!r}")
        self.v_threshold = float(v_threshold)
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.register_memory("v", 0.0)
        self.step_mode = step_mode

    def fire(self, x: torch.Tensor) -> torch.Tensor:
        """Charge, fire (burst) and soft-reset one step; returns the counts in ``[0, gamma]``."""
        if not isinstance(self.v, torch.Tensor) or self.v.shape != x.shape:
            self.v = torch.zeros_like(x)
        v = self.v + x / self.scale.to(x.dtype)
        s = torch.clamp(torch.floor(v / self.v_threshold), 0, self.gamma)
        self.v = v - self.v_threshold * s
        return s

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fire(x)

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.single_step_forward(x) for x in x_seq])

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, v_threshold={self.v_threshold}, scale={float(self.scale):.6g}, " \
               f"step_mode={self.step_mode}"


class SpiCalibIFNode(BurstIFNode):
    """:class:`BurstIFNode` with Spike Calibration: negative spikes withdraw the output of neurons that fell
    silent for longer than their mean inter-spike interval plus ``allowance`` steps.

    Args:
        allowance: the silence beyond the mean interval, in steps, before calibration starts (the authors use
            ``T // 2``); 0 disables calibration (the node is then a :class:`BurstIFNode`).
        faithful: BrainCog's bookkeeping (the net count may go negative and then mutes later spikes) when
            True; when False, negative spikes are emitted only while the net count is positive.
        gamma, v_threshold, scale, step_mode: as :class:`BurstIFNode`.

    Memories (cleared by ``functional.reset_net``): ``v``; per neuron ``last`` (step of the last positive
    spike), ``avg`` (mean interval), ``num`` (steps with spikes), ``net`` (net emitted count); ``t`` the step.
    """

    def __init__(self, allowance: int, faithful: bool = True, gamma: int = 1, v_threshold: float = 1.0,
                 scale: float = 1.0, step_mode: str = "s") -> None:
        super().__init__(gamma, v_threshold, scale, step_mode)
        self.allowance = _check_int("allowance", allowance, 0)
        self.faithful = bool(faithful)
        for name in ("last", "avg", "num", "net"):
            self.register_memory(name, 0.0)
        self.register_memory("t", 0)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fire(x)
        if self.allowance == 0:
            return s
        if not isinstance(self.net, torch.Tensor) or self.net.shape != s.shape:
            self.last, self.avg, self.num, self.net = (torch.zeros_like(s) for _ in range(4))
        t = float(self.t)
        fired = s > 0
        num = self.num + fired
        self.avg = torch.where(fired, ((t - self.last) + self.avg * (num - 1)) / num.clamp(min=1), self.avg)
        self.num = num
        self.last = torch.where(fired, torch.full_like(self.last, t), self.last)
        calibrate = (t - self.last) > (self.avg + self.allowance)
        if self.faithful:
            s = s - calibrate.to(s.dtype)
            self.net = self.net + s
            s = torch.where(self.net <= -1, torch.zeros_like(s), s)
        else:
            s = s - (calibrate & (self.net >= 1)).to(s.dtype)
            self.net = self.net + s
        self.t = self.t + 1
        return s

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, allowance={self.allowance}, faithful={self.faithful}"


class LosslessMaxPool2d(TDModule):
    """Max-pooling of spike trains without loss: ``sum_{tau<=t} out(tau) == max_pool2d(sum_{tau<=t} in(tau))``.

    The arguments are ``nn.MaxPool2d``'s. Input ``[N, C, H, W]`` per step (``step_mode='s'``) or
    ``[T, N, C, H, W]`` (``'m'``, the default of SpikingJelly's TD operators). With non-negative inputs of at
    most ``gamma`` per step, every output lies in ``[0, gamma]``; with signed inputs (negative calibration
    spikes) the output may be negative, as the max of the running sums may drop.
    """

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
                 ceil_mode: bool = False, step_mode: str = "m") -> None:
        super().__init__(step_mode)
        self.kernel_size, self.stride = kernel_size, kernel_size if stride is None else stride
        self.padding, self.dilation, self.ceil_mode = padding, dilation, bool(ceil_mode)
        F.max_pool2d(torch.zeros(1, 1, 64, 64), self.kernel_size, self.stride, self.padding, self.dilation,
                     self.ceil_mode)  # torch's own argument checks, now rather than at the first step

    def ann_forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-3]
        y = F.max_pool2d(x.reshape(-1, *x.shape[-3:]), self.kernel_size, self.stride, self.padding,
                         self.dilation, self.ceil_mode)
        return y.reshape(*lead, *y.shape[-3:])

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}, step_mode={self.step_mode}")
