"""The neurons of EMS-YOLO (Su et al., ICCV 2023, arXiv:2307.11411): a hard-reset LIF and a SiLU integrator.

Both follow ``mem_update`` in the authors' ``models/common.py`` (BICLab/EMS-YOLO; reference/emsyolo.md §1.3,
§1.4, §2.3); this is an independent re-implementation.

:class:`EMSLIFNode` is the spiking neuron. Per step (the state starts at 0 after a reset)::

    H[t] = decay * V[t-1] + X[t]                      (decay 0.25, i.e. tau = 4/3, no input decay)
    S[t] = 1 if H[t] > v_threshold else 0             (strictly greater; v_threshold 0.5)
    V[t] = H[t] * (1 - S[t])                          (hard reset to 0, S detached)

which is the authors' ``V[t] = 0.25 * V[t-1] * (1 - S[t-1]) + X[t]`` written with a post-reset state. The
surrogate gradient is rectangular: ``dS/dH = 1[|H - v_threshold| < w] / (2 w)`` with half-width ``w = 0.5``,
i.e. exactly 1 on the open interval (0, 1). The strict ``>`` matters: SpikingJelly's own heaviside fires at
``H >= v_th``, which differs from EMS-YOLO on an input of exactly 0.5.

:class:`EMSSiLUIntegrator` is *not* spiking: it is what the authors' ``Conv`` block calls a neuron
(``mem_update(act=True)``). Because their model sets ``nn.SiLU.inplace = True``, the SiLU overwrites the
membrane, so the effective recurrence is ``u[0] = x[0]``, ``o[t] = SiLU(u[t])``,
``u[t] = decay * o[t-1] * (1 - o[t-1].detach()) + x[t]`` and the output is ``o``. The trained weights expect
exactly this.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import surrogate
from torch import nn

from ..errors import InvalidArgumentError
from ._fused_node import FusedMultiStepNode

__all__ = ["EMSLIFNode", "EMSSiLUIntegrator", "ems_lif_multi_step"]

# Bits of the per-element, per-step code that the fused forward saves for backward (one byte instead of
# the four of a saved float membrane).
_SPIKED = 1
_IN_WINDOW = 2


def _ems_lif_forward_loop(
    x_seq: torch.Tensor, v0: torch.Tensor, decay: float, v_threshold: float, half_width: float,
    store_v_seq: bool, save_code: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Graph-free forward; returns ``(spikes, v_last, v_seq or None, code [T, ...] uint8 or None)``. The
    backward's code is skipped where no backward will run (a quarter of an inference forward's time)."""
    spikes = torch.empty_like(x_seq)
    code = torch.empty(x_seq.shape, dtype=torch.uint8, device=x_seq.device) if save_code else None
    v_seq = torch.empty_like(x_seq) if store_v_seq else None
    v = v0
    for t in range(x_seq.shape[0]):
        h = v * decay + x_seq[t]
        fired = h > v_threshold
        if code is not None:
            in_window = (h - v_threshold).abs_() < half_width
            torch.add(fired.to(torch.uint8), in_window.to(torch.uint8), alpha=_IN_WINDOW, out=code[t])
        spikes[t].copy_(fired)
        v = h.masked_fill_(fired, 0.0)  # hard reset to 0
        if v_seq is not None:
            v_seq[t].copy_(v)
    return spikes, v, v_seq, code


