"""The one detector contract of the zoo: every family's model is a :class:`Detector`.

The base owns what is the same for every family: the settings (classes, time steps, thresholds), the input
checks, the neuron reset at every forward, and :meth:`Detector.predict` (eval and no-grad with the mode
restored, the model's transform, the family's :meth:`Detector.decode`, the shared NMS, boxes back to
original pixels). A family writes its network (:meth:`Detector.forward_network`) and its ``decode``, nothing
else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from spikingjelly.activation_based import functional
from torch import nn

from ..constants import class_names as resolve_class_names
from ..errors import InvalidArgumentError
from .boxes import multiclass_nms
from .mapping import BoxMapping
from .recipe import TrainRecipe
from .transform import LetterboxTransform

__all__ = ["MODALITIES", "Detector"]

MODALITIES = ("image", "events")
Detections = list[dict[str, torch.Tensor]]
Loss = Callable[[list[torch.Tensor], Sequence[dict[str, torch.Tensor]], tuple[int, int]],
                tuple[torch.Tensor, dict[str, torch.Tensor]]]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
    return value


def _fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise InvalidArgumentError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


class Detector(nn.Module):
    """Base of every detector: settings, input checks, neuron reset, and one ``predict``.

    Args:
        num_classes: number of classes.
        class_names: a named list (``"coco80"``, ``"gen1"``, ``"shapes"``), the names, or ``None``
            (``class0``...); see :func:`snn_det_zoo.constants.class_names`.
        T: time steps: a static image is shown T times; event input must have T frames.
        D: the largest integer spike (I-LIF's virtual time steps), ``None`` for binary spikes.
        in_chans: input channels.
        modality: ``"image"`` (``forward`` takes ``[B, C, H, W]`` or ``[T, B, C, H, W]``) or ``"events"``
            (``[T, B, C, H, W]`` only).
        transform: the authors' pre-processing (:class:`~.transform.LetterboxTransform`).
        score_thresh, iou_thresh, max_detections: the NMS settings of :meth:`predict` (per call overridable).

    Subclasses set :attr:`strides` (the head levels' strides) and implement :meth:`forward_network` and
    :meth:`decode`; :attr:`multi_label` says whether a box may yield one detection per class above the
    threshold (both YOLO families' COCO evaluation does). :attr:`event_representation` names the Gen1
    representation its authors feed (:data:`snn_det_zoo.data.gen1_dataset.REPRESENTATIONS`).
    """

    multi_label: bool = True
    event_representation: str | None = None
    fused: bool = False  # whether fuse() folded BatchNorm and re-parameterisable blocks for inference
    recipe: TrainRecipe | None = None  # how the family's authors train it (snn_det_zoo.train)

    def __init__(
        self,
        *,
        num_classes: int,
        class_names: str | Sequence[str] | None,
        T: int,
        D: int | None,
        in_chans: int,
        modality: str,
        transform: LetterboxTransform,
        score_thresh: float,
        iou_thresh: float,
        max_detections: int,
    ) -> None:
        super().__init__()
        self.num_classes = _positive_int("num_classes", num_classes)
        self.class_names = resolve_class_names(class_names, num_classes)
        self.T = _positive_int("T", T)
        self.D = None if D is None else _positive_int("D", D)
        self.in_chans = _positive_int("in_chans", in_chans)
        if modality not in MODALITIES:
            raise InvalidArgumentError(f"modality must be one of {MODALITIES}, got {modality!r}")
        self.modality = modality
        self.score_thresh = _fraction("score_thresh", score_thresh)
        self.iou_thresh = _fraction("iou_thresh", iou_thresh)
        self.max_detections = _positive_int("max_detections", max_detections)
        self.transform = transform
        self.strides: tuple[int, ...] = ()

    # -- the family's part ------------------------------------------------------------------------------------
    def forward_network(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The network on checked input ``[B, C, H, W]`` or ``[T, B, C, H, W]``: raw head outputs."""
        raise NotImplementedError

    def decode(self, raw: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw head outputs -> ``(boxes [B, A, 4] xyxy in input pixels, class scores [B, A, num_classes])``."""
        raise NotImplementedError

    def criterion(self, img_size: int) -> Loss:
        """The family's training loss for inputs of side ``img_size``: ``loss(raw, targets, input_size)``
        -> ``(total, parts)``, with per-image targets (``boxes`` xyxy in input pixels, ``labels``)."""
        raise NotImplementedError(f"{type(self).__name__} has no training loss")

    def fuse(self) -> Detector:
        """Fold what the family can fold for inference (BatchNorm, re-parameterisable blocks); by default
        there is nothing to fold and the model is returned as it is."""
        return self

    # -- the contract -----------------------------------------------------------------------------------------
    def check_input(self, x: object) -> None:
        """Refuse what the network cannot take, with a message that says what it takes."""
        c, shapes = self.in_chans, "[T, B, C, H, W]" if self.modality == "events" else "[B, C, H, W] or [T, B, C, H, W]"
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = f"dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise InvalidArgumentError(f"{type(self).__name__} takes a float tensor {shapes}, got {got}")
        if x.dim() not in ((5,) if self.modality == "events" else (4, 5)) or x.shape[-3] != c:
            raise InvalidArgumentError(f"{type(self).__name__} takes {shapes} input with C={c}, got shape "
                                       f"{tuple(x.shape)}")
        if x.dim() == 5 and x.shape[0] != self.T:
            raise InvalidArgumentError(f"the input has T={x.shape[0]} steps but the model was built with "
                                       f"T={self.T}")
        grid = max(self.strides)
        if x.shape[-2] % grid or x.shape[-1] % grid:
            raise InvalidArgumentError(f"input height and width must be multiples of {grid}, got "
                                       f"{tuple(x.shape[-2:])}; predict() letterboxes inputs of any size")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Raw head outputs of ``x``; neuron states start from rest, so equal inputs give equal outputs."""
        self.check_input(x)
        functional.reset_net(self)
        try:
            return self.forward_network(x)
        finally:
            functional.reset_net(self)  # no state outlives a call, as in the authors' code

    def _inputs(self, inputs: Sequence[torch.Tensor] | torch.Tensor) -> list[torch.Tensor]:
        if isinstance(inputs, torch.Tensor):  # a batch: [B, C, H, W], or [T, B, C, H, W] frames
            if inputs.dim() == 4:
                return list(inputs)
            if inputs.dim() == 5:
                return list(inputs.transpose(0, 1))
            raise InvalidArgumentError(f"a batch must be [B, C, H, W] or [T, B, C, H, W], got "
                                       f"{tuple(inputs.shape)}")
        items = list(inputs)
        frame_dims = 4 if self.modality == "events" else None
        for i, item in enumerate(items):
            if frame_dims is not None and isinstance(item, torch.Tensor) and item.dim() != frame_dims:
                raise InvalidArgumentError(f"input {i}: an event model takes frame stacks [T, C, H, W], got "
                                           f"{tuple(item.shape)}")
        return items

    @torch.no_grad()
    def predict(
        self,
        inputs: Sequence[torch.Tensor] | torch.Tensor,
        score_thresh: float | None = None,
        iou_thresh: float | None = None,
        max_detections: int | None = None,
    ) -> Detections:
        """Detections per input: ``{"boxes" [K, 4] xyxy in the input's own pixels, "scores" [K], "labels" [K]}``.

        ``inputs``: a list of images ``[C, H, W]`` or frame stacks ``[T, C, H, W]`` (uint8, or float in
        [0, 1]) of any sizes, or a batch tensor. Each is pre-processed by the model's transform; inputs that
        come out the same size run as one batch. The model runs in eval mode without gradients and its mode
        is restored. The three thresholds default to the model's settings.
        """
        score = self.score_thresh if score_thresh is None else _fraction("score_thresh", score_thresh)
        iou = self.iou_thresh if iou_thresh is None else _fraction("iou_thresh", iou_thresh)
        limit = self.max_detections if max_detections is None else _positive_int("max_detections", max_detections)
        items = self._inputs(inputs)
        tensors, mappings = self.transform(items)
        reference = next(self.parameters())  # inputs take the model's device and dtype (float64 in tests)
        was_training = self.training
        self.eval()
        try:
            results: list[dict[str, torch.Tensor] | None] = [None] * len(items)
            for shape, indices in _groups(tensors).items():
                batch = torch.stack([tensors[i] for i in indices], dim=1 if len(shape) == 4 else 0)
                batch = batch.to(device=reference.device, dtype=reference.dtype)
                found = self.postprocess(self(batch), [mappings[i] for i in indices], score, iou, limit)
                for i, det in zip(indices, found, strict=True):
                    results[i] = det
        finally:
            self.train(was_training)
        return results  # type: ignore[return-value]

    def postprocess(self, raw: list[torch.Tensor], mappings: Sequence[BoxMapping], score_thresh: float,
                    iou_thresh: float, max_detections: int) -> Detections:
        """A batch's raw head outputs -> one ``{"boxes", "scores", "labels"}`` per input, boxes in the input's
        own pixels: the family's ``decode``, the shared NMS and the inverse of each input's box mapping (what
        :meth:`predict` does after the forward, for callers that run the network themselves)."""
        boxes, scores = self.decode(raw)
        out = []
        for b, s, mapping in zip(boxes, scores, mappings, strict=True):
            det = multiclass_nms(b, s, score_thresh, iou_thresh, max_detections, self.multi_label)
            out.append({**det, "boxes": mapping.to_original(det["boxes"])})
        return out

    def input_mappings(self, sizes: Sequence[tuple[int, int]]) -> list[BoxMapping]:
        """The box mapping the transform gives inputs of these ``(height, width)`` sizes (for training)."""
        return [self.transform.mapping(h, w) for h, w in sizes]


def _groups(tensors: Sequence[torch.Tensor]) -> dict[tuple[int, ...], list[int]]:
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(tuple(t.shape), []).append(i)
    return groups
