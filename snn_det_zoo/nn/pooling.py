"""Max pooling over non-overlapping s x s windows of ``[..., C, H, W]`` inputs (any number of leading dims).

PyTorch's CPU ``max_pool2d`` is slow for this case (about 3x two ``amax`` reductions over a reshaped view, which
give the same values exactly), and it was a fifth of EMS-YOLO's CPU inference time. The reshape is used only
where no gradient is needed: on ties, which spike maps are full of, ``amax`` splits the gradient between the
maxima while ``max_pool2d`` gives it to the first, and training keeps ``max_pool2d``'s (the authors') gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import forward_ad

from ..errors import InvalidArgumentError

__all__ = ["TiledMaxPool2d"]


def _needs_derivative(x: torch.Tensor) -> bool:
    """A backward (autograd) or forward-mode derivative (a dual tensor) will be taken through ``x``."""
    return (torch.is_grad_enabled() and x.requires_grad) or forward_ad.unpack_dual(x).tangent is not None


class TiledMaxPool2d(nn.Module):
    """``MaxPool2d(s, s)`` (no padding, floor mode) over the last two dims of ``[..., C, H, W]``; a multi-step
    ``[T, B, C, H, W]`` input pools every step, as SpikingJelly's ``layer.MaxPool2d(step_mode='m')``."""

    def __init__(self, s: int) -> None:
        super().__init__()
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise InvalidArgumentError(f"the pooling window must be a positive integer, got {s!r}")
        self.s = s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3:
            raise InvalidArgumentError(f"max pooling takes [..., C, H, W] input, got shape {tuple(x.shape)}")
        s, (h, w) = self.s, (x.shape[-2] // self.s, x.shape[-1] // self.s)
        if x.device.type == "cpu" and h and w and not _needs_derivative(x):  # else max_pool2d (and its errors)
            tiles = x[..., : h * s, : w * s].unflatten(-1, (w, s)).amax(-1)
            return tiles.unflatten(-2, (h, s)).amax(-2)
        lead = x.shape[:-3]
        return F.max_pool2d(x.reshape(-1, *x.shape[-3:]), s, s).reshape(*lead, *x.shape[-3:-2], h, w)

    def extra_repr(self) -> str:
        return f"kernel_size={self.s}, stride={self.s}"
