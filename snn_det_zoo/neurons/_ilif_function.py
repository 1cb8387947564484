"""The I-LIF multi-step op: one autograd node over all T steps, dispatched to torch, the fused CPU loops or CuPy.

The op is registered with ``torch.library.custom_op`` (``snn_det_zoo::ilif_forward`` and
``snn_det_zoo::ilif_backward``) with fake implementations and an autograd formula, so that ``torch.compile``
traces a model through its neurons without a graph break (the op stays opaque to the compiler and runs the
same kernels as in eager mode). Absent outputs (``v_seq`` when not stored, the mask at inference,
``grad_v0`` when not needed) are empty tensors at the op's boundary, ``None`` everywhere else.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import InvalidArgumentError
from ._ilif_backend import resolve_backend
from ._ilif_params import ILIFParams
from ._ilif_torch import ilif_backward_torch, ilif_forward_torch, state_dtype_for

__all__ = ["ilif_multi_step", "state_dtype_for"]


def _forward(
    backend: str, x_seq: torch.Tensor, v0: torch.Tensor | None, p: ILIFParams, store_v_seq: bool, save_mask: bool
):
    if backend == "cupy":
        from ._ilif_cupy import ilif_forward_cupy

        return ilif_forward_cupy(x_seq, v0, p, store_v_seq, save_mask)
    if x_seq.device.type == "cpu":
        from ._ilif_cpu import fused_forward_supports, ilif_forward_cpu

        state_dtype = state_dtype_for(x_seq.dtype) if v0 is None else v0.dtype
        if fused_forward_supports(x_seq, v0, p, state_dtype):
            return ilif_forward_cpu(x_seq, v0, p, store_v_seq, save_mask, state_dtype)
    return ilif_forward_torch(x_seq, v0, p, store_v_seq, save_mask)


def _backward(backend: str, grad_spikes, grad_v_last, grad_v_seq, mask, p, state_dtype, need_grad_v0):
    if backend == "cupy":
        from ._ilif_cupy import ilif_backward_cupy

        return ilif_backward_cupy(grad_spikes, grad_v_last, grad_v_seq, mask, p, state_dtype, need_grad_v0)
    if grad_spikes.device.type == "cpu":
        from ._ilif_cpu import fused_backward_supports, ilif_backward_cpu

        if fused_backward_supports(grad_spikes, grad_v_last, grad_v_seq, mask, state_dtype):
            return ilif_backward_cpu(grad_spikes, grad_v_last, grad_v_seq, mask, p, state_dtype, need_grad_v0)
    return ilif_backward_torch(grad_spikes, grad_v_last, grad_v_seq, mask, p, state_dtype, need_grad_v0)


def _none_if_empty(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None or t.numel() == 0 else t


def _absent(like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return like.new_empty((0,), dtype=dtype)


@torch.library.custom_op("snn_det_zoo::ilif_forward", mutates_args=())
def _ilif_forward_op(
    x_seq: torch.Tensor,
    v0: torch.Tensor | None,
    max_level: int,
    tau: float,
    decay_input: bool,
    v_threshold: float,
    detach_reset: bool,
    store_v_seq: bool,
    save_mask: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    p = ILIFParams(max_level, tau, decay_input, v_threshold, detach_reset)
    spikes, v_last, v_seq, mask = _forward(backend, x_seq, v0, p, store_v_seq, save_mask)
    return (
        spikes,
        v_last,
        _absent(v_last, v_last.dtype) if v_seq is None else v_seq,
        _absent(x_seq, torch.bool) if mask is None else mask,
    )


@_ilif_forward_op.register_fake
def _(x_seq, v0, max_level, tau, decay_input, v_threshold, detach_reset, store_v_seq, save_mask, backend):
    state_dtype = state_dtype_for(x_seq.dtype) if v0 is None else v0.dtype
    v_last = x_seq.new_empty(x_seq.shape[1:], dtype=state_dtype)
    v_seq = x_seq.new_empty(x_seq.shape, dtype=state_dtype) if store_v_seq else _absent(x_seq, state_dtype)
    if not save_mask:
        mask = _absent(x_seq, torch.bool)
    elif backend == "cupy":  # bits packed 8 steps to a byte
        mask = x_seq.new_empty((math.ceil(x_seq.shape[0] / 8), *x_seq.shape[1:]), dtype=torch.uint8)
    else:
        mask = x_seq.new_empty(x_seq.shape, dtype=torch.bool)
    return torch.empty_like(x_seq), v_last, v_seq, mask


@torch.library.custom_op("snn_det_zoo::ilif_backward", mutates_args=())
def _ilif_backward_op(
    grad_spikes: torch.Tensor,
    grad_v_last: torch.Tensor | None,
    grad_v_seq: torch.Tensor | None,
    mask: torch.Tensor,
    max_level: int,
    tau: float,
    decay_input: bool,
    v_threshold: float,
    detach_reset: bool,
    state_dtype: torch.dtype,
    need_grad_v0: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    p = ILIFParams(max_level, tau, decay_input, v_threshold, detach_reset)
    grad_x, grad_v0 = _backward(
        backend, grad_spikes.contiguous(), grad_v_last, grad_v_seq, mask, p, state_dtype, need_grad_v0
    )
    return grad_x, _absent(grad_x, state_dtype) if grad_v0 is None else grad_v0


@_ilif_backward_op.register_fake
def _(
    grad_spikes,
    grad_v_last,
    grad_v_seq,
    mask,
    max_level,
    tau,
    decay_input,
    v_threshold,
    detach_reset,
    state_dtype,
    need_grad_v0,
    backend,
):
    grad_v0 = grad_spikes.new_empty(grad_spikes.shape[1:] if need_grad_v0 else (0,), dtype=state_dtype)
    return torch.empty_like(grad_spikes), grad_v0


_PARAMS = slice(2, 7)  # max_level, tau, decay_input, v_threshold, detach_reset among the forward's inputs


def _setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    x_seq, _, *rest = inputs
    ctx.params, ctx.backend = tuple(inputs[_PARAMS]), rest[-1]
    _, v_last, _, mask = output
    ctx.save_for_backward(mask)
    ctx.state_dtype, ctx.x_shape, ctx.x_dtype = v_last.dtype, x_seq.shape, x_seq.dtype
    ctx.mark_non_differentiable(mask)
    ctx.set_materialize_grads(False)


def _autograd_backward(
    ctx: Any,
    grad_spikes: torch.Tensor | None,
    grad_v_last: torch.Tensor | None,
    grad_v_seq: torch.Tensor | None,
    _grad_mask: None,
) -> tuple[torch.Tensor | None, ...]:
    (mask,) = ctx.saved_tensors
    if mask.numel() == 0:
        raise RuntimeError(
            "I-LIF backward without the saved window: the forward ran with save_mask=False "
            "(under no_grad, or for inputs that did not require grad)"
        )
    if grad_spikes is None:
        grad_spikes = torch.zeros(ctx.x_shape, dtype=ctx.x_dtype, device=mask.device)
    grad_x, grad_v0 = torch.ops.snn_det_zoo.ilif_backward(
        grad_spikes,
        grad_v_last,
        _none_if_empty(grad_v_seq),
        mask,
        *ctx.params,
        ctx.state_dtype,
        ctx.needs_input_grad[1],
        ctx.backend,
    )
    return (grad_x, grad_v0 if ctx.needs_input_grad[1] else None) + (None,) * 8


_ilif_forward_op.register_autograd(_autograd_backward, setup_context=_setup_context)


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
        raise InvalidArgumentError(
            f"I-LIF state shape {tuple(v0.shape)} does not match the input's per-step shape {tuple(x_seq.shape[1:])}"
        )
    impl = resolve_backend(backend, x_seq.device)
    if x_seq.shape[0] == 0:  # no step: the state passes through unchanged (the backends assume T >= 1)
        v_last = (
            torch.zeros(x_seq.shape[1:], dtype=state_dtype_for(x_seq.dtype), device=x_seq.device) if v0 is None else v0
        )
        return x_seq.clone(), v_last, (x_seq.new_empty(x_seq.shape, dtype=v_last.dtype) if store_v_seq else None), impl
    v0 = None if v0 is None else v0.contiguous()
    # The backward's window is kept only when a gradient can flow (not under no_grad, not for constants).
    save_mask = torch.is_grad_enabled() and (x_seq.requires_grad or (v0 is not None and v0.requires_grad))
    spikes, v_last, v_seq, _ = torch.ops.snn_det_zoo.ilif_forward(
        x_seq.contiguous(),
        v0,
        p.max_level,
        p.tau,
        p.decay_input,
        p.v_threshold,
        p.detach_reset,
        store_v_seq,
        save_mask,
        impl,
    )
    return spikes, v_last, (v_seq if store_v_seq else None), impl
