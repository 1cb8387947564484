"""The I-LIF multi-step op: one autograd node over all T steps, dispatched to torch or CuPy."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InvalidArgumentError
from ._ilif_backend import resolve_backend
from ._ilif_params import ILIFParams
from ._ilif_torch import ilif_backward_torch, ilif_forward_torch, state_dtype_for

__all__ = ["ilif_multi_step", "state_dtype_for"]


def _forward_impl(backend: str):
    if backend == "cupy":
        from ._ilif_cupy import ilif_forward_cupy

        return ilif_forward_cupy
    return ilif_forward_torch


def _backward_impl(backend: str):
    if backend == "cupy":
        from ._ilif_cupy import ilif_backward_cupy

        return ilif_backward_cupy
    return ilif_backward_torch


class _ILIFMultiStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x_seq: torch.Tensor, v0: torch.Tensor | None, p: ILIFParams, store_v_seq: bool,
                backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        save_mask = any(ctx.needs_input_grad[:2])  # False under no_grad or for inputs without grad
        spikes, v_last, v_seq, mask = _forward_impl(backend)(x_seq, v0, p, store_v_seq, save_mask)
        ctx.save_for_backward(mask)
        ctx.p, ctx.backend, ctx.state_dtype = p, backend, v_last.dtype
        ctx.x_shape, ctx.x_dtype = x_seq.shape, x_seq.dtype
        ctx.set_materialize_grads(False)
        return spikes, v_last, v_seq

    @staticmethod
    def backward(ctx: Any, grad_spikes: torch.Tensor | None, grad_v_last: torch.Tensor | None,
                 grad_v_seq: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        (mask,) = ctx.saved_tensors
        if grad_spikes is None:
            grad_spikes = torch.zeros(ctx.x_shape, dtype=ctx.x_dtype, device=mask.device)
        grad_x, grad_v0 = _backward_impl(ctx.backend)(
            grad_spikes.contiguous(), grad_v_last, grad_v_seq, mask, ctx.p, ctx.state_dtype, ctx.needs_input_grad[1]
        )
        return grad_x, grad_v0, None, None, None


def ilif_multi_step(
    x_seq: torch.Tensor, v0: torch.Tensor | None, p: ILIFParams, store_v_seq: bool = False, backend: str = "torch"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, str]:
    """Run I-LIF over ``x_seq [T, ...]`` from state ``v0`` (``None``: a fresh, zero state).

    Returns ``(spikes [T, ...] in x's dtype, v_last, v_seq [T, ...] or None, implementation that ran)``.
    """
    if x_seq.dim() < 2:
        raise InvalidArgumentError(f"I-LIF multi-step input must be [T, N, ...], got shape {tuple(x_seq.shape)}")
    if not x_seq.is_floating_point():
        raise TypeError(f"I-LIF input must be a floating-point tensor, got {x_seq.dtype}")
    if v0 is not None and v0.shape != x_seq.shape[1:]:
        raise InvalidArgumentError(f"I-LIF state shape {tuple(v0.shape)} does not match the input's per-step shape "
                                   f"{tuple(x_seq.shape[1:])}")
    impl = resolve_backend(backend, x_seq.device)
    if x_seq.shape[0] == 0:  # no step: the state passes through unchanged (the backends assume T >= 1)
        v_last = torch.zeros(x_seq.shape[1:], dtype=state_dtype_for(x_seq.dtype), device=x_seq.device) \
            if v0 is None else v0
        return x_seq.clone(), v_last, (x_seq.new_empty(x_seq.shape, dtype=v_last.dtype) if store_v_seq else None), impl
    v0 = None if v0 is None else v0.contiguous()
    spikes, v_last, v_seq = _ILIFMultiStep.apply(x_seq.contiguous(), v0, p, store_v_seq, impl)
    return spikes, v_last, v_seq, impl
