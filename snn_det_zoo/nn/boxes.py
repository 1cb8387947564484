"""Class-aware non-maximum suppression, shared by every detector of the zoo.

Boxes are ``[N, 4]`` xyxy float tensors in pixels (format conversions: ``torchvision.ops.box_convert``).
:func:`multiclass_nms` follows the YOLO evaluation recipe (Ultralytics
``non_max_suppression``, which SpikeYOLO and EMS-YOLO evaluate with): a score threshold, optionally one
candidate per (box, class) pair above it ("multi-label"), a cap on candidates before NMS, per-class NMS
through ``torchvision.ops.batched_nms``, and a cap on the kept detections. Unlike Ultralytics there is no
wall-clock time limit, so a slow machine never silently drops images.
"""

from __future__ import annotations

import torch

from ..errors import InvalidArgumentError

__all__ = ["multiclass_nms"]


def _check_boxes(boxes: torch.Tensor, name: str = "boxes") -> None:
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.shape[-1:] != (4,):
        raise InvalidArgumentError(f"{name} must have shape [..., 4], got {tuple(boxes.shape)}")


def _empty_detections(boxes: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "boxes": boxes.new_zeros((0, 4)),
        "scores": boxes.new_zeros((0,)),
        "labels": torch.zeros((0,), dtype=torch.int64, device=boxes.device),
    }


def multiclass_nms(
    boxes: torch.Tensor,
    class_scores: torch.Tensor,
    score_thresh: float = 0.001,
    iou_thresh: float = 0.7,
    max_detections: int = 300,
    multi_label: bool = True,
    max_candidates: int = 30000,
    class_agnostic: bool = False,
) -> dict[str, torch.Tensor]:
    """Class-aware NMS over the candidates of one image.

    Args:
        boxes: ``[N, 4]`` xyxy candidate boxes.
        class_scores: ``[N, C]`` per-class confidences in [0, 1] (for YOLOv5-style heads, objectness
            times class probability).
        score_thresh: keep candidates whose score is strictly above this (Ultralytics' ``conf``).
        iou_thresh: overlap above which a lower-scored box of the same class is suppressed.
        max_detections: at most this many detections are returned, highest scores first.
        multi_label: a box may yield one candidate per class above the threshold (as the COCO
            evaluation of both YOLO families does); otherwise only its best class.
        max_candidates: before NMS keep only this many highest-scored candidates.
        class_agnostic: suppress across classes as well.

    Returns:
        ``{"boxes": [K, 4] xyxy, "scores": [K], "labels": [K] int64}``, sorted by descending score.
    """
    _check_boxes(boxes)
    if boxes.dim() != 2:
        raise InvalidArgumentError(f"boxes must be [N, 4] for one image, got {tuple(boxes.shape)}")
    if class_scores.dim() != 2 or class_scores.shape[0] != boxes.shape[0]:
        raise InvalidArgumentError(f"class_scores must be [N, C] with N={boxes.shape[0]} (as boxes), got "
                                   f"{tuple(class_scores.shape)}")
    if not 0.0 <= iou_thresh <= 1.0:
        raise InvalidArgumentError(f"iou_thresh must lie in [0, 1], got {iou_thresh}")
    if max_detections < 1 or max_candidates < 1:
        raise InvalidArgumentError(f"max_detections and max_candidates must be >= 1, got {max_detections}, "
                                   f"{max_candidates}")
    if multi_label and class_scores.shape[1] > 1:
        box_index, labels = (class_scores > score_thresh).nonzero(as_tuple=True)
        scores = class_scores[box_index, labels]
    else:
        scores, labels = class_scores.max(dim=1)
        box_index = (scores > score_thresh).nonzero(as_tuple=True)[0]
        scores, labels = scores[box_index], labels[box_index]
    if scores.numel() == 0:
        return _empty_detections(boxes)
    if scores.numel() > max_candidates:
        top = scores.topk(max_candidates).indices
        box_index, labels, scores = box_index[top], labels[top], scores[top]
    candidates = boxes[box_index].float()
    groups = torch.zeros_like(labels) if class_agnostic else labels
    from torchvision.ops import batched_nms  # torchvision loads torch._dynamo: imported where it is used

    keep = batched_nms(candidates, scores.float(), groups, iou_thresh)[:max_detections]
    return {"boxes": boxes[box_index[keep]], "scores": scores[keep], "labels": labels[keep].to(torch.int64)}
