"""Built-in synthetic sets: determinism, splits, visible boxes under occlusion, clutter, events that follow the
motion in Gen1's encoding, COCO ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from snn_det_zoo.constants import SHAPE_CLASSES
from snn_det_zoo.data.events import bin_edges, last_event_polarity_frames
from snn_det_zoo.data.gen1 import EVENT_DTYPE
from snn_det_zoo.data.synthetic import SyntheticEvents, SyntheticShapes
from snn_det_zoo.errors import InvalidArgumentError
from snn_det_zoo.eval.coco import coco_metrics, to_coco_results


def test_shapes_are_deterministic_per_seed_split_and_index_whatever_the_access_order():
    a, b = SyntheticShapes(6, seed=7), SyntheticShapes(6, seed=7)
    image_late, target_late = b[4]
    _ = [a[i] for i in range(6)]
    image, target = a[4]
    assert torch.equal(image, image_late) and torch.equal(target["boxes"], target_late["boxes"])
    other, _ = SyntheticShapes(6, seed=8)[4]
    assert not torch.equal(image, other)
    val, _ = SyntheticShapes(6, seed=7, split="val")[4]
    assert not torch.equal(image, val)  # the validation split never shares a draw with training


def test_the_default_set_is_big_enough_for_stride_32_with_every_class_and_many_sizes():
    ds = SyntheticShapes(64, seed=0, split="val")
    image, _ = ds[0]
    assert image.shape == (3, 128, 128)  # a 4x4 grid at stride 32
    targets = [ds.target(i) for i in range(len(ds))]
    labels = torch.cat([t["labels"] for t in targets])
    assert set(labels.tolist()) == set(range(len(SHAPE_CLASSES))) == set(range(5))
    sides = torch.cat([(t["boxes"][:, 2:] - t["boxes"][:, :2]).max(1).values for t in targets])
    assert sides.min() <= 16 and sides.max() >= 48  # small and large objects
    assert max(len(t["labels"]) for t in targets) >= 5


def test_boxes_are_the_visible_pixels_and_every_object_stays_mostly_visible():
    ds = SyntheticShapes(24, seed=3)
    occluded = 0
    for i in range(len(ds)):
        image, target = ds[i]
        shapes = ds._layout(i)
        visible = ds._visible(shapes)
        assert len(shapes) == len(target["labels"]) >= 1
        for shape, seen, box in zip(shapes, visible, target["boxes"].tolist(), strict=True):
            full = shape.mask(ds.height, ds.width, 1.0)
            assert seen.sum() >= 0.4 * full.sum()
            occluded += int(seen.sum() < full.sum())
            ys, xs = np.nonzero(seen)
            assert box == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            # The visible pixels show the object's own colour.
            pixels = image.permute(1, 2, 0).numpy()[seen]
            np.testing.assert_allclose(pixels, np.broadcast_to(shape.intensity, pixels.shape), atol=1e-6)
    assert occluded > 0  # occlusion happens


def test_clutter_is_in_the_scene_but_in_no_box():
    ds = SyntheticShapes(24, seed=5)
    bright_outside = 0
    for i in range(len(ds)):
        image, target = ds[i]
        inside = np.zeros((ds.height, ds.width), dtype=bool)
        for x1, y1, x2, y2 in target["boxes"].int().tolist():
            inside[y1:y2, x1:x2] = True
        bright_outside += int(((image.min(0).values > 0.5).numpy() & ~inside).sum())
    assert bright_outside > 0  # lines and specks as bright as objects, which detectors must ignore


def test_coco_ground_truth_scores_perfect_predictions_at_ap_1():
    ds = SyntheticShapes(6, seed=3)
    gt = ds.coco_ground_truth()
    assert [c["id"] for c in gt["categories"]] == [1, 2, 3, 4, 5]
    assert len(gt["annotations"]) == sum(len(ds.target(i)["labels"]) for i in range(len(ds)))
    targets = [ds.target(i) for i in range(len(ds))]
    preds = [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}
             for t in targets]
    results = to_coco_results(preds, [i + 1 for i in range(len(ds))], category_ids=ds.category_ids)
    stats = coco_metrics(gt, results)
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)


def test_events_are_sorted_gen1_records_inside_the_window():
    ds = SyntheticEvents(3, T=2, seed=1, noise_rate=0.0, image_size=64)
    for i in range(len(ds)):
        events = ds.events(i)
        assert events.dtype == EVENT_DTYPE and len(events) > 0
        assert np.all(np.diff(events["t"]) >= 0)
        t_end = ds.label_time_us(i)
        assert events["t"].min() >= t_end - ds.window_us and events["t"].max() < t_end
        assert set(np.unique(events["p"])) <= {0, 1}
        assert events["x"].max() < ds.width and events["y"].max() < ds.height
        np.testing.assert_array_equal(events, ds.events(i))


def test_without_noise_events_fire_only_where_objects_move():
    ds = SyntheticEvents(4, T=1, seed=2, noise_rate=0.0, image_size=64)
    for i in range(len(ds)):
        shapes = ds._layout(i)
        swept = np.zeros((ds.height, ds.width), dtype=bool)
        for shape in shapes:
            for step in range(ds.substeps + 1):
                swept |= shape.mask(ds.height, ds.width, step / ds.substeps)
        events = ds.events(i)
        assert swept[events["y"], events["x"]].all()
        # Objects are brighter than the scene: arriving edges fire ON, leaving edges OFF, so both occur.
        assert 0 < events["p"].mean() < 1


def test_frames_are_the_gen1_encoding_of_the_events():
    ds = SyntheticEvents(2, T=2, image_size=32, seed=4)
    frames, target = ds[1]
    assert frames.shape == (2, 3, 32, 32) and torch.equal(frames[:, 0], frames[:, 2])
    expected = last_event_polarity_frames(ds.events(1), bin_edges(ds.label_time_us(1), ds.window_us, 2), 32, 32)
    assert torch.equal(frames[:, 0], torch.from_numpy(expected).float() / 255)
    assert set(torch.unique(frames * 255).round().tolist()) <= {0.0, 127.0, 255.0}
    assert torch.equal(target["boxes"], ds.target(1)["boxes"])


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: SyntheticShapes(0), InvalidArgumentError),
        (lambda: SyntheticShapes(4, image_size=8), InvalidArgumentError),
        (lambda: SyntheticShapes(4, image_size=(32, 32, 3)), InvalidArgumentError),
        (lambda: SyntheticShapes(4, min_size=20, image_size=32), InvalidArgumentError),
        (lambda: SyntheticShapes(4, split="test"), InvalidArgumentError),
        (lambda: SyntheticEvents(4, T=0), InvalidArgumentError),
        (lambda: SyntheticEvents(4, contrast=0), InvalidArgumentError),
        (lambda: SyntheticShapes(4)[4], IndexError),
        (lambda: SyntheticShapes(4)["0"], TypeError),
    ],
)
def test_bad_arguments_raise(make, error):
    with pytest.raises(error):
        make()
