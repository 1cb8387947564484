"""The YOLO layer graph both families are written as: a list of layers, each reading the previous layer's
output or the saved outputs of earlier ones (Ultralytics' and YOLOv5's ``from`` column), and the one
``Concat`` they join branches with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["Concat", "Source", "run_layers", "saved_layers"]

# ``-1`` is the previous layer; ``j`` layer j's output; a tuple, a list of outputs (``-1`` among them).
Source = int | tuple[int, ...]


class Concat(nn.Module):
    """Concatenate a list of tensors along ``dim`` (the channel axis of ``[T, B, C, H, W]``: 2)."""

    def __init__(self, dim: int = 2) -> None:
        super().__init__()
        self.d = dim  # Ultralytics' attribute name

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat(list(xs), self.d)

    def extra_repr(self) -> str:
        return f"dim={self.d}"


def saved_layers(sources: Sequence[Source]) -> frozenset[int]:
    """The layers whose outputs a later layer reads (all others are dropped as soon as they are used)."""
    return frozenset(j for src in sources for j in ((src,) if isinstance(src, int) else src) if j >= 0)


def run_layers(layers: Sequence[nn.Module], sources: Sequence[Source], x: Any,
               saved: frozenset[int] | None = None) -> Any:
    """Run the graph on ``x``: each layer gets its source's output (a list for a tuple source)."""
    saved = saved_layers(sources) if saved is None else saved
    outputs: dict[int, Any] = {}
    for i, (layer, src) in enumerate(zip(layers, sources, strict=True)):
        if isinstance(src, int):
            x = x if src == -1 else outputs[src]
        else:
            x = [x if j == -1 else outputs[j] for j in src]
        x = layer(x)
        if i in saved:
            outputs[i] = x
    return x
