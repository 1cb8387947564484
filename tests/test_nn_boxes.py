"""Shared detection helpers: class-aware NMS, DFL decoding."""

import pytest
import torch

from snn_det_zoo.nn import DFL, decode_dfl_levels, dist2bbox, make_anchors, multiclass_nms


def _random_boxes(n: int, size: float = 100.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 3 + 1
    return torch.cat((xy, xy + wh), 1)


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    lt, rb = torch.maximum(a[:2], b[:2]), torch.minimum(a[2:], b[2:])
    inter = (rb - lt).clamp(min=0).prod()
    area = (a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod()
    return float(inter / (area - inter))


def _greedy_nms(boxes, scores, labels, iou_thresh):
    """An independent, slow reference: greedy per-class suppression in descending score order."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    kept: list[int] = []
    for i in order:
        if all(labels[j] != labels[i] or _iou(boxes[i], boxes[j]) <= iou_thresh for j in kept):
            kept.append(i)
    return kept


def test_nms_suppresses_within_a_class_only():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    scores = torch.tensor([[0.9, 0.0], [0.8, 0.7], [0.0, 0.6]])
    out = multiclass_nms(boxes, scores, score_thresh=0.1, iou_thresh=0.5)
    # box 1 loses class 0 to box 0, but its class-1 candidate (multi-label) survives.
    assert out["labels"].tolist() == [0, 1, 1]
    assert torch.allclose(out["scores"], torch.tensor([0.9, 0.7, 0.6]))
    assert torch.equal(out["boxes"], boxes[[0, 1, 2]])
    single = multiclass_nms(boxes, scores, score_thresh=0.1, iou_thresh=0.5, multi_label=False)
    assert single["labels"].tolist() == [0, 1]  # box 1's best class is 0 and is suppressed
    agnostic = multiclass_nms(boxes, scores, score_thresh=0.1, iou_thresh=0.5, class_agnostic=True)
    assert agnostic["scores"].tolist() == pytest.approx([0.9, 0.6])


def test_nms_matches_greedy_reference_on_random_candidates():
    boxes = _random_boxes(120, seed=1)
    scores = torch.rand(120, 3, generator=torch.Generator().manual_seed(2))
    out = multiclass_nms(boxes, scores, score_thresh=0.3, iou_thresh=0.45, max_detections=1000)
    idx, lab = (scores > 0.3).nonzero(as_tuple=True)
    kept = _greedy_nms(boxes[idx], scores[idx, lab], lab, 0.45)
    expected = sorted((float(scores[idx[k], lab[k]]), int(lab[k])) for k in kept)
    got = sorted(zip(out["scores"].tolist(), out["labels"].tolist(), strict=True))
    assert got == expected  # the same float32 scores, taken from one tensor: exact
    assert torch.all(out["scores"][:-1] >= out["scores"][1:])  # sorted by score


def test_nms_thresholds_and_caps():
    boxes = _random_boxes(40, size=1000, seed=3)  # far apart: little suppression
    scores = torch.linspace(0.0, 1.0, 40).unsqueeze(1)
    out = multiclass_nms(boxes, scores, score_thresh=0.5, iou_thresh=0.7)
    assert (out["scores"] > 0.5).all()
    capped = multiclass_nms(boxes, scores, score_thresh=0.0, iou_thresh=1.0, max_detections=5)
    assert capped["scores"].tolist() == pytest.approx(torch.linspace(0, 1, 40)[-5:].flip(0).tolist())
    pre = multiclass_nms(boxes, scores, score_thresh=0.0, iou_thresh=1.0, max_candidates=3)
    assert len(pre["scores"]) == 3
    empty = multiclass_nms(boxes, scores, score_thresh=2.0)
    assert empty["boxes"].shape == (0, 4) and empty["labels"].dtype == torch.int64
    with pytest.raises(ValueError, match="class_scores"):
        multiclass_nms(boxes, torch.rand(39, 2))


def test_make_anchors_and_dist2bbox():
    anchors, strides = make_anchors([(2, 3), (1, 1)], [8, 16])
    assert anchors[:3].tolist() == [[0.5, 0.5], [1.5, 0.5], [2.5, 0.5]]
    assert anchors[-1].tolist() == [0.5, 0.5] and strides.squeeze(1).tolist() == [8] * 6 + [16]
    box = dist2bbox(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([10.0, 10.0]))
    assert box.tolist() == [9.0, 8.0, 13.0, 14.0]
    assert dist2bbox(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([10.0, 10.0]), xywh=True).tolist() == [
        11.0, 11.0, 4.0, 6.0]


def test_decode_dfl_levels_recovers_one_hot_distances():
    reg_max, nc = 16, 2
    maps = [torch.full((1, 4 * reg_max + nc, 2, 2), -50.0), torch.full((1, 4 * reg_max + nc, 1, 1), -50.0)]
    # cell (0, 1) of level 0 (stride 8): distances l,t,r,b = 1, 2, 3, 4 bins
    for side, dist in enumerate((1, 2, 3, 4)):
        maps[0][0, side * reg_max + dist, 0, 1] = 50.0
    maps[0][0, 4 * reg_max + 1, 0, 1] = 10.0
    boxes, scores = decode_dfl_levels(maps, [8, 16], nc, DFL(reg_max))
    assert boxes.shape == (1, 5, 4) and scores.shape == (1, 5, 2)
    # anchor centre (1.5, 0.5) * 8 = (12, 4)
    assert torch.allclose(boxes[0, 1], torch.tensor([12 - 8.0, 4 - 16.0, 12 + 24.0, 4 + 32.0]), atol=1e-3)
    assert scores[0, 1, 1] > 0.99 and scores[0, 1, 0] < 0.01
