"""YOLOv5-style anchor decoding: raw per-level head outputs -> boxes in pixels, objectness, class scores.

The formulas are YOLOv5's ``Detect`` (the head EMS-YOLO inherits; reference/emsyolo.md §3.2). For level
``i`` with stride ``s``, anchors ``a`` (in grid units, as YOLOv5 stores them) and a cell ``(gx, gy)``, the
raw output ``p`` of one anchor decodes as::

    y  = sigmoid(p)
    xy = (2 * y[0:2] - 0.5 + (gx, gy)) * s          box centre, pixels
    wh = (2 * y[2:4]) ** 2 * a * s                  box size, pixels
    objectness = y[4], class probabilities = y[5:]

:func:`yolov5_detections` turns the decoded tensor into per-image inputs of the shared NMS
(:func:`snn_det_zoo.nn.boxes.multiclass_nms`): xyxy boxes and ``objectness * class probability`` scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..errors import InvalidArgumentError

__all__ = ["anchors_in_grid_units", "check_anchor_order", "decode_yolov5", "init_yolov5_biases", "make_grid",
           "yolov5_detections"]


@torch.no_grad()
def init_yolov5_biases(heads: Sequence[torch.nn.Conv2d], strides: Sequence[float], num_anchors: int,
                       num_classes: int) -> None:
    """YOLOv5's bias priors on the head convs (``_initialize_biases``): about 8 objects per 640x640 image on
    the objectness, class probability 0.6 / (nc - 1) on the classes; one conv per level, added in place."""
    for conv, stride in zip(heads, strides, strict=True):
        bias = conv.bias.view(num_anchors, num_classes + 5)
        bias[:, 4] += math.log(8 / (640 / stride) ** 2)
        bias[:, 5:] += math.log(0.6 / (num_classes - 0.999999))


def make_grid(ny: int, nx: int, device: torch.device | None = None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ``(gx, gy)`` cell offsets of an ``ny x nx`` feature map, shape ``[1, 1, ny, nx, 2]``."""
    ys = torch.arange(ny, device=device, dtype=dtype)
    xs = torch.arange(nx, device=device, dtype=dtype)
    yv, xv = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((xv, yv), dim=-1)[None, None]


def _as_anchor_tensor(anchors: Sequence[Sequence[float]] | torch.Tensor) -> torch.Tensor:
    """Anchors as a float tensor ``[levels, anchors per level, 2]`` from nested (w, h) pixel pairs."""
    # On the CPU even under a meta-device context: the checks below need real numbers.
    t = torch.as_tensor(anchors, dtype=torch.float32, device="cpu")
    if t.dim() == 2:  # the YAML layout: one flat row [w0, h0, w1, h1, ...] per level
        if t.shape[1] % 2:
            raise InvalidArgumentError(f"each anchor row must hold (w, h) pairs, got a row of {t.shape[1]} numbers")
        t = t.view(t.shape[0], -1, 2)
    if t.dim() != 3 or t.shape[-1] != 2 or t.numel() == 0:
        raise InvalidArgumentError(f"anchors must be [levels, anchors, 2] (w, h) pairs, got shape {tuple(t.shape)}")
    if not bool((t > 0).all()):
        raise InvalidArgumentError("anchor widths and heights must be positive")
    return t


def check_anchor_order(anchors_px: torch.Tensor, strides: Sequence[float]) -> None:
    """Raise ValueError unless anchor areas grow with the stride (YOLOv5's ``check_anchor_order``).

    YOLOv5 silently flips a mis-ordered set; here a mis-ordered configuration is a user error.
    """
    areas = anchors_px.prod(-1).mean(-1)
    stride_t = torch.as_tensor(list(strides), dtype=areas.dtype, device=areas.device)
    if len(stride_t) != len(areas):
        raise InvalidArgumentError(f"got {len(areas)} anchor levels for {len(stride_t)} strides")
    if len(areas) > 1 and not bool(((areas[1:] - areas[:-1]) * (stride_t[1:] - stride_t[:-1]) > 0).all()):
        raise InvalidArgumentError(f"anchor areas {areas.tolist()} must grow with the strides {stride_t.tolist()}")


def anchors_in_grid_units(anchors: Sequence[Sequence[float]] | torch.Tensor,
                          strides: Sequence[float]) -> torch.Tensor:
    """Pixel anchors (YAML rows or ``[levels, na, 2]``) -> ``[levels, na, 2]`` in grid units, checked."""
    anchors_px = _as_anchor_tensor(anchors)
    check_anchor_order(anchors_px, strides)
    return anchors_px / torch.as_tensor(list(strides), dtype=torch.float32, device=anchors_px.device).view(-1, 1, 1)


def decode_yolov5(
    raw: Sequence[torch.Tensor], anchors: torch.Tensor, strides: Sequence[float]
) -> torch.Tensor:
    """Decode raw head outputs into ``[B, sum(na*ny*nx), no]``: xywh in pixels, then sigmoid scores.

    Args:
        raw: one ``[B, na, ny, nx, no]`` tensor of logits per level (``no = 5 + classes``).
        anchors: ``[levels, na, 2]`` anchor sizes in grid units of each level.
        strides: the pixel stride of each level.
    """
    if len(raw) != len(anchors) or len(raw) != len(strides):
        raise InvalidArgumentError(f"got {len(raw)} output levels, {len(anchors)} anchor levels and {len(strides)} "
                                   "strides; they must agree")
    decoded = []
    for level, (p, stride) in enumerate(zip(raw, strides, strict=True)):
        if p.dim() != 5 or p.shape[1] != anchors.shape[1] or p.shape[-1] < 6:
            raise InvalidArgumentError(f"level {level}: expected [B, {anchors.shape[1]}, ny, nx, 5 + classes], got "
                                       f"{tuple(p.shape)}")
        batch, na, ny, nx, no = p.shape
        y = p.sigmoid()
        grid = make_grid(ny, nx, device=p.device, dtype=y.dtype)
        anchor_px = (anchors[level].to(device=p.device, dtype=y.dtype) * stride).view(1, na, 1, 1, 2)
        xy = (y[..., 0:2] * 2 - 0.5 + grid) * stride
        wh = (y[..., 2:4] * 2) ** 2 * anchor_px
        decoded.append(torch.cat((xy, wh, y[..., 4:]), dim=-1).view(batch, -1, no))
    return torch.cat(decoded, dim=1)


def yolov5_detections(decoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, N, 5 + C]`` decoded -> (``[B, N, 4]`` xyxy boxes, ``[B, N, C]`` objectness * class scores)."""
    if decoded.dim() != 3 or decoded.shape[-1] < 6:
        raise InvalidArgumentError(f"decoded predictions must be [B, N, 5 + classes], got {tuple(decoded.shape)}")
    from torchvision.ops import box_convert  # torchvision loads torch._dynamo: imported where it is used

    return box_convert(decoded[..., :4], "cxcywh", "xyxy"), decoded[..., 4:5] * decoded[..., 5:]
