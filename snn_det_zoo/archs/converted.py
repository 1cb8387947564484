"""SpiCalib-converted baselines: ReLU ANN detectors and the IF / burst-IF SNNs converted from them.

Paper: Li, He, Dong, Kong, Zeng, "Spike Calibration: Fast and Accurate Conversion of Spiking Neural Network for
Object Detection and Segmentation", arXiv:2207.02702 (2022). No official detection code exists; this file is
the zoo's re-implementation from reference/spicalib.md (method as in BrainCog's public ``SpiCalib`` module and
the authors' research scripts, whose code is not copied).

The ANN twins are ordinary :class:`~snn_det_zoo.nn.detector.Detector` models, trained with the anchor decoder
and YOLOv5-style loss EMS-YOLO uses:

- ``yolov3_tiny_relu``: the darknet ``yolov3-tiny.cfg`` layout (reference/spicalib.md §3.4) with ReLU instead
  of leaky ReLU: 3x3 conv + BN + ReLU 16-32-64-128-256 with a 2x2/s2 max-pool after each, a 2x2/s2 pool,
  conv 512, the stride-1 pool (``ZeroPad2d((0, 1, 0, 1))`` + ``MaxPool2d(2, 1)``), conv 1024, 1x1 conv 256
  (route), 3x3 conv 512 and a 1x1 head at stride 32; 1x1 conv 128, nearest x2 upsample, concatenation with
  layer 8 (256 channels), 3x3 conv 256 and a 1x1 head at stride 16. 8,852,366 parameters with 80 classes,
  counted by hand from the cfg (each conv's weights, 2 affine numbers per BN channel, the heads' biases);
  the same as the Ultralytics YOLOv3 repository's summary of ``yolov3-tiny.cfg`` [M].
- ``resnet18_yolov3_relu``: torchvision's ResNet-18 (state_dict keys of ``torchvision.models.resnet18``
  under ``backbone.``, without ``fc``) and a three-level YOLOv3 head on C3/C4/C5 with the darknet YOLOv3
  widths (512, 256, 128): per level five alternating 1x1/3x3 conv-BN-ReLU, a 3x3 conv to twice the width and
  a 1x1 head; 1x1 conv + nearest x2 upsample + concatenation between levels. Each ReLU of a residual block is
  its own module (torchvision shares one), because a spiking neuron in its place has a state of its own.

Their converted SNNs (``spicalib_yolov3_tiny``, ``spicalib_resnet18_yolov3``) are built in
:mod:`snn_det_zoo.archs._conversion`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import InvalidArgumentError
from ..nn.anchors import anchors_in_grid_units, decode_yolov5, init_yolov5_biases, yolov5_detections
from ..nn.detector import Detector
from ..nn.losses import YOLOv5Loss
from ..nn.recipe import YOLOV5_RECIPE
from ..nn.transform import LetterboxTransform
from ..registry import register_model

__all__ = ["ANN_VARIANTS", "SNN_VARIANTS", "AnchorHead", "ConversionRecord", "ReLUYOLO", "ResNet18YOLOv3Core",
           "SpiCalibYOLO", "YOLOv3TinyCore"]

# Anchors in pixels per level, smallest stride first.
TINY_ANCHORS = ((10, 14, 23, 27, 37, 58), (81, 82, 135, 169, 344, 319))  # yolov3-tiny.cfg (masks 0-2, 3-5)
YOLOV3_ANCHORS = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))


def _width(channels: int, multiple: float) -> int:
    return channels if multiple == 1.0 else max(8, math.ceil(channels * multiple / 8) * 8)


class ConvBNReLU(nn.Module):
    """Conv (no bias) -> BatchNorm -> ReLU, darknet's ``[convolutional] batch_normalize=1``."""

    def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class YOLOv3TinyCore(nn.Module):
    """The darknet YOLOv3-tiny network up to its two 1x1 heads: ``[B, C, H, W]`` -> ``[P4/16, P5/32]`` maps."""

    strides = (16, 32)

    def __init__(self, in_chans: int, outputs: int, width_multiple: float = 1.0) -> None:
        super().__init__()
        w = [_width(c, width_multiple) for c in (16, 32, 64, 128, 256, 512, 1024)]
        layers: list[nn.Module] = []
        cin = in_chans
        for cout in w[:4]:
            layers += [ConvBNReLU(cin, cout), nn.MaxPool2d(2, 2)]
            cin = cout
        layers.append(ConvBNReLU(cin, w[4]))
        self.backbone = nn.Sequential(*layers)  # darknet layers 0-8 (layer 8 is routed to P4)
        self.tail = nn.Sequential(  # layers 9-13
            nn.MaxPool2d(2, 2), ConvBNReLU(w[4], w[5]), nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(2, 1),
            ConvBNReLU(w[5], w[6]), ConvBNReLU(w[6], w[4], 1))
        self.p5 = ConvBNReLU(w[4], w[5])
        self.lateral = nn.Sequential(ConvBNReLU(w[4], w[3], 1), nn.Upsample(scale_factor=2, mode="nearest"))
        self.p4 = ConvBNReLU(w[3] + w[4], w[4])
        self.heads = nn.ModuleList([nn.Conv2d(w[4], outputs, 1), nn.Conv2d(w[5], outputs, 1)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c4 = self.backbone(x)
        c5 = self.tail(c4)
        p4 = self.p4(torch.cat((self.lateral(c5), c4), dim=1))
        return [self.heads[0](p4), self.heads[1](self.p5(c5))]


class BasicBlock(nn.Module):
    """torchvision's ResNet ``BasicBlock`` (same keys) with one ReLU module per use and the shortcut a module
    (``nn.Identity`` without projection), so that each can be replaced by a stateful spiking counterpart."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))) + self.downsample(x))


class ResNet18Backbone(nn.Module):
    """torchvision's ResNet-18 without ``avgpool``/``fc``: returns C3, C4, C5 (strides 8, 16, 32)."""

    def __init__(self, in_chans: int, width_multiple: float = 1.0) -> None:
        super().__init__()
        w = [_width(c, width_multiple) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(in_chans, w[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = w[0]
        for i, cout in enumerate(w, start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout)))
            cin = cout
        self.channels = tuple(w[1:])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        c3 = self.layer2(x)
        c4 = self.layer3(c3)
        return [c3, c4, self.layer4(c4)]


def _conv_set(cin: int, width: int) -> nn.Sequential:
    """darknet YOLOv3's five alternating 1x1 / 3x3 convolutions before each detection level."""
    return nn.Sequential(ConvBNReLU(cin, width, 1), ConvBNReLU(width, 2 * width), ConvBNReLU(2 * width, width, 1),
                         ConvBNReLU(width, 2 * width), ConvBNReLU(2 * width, width, 1))


class ResNet18YOLOv3Core(nn.Module):
    """ResNet-18 + the YOLOv3 head: ``[B, C, H, W]`` -> ``[P3/8, P4/16, P5/32]`` head maps."""

    strides = (8, 16, 32)

    def __init__(self, in_chans: int, outputs: int, width_multiple: float = 1.0) -> None:
        super().__init__()
        self.backbone = ResNet18Backbone(in_chans, width_multiple)
        c3, c4, c5 = self.backbone.channels
        w5, w4, w3 = (_width(c, width_multiple) for c in (512, 256, 128))
        self.set5 = _conv_set(c5, w5)
        self.lateral5 = nn.Sequential(ConvBNReLU(w5, w4, 1), nn.Upsample(scale_factor=2, mode="nearest"))
        self.set4 = _conv_set(c4 + w4, w4)
        self.lateral4 = nn.Sequential(ConvBNReLU(w4, w3, 1), nn.Upsample(scale_factor=2, mode="nearest"))
        self.set3 = _conv_set(c3 + w3, w3)
        self.out3, self.out4, self.out5 = ConvBNReLU(w3, 2 * w3), ConvBNReLU(w4, 2 * w4), ConvBNReLU(w5, 2 * w5)
        self.heads = nn.ModuleList([nn.Conv2d(2 * w, outputs, 1) for w in (w3, w4, w5)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c3, c4, c5 = self.backbone(x)
        f5 = self.set5(c5)
        f4 = self.set4(torch.cat((self.lateral5(f5), c4), dim=1))
        f3 = self.set3(torch.cat((self.lateral4(f4), c3), dim=1))
        return [self.heads[0](self.out3(f3)), self.heads[1](self.out4(f4)), self.heads[2](self.out5(f5))]


class AnchorHead(nn.Module):
    """The anchors (grid units, a buffer) and the reshaping of ``[B, na * no, H, W]`` head maps into
    ``[B, na, H, W, no]`` logits (the head convs' biases get YOLOv5's priors: ``init_yolov5_biases``)."""

    def __init__(self, num_classes: int, anchors_px: Sequence[Sequence[float]], strides: Sequence[int]) -> None:
        super().__init__()
        anchors = anchors_in_grid_units(anchors_px, strides)
        self.register_buffer("anchors", anchors)
        self.na, self.no, self.nc = anchors.shape[1], num_classes + 5, num_classes

    def forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [m.view(m.shape[0], self.na, self.no, m.shape[-2], m.shape[-1]).permute(0, 1, 3, 4, 2).contiguous()
                for m in maps]


_CORES = {"yolov3_tiny": (YOLOv3TinyCore, TINY_ANCHORS), "resnet18_yolov3": (ResNet18YOLOv3Core, YOLOV3_ANCHORS)}


class ReLUYOLO(Detector):
    """A ReLU / BN / max-pool YOLO detector (the ANN twin of a converted SNN), a
    :class:`~snn_det_zoo.nn.detector.Detector`.

    ``forward`` returns one ``[B, 3, H/s, W/s, 5 + classes]`` logit tensor per level (YOLOv5's decoding). A
    ``[T, B, C, H, W]`` input must have ``T = 1`` (an ANN has no time steps).

    Args:
        arch: ``'yolov3_tiny'`` or ``'resnet18_yolov3'``.
        num_classes, class_names: the object classes.
        in_chans: input channels.
        width_multiple: scales every width (1.0 for the published layouts; the zoo's CPU weights use 0.25).
        img_size: the letterbox size (416 as darknet).
        score_thresh, iou_thresh, max_detections, multi_label: NMS settings of ``predict`` (YOLOv5's
            evaluation defaults: conf 0.001, IoU 0.6, 300, multi-label).
    """

    recipe = YOLOV5_RECIPE

    def __init__(
        self,
        arch: str = "yolov3_tiny",
        num_classes: int = 80,
        class_names: str | Sequence[str] | None = None,
        in_chans: int = 3,
        width_multiple: float = 1.0,
        img_size: int | Sequence[int] = 416,
        score_thresh: float = 0.001,
        iou_thresh: float = 0.6,
        max_detections: int = 300,
        multi_label: bool = True,
        T: int = 1,
        transform_args: dict[str, Any] | None = None,
    ) -> None:
        if arch not in _CORES:
            raise InvalidArgumentError(f"arch must be one of {sorted(_CORES)}, got {arch!r}")
        if isinstance(width_multiple, bool) or not isinstance(width_multiple, int | float) or not width_multiple > 0:
            raise InvalidArgumentError(f"width_multiple must be a positive number, got {width_multiple!r}")
        if T != 1:
            raise InvalidArgumentError(f"an ANN runs one step: T must be 1, got {T!r} (its converted SNN takes T)")
        core_cls, anchors = _CORES[arch]
        preset = {"resize": "long_side", "rounding": "floor", "downscale": "area", "padding": "rect"}
        transform = LetterboxTransform(img_size, max(core_cls.strides), **{**preset, **(transform_args or {})})
        super().__init__(num_classes=num_classes, class_names=class_names, T=T, D=None, in_chans=in_chans,
                         modality="image", transform=transform, score_thresh=score_thresh, iou_thresh=iou_thresh,
                         max_detections=max_detections)
        self.arch, self.width_multiple, self.multi_label = arch, float(width_multiple), bool(multi_label)
        self.detect = AnchorHead(num_classes, anchors, core_cls.strides)
        self.core = core_cls(in_chans, self.detect.na * self.detect.no, self.width_multiple)
        init_yolov5_biases(self.core.heads, core_cls.strides, self.detect.na, self.detect.nc)
        self.strides = tuple(core_cls.strides)

    def forward_network(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() == 5:  # [T=1, B, C, H, W]
            x = x[0]
        return self.detect(self.core(x))

    def decode(self, raw: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw head outputs -> ``(boxes [B, A, 4] xyxy in input pixels, scores [B, A, nc])`` (YOLOv5's)."""
        return yolov5_detections(decode_yolov5(raw, self.detect.anchors, self.strides))

    def criterion(self, img_size: int) -> YOLOv5Loss:
        """YOLOv5's ``ComputeLoss`` with ``hyp.scratch`` gains, shared with EMS-YOLO."""
        return YOLOv5Loss(self.num_classes, self.detect.anchors, self.strides, img_size)

    def extra_repr(self) -> str:
        return (f"arch={self.arch}, num_classes={self.num_classes}, width_multiple={self.width_multiple}, "
                f"strides={self.strides}, score_thresh={self.score_thresh}, iou_thresh={self.iou_thresh}")


# Registered ANN variant -> its core (the one table of the family's ANN twins).
ANN_VARIANTS = {"yolov3_tiny_relu": "yolov3_tiny", "resnet18_yolov3_relu": "resnet18_yolov3"}


@register_model
def yolov3_tiny_relu(**kwargs: Any) -> ReLUYOLO:
    """darknet YOLOv3-tiny with ReLU (8,852,366 parameters with 80 classes): the ANN of ``spicalib_yolov3_tiny``."""
    return ReLUYOLO(ANN_VARIANTS["yolov3_tiny_relu"], **kwargs)


@register_model
def resnet18_yolov3_relu(**kwargs: Any) -> ReLUYOLO:
    """torchvision ResNet-18 + a YOLOv3 head: the ANN of ``spicalib_resnet18_yolov3``."""
    return ReLUYOLO(ANN_VARIANTS["resnet18_yolov3_relu"], **kwargs)


# ------------------------------------------------------------------------------------------- converted SNNs


class ConversionRecord(nn.Module):
    """The converted state that is not a layer's: ``p``, ``gamma``, ``allowance``, ``T_design`` (buffers, so
    they are saved with the weights; ``p`` is NaN until the model is calibrated)."""

    def __init__(self, gamma: int, allowance: int, T_design: int) -> None:
        super().__init__()
        for name, value in (("p", float("nan")), ("gamma", gamma), ("allowance", allowance), ("T_design", T_design)):
            self.register_buffer(name, torch.tensor(float(value), device="cpu"))

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in ("p", "gamma", "allowance", "T_design")}


class SpiCalibYOLO(Detector):
    """A ReLU YOLO converted to an SNN (IF soft reset, bursts, SpiCalib, lossless max-pool), a
    :class:`~snn_det_zoo.nn.detector.Detector`.

    ``forward`` shows the image for ``T`` steps (direct coding: a constant input current) and returns the head
    outputs averaged over the steps, in the ANN's layout (YOLOv5's decoding); :meth:`simulate` returns them at
    several T from one run. The network is the ANN's with BN folded and its layers swapped
    (:mod:`snn_det_zoo.archs._conversion`); :meth:`from_ann` copies a trained ANN's weights and
    :func:`snn_det_zoo.archs._conversion.set_scales` (or ``snn_det_zoo.bench.conversion.convert``) sets the
    scales. Weights of a converted model carry everything (folded convs, every layer's scale, ``p``, ``gamma``,
    ``allowance``, ``T_design``): no calibration data is needed to use them.

    Args:
        arch: the ANN core (``'yolov3_tiny'``, ``'resnet18_yolov3'``).
        T: time steps of ``forward`` (an evaluation setting; SpiCalib's allowance stays tied to ``T_design``).
        gamma: the most spikes per neuron and step (1: plain IF neurons); also ``D``.
        allowance: SpiCalib's allowance in steps (0: no calibration). ``None``: the weights' value once loaded,
            ``T // 2`` before.
        faithful: BrainCog's SpiCalib bookkeeping (see :class:`~snn_det_zoo.neurons.SpiCalibIFNode`).
        pool: ``'lossless'`` (:class:`~snn_det_zoo.neurons.LosslessMaxPool2d`) or ``'naive'`` (per step).
        **ann_args: the ANN's settings (classes, width, input size, NMS thresholds), as :class:`ReLUYOLO`.
    """

    signed_spikes = True  # SpiCalib's negative spikes: the energy meter counts |count| ACs

    def __init__(
        self,
        arch: str = "yolov3_tiny",
        T: int = 256,
        gamma: int = 5,
        allowance: int | None = None,
        faithful: bool = True,
        pool: str = "lossless",
        **ann_args: Any,
    ) -> None:
        import copy

        from ._conversion import fold_time, record_activations, set_scales, spiking_core

        if allowance is not None and (isinstance(allowance, bool) or not isinstance(allowance, int) or allowance < 0):
            raise InvalidArgumentError(f"allowance must be a non-negative integer or None, got {allowance!r}")
        ann = ReLUYOLO(arch, **ann_args)
        if isinstance(gamma, bool) or not isinstance(gamma, int) or gamma < 1:
            raise InvalidArgumentError(f"gamma must be a positive integer, got {gamma!r}")
        super().__init__(num_classes=ann.num_classes, class_names=ann.class_names, T=T, D=gamma,
                         in_chans=ann.in_chans, modality="image", transform=ann.transform,
                         score_thresh=ann.score_thresh, iou_thresh=ann.iou_thresh, max_detections=ann.max_detections)
        self.arch, self.width_multiple, self.multi_label = arch, ann.width_multiple, ann.multi_label
        self.faithful, self.pool, self._fixed_allowance = bool(faithful), pool, allowance
        start = T // 2 if allowance is None else allowance
        self.detect = ann.detect
        reference = copy.deepcopy(ann) if not next(ann.parameters()).is_meta else None
        self.core = spiking_core(ann.core, gamma, start, self.faithful, pool)
        self.conversion = ConversionRecord(gamma, start, T)
        self.strides = ann.strides
        self.steps_per_call = 16  # time steps folded into the batch of one call of the core
        self._folded = fold_time(self.core)
        self.register_load_state_dict_post_hook(_apply_record)
        if not next(ann.parameters()).is_meta:  # firing from the start: scales from noise until calibrated on data
            noise = torch.rand(2, ann.in_chans, 64, 64, generator=torch.Generator().manual_seed(0))
            set_scales(self.core, record_activations(reference.core, [noise]).scales(0.999), noise)

    @property
    def allowance(self) -> int:
        return int(self.conversion.allowance)

    def set_allowance(self, allowance: int) -> None:
        """Change SpiCalib's allowance of every neuron (0: no calibration; needs calibrating neurons)."""
        from ..neurons import SpiCalibIFNode

        nodes = [m for m in self.core.modules() if isinstance(m, SpiCalibIFNode)]
        if allowance and not nodes:
            raise InvalidArgumentError("this model was built without SpiCalib (allowance=0); build it with one")
        for node in nodes:
            node.allowance = int(allowance)
        self.conversion.allowance.fill_(float(allowance))

    @torch.no_grad()
    def load_ann(self, ann: ReLUYOLO) -> SpiCalibYOLO:
        """Copy the weights of a trained ANN twin (same arch, classes, width), BN folded; scales are untouched."""
        import copy

        from ._conversion import spiking_core

        if not isinstance(ann, ReLUYOLO) or (ann.arch, ann.num_classes, ann.width_multiple) != (
                self.arch, self.num_classes, self.width_multiple):
            raise InvalidArgumentError(f"the ANN must be a ReLUYOLO {self.arch} with {self.num_classes} classes at "
                                       f"width {self.width_multiple}")
        folded = spiking_core(copy.deepcopy(ann.core).eval(), 1, 0, pool="naive")
        weights = {k: v for k, v in folded.state_dict().items() if k.endswith((".weight", ".bias"))}
        missing = self.core.load_state_dict(weights, strict=False)
        if missing.unexpected_keys or any(k.endswith((".weight", ".bias")) for k in missing.missing_keys):
            raise InvalidArgumentError(f"the ANN's layers do not match: {missing}")
        self.detect.anchors.copy_(ann.detect.anchors)
        return self

    def _steps(self, x: torch.Tensor, steps: int) -> Any:
        """Per chunk of up to ``steps_per_call`` steps: the core's head maps, one ``[n, B, ...]`` per level."""
        done = 0
        while done < steps:
            n = min(self.steps_per_call, steps - done)
            chunk = x[done:done + n] if x.dim() == 5 else x.unsqueeze(0).expand(n, *x.shape)
            self._folded.steps = n
            outputs = self.core(chunk.reshape(-1, *chunk.shape[2:]))
            self._folded.steps = 1
            yield [o.view(n, -1, *o.shape[1:]) for o in outputs]
            done += n

    def forward_network(self, x: torch.Tensor) -> list[torch.Tensor]:
        total: list[torch.Tensor] | None = None
        for chunk in self._steps(x, self.T):
            sums = [c.sum(dim=0) for c in chunk]
            total = sums if total is None else [a + b for a, b in zip(total, sums, strict=True)]
        return self.detect([m / self.T for m in total])

    @torch.no_grad()
    def simulate(self, x: torch.Tensor, snapshots: Sequence[int],
                 on_step: Any = None) -> dict[int, list[torch.Tensor]]:
        """Run ``[B, C, H, W]`` images to ``max(snapshots)`` steps once; the raw head outputs averaged over the
        first T steps for every T of ``snapshots``. ``on_step(t)`` is called after each chunk of steps, with the
        steps done so far."""
        steps = sorted({int(t) for t in snapshots})
        if not steps or steps[0] < 1:
            raise InvalidArgumentError(f"snapshots must be positive step counts, got {list(snapshots)!r}")
        self.check_input(x if x.dim() == 4 else x[0])
        from spikingjelly.activation_based import functional

        functional.reset_net(self)
        out: dict[int, list[torch.Tensor]] = {}
        total: list[torch.Tensor] | None = None
        t = 0
        try:
            for chunk in self._steps(x, steps[-1]):
                for step in zip(*chunk, strict=True):
                    t += 1
                    total = list(step) if total is None else [a + b for a, b in zip(total, step, strict=True)]
                    if t in steps:
                        out[t] = self.detect([m / t for m in total])
                if on_step is not None:
                    on_step(t)
        finally:
            functional.reset_net(self)
        return out

    def decode(self, raw: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """As the ANN's: YOLOv5's decoding of the T-averaged head outputs."""
        return yolov5_detections(decode_yolov5(raw, self.detect.anchors, self.strides))

    def extra_repr(self) -> str:
        record = self.conversion.as_dict()
        return (f"arch={self.arch}, T={self.T}, gamma={self.D}, allowance={self.allowance}, p={record['p']:.6g}, "
                f"T_design={int(record['T_design'])}, faithful={self.faithful}, pool={self.pool}")


def _apply_record(model: nn.Module, incompatible: Any) -> None:
    """After loading converted weights: their ``gamma`` must be the model's, their allowance is applied unless
    the builder fixed one."""
    record = model.conversion.as_dict()
    if int(record["gamma"]) != model.D:
        raise InvalidArgumentError(f"these weights were converted with gamma={int(record['gamma'])}; build the "
                                   f"model with gamma={int(record['gamma'])}, not {model.D}")
    allowance = model._fixed_allowance if model._fixed_allowance is not None else int(record["allowance"])
    model.set_allowance(allowance)


# Registered converted variant -> its ANN twin's variant (the card's ``ann`` key says the same).
SNN_VARIANTS = {"spicalib_yolov3_tiny": "yolov3_tiny_relu", "spicalib_resnet18_yolov3": "resnet18_yolov3_relu"}


@register_model
def spicalib_yolov3_tiny(**kwargs: Any) -> SpiCalibYOLO:
    """``yolov3_tiny_relu`` converted: burst IF (gamma 5), SpiCalib (allowance T_design / 2), lossless pools."""
    return SpiCalibYOLO(ANN_VARIANTS[SNN_VARIANTS["spicalib_yolov3_tiny"]], **kwargs)


@register_model
def spicalib_resnet18_yolov3(**kwargs: Any) -> SpiCalibYOLO:
    """``resnet18_yolov3_relu`` converted, as ``spicalib_yolov3_tiny`` (its stem max-pool overlaps: 3x3/s2)."""
    return SpiCalibYOLO(ANN_VARIANTS[SNN_VARIANTS["spicalib_resnet18_yolov3"]], **kwargs)
