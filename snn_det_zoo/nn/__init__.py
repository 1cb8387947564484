"""Shared layers and detection helpers: the Detector contract, the transform and its box mapping, NMS, DFL and
anchor decoding, the layer graph, spike-input convolutions, tiled max pooling, BatchNorm folding and layer
geometry."""

from .boxes import multiclass_nms
from .detector import MODALITIES, Detector
from .dfl import DFL, decode_dfl_levels, dist2bbox, make_anchors
from .graph import Concat, run_layers
from .layer_geometry import ConvGeometry
from .mapping import BoxMapping
from .pooling import TiledMaxPool2d
from .spike_conv import SpikeInputConv2d, fuse_conv_bn
from .transform import LETTERBOX_FILL, LetterboxTransform

__all__ = [
    "DFL",
    "LETTERBOX_FILL",
    "MODALITIES",
    "BoxMapping",
    "Concat",
    "ConvGeometry",
    "Detector",
    "LetterboxTransform",
    "SpikeInputConv2d",
    "TiledMaxPool2d",
    "decode_dfl_levels",
    "dist2bbox",
    "fuse_conv_bn",
    "make_anchors",
    "multiclass_nms",
    "run_layers",
]
