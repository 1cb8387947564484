"""Letterbox pre-processing and the inverse mapping of boxes, shaped after torchvision's detection transform.

The YOLO families of the zoo are trained and evaluated on Ultralytics-letterboxed images: resize with the
aspect ratio kept so the image fits ``img_size``, then pad with grey 114 (out of 255) to ``img_size``
(``auto=False``) or only to the next multiple of ``stride`` (``auto=True``, Ultralytics' minimum
rectangle), the image centred. Pixel values are RGB floats in [0, 1] (the ``/255`` of Ultralytics).
:meth:`LetterboxTransform.postprocess` maps boxes from the padded input back to each original image, as
Ultralytics' ``scale_boxes`` with the recorded ratio and padding does.

Differences to Ultralytics, on purpose: resizing is bilinear on floats (``torch`` rather than cv2 on uint8,
so values differ by at most the uint8 rounding); a batch of letterboxed images of unequal shapes is padded
at the bottom and right (with the same grey) to the largest, which leaves box coordinates unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidArgumentError
from .boxes import clip_boxes

__all__ = ["LETTERBOX_FILL", "LetterboxInfo", "LetterboxTransform", "letterbox", "unletterbox_boxes"]

LETTERBOX_FILL = 114.0 / 255.0  # Ultralytics pads uint8 images with 114 before dividing by 255


@dataclass(frozen=True)
class LetterboxInfo:
    """How one image was letterboxed: enough to map boxes back to its original pixels."""

    original_size: tuple[int, int]  # (height, width) of the input image
    resized_size: tuple[int, int]  # (height, width) after resizing, before padding
    ratio: float  # the resize gain (Ultralytics' r)
    pad: tuple[int, int]  # (left, top) padding in pixels
    padded_size: tuple[int, int]  # (height, width) of this image after padding


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise InvalidArgumentError(f"{name} must be a positive int or a (height, width) pair of positive ints, "
                                   f"got {value!r}")
    return pair  # type: ignore[return-value]


def _check_image(image: torch.Tensor, index: int | None = None) -> None:
    where = "image" if index is None else f"image {index}"
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{where} must be a torch.Tensor [C, H, W], got {type(image).__name__}")
    if not image.is_floating_point():
        raise TypeError(f"{where} must be a float tensor with values in [0, 1], got dtype {image.dtype} "
                        "(divide uint8 images by 255)")
    if image.dim() != 3:
        raise InvalidArgumentError(f"{where} must have shape [C, H, W], got {tuple(image.shape)}")


def letterbox(
    image: torch.Tensor,
    new_shape: int | Sequence[int] = 640,
    stride: int = 32,
    auto: bool = False,
    scaleup: bool = True,
    fill: float = LETTERBOX_FILL,
) -> tuple[torch.Tensor, LetterboxInfo]:
    """Letterbox one float ``[C, H, W]`` image in [0, 1] as Ultralytics' ``LetterBox`` does.

    Args:
        image: the image, RGB, float in [0, 1].
        new_shape: the target size (an int for a square, or (height, width)).
        stride: with ``auto``, pad only up to a multiple of this.
        auto: minimum-rectangle padding (predict mode) instead of padding to ``new_shape``.
        scaleup: allow enlarging small images (the COCO validator sets False).
        fill: the padding value (grey 114/255).

    Returns:
        The padded image and the :class:`LetterboxInfo` that :func:`unletterbox_boxes` needs.
    """
    _check_image(image)
    target_h, target_w = _pair(new_shape, "new_shape")
    height, width = image.shape[-2:]
    ratio = min(target_h / height, target_w / width)
    if not scaleup:
        ratio = min(ratio, 1.0)
    new_w, new_h = round(width * ratio), round(height * ratio)
    dw, dh = target_w - new_w, target_h - new_h
    if auto:
        dw, dh = dw % stride, dh % stride
    if (new_h, new_w) != (height, width):
        image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
    # Ultralytics splits odd padding as round(d/2 - 0.1) before and round(d/2 + 0.1) after.
    top, bottom = round(dh / 2 - 0.1), round(dh / 2 + 0.1)
    left, right = round(dw / 2 - 0.1), round(dw / 2 + 0.1)
    padded = F.pad(image, (left, right, top, bottom), value=fill)
    info = LetterboxInfo((height, width), (new_h, new_w), ratio, (left, top), tuple(padded.shape[-2:]))
    return padded, info


def unletterbox_boxes(boxes: torch.Tensor, info: LetterboxInfo, clip: bool = True) -> torch.Tensor:
    """Map xyxy boxes in letterboxed pixels back to the original image's pixels."""
    left, top = info.pad
    offset = boxes.new_tensor([left, top, left, top])
    out = (boxes - offset) / info.ratio
    return clip_boxes(out, info.original_size) if clip else out


