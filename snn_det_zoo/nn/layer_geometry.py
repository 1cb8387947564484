"""Layer geometry that the networks declare and the energy count reads.

A re-parameterisable block (SpikeYOLO's RepConv and SepRepConv) runs as several convolutions in training but
is, for inference and for energy, the one convolution it folds into; its ``fused_conv_geometry()`` returns that
convolution's :class:`ConvGeometry`. It lives with the layers, below the families and the energy meter that
both use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ConvGeometry"]


@dataclass(frozen=True)
class ConvGeometry:
    """The convolution a re-parameterisable block folds into (what ``fused_conv_geometry()`` returns)."""

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    groups: int = 1

    def macs_per_output_element(self) -> int:
        return (self.in_channels // self.groups) * math.prod(self.kernel_size)
