"""The authors' pre-processing, owned by the model: resize and letterbox into network pixels, and back.

Detections depend on the exact input pixels (a held-out run found that a float-resized, square-padded input
kept only 1 of the authors' 8 detections on a real image at full size, while their own letterboxed tensor gave
8 of 8), so each family's transform reproduces its authors' evaluation pipeline step for step:

- **Ultralytics 8.0 validation** (SpikeYOLO, COCO): ``load_image`` resizes the long side to ``img_size``
  (``min(ceil(w * r), img_size)``, OpenCV bilinear on uint8), then ``LetterBox(scaleup=False)`` pads the image
  centred to its rectangular validation shape ``ceil([h/w, 1] * img_size / stride + 0.5) * stride`` (the
  ``rect`` batches with ``pad=0.5``, for a batch of one image) with grey 114.
- **YOLOv5 validation** (EMS-YOLO, COCO): the same, except ``load_image`` truncates (``int(w * r)``) and
  shrinks with OpenCV's ``INTER_AREA``.
- **Gen1 frames**: SpikeYOLO resizes the long side to 320 and pads to 320x320 (``padding="square"``); EMS-YOLO
  stretches every bin to 320x320 (``resize="stretch"``, ``padding="none"``).
- **Prediction on arbitrary images** (``padding="auto"``, ``resize="fit"``): Ultralytics' and YOLOv5's
  predictor letterbox, padded only to the next multiple of ``stride``.

Pixels are resized on uint8 exactly as OpenCV does (:mod:`.resize`; OpenCV where installed, an exact NumPy
fallback otherwise): float inputs in [0, 1] are read as ``round(x * 255)``, which is lossless for images that
came from uint8. ``backend="float"`` keeps a float path (torch bilinear, no rounding) for inputs that are not
8-bit images, such as event-count histograms. Every input gets a :class:`~.mapping.BoxMapping`: the only code
that maps boxes between original and network pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidArgumentError
from .mapping import BoxMapping
from .resize import resize_u8

__all__ = ["BACKENDS", "LETTERBOX_FILL", "PADDINGS", "RESIZES", "LetterboxTransform"]

LETTERBOX_FILL = 114  # Ultralytics' and YOLOv5's grey border, in uint8
RESIZES = ("long_side", "fit", "stretch")
PADDINGS = ("rect", "square", "auto", "none")
BACKENDS = ("exact", "float")
_RECT_PAD = 0.5  # the validators' rect batches: shapes rounded up with half a stride to spare


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise InvalidArgumentError(f"{name} must be a positive int or a (height, width) pair of positive ints, "
                                   f"got {value!r}")
    return pair  # type: ignore[return-value]


def _choice(value: str, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise InvalidArgumentError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _split(total: float) -> tuple[int, int]:
    """Ultralytics / YOLOv5 split odd padding as ``round(d/2 - 0.1)`` before, ``round(d/2 + 0.1)`` after."""
    half = total / 2
    return round(half - 0.1), round(half + 0.1)


def rect_shape(height: int, width: int, img_size: int, stride: int) -> tuple[int, int]:
    """The validators' rectangular input shape for one image of ``(height, width)`` (``set_rectangle``)."""
    ar = height / width
    shape = [ar, 1.0] if ar < 1 else [1.0, 1.0 / ar] if ar > 1 else [1.0, 1.0]
    out = np.ceil(np.array(shape) * img_size / stride + _RECT_PAD).astype(int) * stride
    return int(out[0]), int(out[1])


