"""The definition of I-LIF: a plain per-step loop with autograd, for reading and for tests.

Per step t (state ``v`` starts at the given ``v0``; zero after a reset)::

    H[t] = (1 - 1/tau) * V[t-1] + X[t]            (decay_input=False, SpikeYOLO's COCO neuron)
    H[t] = V[t-1] + (X[t] - V[t-1]) / tau         (decay_input=True,  SpikeYOLO's Gen1 neuron)
    S[t] = round(clamp(H[t] / v_th, 0, D))        (round half to even, as torch.round)
    V[t] = H[t] - S[t] * v_th                     (S detached in the reset when detach_reset)

with the straight-through gradient dS/d(H/v_th) = 1 where 0 <= H/v_th <= D and 0 elsewhere
(Luo et al., ECCV 2024, reference/spikeyolo.md §1). The fast paths (``_ilif_torch``, ``_ilif_cupy``) are
proven equal to this loop by the tests.
"""

from __future__ import annotations

import torch

__all__ = ["ilif_reference", "quantize_ste"]


class _QuantizeSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: torch.Tensor, max_level: int) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.max_level = max_level
        return torch.round(torch.clamp(u, 0, max_level))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (u,) = ctx.saved_tensors
        return grad * ((u >= 0) & (u <= ctx.max_level)).to(grad.dtype), None


def quantize_ste(u: torch.Tensor, max_level: int) -> torch.Tensor:
    """``round(clamp(u, 0, D))`` with a rectangular straight-through gradient on ``[0, D]``."""
    return _QuantizeSTE.apply(u, max_level)


def ilif_reference(
    x_seq: torch.Tensor,
    v0: torch.Tensor,
    max_level: int,
    tau: float,
    decay_input: bool,
    v_threshold: float,
    detach_reset: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run I-LIF over ``x_seq [T, ...]``; return ``(spikes [T, ...], v_seq [T, ...], v_last)``."""
    v = v0
    spikes, vs = [], []
    for x in x_seq:
        h = v + (x - v) / tau if decay_input else (1.0 - 1.0 / tau) * v + x
        s = quantize_ste(h / v_threshold, max_level)
        v = h - (s.detach() if detach_reset else s) * v_threshold
        spikes.append(s)
        vs.append(v)
    return torch.stack(spikes), torch.stack(vs), v
