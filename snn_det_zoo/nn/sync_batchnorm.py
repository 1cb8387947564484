"""Batch statistics synchronised across the processes of a distributed run, on any device.

``torch.nn.SyncBatchNorm`` runs on GPUs only, and ``convert_sync_batchnorm`` replaces each BatchNorm by a
plain ``SyncBatchNorm``: SpikingJelly's tdBN (``ThresholdDependentBatchNorm2d``, which folds ``[T, B, ...]``
into the batch before normalising) would lose its multi-step forward. :func:`synchronize_batchnorm` instead
keeps every module, its class behaviour and its state-dict keys, and only makes the normalisation itself
use the statistics of the global batch: per-channel sums, sums of squares and counts are all-reduced (with
gradients, through the functional collectives), so every rank normalises exactly as one process would over
all ranks' samples, in the forward and the backward pass.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["synchronize_batchnorm", "synchronized_batch_norm"]


def synchronized_batch_norm(bn: _BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """``bn(x)`` for ``x [N, C, ...]`` with training statistics over every rank's ``N``; running statistics
    are updated as ``torch.nn.BatchNorm`` updates them (unbiased variance, ``momentum``)."""
    import torch.distributed as dist
    from torch.distributed import _functional_collectives as funcol  # all_reduce with autograd

    if not bn.training or not (dist.is_available() and dist.is_initialized()):
        return _BatchNorm.forward(bn, x)
    channels = x.shape[1]
    dims = [0, *range(2, x.dim())]
    local = x if x.dtype == torch.float64 else x.float()  # half-precision statistics are summed in float32
    count = torch.full((1,), local.numel() // channels, dtype=local.dtype, device=x.device)
    totals = funcol.all_reduce(torch.cat([local.sum(dims), local.square().sum(dims), count]), "sum",
                               dist.group.WORLD)
    sums, squares, n = totals[:channels], totals[channels:2 * channels], totals[-1]
    mean = sums / n
    var = (squares / n - mean.square()).clamp_min(0)  # biased, as the normalisation uses it
    if bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            momentum = (1.0 / float(bn.num_batches_tracked)) if bn.momentum is None else bn.momentum
            unbiased = var * (n / (n - 1).clamp_min(1))
            bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), momentum)
            bn.running_var.lerp_(unbiased.to(bn.running_var.dtype), momentum)
    shape = (1, channels) + (1,) * (x.dim() - 2)
    y = (local - mean.view(shape)) * torch.rsqrt(var.view(shape) + bn.eps)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    return y.to(x.dtype)


class _Synchronized:
    """Mixed in before a BatchNorm class: its ``_BatchNorm`` forward uses the global batch."""

    def _batch_norm_forward(self, x: torch.Tensor) -> torch.Tensor:
        return synchronized_batch_norm(self, x)  # type: ignore[arg-type]


def _synchronized_class(cls: type) -> type:
    # tdBN calls _BatchNorm.forward through ``super_forward``; plain BatchNorm is that forward itself.
    body: dict[str, object] = {"__module__": __name__, "__qualname__": f"Synchronized{cls.__name__}"}
    body["super_forward" if hasattr(cls, "super_forward") else "forward"] = _Synchronized._batch_norm_forward
    return type(f"Synchronized{cls.__name__}", (_Synchronized, cls), body)


_CLASSES: dict[type, type] = {}


def synchronize_batchnorm(model: nn.Module) -> nn.Module:
    """Make every BatchNorm of ``model`` (tdBN included) normalise over the global batch of a distributed
    run, in place; parameters, buffers and state-dict keys are unchanged. Outside a process group, and in
    eval mode, the modules behave exactly as before."""
    for module in model.modules():
        cls = type(module)
        if isinstance(module, _BatchNorm) and not isinstance(module, _Synchronized | nn.SyncBatchNorm):
            if cls not in _CLASSES:
                _CLASSES[cls] = _synchronized_class(cls)
            module.__class__ = _CLASSES[cls]
    return model
