"""The one box-mapping type: how an image (or frame stack) sits in the network's input.

Every pre-processing of the zoo (Ultralytics' and YOLOv5's letterbox, the Gen1 stretch) places the original
pixels into the network input by a per-axis scale and an offset: ``input = original * scale + pad``. A
:class:`BoxMapping` records that placement; datasets keep targets in original pixels, and only the model's
transform maps boxes into network pixels (:meth:`BoxMapping.to_input`, for training) and back
(:meth:`BoxMapping.to_original`, for detections).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

__all__ = ["BoxMapping"]

Boxes = TypeVar("Boxes", torch.Tensor, np.ndarray)


@dataclass(frozen=True)
class BoxMapping:
    """``input = original * scale + pad`` per axis, for xyxy boxes.

    Attributes:
        original_size: ``(height, width)`` of the image as given.
        input_size: ``(height, width)`` of the network input made from it (after resizing and padding).
        scale: ``(sx, sy)``, input pixels per original pixel along x and y.
        pad: ``(left, top)`` offset in input pixels.
    """

    original_size: tuple[int, int]
    input_size: tuple[int, int]
    scale: tuple[float, float]
    pad: tuple[float, float]

    @classmethod
    def identity(cls, size: tuple[int, int]) -> BoxMapping:
        return cls(tuple(size), tuple(size), (1.0, 1.0), (0.0, 0.0))

    def _affine(self, boxes: Boxes, forward: bool) -> Boxes:
        (sx, sy), (px, py) = self.scale, self.pad
        if isinstance(boxes, torch.Tensor):
            scale = boxes.new_tensor([sx, sy, sx, sy])
            offset = boxes.new_tensor([px, py, px, py])
        else:
            boxes = np.asarray(boxes, dtype=np.float64)
            scale, offset = np.array([sx, sy, sx, sy]), np.array([px, py, px, py])
        return boxes * scale + offset if forward else (boxes - offset) / scale

    def to_input(self, boxes: Boxes) -> Boxes:
        """xyxy boxes ``[..., 4]`` in original pixels -> network-input pixels."""
        return self._affine(boxes, forward=True)

    def to_original(self, boxes: Boxes, clip: bool = True) -> Boxes:
        """xyxy boxes ``[..., 4]`` in network-input pixels -> original pixels (clipped to the image)."""
        out = self._affine(boxes, forward=False)
        if not clip:
            return out
        if isinstance(out, torch.Tensor):
            from torchvision.ops import clip_boxes_to_image  # torchvision loads torch._dynamo: only when used

            return clip_boxes_to_image(out, self.original_size)
        height, width = self.original_size
        out[..., 0::2] = out[..., 0::2].clip(0, width)
        out[..., 1::2] = out[..., 1::2].clip(0, height)
        return out
