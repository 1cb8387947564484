"""I-LIF forward and backward as graph-free torch loops (CPU, and CUDA without CuPy).

The forward builds no autograd graph: it writes spikes into one preallocated tensor, updates the state in
place, and keeps only a boolean mask ``0 <= H/v_th <= D`` per element and step, the one thing the
straight-through backward needs (1 byte instead of the 4 of a saved ``H``). The arithmetic follows the op
order of ``_ilif_reference`` so that both agree bit for bit in float32.
"""

from __future__ import annotations

import torch

from ._ilif_params import ILIFParams

__all__ = ["ilif_backward_torch", "ilif_forward_torch"]


def ilif_forward_torch(
    x_seq: torch.Tensor, v0: torch.Tensor, p: ILIFParams, store_v_seq: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Return ``(spikes [T,...] in x's dtype, v_last, v_seq or None, mask [T,...] bool)``."""
    steps = x_seq.shape[0]
    spikes = torch.empty_like(x_seq)
    mask = torch.empty(x_seq.shape, dtype=torch.bool, device=x_seq.device)
    v_seq = torch.empty((steps, *v0.shape), dtype=v0.dtype, device=v0.device) if store_v_seq else None
    v = v0.clone()
    h = torch.empty_like(v)
    level = torch.empty_like(v)
    for t in range(steps):
        x = x_seq[t]
        if p.decay_input:
            torch.sub(x, v, out=h)
            h.div_(p.tau).add_(v)
        else:
            torch.mul(v, p.beta, out=h)
            h.add_(x)
        u = h if p.v_threshold == 1.0 else h / p.v_threshold
        torch.clamp(u, 0, p.max_level, out=level)
        # clamp(u) == u exactly when 0 <= u <= D (and never for NaN): the straight-through window.
        torch.eq(level, u, out=mask[t])
        level.round_()
        spikes[t].copy_(level)
        if p.v_threshold != 1.0:
            level.mul_(p.v_threshold)
        torch.sub(h, level, out=v)
        if v_seq is not None:
            v_seq[t].copy_(v)
    return spikes, v, v_seq, mask


def ilif_backward_torch(
    grad_spikes: torch.Tensor,
    grad_v_last: torch.Tensor | None,
    grad_v_seq: torch.Tensor | None,
    mask: torch.Tensor,
    p: ILIFParams,
    state_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Backpropagate through all steps; return ``(grad_x [T,...] in grad_spikes' dtype, grad_v0)``."""
    steps = grad_spikes.shape[0]
    grad_x = torch.empty_like(grad_spikes)
    carry: torch.Tensor | None = None  # dL/dV[t] flowing back from step t+1
    zero = torch.zeros((), dtype=state_dtype, device=grad_spikes.device)
    for t in reversed(range(steps)):
        grad_v = carry
        for extra in (grad_v_seq[t] if grad_v_seq is not None else None,
                      grad_v_last if t == steps - 1 else None):
            if extra is not None:
                grad_v = extra.to(state_dtype) if grad_v is None else grad_v + extra
        grad_level = grad_spikes[t].to(state_dtype)
        if p.v_threshold != 1.0:
            grad_level = grad_level / p.v_threshold
        m = mask[t]
        if grad_v is None:
            grad_h = torch.where(m, grad_level, zero)
        elif p.detach_reset:
            # dV/dH = 1: the reset subtracts a detached spike.
            grad_h = torch.where(m, grad_level, zero).add_(grad_v)
        else:
            # dV/dH = 1 - v_th * dS/dH = 1 - m.
            grad_h = torch.where(m, grad_level, grad_v)
        if p.decay_input:
            grad_x_t = grad_h / p.tau
            carry = grad_h - grad_x_t
        else:
            grad_x_t = grad_h
            carry = grad_h * p.beta
        grad_x[t].copy_(grad_x_t)
    assert carry is not None
    return grad_x, carry
