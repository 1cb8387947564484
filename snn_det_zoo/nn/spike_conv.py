"""Convolutions that read spike counts, and folding of BatchNorm into convolutions.

:class:`SpikeInputConv2d` is an ``nn.Conv2d`` (same parameters, same state_dict keys) placed right after a
spiking neuron. By default it convolves the integer counts, as training does. With
``spike_driven_levels = D`` it reads every count as ``D`` binary virtual time steps instead: a bias-free
convolution per slot, the slots accumulated, the bias added once
(:func:`snn_det_zoo.neurons.spike_driven_conv2d`). Both give the same result up to float summation order,
since a convolution is linear.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import InvalidArgumentError
from ..neurons import spike_driven_conv2d

__all__ = ["SpikeInputConv2d", "fuse_conv_bn"]


class SpikeInputConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` over spike counts ``[N, C, H, W]`` that can run spike-driven (binary slots).

    ``spike_driven_levels``: ``None`` convolves the counts directly; an int ``D`` expands each count into
    ``D`` binary slots, accumulates the bias-free convolutions of the slots and adds the bias once.
    """

    spike_driven_levels: int | None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.spike_driven_levels = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spike_driven_levels is None:
            return super().forward(x)
        # The flattened [T*B] axis is one "time step" of D slots each: the slot sum is per element anyway.
        return spike_driven_conv2d(x.unsqueeze(0), self, self.spike_driven_levels)[0]

    def extra_repr(self) -> str:
        mode = "integer" if self.spike_driven_levels is None else f"spike-driven D={self.spike_driven_levels}"
        return f"{super().extra_repr()}, input={mode}"


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: _BatchNorm) -> nn.Conv2d:
    """A copy of ``conv`` (its class, step mode and attributes kept) with a bias, equal to ``bn(conv(x))`` in eval
    mode. ``bn`` is any BatchNorm with running statistics over the conv's outputs: ``nn.BatchNorm2d``, or
    SpikingJelly's tdBN (a BatchNorm over ``[T*B, C, H, W]``, whose ``alpha * v_th`` only sets gamma's start)."""
    if not isinstance(bn, _BatchNorm) or bn.running_mean is None or bn.running_var is None:
        raise TypeError(f"fuse_conv_bn needs a BatchNorm with running statistics, got {type(bn).__name__}")
    if bn.num_features != conv.out_channels:
        raise InvalidArgumentError(f"BatchNorm has {bn.num_features} features but the conv {conv.out_channels} outputs")
    inv_std = 1 / torch.sqrt(bn.running_var + bn.eps)
    scale = bn.weight * inv_std if bn.affine else inv_std
    shift = (bn.bias if bn.affine else 0) - bn.running_mean * scale
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    fused = copy.deepcopy(conv)
    trainable = conv.weight.requires_grad
    fused.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1), requires_grad=trainable)
    fused.bias = nn.Parameter(conv_bias * scale + shift, requires_grad=trainable)
    return fused
