"""Shared layers and detection helpers: box formats and NMS, letterbox transform, DFL decoding, spike-input
convolutions and BatchNorm folding."""

from .boxes import clip_boxes, multiclass_nms, xywh_to_xyxy, xyxy_to_xywh
from .dfl import decode_dfl_levels, dfl_expectation, dist2bbox, make_anchors
from .spike_conv import SpikeInputConv2d, fuse_conv_bn
from .transform import LETTERBOX_FILL, LetterboxInfo, LetterboxTransform, letterbox, unletterbox_boxes

__all__ = [
    "LETTERBOX_FILL",
    "LetterboxInfo",
    "LetterboxTransform",
    "SpikeInputConv2d",
    "clip_boxes",
    "decode_dfl_levels",
    "dfl_expectation",
    "dist2bbox",
    "fuse_conv_bn",
    "letterbox",
    "make_anchors",
    "multiclass_nms",
    "unletterbox_boxes",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
]
