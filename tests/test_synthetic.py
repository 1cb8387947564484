"""Built-in synthetic sets: determinism, exact boxes, events that follow the motion, COCO ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from snn_det_zoo.data.gen1 import EVENT_DTYPE
from snn_det_zoo.data.synthetic import SyntheticEvents, SyntheticShapes, collate_detection
from snn_det_zoo.eval.coco import coco_metrics, to_coco_results


def test_shapes_are_deterministic_per_seed_and_index_whatever_the_access_order():
    a, b = SyntheticShapes(6, seed=7), SyntheticShapes(6, seed=7)
    image_late, target_late = b[4]
    _ = [a[i] for i in range(6)]
    image, target = a[4]
    assert torch.equal(image, image_late) and torch.equal(target["boxes"], target_late["boxes"])
    other, _ = SyntheticShapes(6, seed=8)[4]
    assert not torch.equal(image, other)


def test_shape_boxes_are_the_tight_boxes_of_the_object_pixels():
    ds = SyntheticShapes(8, image_size=(48, 64), seed=0)
    for i in range(len(ds)):
        image, target = ds[i]
        assert image.shape == (3, 48, 64) and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1
        assert target["image_id"] == i + 1 and len(target["labels"]) >= 1
        # The background is at most 0.45 and objects at least 0.55 in every channel: the bright pixels
        # are exactly the union of the boxes' objects.
        bright = (image.min(0).values > 0.5).numpy()
        for x1, y1, x2, y2 in target["boxes"].int().tolist():
            inside = bright[y1:y2, x1:x2]
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            bright[y1:y2, x1:x2] = False
        assert not bright.any(), "object pixels outside every box"


def test_coco_ground_truth_scores_perfect_predictions_at_ap_1():
    ds = SyntheticShapes(6, seed=3)
    gt = ds.coco_ground_truth()
    assert [c["id"] for c in gt["categories"]] == [1, 2, 3]
    assert len(gt["annotations"]) == sum(len(ds.target(i)["labels"]) for i in range(len(ds)))
    targets = [ds.target(i) for i in range(len(ds))]
    preds = [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}
             for t in targets]
    results = to_coco_results(preds, [i + 1 for i in range(len(ds))], category_ids=ds.category_ids)
    stats = coco_metrics(gt, results)
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)


def test_events_are_sorted_gen1_records_inside_the_window():
    ds = SyntheticEvents(3, T=2, seed=1, noise_rate=0.0)
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
    ds = SyntheticEvents(4, T=1, seed=2, noise_rate=0.0)
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


def test_frames_follow_the_spikeyolo_gen1_encoding():
    ds = SyntheticEvents(2, T=2, image_size=32, seed=4)
    frames, target = ds[1]
    assert frames.shape == (2, 3, 32, 32) and torch.equal(frames[:, 0], frames[:, 2])
    assert set(torch.unique(frames).tolist()) <= {0.0, 0.5, 1.0}
    events = ds.events(1)
    # The last event at a pixel within a bin sets it; check one by hand.
    t_start = ds.label_time_us(1) - ds.window_us
    last = events[-1]
    bin_index = min((int(last["t"]) - t_start) * 2 // ds.window_us, 1)
    assert frames[bin_index, 0, last["y"], last["x"]] == float(last["p"])
    assert torch.equal(target["boxes"], ds.target(1)["boxes"])


def test_collate_puts_time_first_for_event_frames():
    events = SyntheticEvents(3, T=2, image_size=32, seed=0)
    batch, targets = collate_detection([events[i] for i in range(3)])
    assert batch.shape == (2, 3, 3, 32, 32) and len(targets) == 3
    images, _ = collate_detection([SyntheticShapes(2, image_size=32)[i] for i in range(2)])
    assert images.shape == (2, 3, 32, 32)


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: SyntheticShapes(0), ValueError),
        (lambda: SyntheticShapes(4, image_size=8), ValueError),
        (lambda: SyntheticShapes(4, image_size=(32, 32, 3)), ValueError),
        (lambda: SyntheticShapes(4, min_size=20, image_size=32), ValueError),
        (lambda: SyntheticEvents(4, T=0), ValueError),
        (lambda: SyntheticEvents(4, contrast=0), ValueError),
        (lambda: SyntheticShapes(4)[4], IndexError),
        (lambda: SyntheticShapes(4)["0"], TypeError),
        (lambda: collate_detection([]), ValueError),
    ],
)
def test_bad_arguments_raise(make, error):
    with pytest.raises(error):
        make()