def _ems_lif_backward_loop(
    grad_spikes: torch.Tensor, grad_v_last: torch.Tensor | None, grad_v_seq: torch.Tensor | None,
    code: torch.Tensor, decay: float, half_width: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Backpropagate through all steps; returns ``(grad_x [T, ...], grad_v0)``."""
    grad_x = torch.empty_like(grad_spikes)
    surrogate_height = 1.0 / (2.0 * half_width)
    grad_v = grad_v_last  # dL/dV[t], the post-reset state
    for t in reversed(range(grad_spikes.shape[0])):
        if grad_v_seq is not None:
            grad_v = grad_v_seq[t] if grad_v is None else grad_v + grad_v_seq[t]
        c = code[t]
        in_window = (c & _IN_WINDOW).bool()
        grad_h = grad_spikes[t] * in_window
        if surrogate_height != 1.0:
            grad_h = grad_h * surrogate_height
        if grad_v is not None:
            # V = H * (1 - S) with S detached: dV/dH = 1 - S.
            grad_h = grad_h + grad_v.masked_fill((c & _SPIKED).bool(), 0.0)
        grad_x[t].copy_(grad_h)
        grad_v = grad_h * decay
    assert grad_v is not None
    return grad_x, grad_v


class _EMSLIFMultiStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x_seq: torch.Tensor, v0: torch.Tensor, decay: float, v_threshold: float,
                half_width: float, store_v_seq: bool):
        spikes, v_last, v_seq, code = _ems_lif_forward_loop(x_seq, v0, decay, v_threshold, half_width,
                                                            store_v_seq)
        ctx.save_for_backward(code)
        ctx.decay, ctx.half_width = decay, half_width
        ctx.set_materialize_grads(False)
        return spikes, v_last, v_seq

    @staticmethod
    def backward(ctx: Any, grad_spikes: torch.Tensor | None, grad_v_last: torch.Tensor | None,
                 grad_v_seq: torch.Tensor | None):
        (code,) = ctx.saved_tensors
        if grad_spikes is None:
            ref = grad_v_last if grad_v_last is not None else grad_v_seq
            grad_spikes = torch.zeros(code.shape, dtype=ref.dtype, device=code.device)
        grad_x, grad_v0 = _ems_lif_backward_loop(grad_spikes.contiguous(), grad_v_last, grad_v_seq, code,
                                                 ctx.decay, ctx.half_width)
        return grad_x, (grad_v0 if ctx.needs_input_grad[1] else None), None, None, None, None


def ems_lif_multi_step(
    x_seq: torch.Tensor,
    v0: torch.Tensor | None = None,
    decay: float = 0.25,
    v_threshold: float = 0.5,
    surrogate_half_width: float = 0.5,
    store_v_seq: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Run the EMS-YOLO LIF over ``x_seq [T, N, ...]`` from ``v0`` (zeros when None).

    One autograd node covers all T steps; it saves a one-byte code per element and step (spiked, inside the
    surrogate window) instead of T membrane tensors. Returns ``(spikes [T, ...] in x's dtype, v_last,
    v_seq [T, ...] or None)``; the state after a spike is 0.
    """
    if not isinstance(x_seq, torch.Tensor) or not x_seq.is_floating_point():
        got = x_seq.dtype if isinstance(x_seq, torch.Tensor) else type(x_seq).__name__
        raise TypeError(f"the EMS-LIF input must be a floating-point tensor, got {got}")
    if x_seq.dim() < 2:
        raise InvalidArgumentError(f"the EMS-LIF multi-step input must be [T, N, ...], got shape {tuple(x_seq.shape)}")
    if v0 is None:
        v0 = torch.zeros_like(x_seq[0])
    elif v0.shape != x_seq.shape[1:]:
        raise InvalidArgumentError(f"EMS-LIF state shape {tuple(v0.shape)} does not match the input's per-step shape "
                                   f"{tuple(x_seq.shape[1:])}; call spikingjelly's functional.reset_net between inputs "
                                   "of different shapes")
    v0 = v0.to(dtype=x_seq.dtype, device=x_seq.device)
    args = (x_seq.contiguous(), v0.contiguous(), float(decay), float(v_threshold), float(surrogate_half_width),
            bool(store_v_seq))
    if not (torch.is_grad_enabled() and (x_seq.requires_grad or v0.requires_grad)):
        return _ems_lif_forward_loop(*args, save_code=False)[:3]
    return _EMSLIFMultiStep.apply(*args)


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidArgumentError(f"{name} must be a positive number, got {value!r}")
    return float(value)


class EMSLIFNode(FusedMultiStepNode):
    """EMS-YOLO's hard-reset LIF neuron, a SpikingJelly ``BaseNode`` (semantics in the module docstring).

    Args:
        decay: the membrane leak factor per step (EMS-YOLO: 0.25, i.e. tau = 4/3).
        v_threshold: fire when the membrane is strictly above this (EMS-YOLO: 0.5).
        surrogate_half_width: half-width of the rectangular surrogate window around the threshold
            (EMS-YOLO: 0.5, so the gradient is 1 on (0, 1)).
        step_mode: ``'m'`` (input ``[T, N, ...]``, one fused op) or ``'s'`` (input ``[N, ...]``).
        store_v_seq: keep the post-reset membrane of every step in ``self.v_seq`` (multi-step mode).

    As in SpikingJelly, the state ``v`` persists across calls until ``functional.reset_net``; the EMS-YOLO
    models reset it at the start of every forward, as the authors' module starts from zero on each call.

    Example::

        >>> node = EMSLIFNode()
        >>> node(torch.tensor([[0.5], [0.5], [0.5], [0.5]]))[:, 0]  # membrane 0.5, 0.625 (spike), 0.5, 0.625
        tensor([0., 1., 0., 1.])
    """

    def __init__(
        self,
        decay: float = 0.25,
        v_threshold: float = 0.5,
        surrogate_half_width: float = 0.5,
        step_mode: str = "m",
        store_v_seq: bool = False,
    ) -> None:
        if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0.0 <= decay <= 1.0:
            raise InvalidArgumentError(f"decay must be a number in [0, 1], got {decay!r}")
        half_width = _check_positive("surrogate_half_width", surrogate_half_width)
        # The surrogate module only documents the shape of the gradient; the fused op computes it.
        super().__init__(
            v_threshold=_check_positive("v_threshold", v_threshold),
            v_reset=0.0,
            surrogate_function=surrogate.PiecewiseLeakyReLU(w=half_width, c=0.0),
            detach_reset=True,
            step_mode=step_mode,
            store_v_seq=store_v_seq,
        )
        self.decay = float(decay)
        self.surrogate_half_width = half_width

    def extra_repr(self) -> str:
        return (f"decay={self.decay}, v_threshold={self.v_threshold}, "
                f"surrogate_half_width={self.surrogate_half_width}, v_reset=0.0 (hard, detached), "
                f"step_mode={self.step_mode}, store_v_seq={self.store_v_seq}")

    def _run(self, x_seq: torch.Tensor, v0: torch.Tensor | None, store_v_seq: bool):
        return ems_lif_multi_step(x_seq, v0, self.decay, self.v_threshold, self.surrogate_half_width,
                                  store_v_seq)


class EMSSiLUIntegrator(nn.Module):
    """The non-spiking "neuron" of EMS-YOLO's ``Conv`` block: a leaky integrator with SiLU outputs.

    Input ``[T, N, ...]``; output ``o`` of the same shape with ``u[0] = x[0]``, ``o[t] = SiLU(u[t])``,
    ``u[t] = decay * o[t-1] * (1 - o[t-1].detach()) + x[t]`` (the authors' in-place SiLU semantics, module
    docstring). It has no parameters and no state between calls.
    """

    def __init__(self, decay: float = 0.25) -> None:
        super().__init__()
        if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0.0 <= decay <= 1.0:
            raise InvalidArgumentError(f"decay must be a number in [0, 1], got {decay!r}")
        self.decay = float(decay)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.dim() < 2:
            raise InvalidArgumentError(f"input must be [T, N, ...], got shape {tuple(x_seq.shape)}")
        outputs = []
        out = None
        for x in x_seq:
            u = x if out is None else out * self.decay * (1.0 - out.detach()) + x
            out = F.silu(u)
            outputs.append(out)
        return torch.stack(outputs)

    def extra_repr(self) -> str:
        return f"decay={self.decay}, in-place SiLU recurrence (non-spiking)"
