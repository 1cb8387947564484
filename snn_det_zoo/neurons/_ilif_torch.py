"""I-LIF forward and backward as graph-free torch loops (CPU, and CUDA without CuPy).

The forward builds no autograd graph: it writes spikes into one preallocated tensor, updates the state in
place, and keeps only a boolean mask ``0 <= H/v_th <= D`` per element and step, the one thing the
straight-through backward needs (1 byte instead of the 4 of a saved ``H``). The arithmetic follows the op
order of ``_ilif_reference`` so that both agree bit for bit in float32.
"""

from __future__ import annotations

import torch

from ._ilif_params import ILIFParams

__all__ = ["ilif_backward_torch", "ilif_forward_torch", "state_dtype_for"]


def state_dtype_for(dtype: torch.dtype) -> torch.dtype:
    """The membrane state stays float32 for half inputs (float64 for float64), unlike SpikingJelly 2.0's."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def ilif_forward_torch(
    x_seq: torch.Tensor, v0: torch.Tensor | None, p: ILIFParams, store_v_seq: bool, save_mask: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Return ``(spikes [T,...] in x's dtype, v_last, v_seq or None, mask [T,...] bool or None)``.

    ``v0=None`` starts from zeros; ``save_mask=False`` (inference) skips the window the backward needs.
    """
    steps = x_seq.shape[0]
    state_dtype = state_dtype_for(x_seq.dtype) if v0 is None else v0.dtype
    spikes = torch.empty_like(x_seq)
    mask = torch.empty(x_seq.shape, dtype=torch.bool, device=x_seq.device) if save_mask else None
    v = torch.empty(x_seq.shape[1:], dtype=state_dtype, device=x_seq.device)
    v_seq = torch.empty((steps, *v.shape), dtype=state_dtype, device=v.device) if store_v_seq else None
    h_buffer = torch.empty_like(v)
    # Spikes are written in place when they share the state's dtype; else through one scratch tensor.
    level_buffer = None if spikes.dtype == state_dtype else torch.empty_like(v)
    scaled = None if p.v_threshold == 1.0 else torch.empty_like(v)
    for t in range(steps):
        x = x_seq[t]
        if t == 0 and v0 is None:
            # From a zero state the charge is exactly the input (0 * beta + x == x, (x - 0) / tau + 0 == x / tau).
            h = torch.div(x.to(state_dtype), p.tau) if p.decay_input else x.to(state_dtype)
        else:
            previous = v0 if t == 0 else v
            h = h_buffer
            if p.decay_input:
                torch.sub(x, previous, out=h)
                h.div_(p.tau).add_(previous)
            else:
                torch.mul(previous, p.beta, out=h)
                h.add_(x)
        u = h if scaled is None else torch.div(h, p.v_threshold, out=scaled)
        level = spikes[t] if level_buffer is None else level_buffer
        torch.clamp(u, 0, p.max_level, out=level)
        # clamp(u) == u exactly when 0 <= u <= D (and never for NaN): the straight-through window.
        if mask is not None:
            torch.eq(level, u, out=mask[t])
        level.round_()
        if level_buffer is not None:
            spikes[t].copy_(level)
        if scaled is None:
            torch.sub(h, level, out=v)
        else:
            torch.sub(h, torch.mul(level, p.v_threshold, out=scaled), out=v)
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
    need_grad_v0: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Backpropagate through all steps; return ``(grad_x [T,...] in grad_spikes' dtype, grad_v0 or None)``."""
    steps = grad_spikes.shape[0]
    grad_x = torch.empty_like(grad_spikes)
    in_place = grad_x.dtype == state_dtype
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
        grad_h = grad_x[t] if in_place and not p.decay_input else torch.empty_like(grad_level)
        if grad_v is None:
            torch.where(m, grad_level, zero, out=grad_h)
        elif p.detach_reset:
            # dV/dH = 1: the reset subtracts a detached spike.
            torch.where(m, grad_level, zero, out=grad_h).add_(grad_v)
        else:
            # dV/dH = 1 - v_th * dS/dH = 1 - m.
            torch.where(m, grad_level, grad_v, out=grad_h)
        if p.decay_input:
            grad_x_t = torch.div(grad_h, p.tau)
            carry = grad_h.sub_(grad_x_t) if t > 0 or need_grad_v0 else None
            grad_x[t].copy_(grad_x_t)
        else:
            if not in_place:
                grad_x[t].copy_(grad_h)
            carry = torch.mul(grad_h, p.beta) if t > 0 or need_grad_v0 else None
    return grad_x, carry if need_grad_v0 else None