class LetterboxTransform(nn.Module):
    """The model-owned pre- and post-processing of the YOLO families (like torchvision's detection transform).

    ``transform(images)`` takes a list of float ``[C, H, W]`` images in [0, 1] of any sizes (or a
    ``[B, C, H, W]`` batch) and returns ``(batch [B, C, H', W'], infos)``; ``transform.postprocess(dets,
    infos)`` maps each image's ``{"boxes", ...}`` back to its original pixels.

    Args:
        img_size: the letterbox size (int or (height, width)); SpikeYOLO uses 640 on COCO, 320 on Gen1.
        stride: the network's largest stride; padded sizes are multiples of it.
        auto: pad each image only to its minimum stride-multiple rectangle.
        scaleup: allow enlarging images smaller than ``img_size``.
        fill: the padding value.
    """

    def __init__(
        self,
        img_size: int | Sequence[int] = 640,
        stride: int = 32,
        auto: bool = False,
        scaleup: bool = True,
        fill: float = LETTERBOX_FILL,
    ) -> None:
        super().__init__()
        self.img_size = _pair(img_size, "img_size")
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise InvalidArgumentError(f"stride must be a positive int, got {stride!r}")
        if not auto and any(s % stride for s in self.img_size):
            raise InvalidArgumentError(f"img_size {self.img_size} must be a multiple of stride {stride}")
        self.stride, self.auto, self.scaleup, self.fill = stride, bool(auto), bool(scaleup), float(fill)

    def forward(
        self, images: Sequence[torch.Tensor] | torch.Tensor
    ) -> tuple[torch.Tensor, list[LetterboxInfo]]:
        if isinstance(images, torch.Tensor):
            if images.dim() != 4:
                raise InvalidArgumentError(f"a batch of images must be [B, C, H, W], got {tuple(images.shape)}")
            images = list(images)
        if not isinstance(images, Sequence) or len(images) == 0:
            raise InvalidArgumentError("images must be a non-empty list of [C, H, W] tensors or a [B, C, H, W] tensor")
        for i, image in enumerate(images):
            _check_image(image, i)
        boxed = [self.letterbox_one(im) for im in images]
        height = max(im.shape[-2] for im, _ in boxed)
        width = max(im.shape[-1] for im, _ in boxed)
        batch = torch.stack([
            F.pad(im, (0, width - im.shape[-1], 0, height - im.shape[-2]), value=self.fill) for im, _ in boxed
        ])
        return batch, [info for _, info in boxed]

    def letterbox_one(self, image: torch.Tensor) -> tuple[torch.Tensor, LetterboxInfo]:
        """Letterbox one image with this transform's settings."""
        return letterbox(image, self.img_size, self.stride, self.auto, self.scaleup, self.fill)

    def postprocess(self, detections: list[dict[str, torch.Tensor]],
                    infos: Sequence[LetterboxInfo]) -> list[dict[str, torch.Tensor]]:
        """Map each detection dict's ``boxes`` back to the original image (other entries are kept)."""
        if len(detections) != len(infos):
            raise InvalidArgumentError(f"got {len(detections)} detection dicts for {len(infos)} images")
        pairs = zip(detections, infos, strict=True)
        return [{**det, "boxes": unletterbox_boxes(det["boxes"], info)} for det, info in pairs]

    def extra_repr(self) -> str:
        return (f"img_size={self.img_size}, stride={self.stride}, auto={self.auto}, scaleup={self.scaleup}, "
                f"fill={self.fill:.4f}")
