"""COCO metrics (both backends) and the Gen1 protocols."""

import json
import re

import numpy as np
import pytest
import torch

from snn_det_zoo.data.events import SPIKEYOLO_GEN1_GEOMETRY
from snn_det_zoo.data.gen1 import BBOX_DTYPE
from snn_det_zoo.eval.coco import coco_metrics, to_coco_results
from snn_det_zoo.eval.constants import COCO80_TO_COCO91, COCO_STAT_KEYS, GEN1_PSEE
from snn_det_zoo.eval.gen1 import _windows, filter_boxes, gen1_metrics, predictions_to_boxes


def random_coco_case(seed=0, n_images=40):
    """Many images, 4 classes with gapped ids, all sizes, crowd boxes, empty images, >100 dets on one."""
    rng = np.random.default_rng(seed)
    cat_ids = [1, 3, 7, 18]
    images = [{"id": i + 1, "width": 640, "height": 480} for i in range(n_images)]
    anns, dets = [], []
    for im in images:
        for _ in range(int(rng.integers(0, 12)) if im["id"] % 7 else 0):
            w, h = np.exp(rng.uniform(np.log(4), np.log(300), 2))
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            c = int(rng.choice(cat_ids))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": im["id"],
                    "category_id": c,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(rng.random() < 0.05),
                }
            )
            if rng.random() < 0.8:  # a perturbed true positive, sometimes with the wrong class
                j = rng.normal(0, 0.08, 4) * [w, h, w, h]
                dets.append(
                    {
                        "image_id": im["id"],
                        "category_id": c if rng.random() < 0.9 else 3,
                        "bbox": [x + j[0], y + j[1], max(1, w + j[2]), max(1, h + j[3])],
                        "score": float(rng.random()),
                    }
                )
        n_fp = 150 if im["id"] == 2 else int(rng.integers(0, 30))
        for _ in range(n_fp):
            w, h = rng.uniform(5, 200, 2)
            dets.append(
                {
                    "image_id": im["id"],
                    "category_id": int(rng.choice(cat_ids)),
                    "bbox": [rng.uniform(0, 500), rng.uniform(0, 400), w, h],
                    "score": float(rng.random()) * 0.6,
                }
            )
    return {
        "images": images,
        "annotations": anns,
        "categories": [{"id": c, "name": str(c)} for c in cat_ids],
    }, dets


def test_backends_agree_on_a_nontrivial_case():
    gt, dets = random_coco_case()
    ref = coco_metrics(gt, dets, backend="pycocotools")
    fast = coco_metrics(gt, dets, backend="faster")
    assert list(ref) == list(COCO_STAT_KEYS)
    assert 0.05 < ref["AP"] < 0.9  # a case that measures something
    for key in COCO_STAT_KEYS:
        assert fast[key] == pytest.approx(ref[key], abs=1e-4), key


def test_perfect_and_known_cases():
    gt = {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
        "categories": [{"id": 5, "name": "a"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "bbox": [10, 10, 40, 40]},
            {"id": 2, "image_id": 2, "category_id": 5, "bbox": [0, 0, 20, 20]},
        ],
    }
    perfect = [
        {"image_id": a["image_id"], "category_id": 5, "bbox": a["bbox"], "score": 0.9}
        for a in gt["annotations"]
    ]
    for backend in ("pycocotools", "faster"):
        m = coco_metrics(gt, perfect, backend=backend)
        assert m["AP"] == pytest.approx(1.0) and m["AR100"] == pytest.approx(1.0)
        assert m["APl"] == -1.0  # no large objects: COCOeval's "nothing to measure"
    # Second box shifted to IoU 0.6: a hit at IoU .5 but a miss from .65 up.
    shifted = [perfect[0], {**perfect[1], "bbox": [5, 0, 20, 20]}]
    iou = 15 * 20 / (25 * 20)
    assert iou == pytest.approx(0.6)
    m = coco_metrics(gt, shifted)
    assert m["AP50"] == pytest.approx(1.0)
    assert m["AP75"] == pytest.approx(0.5, abs=0.01)
    assert m["AP"] == pytest.approx((3 * 1.0 + 7 * 0.5) / 10, abs=0.01)
    assert coco_metrics(gt, [])["AP"] == 0.0


def test_metrics_are_silent_unless_verbose(capsys):
    gt, dets = random_coco_case(n_images=5)
    coco_metrics(gt, dets)
    coco_metrics(gt, dets, backend="faster")
    assert capsys.readouterr().out == ""
    coco_metrics(gt, dets, verbose=True)
    assert "Average Precision" in capsys.readouterr().out