class LetterboxTransform(nn.Module):
    """Images ``[C, H, W]`` or frame stacks ``[T, C, H, W]`` of any size -> network inputs and box mappings.

    Args:
        img_size: the target size: an int (the long side, or a square) or ``(height, width)``.
        stride: the network's largest stride; padded sizes are multiples of it.
        resize: ``"long_side"`` (the validators' ``load_image``), ``"fit"`` (the predictors' letterbox
            resize, ``round(w * r)``) or ``"stretch"`` (to ``img_size`` exactly, aspect ratio not kept).
        rounding: how ``long_side`` rounds the short side: ``"ceil"`` (Ultralytics) or ``"floor"`` (YOLOv5).
        downscale: the interpolation when ``long_side`` shrinks: ``"linear"`` (Ultralytics) or ``"area"``
            (YOLOv5's ``INTER_AREA``); enlarging is always bilinear.
        padding: ``"rect"`` (the validators' rectangular shape), ``"square"`` (to ``img_size``), ``"auto"``
            (to the next multiple of ``stride``) or ``"none"``.
        scaleup: whether the letterbox step may enlarge (``fit``, ``square``); the validators do not.
        fill: the border value, uint8.
        backend: ``"exact"`` (uint8 pixels, as OpenCV) or ``"float"`` (torch bilinear on floats).

    ``transform(inputs)`` returns ``(tensors, mappings)``: one float32 network input per item (values in
    [0, 1] for the exact backend) and its :class:`BoxMapping`.
    """

    def __init__(
        self,
        img_size: int | Sequence[int] = 640,
        stride: int = 32,
        *,
        resize: str = "long_side",
        rounding: str = "ceil",
        downscale: str = "linear",
        padding: str = "rect",
        scaleup: bool = False,
        fill: int = LETTERBOX_FILL,
        backend: str = "exact",
    ) -> None:
        super().__init__()
        self.img_size = _pair(img_size, "img_size")
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise InvalidArgumentError(f"stride must be a positive int, got {stride!r}")
        self.stride = stride
        self.resize = _choice(resize, "resize", RESIZES)
        self.rounding = _choice(rounding, "rounding", ("ceil", "floor"))
        self.downscale = _choice(downscale, "downscale", ("linear", "area"))
        self.padding = _choice(padding, "padding", PADDINGS)
        self.backend = _choice(backend, "backend", BACKENDS)
        if not isinstance(fill, int) or not 0 <= fill <= 255:
            raise InvalidArgumentError(f"fill must be a uint8 value, got {fill!r}")
        self.scaleup, self.fill = bool(scaleup), fill
        if self.padding in ("square", "none") and any(s % stride for s in self.img_size):
            raise InvalidArgumentError(f"img_size {self.img_size} must be a multiple of stride {stride}")

    # -- geometry ---------------------------------------------------------------------------------------------
    def _resized_size(self, height: int, width: int) -> tuple[tuple[int, int], str]:
        """Size after the resize step and its interpolation."""
        target_h, target_w = self.img_size
        if self.resize == "stretch":
            return (target_h, target_w), "linear"
        if self.resize == "fit":
            r = min(target_h / height, target_w / width)
            r = r if self.scaleup else min(r, 1.0)
            return (round(height * r), round(width * r)), "linear"
        side = max(self.img_size)
        r = side / max(height, width)
        if r == 1:
            return (height, width), "linear"
        rnd = math.ceil if self.rounding == "ceil" else int
        size = (min(rnd(height * r), side), min(rnd(width * r), side))
        return size, "area" if self.downscale == "area" and r < 1 else "linear"

    def _padded_size(self, original: tuple[int, int], resized: tuple[int, int]) -> tuple[tuple[int, int],
                                                                                       tuple[int, int]]:
        """``(size of the image inside the input, input size)`` after the letterbox step."""
        h, w = resized
        if self.padding == "none":
            return resized, resized
        if self.padding == "auto":
            return resized, (h + (-h) % self.stride, w + (-w) % self.stride)
        target = rect_shape(*original, max(self.img_size), self.stride) if self.padding == "rect" else \
            self.img_size
        r = min(target[0] / h, target[1] / w)
        if not self.scaleup or self.padding == "rect":
            r = min(r, 1.0)
        inner = (round(h * r), round(w * r)) if r != 1 else resized
        return inner, target

    def mapping(self, height: int, width: int) -> BoxMapping:
        """The box mapping of an input of ``(height, width)``, without computing its pixels."""
        return self._plan(height, width)[-1]

    def _plan(self, height: int, width: int) -> tuple[tuple[int, int], str, tuple[int, int], BoxMapping]:
        resized, interpolation = self._resized_size(height, width)
        inner, target = self._padded_size((height, width), resized)
        top, _ = _split(target[0] - inner[0])
        left, _ = _split(target[1] - inner[1])
        mapping = BoxMapping((height, width), target, (inner[1] / width, inner[0] / height),
                             (float(left), float(top)))
        return resized, interpolation, inner, mapping

    # -- pixels -----------------------------------------------------------------------------------------------
    def _pixels(self, planes: np.ndarray | torch.Tensor, resized: tuple[int, int], interpolation: str,
                inner: tuple[int, int], mapping: BoxMapping) -> torch.Tensor:
        target = mapping.input_size
        top, bottom = _split(target[0] - inner[0])
        left, right = _split(target[1] - inner[1])
        if self.backend == "float":
            x = planes
            for size in (resized, inner):
                if tuple(x.shape[-2:]) != size:
                    x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
            return F.pad(x, (left, right, top, bottom), value=self.fill / 255.0)
        x = planes
        if tuple(x.shape[-2:]) != resized:
            x = resize_u8(x, resized, interpolation)
        if tuple(x.shape[-2:]) != inner:  # the letterbox's own resize (rare: an image larger than its shape)
            x = resize_u8(x, inner, "linear")
        x = np.pad(x, ((0, 0), (top, bottom), (left, right)), constant_values=self.fill)
        return torch.from_numpy(x).to(torch.float32).div_(255.0)

    def _planes(self, item: torch.Tensor, index: int) -> np.ndarray | torch.Tensor:
        """``[..., H, W]`` as the backend's planes: uint8 NumPy (exact) or float32 torch (float)."""
        if not isinstance(item, torch.Tensor) or item.dim() not in (3, 4):
            shape = tuple(item.shape) if isinstance(item, torch.Tensor) else type(item).__name__
            raise InvalidArgumentError(f"input {index} must be an image [C, H, W] or frames [T, C, H, W] tensor, "
                                       f"got {shape}")
        if item.shape[-1] < 1 or item.shape[-2] < 1:
            raise InvalidArgumentError(f"input {index} is empty: shape {tuple(item.shape)}")
        if item.dtype == torch.uint8:
            data = item.detach().cpu()
            return data.reshape(-1, *data.shape[-2:]).numpy() if self.backend == "exact" else \
                data.float().div(255.0).reshape(-1, *data.shape[-2:])
        if not item.is_floating_point():
            raise InvalidArgumentError(f"input {index} must be uint8 or float in [0, 1], got {item.dtype}")
        data = item.detach().cpu().float()
        if self.backend == "float":
            return data.reshape(-1, *data.shape[-2:])
        if data.numel() and (data.min() < 0 or data.max() > 1):
            raise InvalidArgumentError(f"input {index} has values outside [0, 1] (min {float(data.min()):.3g}, "
                                       f"max {float(data.max()):.3g}); pass uint8, divide by 255, or build the "
                                       "model with transform backend 'float'")
        return data.mul(255.0).round_().to(torch.uint8).reshape(-1, *data.shape[-2:]).numpy()

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[BoxMapping]]:
        if isinstance(inputs, torch.Tensor) or not isinstance(inputs, Sequence) or not len(inputs):
            raise InvalidArgumentError("inputs must be a non-empty list of [C, H, W] or [T, C, H, W] tensors")
        tensors, mappings = [], []
        for index, item in enumerate(inputs):
            planes = self._planes(item, index)
            resized, interpolation, inner, mapping = self._plan(*item.shape[-2:])
            pixels = self._pixels(planes, resized, interpolation, inner, mapping)
            tensors.append(pixels.reshape(*item.shape[:-2], *pixels.shape[-2:]))
            mappings.append(mapping)
        return tensors, mappings

    def extra_repr(self) -> str:
        return (f"img_size={self.img_size}, stride={self.stride}, resize={self.resize}, rounding={self.rounding}, "
                f"downscale={self.downscale}, padding={self.padding}, scaleup={self.scaleup}, fill={self.fill}, "
                f"backend={self.backend}")
