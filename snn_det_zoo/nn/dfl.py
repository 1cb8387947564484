"""Anchor-free decoding of YOLOv8-style heads: anchor points, distribution focal loss (DFL) integral, boxes.

A head level of stride ``s`` predicts, per cell, ``4 * reg_max`` logits (a distribution over the distances
0..reg_max-1, in units of ``s``, from the cell centre to the left, top, right and bottom edges) and ``C``
class logits. Decoding (Ultralytics ``make_anchors``/``dist2bbox``/``DFL``): the cell centres are the anchor
points (offset 0.5), each distance is the expectation of its softmax distribution, and the box is anchor
minus left/top and anchor plus right/bottom, times the stride.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import InvalidArgumentError

__all__ = ["DFL", "DFL_OFFSET", "decode_dfl_levels", "dist2bbox", "make_anchors"]

DFL_OFFSET = 0.5  # anchor points sit at cell centres


def make_anchors(
    feature_sizes: Sequence[tuple[int, int]], strides: Sequence[float], offset: float = DFL_OFFSET,
    device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor points ``[A, 2]`` (x, y in grid units of their level) and their strides ``[A, 1]``.

    Levels are concatenated in order, each in row-major (y, then x) order, as the heads flatten them.
    """
    if len(feature_sizes) != len(strides):
        raise InvalidArgumentError(f"got {len(feature_sizes)} feature sizes for {len(strides)} strides")
    points, stride_list = [], []
    for (height, width), stride in zip(feature_sizes, strides, strict=True):
        sx = torch.arange(width, device=device, dtype=dtype) + offset
        sy = torch.arange(height, device=device, dtype=dtype) + offset
        grid_y, grid_x = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((grid_x, grid_y), -1).view(-1, 2))
        stride_list.append(torch.full((height * width, 1), float(stride), device=device, dtype=dtype))
    return torch.cat(points), torch.cat(stride_list)


def dist2bbox(
    distance: torch.Tensor, anchor_points: torch.Tensor, xywh: bool = False, dim: int = -1
) -> torch.Tensor:
    """(left, top, right, bottom) distances from anchor points -> xyxy (or xywh) boxes along ``dim``."""
    lt, rb = distance.chunk(2, dim)
    x1y1 = anchor_points - lt
    x2y2 = anchor_points + rb
    if xywh:
        return torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), dim)
    return torch.cat((x1y1, x2y2), dim)


class DFL(nn.Module):
    """The DFL integral as Ultralytics (and SpikeYOLO's checkpoints) store it: a frozen 1x1 conv whose weights
    are the bins 0..reg_max-1, applied to the softmax of each side's logits."""

    def __init__(self, reg_max: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(reg_max, 1, 1, bias=False).requires_grad_(False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.arange(reg_max, dtype=torch.float).view(1, reg_max, 1, 1))
        self.c1 = reg_max

    def forward(self, box_logits: torch.Tensor) -> torch.Tensor:
        """``[B, 4*reg_max, A]`` logits -> ``[B, 4, A]`` expected distances."""
        batch, channels, anchors = box_logits.shape
        if channels != 4 * self.c1:
            raise InvalidArgumentError(f"box logits need 4*reg_max={4 * self.c1} channels, got {channels}")
        prob = box_logits.view(batch, 4, self.c1, anchors).transpose(2, 1).softmax(1)
        return self.conv(prob).view(batch, 4, anchors)


def decode_dfl_levels(
    maps: Sequence[torch.Tensor], strides: Sequence[float], num_classes: int, integral: DFL,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode raw head maps ``[B, 4*reg_max + C, H_i, W_i]`` into xyxy boxes and class probabilities.

    ``integral`` is the head's :class:`DFL`: ``[B, 4*reg_max, A]`` logits to ``[B, 4, A]`` distances.

    Returns ``(boxes [B, A, 4] in input pixels, scores [B, A, C] after sigmoid)`` with ``A = sum H_i W_i``.
    """
    reg_max = integral.c1
    expected = 4 * reg_max + num_classes
    for i, m in enumerate(maps):
        if m.dim() != 4 or m.shape[1] != expected:
            raise InvalidArgumentError(f"head map {i} must be [B, {expected}, H, W], got {tuple(m.shape)}")
    batch = maps[0].shape[0]
    flat = torch.cat([m.flatten(2) for m in maps], 2)
    box_logits, cls_logits = flat.split((4 * reg_max, num_classes), 1)
    sizes = [tuple(m.shape[-2:]) for m in maps]
    anchors, stride = make_anchors(sizes, strides, device=flat.device, dtype=flat.dtype)
    distances = integral(box_logits)  # [B, 4, A]
    boxes = dist2bbox(distances, anchors.T.unsqueeze(0), xywh=False, dim=1) * stride.T.unsqueeze(0)
    return boxes.transpose(1, 2).reshape(batch, -1, 4), cls_logits.sigmoid().transpose(1, 2)
