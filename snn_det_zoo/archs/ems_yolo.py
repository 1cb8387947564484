"""EMS-YOLO: directly-trained spiking object detectors with EMS-ResNet backbones.

Paper: Su, Chou, Hu, Li, Mei, Zhang, Li, "Deep Directly-Trained Spiking Neural Networks for Object Detection",
ICCV 2023, arXiv:2307.11411. Authors' code: github.com/BICLab/EMS-YOLO @ fbfc2ca (GPL-3.0, from Ultralytics
YOLOv3). This file is an independent re-implementation from reference/emsyolo.md; no upstream code is copied.

Architecture (reference/emsyolo.md §1-§5): every tensor is ``[T, B, C, H, W]``. A conv + tdBN stem without a
neuron, then residual blocks whose branches are LIF -> conv -> tdBN ("LCB"), with a real-valued (membrane
shortcut) sum after each block and no neuron after the addition. The head is YOLOv3-tiny-like: two levels
(strides 16, 32), three anchors each; its 1x1 convs (with bias) act on the real-valued block sums at every
step, and the outputs are averaged over T. tdBN is SpikingJelly's ``ThresholdDependentBatchNorm2d`` with
``alpha * v_th = 0.5`` (``0.1`` for the last BN of every residual branch). The ``Conv`` block of the
``resnet18``/``resnet34-cat``/``res18-sew`` configurations is a non-spiking SiLU integrator
(:class:`~snn_det_zoo.neurons.EMSSiLUIntegrator`).

Variants (parameter counts equal the authors' models): the paper's ``ems_yolo_res10`` / ``_res18`` /
``_res34`` (``res*-ee`` configurations; res34 = [3, 4, 6, 3] ee-blocks, a config the authors never committed
but whose count equals the paper's 14.40M), the released COCO configuration ``ems_yolo_resnet34_cat``, and
the repository's other configs that build: ``ems_yolo_resnet10``, ``_resnet18``, ``_resnet34``,
``_res18_sew``. (``res18-eebk.yaml`` uses a class that exists at no commit, so it is not offered.)

state_dict layout, identical to the authors' YOLOv5-style keys so their checkpoints load with a near-identity
map: ``model.{layer}.`` then, for a row repeated n > 1 times, ``{j}.``; then

- stem ``conv.weight``, ``bn.bn.{weight,bias,running_mean,running_var,num_batches_tracked}``
  (``Conv`` also has ``act``, without keys);
- residual blocks ``residual_function.{1,4}.weight`` and ``residual_function.{2,5}.bn.*``; a projection
  shortcut ``shortcut.2.weight`` / ``shortcut.3.bn.*`` (MaxPool, LIF, conv, BN: ``BasicBlock_2``,
  ``BasicBlock_1``) or ``shortcut.1.weight`` / ``shortcut.2.bn.*`` (MaxPool, conv, BN: ``BasicBlock_ms``;
  LIF, conv, BN: ``Concat_res2``, ``ConcatBlock_ms``);
- SEW blocks ``cv1.conv.weight``, ``cv1.bn.bn.*``, ``cv2.*``, ``shortcut.0.weight``, ``shortcut.1.bn.*``;
- the head ``model.{last}.anchors`` ``[2, 3, 2]`` in grid units, ``model.{last}.m.{0,1}.{weight,bias}``.

Neurons, pools, upsampling and concatenation have no keys.

:meth:`EMSYOLO.fuse` (eval mode) folds every tdBN into the convolution before it (the fold SpikeYOLO uses,
:func:`~snn_det_zoo.nn.fuse_conv_bn`): the conv gains a bias and the tdBN becomes an ``nn.Identity``, so every
layer keeps its name (the energy meter counts the same convolutions on the same inputs) and the state_dict loses
the ``bn`` keys.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import torch
from spikingjelly.activation_based import layer
from torch import nn

from ..errors import InvalidArgumentError
from ..neurons.ems_lif import EMSLIFNode, EMSSiLUIntegrator
from ..nn.anchors import anchors_in_grid_units, decode_yolov5, init_yolov5_biases, yolov5_detections
from ..nn.detector import Detector
from ..nn.graph import Concat, Source, run_layers, saved_layers
from ..nn.losses import YOLOv5Loss
from ..nn.pooling import TiledMaxPool2d
from ..nn.recipe import YOLOV5_RECIPE
from ..nn.spike_conv import fuse_conv_bn
from ..nn.transform import LetterboxTransform
from ..registry import register_model

__all__ = ["COCO_ANCHORS", "CONFIGS", "EMSYOLO", "GEN1_ANCHORS", "VARIANTS"]

# Anchors in pixels, one row of (w, h) pairs per level (P4/16, P5/32), from the authors' YAMLs (§3.4).
COCO_ANCHORS = ((10, 14, 23, 27, 37, 58), (81, 82, 135, 169, 344, 319))
GEN1_ANCHORS = ((10, 14, 23, 27, 37, 58), (81, 82, 135, 169, 216, 269))
_ANCHOR_SETS = {"coco": COCO_ANCHORS, "gen1": GEN1_ANCHORS}
_TDBN_V_TH = 0.5  # the neuron threshold; tdBN scales its gamma init by it
_BRANCH_END_ALPHA = 0.2  # the last BN of every residual branch starts at 0.2 * 0.5 = 0.1
_WIDE_HIDDEN = 1024  # BasicBlock_1 hard-codes its hidden width, whatever the width multiple
_MAX_STRIDE = 32  # the head's coarsest level (P5)


# --------------------------------------------------------------------------------------------- layers


def _conv(cin: int, cout: int, k: int, s: int = 1, bias: bool = False) -> layer.Conv2d:
    # The authors' Snn_Conv2d is a per-step conv; folding T into the batch is numerically the same.
    return layer.Conv2d(cin, cout, k, stride=s, padding=k // 2, bias=bias, step_mode="m")


class TdBN(nn.Module):
    """tdBN over ``[T, B, C, H, W]`` (statistics over T, B, H, W), held as ``.bn`` for the authors' keys."""

    def __init__(self, channels: int, alpha: float = 1.0) -> None:
        super().__init__()
        self.bn = layer.ThresholdDependentBatchNorm2d(alpha=alpha, v_th=_TDBN_V_TH, num_features=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)


