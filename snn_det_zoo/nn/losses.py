"""The two YOLO detection losses the families are trained with, written from the authors' algorithms.

- :class:`V8DetectionLoss` (SpikeYOLO, Ultralytics 8.0.197 ``v8DetectionLoss``): a task-aligned assigner
  (:class:`TaskAlignedAssigner`: top 10 anchors inside each box by ``score**0.5 * CIoU**6``, one box per
  anchor), BCE on the class logits against the aligned scores, CIoU and distribution focal loss on the boxes;
  gains box 7.5, cls 0.5, dfl 1.5; the sum times the batch size.
- :class:`YOLOv5Loss` (EMS-YOLO, YOLOv5 ``ComputeLoss``): anchors matched by width/height ratio below
  ``anchor_t``, each target assigned to its cell and up to two neighbouring cells, CIoU box loss, BCE
  objectness against the IoU (``gr = 1``) balanced per level, BCE classes; the sum times the batch size.

Targets arrive per image as xyxy boxes in network-input pixels with class indices (the model's transform
maps a dataset's original-pixel boxes there). Each loss returns ``(total, parts)``: the total to back-propagate
and the detached parts (``box``, ``cls``, ``dfl`` or ``obj``) for logging.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import InvalidArgumentError
from .dfl import dist2bbox, make_anchors

__all__ = ["TaskAlignedAssigner", "V8DetectionLoss", "YOLOv5Loss", "ciou", "padded_targets"]

Targets = Sequence[dict[str, torch.Tensor]]


def ciou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of xyxy boxes ``[..., 4]`` (broadcast), ``[..., 1]``: IoU less the centre-distance and the
    aspect-ratio penalties (Zheng et al. 2020), the aspect weight without gradient as both authors' code has it."""
    b1_x1, b1_y1, b1_x2, b1_y2 = box1.chunk(4, -1)
    b2_x1, b2_y1, b2_x2, b2_y2 = box2.chunk(4, -1)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps
    inter = (torch.minimum(b1_x2, b2_x2) - torch.maximum(b1_x1, b2_x1)).clamp(0) * \
        (torch.minimum(b1_y2, b2_y2) - torch.maximum(b1_y1, b2_y1)).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.maximum(b1_x2, b2_x2) - torch.minimum(b1_x1, b2_x1)  # the enclosing box
    ch = torch.maximum(b1_y2, b2_y2) - torch.minimum(b1_y1, b2_y1)
    diagonal = cw ** 2 + ch ** 2 + eps
    centres = ((b2_x1 + b2_x2 - b1_x1 - b1_x2) ** 2 + (b2_y1 + b2_y2 - b1_y1 - b1_y2) ** 2) / 4
    v = (4 / math.pi ** 2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (centres / diagonal + v * alpha)


def padded_targets(targets: Targets, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image targets -> ``labels [B, M, 1]``, ``boxes [B, M, 4]`` (xyxy) and ``mask [B, M, 1]``, padded to
    the most boxes ``M`` of any image."""
    most = max((len(t["labels"]) for t in targets), default=0)
    labels = torch.zeros(len(targets), most, 1, device=device)
    boxes = torch.zeros(len(targets), most, 4, device=device)
    mask = torch.zeros(len(targets), most, 1, device=device)
    for i, t in enumerate(targets):
        n = len(t["labels"])
        labels[i, :n, 0] = t["labels"].to(device, torch.float32)
        boxes[i, :n] = t["boxes"].to(device, torch.float32).reshape(-1, 4)
        mask[i, :n] = 1.0
    return labels, boxes, mask


class TaskAlignedAssigner:
    """Assign ground-truth boxes to anchors by the task-aligned metric (Feng et al., TOOD 2021).

    For each box: the ``topk`` anchors whose centres lie inside it, ranked by ``score**alpha * CIoU**beta`` of
    the predicted box and the box's class score; an anchor claimed by several boxes keeps the one it overlaps
    most. The target scores are the one-hot class scaled by the anchor's metric normalised so that each box's
    best anchor gets that box's best overlap.
    """

    def __init__(self, num_classes: int, topk: int = 10, alpha: float = 0.5, beta: float = 6.0,
                 eps: float = 1e-9) -> None:
        self.num_classes, self.topk, self.alpha, self.beta, self.eps = num_classes, topk, alpha, beta, eps

    @torch.no_grad()
    def __call__(self, scores: torch.Tensor, boxes: torch.Tensor, anchors: torch.Tensor, gt_labels: torch.Tensor,
                 gt_boxes: torch.Tensor, gt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``scores [B, A, C]`` (sigmoid), ``boxes [B, A, 4]`` and ``anchors [A, 2]`` in pixels; ground truth
        padded as :func:`padded_targets` gives it. Returns ``(target boxes [B, A, 4], target scores [B, A, C],
        foreground mask [B, A])``."""
        batch, num_anchors = scores.shape[:2]
        most = gt_boxes.shape[1]
        if most == 0:
            return torch.zeros_like(boxes), torch.zeros_like(scores), torch.zeros(batch, num_anchors, dtype=torch.bool,
                                                                                  device=scores.device)
        inside = self._anchors_inside(anchors, gt_boxes)  # [B, M, A]
        metric, overlaps = self._metrics(scores, boxes, gt_labels, gt_boxes, inside * gt_mask)
        top = self._top_candidates(metric, gt_mask.expand(-1, -1, self.topk).bool())
        positive = top * inside * gt_mask
        owner, foreground, positive = self._one_owner(positive, overlaps)
        flat_owner = owner + torch.arange(batch, device=scores.device)[:, None] * most
        labels = gt_labels.long().flatten()[flat_owner].clamp(0)  # [B, A]
        target_boxes = gt_boxes.view(-1, 4)[flat_owner]
        target_scores = F.one_hot(labels, self.num_classes).float() * (foreground[..., None] > 0)
        metric = metric * positive
        best_metric = metric.amax(-1, keepdim=True)
        best_overlap = (overlaps * positive).amax(-1, keepdim=True)
        norm = (metric * best_overlap / (best_metric + self.eps)).amax(-2)[..., None]
        return target_boxes, target_scores * norm, foreground.bool()

    def _anchors_inside(self, anchors: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
        batch, most = gt_boxes.shape[:2]
        top_left, bottom_right = gt_boxes.view(-1, 1, 4).chunk(2, 2)
        deltas = torch.cat((anchors[None] - top_left, bottom_right - anchors[None]), dim=2)
        return (deltas.view(batch, most, anchors.shape[0], 4).amin(3) > self.eps).float()

    def _metrics(self, scores: torch.Tensor, boxes: torch.Tensor, gt_labels: torch.Tensor, gt_boxes: torch.Tensor,
                 mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, num_anchors = scores.shape[:2]
        most = gt_boxes.shape[1]
        mask = mask.bool()
        overlaps = torch.zeros(batch, most, num_anchors, dtype=boxes.dtype, device=boxes.device)
        class_scores = torch.zeros_like(overlaps, dtype=scores.dtype)
        image = torch.arange(batch, device=scores.device).view(-1, 1).expand(-1, most)
        class_scores[mask] = scores[image, :, gt_labels.squeeze(-1).long()][mask]  # [B, M, A]
        predicted = boxes.unsqueeze(1).expand(-1, most, -1, -1)[mask]
        truth = gt_boxes.unsqueeze(2).expand(-1, -1, num_anchors, -1)[mask]
        overlaps[mask] = ciou(truth, predicted).squeeze(-1).clamp(0)
        return class_scores.pow(self.alpha) * overlaps.pow(self.beta), overlaps

    def _top_candidates(self, metric: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        _, index = torch.topk(metric, self.topk, dim=-1)
        index = index.masked_fill(~valid, 0)
        counts = torch.zeros(metric.shape, dtype=torch.int8, device=metric.device)
        ones = torch.ones_like(index[:, :, :1], dtype=torch.int8)
        for k in range(self.topk):
            counts.scatter_add_(-1, index[:, :, k:k + 1], ones)
        return counts.masked_fill(counts > 1, 0).to(metric.dtype)  # a padded box counts anchor 0 many times

    @staticmethod
    def _one_owner(positive: torch.Tensor, overlaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                           torch.Tensor]:
        foreground = positive.sum(-2)  # [B, A]
        if foreground.max() > 1:
            shared = (foreground.unsqueeze(1) > 1).expand(-1, positive.shape[1], -1)
            best = torch.zeros_like(positive).scatter_(1, overlaps.argmax(1).unsqueeze(1), 1)
            positive = torch.where(shared, best, positive)
            foreground = positive.sum(-2)
        return positive.argmax(-2), foreground, positive


class V8DetectionLoss:
    """SpikeYOLO's training loss (Ultralytics ``v8DetectionLoss``) on raw head maps ``[B, 4*reg_max + C, H, W]``.

    Args:
        num_classes: classes of the head.
        strides: the head levels' strides.
        reg_max: bins of each side's distance distribution (16).
        gains: ``(box, cls, dfl)``: 7.5, 0.5, 1.5 in the authors' recipe.
    """

    def __init__(self, num_classes: int, strides: Sequence[int], reg_max: int = 16,
                 gains: tuple[float, float, float] = (7.5, 0.5, 1.5)) -> None:
        self.num_classes, self.strides, self.reg_max, self.gains = num_classes, tuple(strides), reg_max, gains
        self.assigner = TaskAlignedAssigner(num_classes)

    def _decode(self, anchors: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
        batch, num_anchors, _ = distances.shape
        bins = torch.arange(self.reg_max, dtype=distances.dtype, device=distances.device)
        expected = distances.view(batch, num_anchors, 4, self.reg_max).softmax(3).matmul(bins)
        return dist2bbox(expected, anchors, xywh=False)

    def _dfl(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Distribution focal loss: cross-entropy to the two bins around each (fractional) distance."""
        left = target.long()
        right = left + 1
        weight_left = right - target
        weight_right = 1 - weight_left
        loss_left = F.cross_entropy(logits, left.view(-1), reduction="none").view(left.shape) * weight_left
        loss_right = F.cross_entropy(logits, right.view(-1), reduction="none").view(left.shape) * weight_right
        return (loss_left + loss_right).mean(-1, keepdim=True)

    def __call__(self, maps: Sequence[torch.Tensor], targets: Targets,
                 input_size: tuple[int, int] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of head ``maps`` against ``targets`` (per image ``boxes`` xyxy in input pixels and
        ``labels``); ``input_size`` is not needed (the maps and strides give the geometry)."""
        expected = 4 * self.reg_max + self.num_classes
        if any(m.dim() != 4 or m.shape[1] != expected for m in maps) or len(maps) != len(self.strides):
            raise InvalidArgumentError(f"the loss takes {len(self.strides)} head maps [B, {expected}, H, W]")
        batch = maps[0].shape[0]
        if len(targets) != batch:
            raise InvalidArgumentError(f"{len(targets)} targets for a batch of {batch}")
        flat = torch.cat([m.flatten(2) for m in maps], 2)
        distances, logits = flat.split((4 * self.reg_max, self.num_classes), 1)
        logits, distances = logits.permute(0, 2, 1).contiguous(), distances.permute(0, 2, 1).contiguous()
        anchors, stride = make_anchors([tuple(m.shape[-2:]) for m in maps], self.strides, device=flat.device,
                                       dtype=flat.dtype)
        gt_labels, gt_boxes, gt_mask = padded_targets(targets, flat.device)
        boxes = self._decode(anchors, distances)  # grid units
        target_boxes, target_scores, foreground = self.assigner(
            logits.detach().sigmoid(), (boxes.detach() * stride).to(gt_boxes.dtype), anchors * stride, gt_labels,
            gt_boxes, gt_mask)
        score_sum = max(target_scores.sum(), 1)
        loss_cls = F.binary_cross_entropy_with_logits(logits, target_scores.to(logits.dtype), reduction="none")
        loss_cls = loss_cls.sum() / score_sum
        loss_box = loss_dfl = flat.new_zeros(())
        if foreground.any():
            target_boxes = target_boxes / stride
            weight = target_scores.sum(-1)[foreground].unsqueeze(-1)
            iou = ciou(boxes[foreground], target_boxes[foreground])
            loss_box = ((1.0 - iou) * weight).sum() / score_sum
            top_left, bottom_right = target_boxes.chunk(2, -1)
            ltrb = torch.cat((anchors - top_left, bottom_right - anchors), -1).clamp(0, self.reg_max - 1 - 0.01)
            dfl = self._dfl(distances[foreground].view(-1, self.reg_max), ltrb[foreground])
            loss_dfl = (dfl * weight).sum() / score_sum
        box, cls, dfl_gain = self.gains
        parts = torch.stack([loss_box * box, loss_cls * cls, loss_dfl * dfl_gain])
        return parts.sum() * batch, {"box": parts[0].detach(), "cls": parts[1].detach(), "dfl": parts[2].detach()}


class YOLOv5Loss:
    """EMS-YOLO's training loss (YOLOv5 ``ComputeLoss``) on raw outputs ``[B, na, H, W, 5 + C]`` per level.

    Args:
        num_classes: classes of the head.
        anchors: ``[levels, na, 2]`` in grid units (the head's buffer).
        strides: the levels' strides.
        img_size: the training input size, which scales the objectness gain as in YOLOv5.
        box, obj, cls: the hyper-parameter gains before YOLOv5's scaling by levels, classes and image size
            (0.05, 1.0, 0.5 in ``hyp.scratch.yaml``).
        anchor_t: the largest width or height ratio of a box to an anchor that matches (4.0).
    """

    _OFFSETS = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))  # self and the 4 neighbours
    _G = 0.5  # how close to a cell border a target must be for the neighbouring cell to take it too

    def __init__(self, num_classes: int, anchors: torch.Tensor, strides: Sequence[int], img_size: int,
                 box: float = 0.05, obj: float = 1.0, cls: float = 0.5, anchor_t: float = 4.0) -> None:
        levels = anchors.shape[0]
        self.num_classes, self.anchors, self.strides, self.anchor_t = num_classes, anchors, tuple(strides), anchor_t
        # YOLOv5's objectness weights: P3-P5 for three levels, else P3-P7 from the first (P4, P5 for EMS-YOLO).
        self.balance = ((4.0, 1.0, 0.4) if levels == 3 else (4.0, 1.0, 0.25, 0.06, 0.02))[:levels]
        # YOLOv5's train.py scales the gains to the number of levels, of classes and to the image size.
        self.box = box * 3 / levels
        self.cls = cls * num_classes / 80 * 3 / levels
        self.obj = obj * (img_size / 640) ** 2 * 3 / levels

    def _build_targets(self, raw: Sequence[torch.Tensor], targets: torch.Tensor):
        """``targets [N, 6]`` (image, class, x, y, w, h in grid-normalised units 0..1) -> per level: classes,
        boxes (cell offset and size in grid units), indices (image, anchor, row, column) and anchors."""
        na, nt = self.anchors.shape[1], targets.shape[0]
        device = targets.device
        classes, boxes, indices, anchors_out = [], [], [], []
        gain = torch.ones(7, device=device)
        anchor_index = torch.arange(na, device=device).float().view(na, 1).repeat(1, nt)
        targets = torch.cat((targets.repeat(na, 1, 1), anchor_index[:, :, None]), 2)
        offsets = torch.tensor(self._OFFSETS, device=device) * self._G
        for level, out in enumerate(raw):
            anchors = self.anchors[level].to(device)
            ny, nx = out.shape[2], out.shape[3]
            gain[2:6] = torch.tensor([nx, ny, nx, ny], device=device, dtype=torch.float32)
            t = targets * gain
            if nt:
                ratio = t[:, :, 4:6] / anchors[:, None]
                t = t[torch.max(ratio, 1 / ratio).max(2)[0] < self.anchor_t]
                gxy = t[:, 2:4]
                gxi = gain[[2, 3]] - gxy
                j, k = ((gxy % 1 < self._G) & (gxy > 1)).T
                left, m = ((gxi % 1 < self._G) & (gxi > 1)).T
                take = torch.stack((torch.ones_like(j), j, k, left, m))
                t = t.repeat((5, 1, 1))[take]
                cell_offsets = (torch.zeros_like(gxy)[None] + offsets[:, None])[take]
            else:
                t = targets[0]
                cell_offsets = torch.zeros_like(t[:, 2:4])
            image, cls = t[:, :2].long().T
            gxy, gwh = t[:, 2:4], t[:, 4:6]
            gij = (gxy - cell_offsets).long()
            gi, gj = gij.T
            a = t[:, 6].long()
            indices.append((image, a, gj.clamp_(0, ny - 1), gi.clamp_(0, nx - 1)))
            boxes.append(torch.cat((gxy - gij, gwh), 1))
            anchors_out.append(anchors[a])
            classes.append(cls)
        return classes, boxes, indices, anchors_out

    def __call__(self, raw: Sequence[torch.Tensor], targets: Targets,
                 input_size: tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of the head outputs ``raw`` against ``targets`` (per image ``boxes`` xyxy in input
        pixels and ``labels``) for inputs of ``input_size`` ``(height, width)``."""
        if len(raw) != self.anchors.shape[0]:
            raise InvalidArgumentError(f"the loss takes {self.anchors.shape[0]} head outputs, got {len(raw)}")
        batch = raw[0].shape[0]
        if len(targets) != batch:
            raise InvalidArgumentError(f"{len(targets)} targets for a batch of {batch}")
        device = raw[0].device
        height, width = input_size
        rows = []
        for i, t in enumerate(targets):  # xyxy input pixels -> normalised xywh, as YOLOv5's loader gives them
            xyxy = t["boxes"].to(device, torch.float32).reshape(-1, 4)
            xywh = torch.cat(((xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]), 1)
            xywh = xywh / torch.tensor([width, height, width, height], device=device, dtype=torch.float32)
            rows.append(torch.cat((torch.full((len(xyxy), 1), float(i), device=device),
                                   t["labels"].to(device, torch.float32).view(-1, 1), xywh), 1))
        flat = torch.cat(rows) if rows else torch.zeros(0, 6, device=device)
        classes, boxes, indices, anchors = self._build_targets(raw, flat)
        loss_box, loss_obj, loss_cls = (torch.zeros((), device=device) for _ in range(3))
        for level, out in enumerate(raw):
            image, a, gj, gi = indices[level]
            target_obj = torch.zeros_like(out[..., 0])
            n = image.shape[0]
            if n:
                chosen = out[image, a, gj, gi]
                xy = chosen[:, :2].sigmoid() * 2 - 0.5
                wh = (chosen[:, 2:4].sigmoid() * 2) ** 2 * anchors[level]
                predicted = torch.cat((xy - wh / 2, xy + wh / 2), 1)
                tb = boxes[level]
                truth = torch.cat((tb[:, :2] - tb[:, 2:] / 2, tb[:, :2] + tb[:, 2:] / 2), 1)
                iou = ciou(predicted, truth).squeeze(-1)
                loss_box = loss_box + (1.0 - iou).mean()
                target_obj[image, a, gj, gi] = iou.detach().clamp(0).to(target_obj.dtype)  # gr = 1
                if self.num_classes > 1:
                    wanted = torch.zeros_like(chosen[:, 5:])
                    wanted[range(n), classes[level]] = 1.0
                    loss_cls = loss_cls + F.binary_cross_entropy_with_logits(chosen[:, 5:], wanted)
            loss_obj = loss_obj + F.binary_cross_entropy_with_logits(out[..., 4], target_obj) * self.balance[level]
        parts = torch.stack([loss_box * self.box, loss_obj * self.obj, loss_cls * self.cls])
        return parts.sum() * batch, {"box": parts[0].detach(), "obj": parts[1].detach(), "cls": parts[2].detach()}
