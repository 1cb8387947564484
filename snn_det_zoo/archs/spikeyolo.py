"""SpikeYOLO: integer-valued training, spike-driven inference spiking detector.

Paper: Luo, Yao, Chou, Xu, Li, "Integer-Valued Training and Spike-Driven Inference Spiking Neural Network
for High-performance and Energy-efficient Object Detection", ECCV 2024, arXiv:2407.20708.
Reference code: https://github.com/BICLab/SpikeYOLO @ 309ef5e (AGPL-3.0, built on Ultralytics 8.0.197);
``ultralytics/nn/modules/yolo_spikformer.py`` and ``ultralytics/cfg/models/v8/snn_yolov8.yaml``. This file
is a clean re-implementation (MIT) written from the specification in the zoo's reference notes.

What is kept identical to the authors' models:

* op order: tensors are ``[T, B, C, H, W]``; every convolution, BatchNorm and max-pool runs on ``[T*B, ...]``
  (t major); residual adds and concatenations act on real-valued pre-neuron values ("membrane shortcuts");
  the re-parameterisable convolutions (``RepConv``, ``SepRepConv``, ``BNAndPadLayer``) run unfused, and
  :meth:`SpikeYOLO.fuse` folds every BatchNorm into its convolution and each of them into a separable chain
  (:class:`SeparableRepConv`: no more MACs than unfused; dense k x k only for spike-driven inference);
* every BatchNorm has ``eps=1e-3, momentum=0.03`` (Ultralytics' ``initialize_weights``);
* the neuron is I-LIF with ``D`` levels (:class:`snn_det_zoo.neurons.ILIFNode`): the COCO ``mem_update``
  (decay 0.25, ``tau=4/3``) or the Gen1 neuron of the authors' modified SpikingJelly (``tau=2``,
  ``decay_input=True``); the detect head is spiking and averages its maps over T;
* parameter counts (n 13,271,632; s 23,153,024; m 47,841,856; l 68,478,400 with 80 classes);
* the state_dict layout. The network is ``self.model``, an ``nn.ModuleList`` of 27 layers whose keys are the
  authors' ``model.<i>[.<repeat>].<attr>...`` (a layer repeated r > 1 times is an ``nn.Sequential``)::

      0  MS_GetT            (no keys)             14 MS_StandardConv  conv, bn
      1  MS_DownSampling    encode_conv, encode_bn 15 Upsample (1,2,2)
      2  MS_AllConvBlock    Conv.{pwconv1,dwconv2,pwconv3.body.{0.bn,1.0,1.1},bn1..3}, conv1/conv2.{conv,bn}
      3  MS_DownSampling    + encode_lif           16 MS_AllConvBlock
      4  MS_AllConvBlock                           17 Concat [-1, 4]
      5  MS_DownSampling                           18 MS_StandardConv
      6  MS_ConvBlock       Conv..., conv1/conv2.body.{0, 1.bn, 2.0, 2.1, 2.2}, bn1, bn2
      7  MS_DownSampling                           19 MS_AllConvBlock  (P3, stride 8)
      8  MS_ConvBlock                              20 MS_StandardConv (stride 2)
      9  SpikeSPPF          cv1/cv2.{conv,bn}      21 Concat [-1, 14]
      10 MS_StandardConv                           22 MS_ConvBlock     (P4, stride 16)
      11 Upsample (1,2,2)                          23 MS_StandardConv (stride 2)
      12 MS_ConvBlock                              24 Concat [-1, 10]
      13 Concat [-1, 6]                            25 MS_ConvBlock     (P5, stride 32; MLP ratio 2 for m/l)
      26 SpikeDetect        cv2/cv3.<level>.{0,1}.{conv,bn}, cv2/cv3.<level>.2.conv.{weight,bias}, dfl.conv

  Neurons carry no keys. ``Conv`` (capital C, the SepConv) and ``conv1``/``conv2`` (the MLP) coexist, as in
  the authors' code. The authors' unused ``SpikeDFL.lif`` and ``MS_CancelT`` are left out (no keys).

Input: a static batch ``[B, 3, H, W]`` is repeated T times (``MS_GetT``); an event batch ``[T, B, 3, H, W]``
is used as it is. The authors' Gen1 code takes ``[B, T, ...]`` and transposes it, and their data pipeline
reverses the time axis (``[::-1]`` on T, so the most recent bin comes first): to reproduce their Gen1
checkpoint, pass the frames in ``[T, B, ...]`` order with the most recent bin first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional
from torch import nn

from ..errors import InvalidArgumentError
from ..neurons import ILIFNode
from ..nn.detector import Detector
from ..nn.dfl import DFL, decode_dfl_levels
from ..nn.graph import Concat, Source, run_layers, saved_layers
from ..nn.layer_geometry import ConvGeometry
from ..nn.losses import V8DetectionLoss
from ..nn.recipe import ULTRALYTICS_RECIPE
from ..nn.spike_conv import SpikeInputConv2d, fuse_conv_bn
from ..nn.transform import LetterboxTransform
from ..registry import register_model

__all__ = ["VARIANTS", "SpikeYOLO"]

Neuron = Callable[[], nn.Module]
BN_EPS, BN_MOMENTUM = 1e-3, 0.03  # Ultralytics initialize_weights sets these on every BatchNorm2d
REG_MAX = 16
STRIDES = (8, 16, 32)
BIAS_INIT_IMG_SIZE = 640  # the authors' bias_init assumes a 640 image whatever the dataset


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def _seq(x: torch.Tensor, *modules: nn.Module) -> torch.Tensor:
    """Run stateless modules on ``[T, B, ...]`` flattened to ``[T*B, ...]`` (t major), then unflatten."""
    return functional.seq_to_ann_forward(x, list(modules))


class _Fusable(nn.Module):
    """A block whose (conv, BatchNorm) attribute pairs fold into single convolutions for inference."""

    _FUSE_PAIRS: tuple[tuple[str, str], ...] = ()

    @torch.no_grad()
    def fuse(self) -> None:
        for conv_name, bn_name in self._FUSE_PAIRS:
            conv, bn = getattr(self, conv_name), getattr(self, bn_name)
            if isinstance(conv, RepConv | SepRepConv):
                conv = conv.as_separable()
                conv[-1] = fuse_conv_bn(conv[-1], bn)
            else:
                conv = fuse_conv_bn(conv, bn)
            setattr(self, conv_name, conv)
            setattr(self, bn_name, nn.Identity())


# --- re-parameterisable convolutions (authors' names; stored unfused) -------------------------------------


class BNAndPadLayer(nn.Module):
    """BatchNorm, then padding with the per-channel BN(0) of the running statistics (= zero-pad, then BN)."""

    def __init__(self, pad_pixels: int, num_features: int) -> None:
        super().__init__()
        self.bn = _bn(num_features)
        self.pad_pixels = pad_pixels

    def pad_value(self) -> torch.Tensor:
        bn = self.bn
        return bn.bias.detach() - bn.running_mean * bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(x)
        p = self.pad_pixels
        if p > 0:
            out = F.pad(out, [p] * 4)
            value = self.pad_value().view(1, -1, 1, 1)
            # Borders written in place with the exact BN(0) values (running statistics even in training).
            out[:, :, :p, :] = value
            out[:, :, -p:, :] = value
            out[:, :, :, :p] = value
            out[:, :, :, -p:] = value
        return out


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as ``scale * x + shift``, in float64 for the fusion algebra."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return scale, bn.bias.double() - bn.running_mean.double() * scale


class RepConv(nn.Module):
    """1x1 conv -> BN with BN(0) padding -> depthwise k x k -> 1x1 conv -> BN: one k x k conv once fused."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        pad = (kernel_size - 1) // 2
        self.body = nn.Sequential(
            SpikeInputConv2d(in_channels, in_channels, 1, bias=False),
            BNAndPadLayer(pad, in_channels),
            nn.Sequential(
                nn.Conv2d(in_channels, in_channels, kernel_size, groups=in_channels, bias=False),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                _bn(out_channels),
            ),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def fused_conv_geometry(self) -> ConvGeometry:
        """Energy hook: counted as the one k x k conv on its spike input that :meth:`as_conv` gives."""
        dw, pw = self.body[2][0], self.body[2][1]
        return ConvGeometry(self.body[0].in_channels, pw.out_channels, dw.kernel_size)

    @torch.no_grad()
    def as_conv(self) -> SpikeInputConv2d:
        """The equivalent single convolution (eval-mode BN statistics)."""
        w_in = self.body[0].weight.double()[:, :, 0, 0]  # [C, C_in]
        scale, shift = _bn_affine(self.body[1].bn)
        dw = self.body[2][0].weight.double()[:, 0]  # [C, k, k]
        w_out = self.body[2][1].weight.double()[:, :, 0, 0]  # [O, C]
        weight = torch.einsum("oc,cuv,c,ci->oiuv", w_out, dw, scale, w_in)
        bias = torch.einsum("oc,c,c->o", w_out, shift, dw.sum((1, 2)))
        conv = _conv_from(weight, bias, self.body[0])
        return fuse_conv_bn(conv, self.body[2][2])

    @torch.no_grad()
    def as_separable(self) -> SeparableRepConv:
        """The same map as 1x1 (BN folded in, no bias) -> depthwise k x k -> 1x1 + BN: 1x1, k x k, 1x1 costs
        ``C_in*C + C*k^2 + C*O`` MACs a pixel against ``C_in*O*k^2`` for :meth:`as_conv` (5x fewer for the
        MLP's 4x expansion with k = 3), so the CPU runs it faster."""
        scale, shift = _bn_affine(self.body[1].bn)
        dw = self.body[2][0].weight.double()[:, 0]  # [C, k, k]
        w_in = scale[:, None] * self.body[0].weight.double()[:, :, 0, 0]
        w_out = self.body[2][1].weight.double()[:, :, 0, 0]
        return SeparableRepConv.build(w_in, dw, shift * dw.sum((1, 2)), w_out, self.body[2][2], like=self.body[0])


class SepRepConv(nn.Module):
    """BN with BN(0) padding -> 1x1 conv -> depthwise k x k: one k x k conv once fused."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        pad = (kernel_size - 1) // 2
        self.body = nn.Sequential(
            BNAndPadLayer(pad, in_channels),
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.Conv2d(out_channels, out_channels, kernel_size, groups=out_channels, bias=False),
            ),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def fused_conv_geometry(self) -> ConvGeometry:
        """Energy hook: counted as the one k x k conv on its spike input that :meth:`as_conv` gives."""
        pw, dw = self.body[1][0], self.body[1][1]
        return ConvGeometry(pw.in_channels, pw.out_channels, dw.kernel_size)

    @torch.no_grad()
    def as_conv(self) -> SpikeInputConv2d:
        """The equivalent single convolution (eval-mode BN statistics)."""
        scale, shift = _bn_affine(self.body[0].bn)
        w_pw = self.body[1][0].weight.double()[:, :, 0, 0]  # [O, I]
        dw = self.body[1][1].weight.double()[:, 0]  # [O, k, k]
        weight = torch.einsum("ouv,oi,i->oiuv", dw, w_pw, scale)
        bias = dw.sum((1, 2)) * (w_pw @ shift)
        return _conv_from(weight, bias, self.body[1][0])

    @torch.no_grad()
    def as_separable(self) -> SeparableRepConv:
        """The same map as 1x1 (the input BN folded in, no bias) -> depthwise k x k: ``I*O + O*k^2`` MACs a
        pixel against ``I*O*k^2`` for :meth:`as_conv`."""
        scale, shift = _bn_affine(self.body[0].bn)
        w_pw = self.body[1][0].weight.double()[:, :, 0, 0]  # [O, I]
        dw = self.body[1][1].weight.double()[:, 0]  # [O, k, k]
        return SeparableRepConv.build(w_pw * scale, dw, dw.sum((1, 2)) * (w_pw @ shift), None, None,
                                      like=self.body[1][0])


class SeparableRepConv(nn.Sequential):
    """A folded RepConv / SepRepConv kept separable: a bias-free 1x1 on the spikes, a depthwise k x k with
    zero padding and the folded bias, optionally a 1x1 (with the block's BatchNorm folded in).

    The 1x1 on spikes has no bias, so zero padding in front of the depthwise conv is exactly the BN(0) border
    of the unfused block, and the whole is the one k x k conv of :meth:`as_conv` (what energy counts, through
    :meth:`fused_conv_geometry`, and what spike-driven inference runs) at a fraction of its MACs.
    """

    @classmethod
    @torch.no_grad()
    def build(cls, w_in: torch.Tensor, dw: torch.Tensor, dw_bias: torch.Tensor, w_out: torch.Tensor | None,
              bn: nn.BatchNorm2d | None, like: nn.Conv2d) -> SeparableRepConv:
        """From float64 parts: ``w_in [C, I]``, ``dw [C, k, k]``, ``dw_bias [C]``, ``w_out [O, C]`` or None."""
        factory = {"device": like.weight.device, "dtype": like.weight.dtype}
        channels, k = dw.shape[0], dw.shape[-1]
        first = SpikeInputConv2d(w_in.shape[1], channels, 1, bias=False, **factory)
        first.weight.copy_(w_in[:, :, None, None])
        first.spike_driven_levels = getattr(like, "spike_driven_levels", None)
        depthwise = nn.Conv2d(channels, channels, k, padding=(k - 1) // 2, groups=channels, bias=True, **factory)
        depthwise.weight.copy_(dw[:, None])
        depthwise.bias.copy_(dw_bias)
        layers: list[nn.Module] = [first, depthwise]
        if w_out is not None:
            last = nn.Conv2d(channels, w_out.shape[0], 1, bias=False, **factory)
            last.weight.copy_(w_out[:, :, None, None])
            layers.append(fuse_conv_bn(last, bn) if bn is not None else last)
        return cls(*layers)

    def fused_conv_geometry(self) -> ConvGeometry:
        """Energy hook: counted as the one k x k conv on its spike input, as the unfused block."""
        return ConvGeometry(self[0].in_channels, self[-1].out_channels, self[1].kernel_size)

    @torch.no_grad()
    def as_conv(self) -> SpikeInputConv2d:
        """The equivalent dense k x k convolution (composed in float64)."""
        w_in = self[0].weight.double()[:, :, 0, 0]
        dw, bias = self[1].weight.double()[:, 0], self[1].bias.double()
        weight = torch.einsum("cuv,ci->ciuv", dw, w_in)
        if len(self) == 3:
            w_out = self[2].weight.double()[:, :, 0, 0]
            weight = torch.einsum("oc,ciuv->oiuv", w_out, weight)
            bias = w_out @ bias + (self[2].bias.double() if self[2].bias is not None else 0)
        conv = _conv_from(weight, bias, self[0])
        conv.spike_driven_levels = self[0].spike_driven_levels
        return conv


def _conv_from(weight: torch.Tensor, bias: torch.Tensor, like: nn.Conv2d) -> SpikeInputConv2d:
    out_channels, in_channels, k, _ = weight.shape
    conv = SpikeInputConv2d(in_channels, out_channels, k, padding=(k - 1) // 2, bias=True,
                            device=like.weight.device, dtype=like.weight.dtype)
    conv.weight.copy_(weight)
    conv.bias.copy_(bias)
    return conv


# --- spiking blocks ----------------------------------------------------------------------------------------


class SepConv(_Fusable):
    """Inverted separable conv: I-LIF, 1x1 (x2), BN; I-LIF, depthwise k x k, BN; I-LIF, SepRepConv, BN."""

    _FUSE_PAIRS = (("pwconv1", "bn1"), ("dwconv2", "bn2"), ("pwconv3", "bn3"))

    def __init__(self, dim: int, neuron: Neuron, kernel_size: int = 7, expansion_ratio: int = 2) -> None:
        super().__init__()
        hidden = int(expansion_ratio * dim)
        self.pwconv1 = SpikeInputConv2d(dim, hidden, 1, bias=False)
        self.dwconv2 = SpikeInputConv2d(hidden, hidden, kernel_size, padding=(kernel_size - 1) // 2,
                                        groups=hidden, bias=False)
        self.pwconv3 = SepRepConv(hidden, dim)
        self.bn1, self.bn2, self.bn3 = _bn(hidden), _bn(hidden), _bn(dim)
        self.lif1, self.lif2, self.lif3 = neuron(), neuron(), neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _seq(self.lif1(x), self.pwconv1, self.bn1)
        x = _seq(self.lif2(x), self.dwconv2, self.bn2)
        return _seq(self.lif3(x), self.pwconv3, self.bn3)


class MS_StandardConv(_Fusable):
    """I-LIF -> k x k conv (no bias) -> BN."""

    _FUSE_PAIRS = (("conv", "bn"),)

    def __init__(self, c1: int, c2: int, neuron: Neuron, k: int = 1, s: int = 1) -> None:
        super().__init__()
        self.conv = SpikeInputConv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = _bn(c2)
        self.lif = neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _seq(self.lif(x), self.conv, self.bn)


SpikeConv = MS_StandardConv  # used by SPPF and the head; identical layers and keys


class SpikeConvWithoutBN(nn.Module):
    """I-LIF -> conv with bias (the last layer of each head branch)."""

    def __init__(self, c1: int, c2: int, neuron: Neuron, k: int = 1) -> None:
        super().__init__()
        self.conv = SpikeInputConv2d(c1, c2, k, 1, k // 2, bias=True)
        self.lif = neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _seq(self.lif(x), self.conv)


class MS_ConvBlock(_Fusable):
    """SNN-Block with re-parameterisable MLP: x + SepConv(x), then + BN(RepConv(I-LIF(.))) twice (ratio r)."""

    _FUSE_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, dim: int, neuron: Neuron, mlp_ratio: float = 4.0, kernel_size: int = 7) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.Conv = SepConv(dim, neuron, kernel_size)
        self.lif1, self.lif2 = neuron(), neuron()
        self.conv1, self.bn1 = RepConv(dim, hidden), _bn(hidden)
        self.conv2, self.bn2 = RepConv(hidden, dim), _bn(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv(x) + x
        y = _seq(self.lif1(x), self.conv1, self.bn1)
        return x + _seq(self.lif2(y), self.conv2, self.bn2)


class MS_AllConvBlock(nn.Module):
    """SNN-Block with standard-conv MLP: x + SepConv(x), then + two 3x3 MS_StandardConv (ratio r)."""

    def __init__(self, dim: int, neuron: Neuron, mlp_ratio: float = 4.0, kernel_size: int = 7) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.Conv = SepConv(dim, neuron, kernel_size)
        self.conv1 = MS_StandardConv(dim, hidden, neuron, 3)
        self.conv2 = MS_StandardConv(hidden, dim, neuron, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv(x) + x
        return x + self.conv2(self.conv1(x))


class MS_DownSampling(_Fusable):
    """[I-LIF ->] k x k strided conv with bias -> BN. The first layer has no neuron: it encodes the image."""

    _FUSE_PAIRS = (("encode_conv", "encode_bn"),)

    def __init__(self, c1: int, c2: int, k: int, s: int, p: int, first_layer: bool, neuron: Neuron) -> None:
        super().__init__()
        conv_cls = nn.Conv2d if first_layer else SpikeInputConv2d  # the analog image is not a spike count
        self.encode_conv = conv_cls(c1, c2, k, s, p, bias=True)
        self.encode_bn = _bn(c2)
        self.encode_lif = None if first_layer else neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.encode_lif is not None:
            x = self.encode_lif(x)
        return _seq(x, self.encode_conv, self.encode_bn)


class SpikeSPPF(nn.Module):
    """SPPF on pre-neuron values: SpikeConv to c1/2, three chained 5x5 max-pools, concat, SpikeConv."""

    def __init__(self, c1: int, c2: int, neuron: Neuron, k: int = 5) -> None:
        super().__init__()
        hidden = c1 // 2
        self.cv1 = SpikeConv(c1, hidden, neuron, 1)
        self.cv2 = SpikeConv(hidden * 4, c2, neuron, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = _seq(x, self.m)
        y2 = _seq(y1, self.m)
        return self.cv2(torch.cat((x, y1, y2, _seq(y2, self.m)), 2))


class MS_GetT(nn.Module):
    """Static ``[B, C, H, W]`` -> ``[T, B, C, H, W]`` by repetition; ``[T, B, C, H, W]`` passes through."""

    def __init__(self, T: int) -> None:
        super().__init__()
        self.T = T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1) if x.dim() == 4 else x

    def extra_repr(self) -> str:
        return f"T={self.T}"


class SpikeDetect(nn.Module):
    """Spiking YOLOv8 head: per level, SpikeConv 3x3 twice + SpikeConvWithoutBN 1x1, for boxes and classes."""

    def __init__(self, num_classes: int, channels: Sequence[int], neuron: Neuron,
                 strides: Sequence[int] = STRIDES) -> None:
        super().__init__()
        self.nc, self.nl, self.reg_max = num_classes, len(channels), REG_MAX
        self.no = num_classes + 4 * REG_MAX
        self.strides = tuple(strides)
        c2, c3 = max(16, channels[0] // 4, 4 * REG_MAX), max(channels[0], min(num_classes, 100))

        def branch(c_in: int, c_mid: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(SpikeConv(c_in, c_mid, neuron, 3), SpikeConv(c_mid, c_mid, neuron, 3),
                                 SpikeConvWithoutBN(c_mid, c_out, neuron, 1))

        self.cv2 = nn.ModuleList(branch(c, c2, 4 * REG_MAX) for c in channels)
        self.cv3 = nn.ModuleList(branch(c, c3, num_classes) for c in channels)
        self.dfl = DFL(REG_MAX)
        self.bias_init()

    @torch.no_grad()
    def bias_init(self) -> None:
        """The authors' (Ultralytics') prior: box bias 1, class bias log(5 / nc / (640 / stride)^2)."""
        for box, cls, stride in zip(self.cv2, self.cv3, self.strides, strict=True):
            box[-1].conv.bias.fill_(1.0)
            cls[-1].conv.bias.fill_(math.log(5 / self.nc / (BIAS_INIT_IMG_SIZE / stride) ** 2))

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        levels = zip(xs, self.cv2, self.cv3, strict=True)
        return [torch.cat((box(x), cls(x)), 2).mean(0) for x, box, cls in levels]  # mean over T


# --- the model ---------------------------------------------------------------------------------------------

# (depth multiple, width multiple, max channels, MLP ratio of layer 25), from snn_yolov8.yaml; the authors
# use ratio 2 at layer 25 for m and l (the parameter counts of their 47.8M and 68.5M models).
_SCALES: dict[str, tuple[float, float, int, int]] = {
    "tiny": (0.33, 0.125, 1024, 1),  # not the authors': the zoo's small scale, trained on the built-in sets
    "n": (0.33, 0.375, 1024, 1),
    "s": (0.33, 0.5, 1024, 1),
    "m": (0.5, 0.625, 7024, 2),
    "l": (0.5, 0.75, 1024, 2),
}
# I-LIF settings: the COCO mem_update, and the Gen1 modified-SpikingJelly LIF (reference/spikeyolo.md §1).
_NEURONS: dict[str, dict[str, float | bool]] = {
    "coco": {"tau": 4.0 / 3.0, "decay_input": False},
    "gen1": {"tau": 2.0, "decay_input": True},
}
# The layer graph of snn_yolov8.yaml: (from, repeats, kind, args). Channel rules as Ultralytics' parse_model.
_LAYERS: tuple[tuple[int | tuple[int, ...], int, str, tuple], ...] = (
    (-1, 1, "get_t", ()),
    (-1, 1, "down", (128, 7, 4, 2, True)),
    (-1, 3, "all_conv", (4,)),
    (-1, 1, "down", (256, 3, 2, 1, False)),
    (-1, 6, "all_conv", (4,)),
    (-1, 1, "down", (512, 3, 2, 1, False)),
    (-1, 9, "conv_block", (3,)),
    (-1, 1, "down", (1024, 3, 2, 1, False)),
    (-1, 3, "conv_block", (2,)),
    (-1, 1, "sppf", (1024, 5)),
    (-1, 1, "std_conv", (512, 1, 1)),
    (-1, 1, "upsample", ()),
    (-1, 1, "conv_block", (3,)),
    ((-1, 6), 1, "concat", ()),
    (-1, 1, "std_conv", (256, 1, 1)),
    (-1, 1, "upsample", ()),
    (-1, 1, "all_conv", (4,)),
    ((-1, 4), 1, "concat", ()),
    (-1, 1, "std_conv", (256, 1, 1)),
    (-1, 1, "all_conv", (4,)),
    (-1, 1, "std_conv", (256, 3, 2)),
    ((-1, 14), 1, "concat", ()),
    (-1, 1, "conv_block", (3,)),
    (-1, 1, "std_conv", (512, 3, 2)),
    ((-1, 10), 1, "concat", ()),
    (-1, 1, "conv_block", ("p5",)),
    ((19, 22, 25), 1, "detect", ()),
)


def _build_layers(scale: str, num_classes: int, T: int, neuron: Neuron,
                  in_chans: int) -> tuple[nn.ModuleList, list[Source]]:
    depth, width, max_channels, p5_ratio = _SCALES[scale]
    channels: list[int] = []
    layers, sources = [], []
    for src, repeats, kind, args in _LAYERS:
        src_t = (src,) if isinstance(src, int) else src
        c_in = channels[src_t[0]] if channels else in_chans
        repeats = max(round(repeats * depth), 1) if repeats > 1 else repeats
        if kind == "get_t":
            make, c_out = partial(MS_GetT, T), c_in
        elif kind == "down":
            c_out = int(args[0] * width)
            make = partial(MS_DownSampling, c_in, c_out, *args[1:], neuron=neuron)
        elif kind in ("all_conv", "conv_block"):
            ratio = p5_ratio if args[0] == "p5" else args[0]
            block = MS_AllConvBlock if kind == "all_conv" else MS_ConvBlock
            make, c_out = partial(block, c_in, neuron, ratio), c_in
        elif kind == "std_conv":
            c_out = min(int(args[0] * width), int(max_channels * width))
            make = partial(MS_StandardConv, c_in, c_out, neuron, args[1], args[2])
        elif kind == "sppf":
            c_out = math.ceil(min(args[0], max_channels) * width / 8) * 8
            make = partial(SpikeSPPF, c_in, c_out, neuron, args[1])
        elif kind == "upsample":
            make, c_out = partial(nn.Upsample, scale_factor=(1, 2, 2), mode="nearest"), c_in
        elif kind == "concat":
            make, c_out = Concat, sum(channels[i] for i in src_t)
        else:  # detect
            make, c_out = partial(SpikeDetect, num_classes, [channels[i] for i in src_t], neuron), 0
        layers.append(nn.Sequential(*(make() for _ in range(repeats))) if repeats > 1 else make())
        channels.append(c_out)
        sources.append(src)
    return nn.ModuleList(layers), sources


class SpikeYOLO(Detector):
    """SpikeYOLO detector (Luo et al., ECCV 2024), a :class:`~snn_det_zoo.nn.detector.Detector`.

    Args:
        scale: ``'n'``, ``'s'``, ``'m'`` or ``'l'`` (the authors'), or ``'tiny'`` (width 0.125, the zoo's).
        num_classes, class_names: the classes (COCO's 80, Gen1's car and pedestrian).
        T: time steps; a static image is repeated T times (``MS_GetT``).
        D: the I-LIF's maximum integer spike (virtual time steps in spike-driven inference).
        img_size: the input size of the transform (640 for COCO, 320 for Gen1).
        neuron: ``'coco'`` (decay 0.25) or ``'gen1'`` (``tau=2``, ``decay_input=True``).
        score_thresh, iou_thresh, max_detections: NMS settings of ``predict`` (the authors' evaluation:
            0.001, 0.7, 300, multi-label).
        in_chans: image channels.
        modality: ``'image'`` (COCO: Ultralytics' validation letterbox, rectangular) or ``'events'`` (Gen1:
            the long side to ``img_size``, padded to a square), as the authors' validators pre-process.
        transform_args: overrides of the :class:`~snn_det_zoo.nn.transform.LetterboxTransform` settings.
        neuron_backend: the I-LIF implementation (``'torch'``, ``'cupy'``, ``'auto'``).

    ``forward`` returns the raw head maps, a list of three ``[B, 4*16 + num_classes, H/s, W/s]`` for strides
    8, 16, 32, in every mode.

    Example::

        >>> model = SpikeYOLO("n", num_classes=3, img_size=64).eval()
        >>> [m.shape for m in model(torch.rand(1, 3, 64, 64))]
        [torch.Size([1, 67, 8, 8]), torch.Size([1, 67, 4, 4]), torch.Size([1, 67, 2, 2])]
    """

    event_representation = "spikeyolo"
    recipe = ULTRALYTICS_RECIPE

    def __init__(
        self,
        scale: str = "s",
        num_classes: int = 80,
        class_names: str | Sequence[str] | None = None,
        T: int = 1,
        D: int = 4,
        img_size: int | Sequence[int] = 640,
        neuron: str = "coco",
        score_thresh: float = 0.001,
        iou_thresh: float = 0.7,
        max_detections: int = 300,
        in_chans: int = 3,
        modality: str = "image",
        transform_args: dict[str, Any] | None = None,
        neuron_backend: str = "torch",
    ) -> None:
        if scale not in _SCALES:
            raise InvalidArgumentError(f"scale must be one of {sorted(_SCALES)}, got {scale!r}")
        if neuron not in _NEURONS:
            raise InvalidArgumentError(f"neuron must be one of {sorted(_NEURONS)}, got {neuron!r}")
        # Ultralytics' validator: long side resized (ceil), then rect padding for COCO, a square for Gen1.
        padding = "square" if modality == "events" else "rect"
        transform = LetterboxTransform(img_size, max(STRIDES), resize="long_side", rounding="ceil",
                                       padding=padding, **(transform_args or {}))
        super().__init__(num_classes=num_classes, class_names=class_names, T=T, D=D, in_chans=in_chans,
                         modality=modality, transform=transform, score_thresh=score_thresh,
                         iou_thresh=iou_thresh, max_detections=max_detections)
        self.scale, self.neuron_kind = scale, neuron
        make_neuron = partial(ILIFNode, max_level=D, detach_reset=True, step_mode="m", backend=neuron_backend,
                              **_NEURONS[neuron])
        self.model, self._sources = _build_layers(scale, num_classes, T, make_neuron, in_chans)
        self._saved = saved_layers(self._sources)
        self.strides = tuple(int(s) for s in self.model[-1].strides)
        self.fused = False

    def forward_network(self, x: torch.Tensor) -> list[torch.Tensor]:
        return run_layers(self.model, self._sources, x, self._saved)

    def decode(self, maps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw head maps -> ``(boxes [B, A, 4] xyxy in input pixels, class scores [B, A, nc])``."""
        return decode_dfl_levels(maps, self.strides, self.num_classes, integral=self.model[-1].dfl)

    @torch.no_grad()
    def criterion(self, img_size: int) -> V8DetectionLoss:
        """Ultralytics' ``v8DetectionLoss`` with the authors' gains (box 7.5, cls 0.5, dfl 1.5)."""
        return V8DetectionLoss(self.num_classes, self.strides, self.model[-1].reg_max)

    def fuse(self) -> SpikeYOLO:
        """Fold every BatchNorm into its convolution, and RepConv / SepRepConv into separable chains
        (:class:`SeparableRepConv`: the same map as one k x k conv at a fraction of its MACs); eval mode only."""
        if self.training:
            raise InvalidArgumentError("fuse() folds running BatchNorm statistics; call model.eval() first")
        if not self.fused:
            for module in list(self.modules()):
                if isinstance(module, _Fusable):
                    module.fuse()
            self.fused = True
        return self

    def to_spike_driven(self, enabled: bool = True) -> SpikeYOLO:
        """Read every I-LIF output as D binary virtual steps (bias-free accumulation, bias added once).

        Fuses first, and the separable chains become their dense k x k convolutions: every neuron then feeds
        exactly one convolution. ``enabled=False`` goes back
        to integer inputs (the model stays fused).
        """
        if enabled:
            self.fuse()
            # Spike-driven means every op after a neuron is one convolution on binary slots: densify.
            for module in list(self.modules()):
                for name, child in module.named_children():
                    if isinstance(child, SeparableRepConv):
                        setattr(module, name, child.as_conv())
        for module in self.modules():
            if isinstance(module, SpikeInputConv2d):
                module.spike_driven_levels = self.D if enabled else None
        return self

    def extra_repr(self) -> str:
        return (f"scale={self.scale}, num_classes={self.num_classes}, T={self.T}, D={self.D}, "
                f"neuron={self.neuron_kind}, fused={self.fused}")


# Registered variant -> (scale, neuron): the one table of the family's variants (port/ derives from it).
VARIANTS: dict[str, tuple[str, str]] = {
    "spikeyolo_tiny": ("tiny", "coco"),
    "spikeyolo_n": ("n", "coco"),
    "spikeyolo_s": ("s", "coco"),
    "spikeyolo_m": ("m", "coco"),
    "spikeyolo_l": ("l", "coco"),
    "spikeyolo_s_gen1": ("s", "gen1"),
}


def _create_spikeyolo(variant: str, **kwargs: Any) -> SpikeYOLO:
    scale, neuron = VARIANTS[variant]
    # The variant's neuron is a default: an event-trained small model takes the Gen1 neuron (neuron="gen1").
    return SpikeYOLO(scale=scale, neuron=kwargs.pop("neuron", neuron), **kwargs)


@register_model
def spikeyolo_tiny(**kwargs: Any) -> SpikeYOLO:
    """SpikeYOLO at width 0.125 (not a paper model): the authors' architecture and neuron, small enough to
    train on a CPU; trained on the built-in synthetic sets."""
    return _create_spikeyolo("spikeyolo_tiny", **kwargs)


@register_model
def spikeyolo_n(**kwargs: Any) -> SpikeYOLO:
    """SpikeYOLO-n, 13.3M parameters (COCO: T=1, D=4)."""
    return _create_spikeyolo("spikeyolo_n", **kwargs)


@register_model
def spikeyolo_s(**kwargs: Any) -> SpikeYOLO:
    """SpikeYOLO-s, 23.2M parameters (COCO: T=1, D=4)."""
    return _create_spikeyolo("spikeyolo_s", **kwargs)


@register_model
def spikeyolo_m(**kwargs: Any) -> SpikeYOLO:
    """SpikeYOLO-m, 47.8M parameters (COCO: T=1, D=4; layer 25 MLP ratio 2)."""
    return _create_spikeyolo("spikeyolo_m", **kwargs)


@register_model
def spikeyolo_l(**kwargs: Any) -> SpikeYOLO:
    """SpikeYOLO-l, 68.5M parameters, the paper's best COCO model (T=1, D=4; layer 25 MLP ratio 2)."""
    return _create_spikeyolo("spikeyolo_l", **kwargs)


@register_model
def spikeyolo_s_gen1(**kwargs: Any) -> SpikeYOLO:
    """SpikeYOLO-s for Prophesee Gen1 events: the Gen1 neuron (tau 2, decay_input), 2 classes, T=2, D=4."""
    return _create_spikeyolo("spikeyolo_s_gen1", **kwargs)
