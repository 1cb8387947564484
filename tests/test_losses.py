"""The two detection losses: CIoU, the task-aligned assigner, the v8 loss and YOLOv5's target building."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import complete_box_iou

from snn_det_zoo.errors import InvalidArgumentError
from snn_det_zoo.nn.dfl import make_anchors
from snn_det_zoo.nn.losses import TaskAlignedAssigner, V8DetectionLoss, YOLOv5Loss, ciou, padded_targets

STRIDES = (8, 16, 32)
NC = 5
REG_MAX = 16


def _random_boxes(n: int, generator: torch.Generator, size: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * size
    wh = torch.rand(n, 2, generator=generator, dtype=torch.float64) * size / 2 + 1
    return torch.cat((xy, xy + wh), 1)


def test_ciou_is_torchvisions_complete_iou_and_one_for_equal_boxes():
    g = torch.Generator().manual_seed(0)
    a, b = _random_boxes(200, g), _random_boxes(200, g)
    ours = ciou(a, b).squeeze(-1)
    reference = complete_box_iou(a, b).diagonal()
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)  # eps placements differ
    torch.testing.assert_close(ciou(a, a).squeeze(-1), torch.ones(200, dtype=torch.float64), rtol=0, atol=1e-6)
    far = a + 1000.0
    assert (ciou(a, far) < 0).all()  # no overlap: the centre-distance penalty takes it below 0


def _one_box_case(box: list[float], label: int = 2, img: int = 128):
    shapes = [(img // s, img // s) for s in STRIDES]
    anchors, stride = make_anchors(shapes, STRIDES, device=torch.device("cpu"), dtype=torch.float64)
    targets = [{"boxes": torch.tensor([box], dtype=torch.float64), "labels": torch.tensor([label])}]
    return anchors, stride, targets


def test_assigner_takes_at_most_topk_anchors_inside_the_box_and_scores_its_class():
    anchors, stride, targets = _one_box_case([20.0, 30.0, 84.0, 90.0])
    points = anchors * stride
    num_anchors = points.shape[0]
    scores = torch.full((1, num_anchors, NC), 0.5, dtype=torch.float64)
    boxes = targets[0]["boxes"].expand(1, num_anchors, 4).clone()  # every anchor predicts the box exactly
    labels, gt_boxes, mask = padded_targets(targets, torch.device("cpu"))
    assigner = TaskAlignedAssigner(NC, topk=10)
    target_boxes, target_scores, foreground = assigner(scores, boxes, points, labels.double(), gt_boxes.double(),
                                                       mask.double())
    inside = ((points > gt_boxes[0, 0, :2]) & (points < gt_boxes[0, 0, 2:])).all(1)
    assert 0 < foreground.sum() <= 10 and not (foreground[0] & ~inside).any()
    assert torch.equal(target_boxes[0, foreground[0]], gt_boxes[0, 0].expand(int(foreground.sum()), 4).double())
    assert (target_scores[..., [0, 1, 3, 4]] == 0).all() and (target_scores[0, ~foreground[0]] == 0).all()
    # Perfect boxes: the best anchor's score is the box's best overlap, 1.
    assert target_scores[0, :, 2].max().item() == pytest.approx(1.0, abs=1e-6)


def test_assigner_gives_an_anchor_claimed_twice_to_the_box_it_overlaps_most():
    anchors, stride, _ = _one_box_case([0.0, 0.0, 1.0, 1.0])
    points = anchors * stride
    big, small = [8.0, 8.0, 120.0, 120.0], [40.0, 40.0, 72.0, 72.0]
    targets = [{"boxes": torch.tensor([big, small], dtype=torch.float64), "labels": torch.tensor([0, 1])}]
    labels, gt_boxes, mask = padded_targets(targets, torch.device("cpu"))
    predicted = torch.tensor(small, dtype=torch.float64).expand(1, points.shape[0], 4).clone()
    scores = torch.full((1, points.shape[0], NC), 0.5, dtype=torch.float64)
    _, target_scores, foreground = TaskAlignedAssigner(NC, topk=40)(scores, predicted, points, labels.double(),
                                                                   gt_boxes.double(), mask.double())
    centre = ((points - 56.0).abs() < 4).all(1)  # anchors inside both boxes, where the small one fits best
    assert foreground[0, centre].all()
    assert (target_scores[0, centre, 1] > 0).all() and (target_scores[0, centre, 0] == 0).all()


def _exact_maps(box: torch.Tensor, img: int = 128, batch: int = 1) -> list[torch.Tensor]:
    """Head maps whose DFL distributions put the two-bin weights of the exact distances to ``box`` at
    every anchor (so every anchor inside predicts ``box`` exactly) and class logits of 0."""
    maps = []
    for s in STRIDES:
        n = img // s
        centres = (torch.arange(n, dtype=torch.float64) + 0.5)
        ys, xs = torch.meshgrid(centres, centres, indexing="ij")
        x1, y1, x2, y2 = (box / s).tolist()
        distances = torch.stack((xs - x1, ys - y1, x2 - xs, y2 - ys)).clamp(0, REG_MAX - 1 - 0.01)  # [4, n, n]
        left = distances.floor()
        w_right = distances - left
        logits = torch.full((4, REG_MAX, n, n), -60.0, dtype=torch.float64)
        logits.scatter_(1, left.long().unsqueeze(1), (1 - w_right).clamp_min(1e-30).log().unsqueeze(1))
        logits.scatter_(1, (left.long() + 1).unsqueeze(1), w_right.clamp_min(1e-30).log().unsqueeze(1))
        cls = torch.zeros(NC, n, n, dtype=torch.float64)
        maps.append(torch.cat((logits.reshape(4 * REG_MAX, n, n), cls)).unsqueeze(0).repeat(batch, 1, 1, 1))
    return maps


def test_v8_loss_is_zero_for_exact_boxes_and_grows_when_they_move():
    box = torch.tensor([24.0, 36.0, 88.0, 92.0], dtype=torch.float64)
    loss = V8DetectionLoss(NC, STRIDES)
    targets = [{"boxes": box[None], "labels": torch.tensor([3])}]
    _, parts = loss(_exact_maps(box), targets)
    assert parts["box"].item() == pytest.approx(0.0, abs=1e-6)
    shifted = V8DetectionLoss(NC, STRIDES)(_exact_maps(box + 6.0), targets)[1]
    assert shifted["box"] > 0.05 and shifted["dfl"] > parts["dfl"]


def test_v8_loss_total_is_the_batch_times_the_parts_and_has_gradients():
    torch.manual_seed(0)
    maps = [torch.randn(1, 4 * REG_MAX + NC, 128 // s, 128 // s, dtype=torch.float64).repeat(2, 1, 1, 1)
            .requires_grad_() for s in STRIDES]  # two equal images
    box = torch.tensor([[10.0, 12.0, 60.0, 70.0], [70.0, 20.0, 120.0, 50.0]], dtype=torch.float64)
    targets = [{"boxes": box, "labels": torch.tensor([0, 4])}] * 2
    total, parts = V8DetectionLoss(NC, STRIDES)(maps, targets)
    assert total.item() == pytest.approx(2 * sum(p.item() for p in parts.values()))
    single = V8DetectionLoss(NC, STRIDES)([m[:1] for m in maps], targets[:1])[0]
    assert total.item() == pytest.approx(2 * single.item(), rel=1e-9)  # twice the loss of one
    total.backward()
    assert all(torch.isfinite(m.grad).all() and m.grad.abs().sum() > 0 for m in maps)


def test_v8_loss_without_boxes_is_only_the_class_term():
    maps = [torch.zeros(1, 4 * REG_MAX + NC, 128 // s, 128 // s) for s in STRIDES]
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    _, parts = V8DetectionLoss(NC, STRIDES)(maps, empty)
    assert parts["box"] == 0 and parts["dfl"] == 0
    assert parts["cls"].item() == pytest.approx(0.5 * math.log(2) * sum((128 // s) ** 2 for s in STRIDES) * NC)


def test_losses_refuse_maps_and_targets_that_do_not_fit():
    loss = V8DetectionLoss(NC, STRIDES)
    maps = [torch.zeros(1, 4 * REG_MAX + NC, 128 // s, 128 // s) for s in STRIDES]
    one = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    with pytest.raises(InvalidArgumentError, match="head maps"):
        loss(maps[:2], one)
    with pytest.raises(InvalidArgumentError, match="targets for a batch"):
        loss(maps, one * 2)
    v5 = YOLOv5Loss(NC, _ems_anchors(), (16, 32), 128)
    with pytest.raises(InvalidArgumentError, match="head outputs"):
        v5([torch.zeros(1, 3, 8, 8, 5 + NC)], one, (128, 128))


# --------------------------------------------------------------------------------------------- YOLOv5


def _ems_anchors() -> torch.Tensor:
    pixels = torch.tensor([[10, 14, 23, 27, 37, 58], [81, 82, 135, 169, 344, 319]], dtype=torch.float32)
    return pixels.view(2, 3, 2) / torch.tensor([16.0, 32.0]).view(2, 1, 1)


def test_yolov5_gains_are_scaled_as_train_py_scales_them():
    coco = YOLOv5Loss(80, _ems_anchors(), (16, 32), 640)
    assert (coco.box, coco.obj, coco.cls) == pytest.approx((0.075, 1.5, 0.75))  # reference/emsyolo.md §8.1
    assert coco.balance == (4.0, 1.0)
    small = YOLOv5Loss(5, _ems_anchors(), (16, 32), 320)
    assert (small.obj, small.cls) == pytest.approx((1.5 / 4, 0.75 * 5 / 80))


def test_yolov5_targets_go_to_their_cell_and_the_two_nearest_neighbours():
    loss = YOLOv5Loss(NC, _ems_anchors(), (16, 32), 128)
    raw = [torch.zeros(1, 3, 8, 8, 5 + NC), torch.zeros(1, 3, 4, 4, 5 + NC)]
    # Centre at grid (5.3, 5.7) of the 8x8 level, 30x30 px: left of its cell's middle and below it.
    cx, cy = 5.3 * 16, 5.7 * 16
    flat = torch.tensor([[0, 2, cx / 128, cy / 128, 30 / 128, 30 / 128]])
    classes, boxes, indices, _ = loss._build_targets(raw, flat)
    _, a, gj, gi = indices[0]
    cells = {(int(y), int(x)) for y, x in zip(gj, gi, strict=True)}
    assert cells == {(5, 5), (5, 4), (6, 5)}
    ratio = torch.tensor([30 / 16, 30 / 16]) / _ems_anchors()[0]
    matched = set(torch.nonzero(torch.max(ratio, 1 / ratio).max(1).values < 4).flatten().tolist())
    assert set(a.tolist()) == matched and (classes[0] == 2).all()
    # The boxes are offsets from each assigned cell, within the (-0.5, 1.5) reach of the sigmoid head.
    assert ((boxes[0][:, :2] > -0.5) & (boxes[0][:, :2] < 1.5)).all()


def test_yolov5_loss_is_zero_on_the_box_for_exact_predictions():
    loss = YOLOv5Loss(NC, _ems_anchors(), (16, 32), 128)
    targets = [{"boxes": torch.tensor([[40.0, 50.0, 80.0, 86.0]]), "labels": torch.tensor([1])}]
    raw = [torch.zeros(1, 3, 8, 8, 5 + NC, requires_grad=True), torch.zeros(1, 3, 4, 4, 5 + NC, requires_grad=True)]
    flat = torch.tensor([[0, 1, 60 / 128, 68 / 128, 40 / 128, 36 / 128]])
    _, boxes, indices, anchors = loss._build_targets(raw, flat)
    exact = [r.detach().clone() for r in raw]
    for level in range(2):
        image, a, gj, gi = indices[level]
        tb, anc = boxes[level], anchors[level]
        exact[level][image, a, gj, gi, 0:2] = torch.logit((tb[:, :2] + 0.5) / 2)  # xy = 2 sigmoid - 0.5
        exact[level][image, a, gj, gi, 2:4] = torch.logit((tb[:, 2:] / anc).sqrt() / 2)  # wh = (2 sigmoid)^2 a
    _, parts = loss(exact, targets, (128, 128))
    assert parts["box"].item() == pytest.approx(0.0, abs=1e-5)
    total, parts = loss(raw, targets, (128, 128))
    assert parts["box"] > 0 and total.item() == pytest.approx(sum(p.item() for p in parts.values()))
    total.backward()
    assert all(torch.isfinite(r.grad).all() for r in raw)