def _pool(s: int) -> nn.Module:
    # A 1x1 max pool is the identity (forward and gradient), and CPU max pooling is slow: skip it.
    return TiledMaxPool2d(s) if s > 1 else nn.Identity()


def _lcb_branch(cin: int, hidden: int, cout: int, k: int, s: int) -> nn.Sequential:
    """LIF -> conv k (stride s) -> tdBN(0.5) -> LIF -> conv k -> tdBN(0.1): every residual branch."""
    return nn.Sequential(
        EMSLIFNode(), _conv(cin, hidden, k, s), TdBN(hidden),
        EMSLIFNode(), _conv(hidden, cout, k), TdBN(cout, _BRANCH_END_ALPHA),
    )


class StemConvBN(nn.Module):
    """Conv + tdBN with no neuron (the authors' ``Conv_1`` / ``Conv_2``): encodes the analog input."""

    def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1) -> None:
        super().__init__()
        self.conv = _conv(cin, cout, k, s)
        self.bn = TdBN(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class SiLUConvBN(StemConvBN):
    """Conv + tdBN + the non-spiking SiLU integrator (the authors' ``Conv``)."""

    def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1) -> None:
        super().__init__(cin, cout, k, s)
        self.act = EMSSiLUIntegrator()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MSResidualBlock(nn.Module):
    """``residual_function(x) + shortcut(x)`` with LCB branches (``BasicBlock_2``, ``_1``, ``_ms``).

    The shortcut is the identity, or when the shape changes a projection MaxPool(s) -> [LIF] -> conv 1x1 ->
    tdBN(0.5); ``spiking_shortcut=False`` drops the LIF (``BasicBlock_ms``: the projection then sees the
    real-valued sum, so its ops are MACs).
    """

    def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1, hidden: int | None = None,
                 spiking_shortcut: bool = True) -> None:
        super().__init__()
        self.residual_function = _lcb_branch(cin, hidden or cout, cout, k, s)
        projection: list[nn.Module] = []
        if s != 1 or cin != cout:
            lif = [EMSLIFNode()] if spiking_shortcut else []
            projection = [_pool(s), *lif, _conv(cin, cout, 1), TdBN(cout)]
        self.shortcut = nn.Sequential(*projection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual_function(x) + self.shortcut(x)


class MSConcatBlock(nn.Module):
    """The channel-increasing EMS-Block2 (``Concat_res2``, ``ConcatBlock_ms``).

    Shortcut: LIF -> conv 1x1 (cin -> cout - cin) -> tdBN at full resolution, concatenated *before* x on
    the channel axis, then MaxPool(s). The authors' code pools after the concatenation although the paper's
    figure pools first; the code is followed.
    """

    def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1, hidden: int | None = None) -> None:
        super().__init__()
        if cin >= cout:
            raise InvalidArgumentError(f"a concatenation block must widen its input, got {cin} -> {cout} channels")
        self.residual_function = _lcb_branch(cin, hidden or cout, cout, k, s)
        self.shortcut = nn.Sequential(EMSLIFNode(), _conv(cin, cout - cin, 1), TdBN(cout - cin))
        self.pools = _pool(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        widened = torch.cat((self.shortcut(x), x), dim=2)
        return self.residual_function(x) + self.pools(widened)


class SEWBlock(nn.Module):
    """The "SEW" ablation block (``BasicBlock``): two SiLU-integrator convs, a conv shortcut; non-spiking."""

    def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1, e: float = 0.5) -> None:
        super().__init__()
        hidden = int(cout * e)
        self.cv1 = SiLUConvBN(cin, hidden, k, s)
        self.cv2 = SiLUConvBN(hidden, cout, 3, 1)
        projection: list[nn.Module] = []
        if s != 1 or cin != cout:
            projection = [_conv(cin, cout, 1, s), TdBN(cout)]
        self.shortcut = nn.Sequential(*projection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv2(self.cv1(x)) + self.shortcut(x)


class EMSDetect(nn.Module):
    """The two-level anchor head: a 1x1 conv (with bias) per level at every step, averaged over T.

    Returns one ``[B, na, ny, nx, 5 + classes]`` logit tensor per level. ``anchors`` is a buffer in grid
    units (pixels / stride), as in the authors' checkpoints; ``stride`` is a non-persistent buffer.
    """

    def __init__(self, num_classes: int, anchors_px: Sequence[Sequence[float]], strides: Sequence[float],
                 in_channels: Sequence[int]) -> None:
        super().__init__()
        anchors = anchors_in_grid_units(anchors_px, strides)
        if len(in_channels) != anchors.shape[0]:
            raise InvalidArgumentError(f"{len(in_channels)} head inputs for {anchors.shape[0]} anchor levels")
        self.nc, self.no = num_classes, num_classes + 5
        self.nl, self.na = anchors.shape[0], anchors.shape[1]
        self.register_buffer("anchors", anchors)
        self.register_buffer("stride", torch.tensor(list(strides), dtype=torch.float32, device="cpu"),
                             persistent=False)  # real numbers, even when built on the meta device
        self.m = nn.ModuleList(_conv(c, self.na * self.no, 1, bias=True) for c in in_channels)
        init_yolov5_biases(self.m, self.stride.tolist(), self.na, self.nc)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs = []
        for conv, x in zip(self.m, xs, strict=True):
            y = conv(x)
            steps, batch, _, ny, nx = y.shape
            y = y.view(steps, batch, self.na, self.no, ny, nx).permute(0, 1, 2, 4, 5, 3)
            outputs.append(y.sum(dim=0) / steps)
        return outputs


# ------------------------------------------------------------------------------ configuration tables

# A row is (from, repeats, block, args); args exclude the input channels, which the builder infers, and
# start with the output channels for channel-producing blocks, as in the authors' YAMLs.
Row = tuple[Source, int, str, tuple[Any, ...]]

_BLOCKS = {
    "Conv_1": StemConvBN,  # (cout, k, s)
    "Conv_2": StemConvBN,
    "Conv": SiLUConvBN,
    "BasicBlock_2": MSResidualBlock,  # (cout, k, s), hidden = cout
    "BasicBlock_1": lambda cin, cout, s=1: MSResidualBlock(cin, cout, 3, s, hidden=_WIDE_HIDDEN),
    "BasicBlock_ms": lambda cin, cout, k=3, s=1, e=0.5: MSResidualBlock(cin, cout, k, s, int(cout * e),
                                                                        spiking_shortcut=False),
    "Concat_res2": MSConcatBlock,  # (cout, k, s), hidden = cout
    "ConcatBlock_ms": lambda cin, cout, k=3, s=1, e=0.5: MSConcatBlock(cin, cout, k, s, int(cout * e)),
    "BasicBlock": SEWBlock,
}


def _backbone(stem: Row, stages: Sequence[tuple[str, int, str, int]]) -> tuple[list[Row], int]:
    """The stem, then per stage (down block, width, identity block, repeats): a stride-2 block + repeats.

    Returns the rows and the index of the last stride-16 row (the third stage's end), which the head reads.
    """
    rows = [stem]
    stage_ends = []
    for down, width, same, repeats in stages:
        rows.append((-1, 1, down, (width, 3, 2)))
        if repeats:
            rows.append((-1, repeats, same, (width, 3, 1)))
        stage_ends.append(len(rows) - 1)
    return rows, stage_ends[2]


def _head(backbone: tuple[list[Row], int], first: Row, p5: Row, lateral: str, top: str) -> list[Row]:
    """The two-level head after the backbone: P5 from ``p5``, P4 from ``top`` over the upsampled lateral."""
    rows, p4 = backbone
    n = len(rows)
    return [*rows, first, p5, (-2, 1, lateral, (128, 1, 1)), (-1, 1, "Sample", ()),
            ((-1, p4), 1, "Concat", ()), (-1, 1, top, (256, 3, 1)), ((n + 5, n + 1), 1, "Detect", ())]


def _ee(repeats: Sequence[int]) -> list[Row]:
    widths = (64, 128, 256, 512)
    stages = [("ConcatBlock_ms", w, "BasicBlock_ms", r) for w, r in zip(widths, repeats, strict=True)]
    return _head(_backbone((-1, 1, "Conv_2", (32, 3, 2)), stages), (-1, 1, "BasicBlock_ms", (256, 3, 1)),
                 (-1, 1, "ConcatBlock_ms", (512, 3, 1)), "BasicBlock_ms", "BasicBlock_ms")


def _resnet(downs: Sequence[str], repeats: Sequence[int], head: str) -> list[Row]:
    stages = [(d, w, "BasicBlock_2", r) for d, w, r in zip(downs, (64, 128, 256, 512), repeats, strict=True)]
    backbone = _backbone((-1, 1, "Conv_1", (64, 7, 2)), stages)
    if head == "spiking":  # resnet10 / resnet34: a wide block, then spiking blocks only
        return _head(backbone, (-1, 1, "BasicBlock_1", (256, 1)), (-1, 1, "BasicBlock_2", (512, 3, 1)),
                     "BasicBlock_2", "BasicBlock_2")
    return _head(backbone, (-1, 1, "BasicBlock_2", (256, 3, 1)), (-1, 1, "Conv", (512, 3, 1)),
                 "BasicBlock_2", "Conv")


_PROJ, _CAT = "BasicBlock_2", "Concat_res2"
CONFIGS: dict[str, list[Row]] = {
    "res10-ee": _ee((0, 0, 0, 0)),
    "res18-ee": _ee((1, 1, 1, 1)),
    "res34-ee": _ee((2, 3, 5, 2)),  # reconstruction of the paper's EMS-Res34 (not in the authors' repo)
    "resnet10": _resnet((_PROJ, _CAT, _CAT, _CAT), (0, 0, 0, 0), "spiking"),
    "resnet18": _resnet((_PROJ,) * 4, (1, 1, 1, 1), "silu"),
    "resnet34": _resnet((_PROJ,) * 4, (2, 3, 5, 2), "spiking"),
    "resnet34-cat": _resnet((_PROJ, _CAT, _CAT, _CAT), (2, 3, 5, 2), "silu"),
    "res18-sew": _head(_backbone((-1, 1, "Conv", (32, 3, 2)), [("BasicBlock", w, "BasicBlock", 1)
                                                               for w in (64, 128, 256, 512)]),
                       (-1, 1, "BasicBlock", (256, 3, 1)), (-1, 1, "BasicBlock", (512, 3, 1)),
                       "BasicBlock", "BasicBlock"),
}


def _make_divisible(x: float, divisor: int = 8) -> int:
    return math.ceil(x / divisor) * divisor


# ------------------------------------------------------------------------------------------- model


def _conv_tdbn_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """The (conv, tdBN) child names of ``module`` where the tdBN reads the conv's output directly."""
    if isinstance(module, StemConvBN):
        return [("conv", "bn")] if isinstance(module.bn, TdBN) else []
    if not isinstance(module, nn.Sequential):  # only a Sequential's order is its forward's order
        return []
    return [(a, b) for (a, conv), (b, bn) in pairwise(module.named_children())
            if isinstance(conv, nn.Conv2d) and isinstance(bn, TdBN)]


class EMSYOLO(Detector):
    """An EMS-YOLO detector built from a configuration table, a :class:`~snn_det_zoo.nn.detector.Detector`.

    ``forward`` returns, in every mode, the raw head outputs: one ``[B, 3, H/s, W/s, 5 + classes]`` logit
    tensor per level (s = 16, 32), averaged over T. A static image is repeated over the T steps.

    Args:
        layers: the configuration table (``CONFIGS``).
        num_classes, class_names: the object classes (COCO 80, Gen1 2).
        T: time steps; a ``[T, B, ...]`` input must have exactly this many.
        anchors: ``'coco'``, ``'gen1'`` or rows of (w, h) pixel pairs per level.
        in_chans: input channels.
        width_multiple, depth_multiple: the YAML scale factors (1.0 for every published model).
        img_size: the transform's size (COCO 640, Gen1 320).
        score_thresh, iou_thresh, max_detections, multi_label: NMS settings of ``predict``; the defaults
            are the authors' evaluation (conf 0.001, IoU 0.6, 300 detections, multi-label).
        modality: ``'image'`` (YOLOv5's validation: long side truncated, shrunk with INTER_AREA, rectangular
            padding) or ``'events'`` (every Gen1 bin stretched to ``img_size``), as the authors pre-process.
        transform_args: overrides of the :class:`~snn_det_zoo.nn.transform.LetterboxTransform` settings.
    """

    event_representation = "emsyolo"
    recipe = YOLOV5_RECIPE

    def __init__(
        self,
        layers: Sequence[Row],
        num_classes: int = 80,
        class_names: str | Sequence[str] | None = None,
        T: int = 4,
        anchors: str | Sequence[Sequence[float]] = "coco",
        in_chans: int = 3,
        width_multiple: float = 1.0,
        depth_multiple: float = 1.0,
        img_size: int | Sequence[int] = 640,
        score_thresh: float = 0.001,
        iou_thresh: float = 0.6,
        max_detections: int = 300,
        multi_label: bool = True,
        modality: str = "image",
        transform_args: dict[str, Any] | None = None,
    ) -> None:
        for name, value in (("width_multiple", width_multiple), ("depth_multiple", depth_multiple)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InvalidArgumentError(f"{name} must be a positive number, got {value!r}")
        if isinstance(anchors, str):
            if anchors not in _ANCHOR_SETS:
                raise InvalidArgumentError(f"anchors must be one of {sorted(_ANCHOR_SETS)} or (w, h) pixel rows, "
                                           f"got {anchors!r}")
            anchors = _ANCHOR_SETS[anchors]
        if modality == "events":  # datasets_g1T: every bin stretched to the input size
            preset: dict[str, Any] = {"resize": "stretch", "padding": "none"}
        else:  # YOLOv5's load_image (int sizes, INTER_AREA to shrink) and rect letterbox
            preset = {"resize": "long_side", "rounding": "floor", "downscale": "area", "padding": "rect"}
        transform = LetterboxTransform(img_size, _MAX_STRIDE, **{**preset, **(transform_args or {})})
        super().__init__(num_classes=num_classes, class_names=class_names, T=T, D=None, in_chans=in_chans,
                         modality=modality, transform=transform, score_thresh=score_thresh,
                         iou_thresh=iou_thresh, max_detections=max_detections)
        self.multi_label = bool(multi_label)
        self.model, self._sources, strides = self._build(layers, num_classes, anchors, in_chans,
                                                         float(width_multiple), float(depth_multiple))
        self._saved = saved_layers(self._sources)
        self.strides = strides

    @staticmethod
    def _build(layers: Sequence[Row], num_classes: int, anchors: Sequence[Sequence[float]], in_chans: int,
               gw: float, gd: float) -> tuple[nn.Sequential, list[Source], tuple[int, ...]]:
        # Walk the table as the authors' parse_model does, tracking channels and the stride of every layer
        # (their dummy forward finds the strides; counting them is cheaper and gives the same 16, 32).
        channels: list[int] = []
        strides: list[int] = []
        modules: list[nn.Module] = []
        for i, (source, repeats, name, args) in enumerate(layers):
            sources = [source] if isinstance(source, int) else list(source)
            c_in = [in_chans if i == 0 else channels[j] for j in sources]
            s_in = [1 if i == 0 else strides[j] for j in sources]
            repeats = max(round(repeats * gd), 1) if repeats > 1 else repeats
            if name == "Detect":
                module: nn.Module = EMSDetect(num_classes, anchors, [float(s) for s in s_in], c_in)
                c_out, s_out = 0, 0
            elif name == "Concat":
                module, c_out, s_out = Concat(), sum(c_in), s_in[0]
            elif name == "Sample":
                module = layer.Upsample(scale_factor=2, mode="nearest", step_mode="m")
                c_out, s_out = c_in[0], s_in[0] // 2
            else:
                c_out = _make_divisible(args[0] * gw)
                block_args = (c_out, *args[1:])
                block = _BLOCKS[name]
                first = block(c_in[0], *block_args)
                rest = [block(c_out, *block_args) for _ in range(repeats - 1)]
                module = nn.Sequential(first, *rest) if repeats > 1 else first
                stride = args[2] if name not in ("BasicBlock_1",) else args[1]
                s_out = s_in[0] * stride
            modules.append(module)
            channels.append(c_out)
            strides.append(s_out)
        # Negative sources count back from the layer (YOLOv5's ``from``): made absolute for the graph walk.
        resolved: list[Source] = [
            src if isinstance(src, int) and src == -1 else
            (src % i if isinstance(src, int) else tuple(j if j == -1 else j % i for j in src))
            for i, (src, *_) in enumerate(layers)
        ]
        head_strides = tuple(int(s) for s in modules[-1].stride.tolist())
        return nn.Sequential(*modules), resolved, head_strides

    def fuse(self) -> EMSYOLO:
        """Fold every tdBN into the convolution it follows (stems, LIF -> conv -> tdBN branches, shortcuts);
        eval mode only, idempotent. Same outputs up to float rounding, same synaptic operations."""
        if self.training:
            raise InvalidArgumentError("fuse() folds running BatchNorm statistics; call model.eval() first")
        if not self.fused:
            for module in list(self.modules()):
                for conv_name, bn_name in _conv_tdbn_pairs(module):
                    setattr(module, conv_name, fuse_conv_bn(getattr(module, conv_name), getattr(module, bn_name).bn))
                    setattr(module, bn_name, nn.Identity())  # not deleted: later siblings keep their names
            self.fused = True
        return self

    @property
    def detect(self) -> EMSDetect:
        return self.model[-1]  # type: ignore[return-value]

    def forward_network(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() == 4:  # the authors' Model.forward: T copies of a static image
            x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        return run_layers(self.model, self._sources, x, self._saved)

    def decode(self, raw: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw head outputs -> ``(boxes [B, A, 4] xyxy in input pixels, scores [B, A, nc])``: objectness times
        class probability, as YOLOv5's ``non_max_suppression`` scores them."""
        return yolov5_detections(decode_yolov5(raw, self.detect.anchors, self.strides))

    def criterion(self, img_size: int) -> YOLOv5Loss:
        """YOLOv5's ``ComputeLoss`` with ``hyp.scratch`` gains scaled to the levels, classes and image size."""
        return YOLOv5Loss(self.num_classes, self.detect.anchors, self.strides, img_size)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, T={self.T}, strides={self.strides}, "
                f"score_thresh={self.score_thresh}, iou_thresh={self.iou_thresh}, "
                f"max_detections={self.max_detections}, multi_label={self.multi_label}, fused={self.fused}")


# Registered variant -> the authors' configuration (their YAML file): the paper's EMS-Res10/18/34, then the
# repository's other configurations under ``ems_yolo_cfg_<yaml name>`` (they are not the paper's models:
# cfg_resnet10 has 17.6M parameters, more than cfg_resnet18). The one table of the family's variants.
VARIANTS: dict[str, tuple[str, float]] = {  # name -> (configuration, width multiple)
    "ems_yolo_res10_tiny": ("res10-ee", 0.25),  # the zoo's quarter-width Res10, not the paper's
    "ems_yolo_res10": ("res10-ee", 1.0),
    "ems_yolo_res18": ("res18-ee", 1.0),
    "ems_yolo_res34": ("res34-ee", 1.0),
    "ems_yolo_cfg_resnet10": ("resnet10", 1.0),
    "ems_yolo_cfg_resnet18": ("resnet18", 1.0),
    "ems_yolo_cfg_resnet34": ("resnet34", 1.0),
    "ems_yolo_cfg_resnet34_cat": ("resnet34-cat", 1.0),
    "ems_yolo_cfg_res18_sew": ("res18-sew", 1.0),
}


def _create_ems_yolo(variant: str, **kwargs: Any) -> EMSYOLO:
    config, width = VARIANTS[variant]
    return EMSYOLO(CONFIGS[config], **{"width_multiple": width, **kwargs})


# ---------------------------------------------------------------------------------------- variants


@register_model
def ems_yolo_res10_tiny(**kwargs: Any) -> EMSYOLO:
    """EMS-Res10 at a quarter of its width (not a paper model): the authors' blocks and neuron, small enough to train on
    a CPU; trained on the built-in synthetic sets."""
    return _create_ems_yolo("ems_yolo_res10_tiny", **kwargs)


@register_model
def ems_yolo_res10(**kwargs: Any) -> EMSYOLO:
    """EMS-Res10 of the paper (``res10-ee.yaml``): 6,207,050 parameters with 2 classes (Gen1)."""
    return _create_ems_yolo("ems_yolo_res10", **kwargs)


@register_model
def ems_yolo_res18(**kwargs: Any) -> EMSYOLO:
    """EMS-Res18 of the paper (``res18-ee.yaml``): 9,343,370 parameters with 2 classes (Gen1)."""
    return _create_ems_yolo("ems_yolo_res18", **kwargs)


@register_model
def ems_yolo_res34(**kwargs: Any) -> EMSYOLO:
    """EMS-Res34 of the paper: [3, 4, 6, 3] ee-blocks, 14,399,306 parameters (2 classes; reconstructed)."""
    return _create_ems_yolo("ems_yolo_res34", **kwargs)


@register_model
def ems_yolo_cfg_resnet10(**kwargs: Any) -> EMSYOLO:
    """The authors' ``resnet10.yaml``: concatenation blocks, a wide spiking head (17.6M, not the paper's Res10)."""
    return _create_ems_yolo("ems_yolo_cfg_resnet10", **kwargs)


@register_model
def ems_yolo_cfg_resnet18(**kwargs: Any) -> EMSYOLO:
    """The authors' ``resnet18.yaml`` (issue #20 calls it EMS-Res18; the paper's count says otherwise)."""
    return _create_ems_yolo("ems_yolo_cfg_resnet18", **kwargs)


@register_model
def ems_yolo_cfg_resnet34(**kwargs: Any) -> EMSYOLO:
    """The authors' ``resnet34.yaml``: projection blocks throughout, 34,027,454 parameters on COCO."""
    return _create_ems_yolo("ems_yolo_cfg_resnet34", **kwargs)


@register_model
def ems_yolo_cfg_resnet34_cat(**kwargs: Any) -> EMSYOLO:
    """``resnet34-cat.yaml``, the configuration of the released COCO "EMS-Res34" run (25,449,022 params)."""
    return _create_ems_yolo("ems_yolo_cfg_resnet34_cat", **kwargs)


@register_model
def ems_yolo_cfg_res18_sew(**kwargs: Any) -> EMSYOLO:
    """The "SEW-Res18" ablation (``res18-sew.yaml``); non-spiking in the authors' code (SiLU integrators)."""
    return _create_ems_yolo("ems_yolo_cfg_res18_sew", **kwargs)