def test_gt_from_path_and_bad_inputs(tmp_path):
    gt, dets = random_coco_case(n_images=5)
    path = tmp_path / "instances_val.json"
    path.write_text(json.dumps(gt))
    assert coco_metrics(path, dets) == coco_metrics(gt, dets)
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [')
    with pytest.raises(ValueError, match=re.escape("broken.json: not valid JSON")):
        coco_metrics(bad, dets)
    (tmp_path / "noann.json").write_text(json.dumps({"images": [], "categories": []}))
    with pytest.raises(ValueError, match=re.escape("noann.json: expected 'annotations' to be a list")):
        coco_metrics(tmp_path / "noann.json", [])
    with pytest.raises(ValueError, match="backend"):
        coco_metrics(gt, dets, backend="torchmetrics")
    with pytest.raises(ValueError, match="image_id 999"):
        coco_metrics(gt, [{**dets[0], "image_id": 999}])
    zero = {**gt, "annotations": [{**gt["annotations"][0], "id": 0}]}
    with pytest.raises(ValueError, match="ids must be >= 1"):
        coco_metrics(zero, dets)


def test_img_ids_restrict_the_evaluation():
    gt, dets = random_coco_case(n_images=10)
    subset = [1, 2, 3]
    sub_gt = {
        **gt,
        "images": [im for im in gt["images"] if im["id"] in subset],
        "annotations": [a for a in gt["annotations"] if a["image_id"] in subset],
    }
    sub_dets = [d for d in dets if d["image_id"] in subset]
    assert coco_metrics(gt, dets, img_ids=subset) == coco_metrics(sub_gt, sub_dets)


def test_to_coco_results_maps_boxes_and_categories():
    preds = [
        {
            "boxes": torch.tensor([[10.0, 20.0, 50.0, 80.0]]),
            "scores": torch.tensor([0.5]),
            "labels": torch.tensor([11]),
        },
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    out = to_coco_results(preds, [42, 43], COCO80_TO_COCO91)
    assert out == [{"image_id": 42, "category_id": 13, "bbox": [10.0, 20.0, 40.0, 60.0], "score": 0.5}]
    assert to_coco_results(preds[:1], [1])[0]["category_id"] == 11
    with pytest.raises(ValueError, match="label 11 outside the 3 classes"):
        to_coco_results(preds[:1], [1], [1, 2, 3])
    with pytest.raises(ValueError, match="2 predictions but 1 image ids"):
        to_coco_results(preds, [1])


# ---------------------------------------------------------------- Gen1


def boxes(rows):
    out = np.zeros(len(rows), BBOX_DTYPE)
    for i, (t, x, y, w, h, c, score) in enumerate(rows):
        out[i] = (t, x, y, w, h, c, i, score)
    return out


def test_filter_boxes_uses_the_corrected_gen1_constants():
    b = boxes(
        [
            (500_000, 0, 0, 50, 50, 0, 1),
            (500_001, 0, 0, 50, 50, 0, 1),
            (600_000, 0, 0, 21, 21, 0, 1),
            (600_000, 0, 0, 22, 22, 0, 1),
            (600_000, 0, 0, 9, 100, 0, 1),
            (600_000, 0, 0, 10, 100, 0, 1),
        ]
    )
    kept = filter_boxes(b)
    # t must exceed 0.5 s; diag 21*sqrt2 = 29.7 < 30 <= 22*sqrt2; side 9 < 10.
    assert kept["track_id"].tolist() == [1, 3, 5]
    assert (GEN1_PSEE.min_box_diag, GEN1_PSEE.min_box_side, GEN1_PSEE.skip_us, GEN1_PSEE.time_tol_us) == (
        30,
        10,
        500_000,
        50_000,
    )


def reference_match_times(all_ts, gt, dt, tol):
    """The toolbox's two-pointer _match_times, restated to check the vectorised version."""
    out, low_gt, high_gt, low_dt, high_dt = [], 0, 0, 0, 0
    for ts in all_ts:
        while low_gt < len(gt) and gt[low_gt]["t"] < ts:
            low_gt += 1
        high_gt = max(low_gt, high_gt)
        while high_gt < len(gt) and gt[high_gt]["t"] <= ts:
            high_gt += 1
        while low_dt < len(dt) and dt[low_dt]["t"] < ts - tol:
            low_dt += 1
        high_dt = max(low_dt, high_dt)
        while high_dt < len(dt) and dt[high_dt]["t"] <= ts + tol:
            high_dt += 1
        out.append((gt[low_gt:high_gt], dt[low_dt:high_dt]))
    return out


def test_time_windows_equal_the_toolbox_matching():
    rng = np.random.default_rng(1)
    gt = np.zeros(60, BBOX_DTYPE)
    gt["t"] = np.sort(rng.choice(np.arange(0, 5_000_000, 50_000), 60))
    dt = np.zeros(300, BBOX_DTYPE)
    dt["t"] = np.sort(rng.integers(0, 5_100_000, 300))
    dt["t"][:5] = gt["t"][10] + 50_000  # on the window edge: included
    dt = dt[np.argsort(dt["t"], kind="stable")]
    ours = _windows(gt, dt, 50_000)
    ref = reference_match_times(np.unique(gt["t"]), gt, dt, 50_000)
    assert len(ours) == len(ref)
    for (g1, d1), (g2, d2) in zip(ours, ref, strict=True):
        np.testing.assert_array_equal(g1, g2)
        np.testing.assert_array_equal(d1, d2)


def test_psee_protocol_filters_and_time_matching():
    gt = [
        boxes(
            [
                (400_000, 10, 10, 40, 40, 0, 1),
                (1_000_000, 10, 10, 40, 40, 0, 1),
                (1_000_000, 100, 100, 20, 60, 1, 1),
                (2_000_000, 50, 50, 60, 30, 0, 1),
            ]
        )
    ]
    perfect = gt[0][gt[0]["t"] > 500_000].copy()
    perfect["t"] += 30_000  # predictions made 30 ms late still count (tolerance 50 ms)
    perfect["class_confidence"] = 0.5  # below the false positives' scores, so those would rank first
    m = gen1_metrics(gt, [perfect], "psee")
    assert m["AP"] == pytest.approx(1.0) and m["images"] == 2  # the 0.4 s label is skipped
    # A confident false positive too small for the protocol is filtered away; one 60 ms away is not matched.
    tiny = boxes([(1_000_000, 200, 200, 8, 8, 0, 0.99)])
    far = boxes([(2_000_000 + 60_000, 50, 50, 60, 30, 0, 0.99)])
    extra = np.sort(np.concatenate([perfect, tiny]), order="t")
    assert gen1_metrics(gt, [extra], "psee")["AP"] == pytest.approx(1.0)
    only_far = np.sort(np.concatenate([perfect[:2], far]), order="t")
    assert gen1_metrics(gt, [only_far], "psee")["AR100"] < 1.0
    # A large confident false positive inside the window lowers AP.
    fp = boxes([(1_000_000, 200, 150, 60, 60, 0, 0.99)])
    assert gen1_metrics(gt, [np.sort(np.concatenate([perfect, fp]), order="t")], "psee")["AP"] < 1.0
    assert gen1_metrics(gt, [perfect], "psee", backend="faster")["AP"] == pytest.approx(1.0)


def test_frames_protocol_uses_exact_timestamps_and_authors_labels():
    gt = [boxes([(400_000, 10, 10, 40, 40, 0, 1), (400_000, 100, 100, 4, 4, 1, 1)])]
    # Unfiltered: the 0.4 s label and the 4x4 box both count.
    m = gen1_metrics(gt, [gt[0].copy()], "frames")
    assert m["AP"] == pytest.approx(1.0) and m["images"] == 1
    late = gt[0].copy()
    late["t"] += 1
    assert gen1_metrics(gt, [late], "frames")["AR100"] == 0.0
    with pytest.raises(ValueError, match="no labelled timestamp left"):
        gen1_metrics(gt, [gt[0]], "psee")
    with pytest.raises(ValueError, match="protocol"):
        gen1_metrics(gt, [gt[0]], "rvt")
    bad = gt[0].copy()
    bad["class_id"] = 5
    with pytest.raises(ValueError, match=r"class ids \[5\]"):
        gen1_metrics(gt, [bad], "frames")


def test_predictions_to_boxes_maps_input_pixels_back():
    sensor = np.array([[10.0, 20.0, 50.0, 60.0]])
    pred = {
        "boxes": torch.from_numpy(SPIKEYOLO_GEN1_GEOMETRY.to_input(sensor)),
        "scores": torch.tensor([0.7]),
        "labels": torch.tensor([1]),
    }
    out = predictions_to_boxes([pred, pred], [2_000_000, 1_000_000], SPIKEYOLO_GEN1_GEOMETRY)
    assert out["t"].tolist() == [1_000_000, 2_000_000]
    np.testing.assert_allclose(
        [out["x"][0], out["y"][0], out["w"][0], out["h"][0]], [10, 20, 40, 40], atol=1e-4
    )
    assert out["class_id"].tolist() == [1, 1] and out["class_confidence"][0] == pytest.approx(0.7)
