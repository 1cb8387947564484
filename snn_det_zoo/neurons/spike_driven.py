"""Spike-driven inference: integer counts read as D binary virtual time steps.

An I-LIF count ``c`` in ``[0, D]`` becomes ``D`` binary slots holding ``c`` leading ones (a thermometer
code), laid out ``[T*D, ...]`` with t major, as the SpikeYOLO authors' ``convert_integer_to_binary.py``
orders them. A convolution is linear, so a bias-free convolution over the slots summed per step equals the
convolution over the counts; the bias is added once per step, not once per slot.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidArgumentError

__all__ = ["expand_to_binary", "spike_driven_conv2d", "sum_virtual_steps"]


def expand_to_binary(counts: torch.Tensor, max_level: int) -> torch.Tensor:
    """``[T, ...]`` integer counts in ``[0, D]`` -> ``[T*D, ...]`` binary slots, slot d = ``d < count``."""
    if counts.dim() < 1:
        raise InvalidArgumentError("expand_to_binary needs a [T, ...] tensor of counts")
    if counts.numel() and (counts.min() < 0 or counts.max() > max_level or not torch.equal(counts, counts.round())):
        raise InvalidArgumentError(f"expand_to_binary needs integer counts in [0, {max_level}], got values in "
                                   f"[{counts.min().item()}, {counts.max().item()}]"
                                   + ("" if torch.equal(counts, counts.round()) else " that are not all integers"))
    slots = torch.arange(max_level, device=counts.device, dtype=counts.dtype)
    slots = slots.view(1, max_level, *([1] * (counts.dim() - 1)))
    binary = (counts.unsqueeze(1) > slots).to(counts.dtype)
    return binary.flatten(0, 1)


def sum_virtual_steps(x: torch.Tensor, max_level: int) -> torch.Tensor:
    """``[T*D, ...]`` -> ``[T, ...]``: the sum over each step's D virtual slots."""
    if x.shape[0] % max_level:
        raise InvalidArgumentError(f"the leading dimension {x.shape[0]} is not a multiple of D={max_level}")
    return x.unflatten(0, (x.shape[0] // max_level, max_level)).sum(1)


def spike_driven_conv2d(counts: torch.Tensor, conv: nn.Conv2d, max_level: int) -> torch.Tensor:
    """Apply ``conv`` to ``[T, B, C, H, W]`` counts through binary slots: accumulate, then add the bias once."""
    if counts.dim() != 5:
        raise InvalidArgumentError(
            f"spike_driven_conv2d expects [T, B, C, H, W] counts, got shape {tuple(counts.shape)}")
    steps, batch = counts.shape[:2]
    binary = expand_to_binary(counts, max_level).flatten(0, 1)  # [T*D*B, C, H, W]
    out = F.conv2d(binary, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    out = sum_virtual_steps(out.unflatten(0, (steps * max_level, batch)), max_level)
    if conv.bias is not None:
        out = out + conv.bias.view(1, 1, -1, 1, 1)
    return out
