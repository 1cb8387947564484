"""COCO metrics (both backends) and the Gen1 protocols."""

import json
import re
import sys

import numpy as np
import pytest
import torch

from snn_det_zoo.constants import COCO80_TO_COCO91, COCO_STAT_KEYS, GEN1_PSEE, GEN4_PSEE
from snn_det_zoo.errors import DataFormatError, DataNotFoundError, InvalidArgumentError, MissingDependencyError
from snn_det_zoo.eval.coco import (
    DetectionColumns,
    _coco_classes,
    _columns_of_dicts,
    _evaluate,
    _prepared_gt,
    _result_index,
    coco_metrics,
    resolve_backend,
    to_coco_results,
)
from snn_det_zoo.eval.gen1 import PROTOCOLS, _windows, filter_boxes, gen1_metrics, predictions_to_boxes
from snn_det_zoo.labels import BBOX_DTYPE


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


# ---------------------------------------------------------------- garbage in: refused, never scored

NAN, INF = float("nan"), float("inf")
ONE_BOX_GT = {
    "images": [{"id": 1, "width": 100, "height": 100}],
    "categories": [{"id": 1, "name": "a"}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}],
}


def test_the_backends_disagree_on_nan_boxes_so_both_refuse_them():
    nan_det = {"image_id": 1, "category_id": 1, "bbox": [NAN] * 4, "score": 0.9}
    # Why: unchecked, pycocotools' IoU counts the NaN box as a match and faster-coco-eval as a miss.
    raw = DetectionColumns(np.array([1]), np.array([1]), np.full((1, 4), NAN), np.array([0.9]))
    gt = _prepared_gt(ONE_BOX_GT)
    assert _evaluate("pycocotools", gt, raw, None)[0] == pytest.approx(1.0)
    assert _evaluate("faster", gt, raw, None)[0] == 0.0
    good = {**nan_det, "bbox": [10, 10, 20, 20]}
    for backend in ("pycocotools", "faster"):
        with pytest.raises(
            InvalidArgumentError,
            match=re.escape(
                "detections[1] (image_id 1): box is not finite: bbox [nan, nan, nan, nan], score 0.9; "
                "expected bbox [x, y, w, h] of finite numbers with w >= 0 and h >= 0 and a finite score"
            ),
        ):
            coco_metrics(ONE_BOX_GT, [good, nan_det], backend=backend)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"score": NAN}, "score is not finite"),
        ({"score": INF}, "score is not finite"),
        ({"bbox": [10, INF, 20, 20]}, "box is not finite"),
        ({"bbox": [30, 30, -20, 20]}, "negative width or height"),
        ({"bbox": [10, 10, 20, -0.5]}, "negative width or height"),
        ({"bbox": [10, 10, 20]}, "detections[0]['bbox'] is [10, 10, 20]; expected 4 numbers"),
        ({"bbox": [10, 10, "20", 20]}, "detections[0]['bbox'] is [10, 10, '20', 20]; expected 4 numbers"),
        ({"image_id": 1.5}, "detections[0]['image_id'] is 1.5; expected an integer"),
        ({"score": None}, "detections[0]['score'] is None; expected a number"),
    ],
)
def test_detections_with_garbage_values_are_refused(change, message):
    det = {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.5, **change}
    for backend in ("pycocotools", "faster"):
        with pytest.raises(InvalidArgumentError, match=re.escape(message)):
            coco_metrics(ONE_BOX_GT, [det], backend=backend)
    # An empty box is a legal (useless) detection.
    empty = {**det, "bbox": [10, 10, 0, 0], "score": 0.5, "image_id": 1}
    assert coco_metrics(ONE_BOX_GT, [empty])["AP"] == 0.0


@pytest.mark.parametrize(
    ("box", "score", "why"),
    [
        ([NAN, 0, 10, 10], 0.5, "box is not finite"),
        ([0, 0, INF, 10], 0.5, "box is not finite"),
        ([0, 0, 10, 10], NAN, "score is not finite"),
        ([10, 0, 5, 10], 0.5, "negative width or height"),
    ],
)
def test_to_coco_results_refuses_nonfinite_and_inverted_boxes(box, score, why):
    good = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}
    bad = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], box]),
        "scores": torch.tensor([0.9, score]),
        "labels": torch.tensor([0, 0]),
    }
    with pytest.raises(InvalidArgumentError, match=re.escape("predictions[1] (image_id 8): box 1 [") + ".*" + why):
        to_coco_results([good, bad], [7, 8])
    # A [2, 6] array used to be reshaped into three boxes without a word.
    with pytest.raises(InvalidArgumentError, match=re.escape("(image_id 7): boxes must have shape [N, 4], got (2, 6)")):
        to_coco_results([{**good, "boxes": torch.zeros(2, 6)}], [7])


def test_error_types(monkeypatch):
    with pytest.raises(InvalidArgumentError, match="backend must be one of"):
        coco_metrics(ONE_BOX_GT, [], backend="torchmetrics")
    with pytest.raises(InvalidArgumentError, match=r"img_ids not in the ground truth: \[5\]"):
        coco_metrics(ONE_BOX_GT, [], img_ids=[1, 5])
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'snn-det-zoo[fast]'")):
        coco_metrics(ONE_BOX_GT, [], backend="faster")


def test_ground_truth_with_broken_ids_or_boxes_is_refused_naming_source_and_id(tmp_path, broken_ground_truths):
    gt, dets = random_coco_case(n_images=5)
    path = tmp_path / "instances_broken.json"
    for broken, message in broken_ground_truths(gt):
        with pytest.raises(DataFormatError, match=re.escape(f"ground truth: {message}")):
            coco_metrics(broken, dets)
        path.write_text(json.dumps(broken))  # json writes NaN / Infinity and reads them back
        for backend in ("pycocotools", "faster"):
            with pytest.raises(DataFormatError, match=re.escape(f"{path}: {message}")):
                coco_metrics(path, dets, backend=backend)
    with pytest.raises(DataNotFoundError, match=re.escape(str(tmp_path / "missing.json"))):
        coco_metrics(tmp_path / "missing.json", dets)


def test_zero_size_ground_truth_is_allowed_as_in_coco_train2017():
    # instances_train2017.json has two boxes of height 0.0 (cocodataset/cocoapi#355): a miss, as pycocotools
    # scores it, not an error.
    gt = {**ONE_BOX_GT, "annotations": [*ONE_BOX_GT["annotations"], {**ONE_BOX_GT["annotations"][0], "id": 2,
                                                                     "bbox": [296.65, 388.33, 1.03, 0.0]}]}
    det = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]
    for backend in ("pycocotools", "faster"):
        assert coco_metrics(gt, det, backend=backend)["AR100"] == pytest.approx(0.5)


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
    with pytest.raises(InvalidArgumentError, match=r"dt_boxes\[0\]: box 0 \(t 400000\): class_id must be in 0\.\.1"):
        gen1_metrics(gt, [bad], "frames")


def test_predictions_to_boxes_become_sorted_label_records():
    pred = {
        "boxes": torch.tensor([[10.0, 20.0, 50.0, 60.0]]),  # sensor pixels, as predict returns them
        "scores": torch.tensor([0.7]),
        "labels": torch.tensor([1]),
    }
    out = predictions_to_boxes([pred, pred], [2_000_000, 1_000_000])
    assert out["t"].tolist() == [1_000_000, 2_000_000]
    np.testing.assert_allclose(
        [out["x"][0], out["y"][0], out["w"][0], out["h"][0]], [10, 20, 40, 40], atol=1e-4
    )
    assert out["class_id"].tolist() == [1, 1] and out["class_confidence"][0] == pytest.approx(0.7)
    with pytest.raises(InvalidArgumentError, match=re.escape("predictions[1]: boxes must have shape [N, 4]")):
        predictions_to_boxes([pred, {**pred, "boxes": torch.zeros(1, 6)}], [1, 2])


def test_gen1_metrics_refuse_boxes_the_size_filter_would_hide():
    gt = [boxes([(1_000_000, 10, 10, 40, 40, 0, 1), (2_000_000, 50, 50, 60, 30, 1, 1)])]
    dt = gt[0].copy()
    assert gen1_metrics(gt, [dt], "psee")["AP"] == pytest.approx(1.0)
    # Under psee a NaN box used to fail the size filter and vanish from the scoring without a word.
    cases = [
        ("x", NAN, "x, y, w and h must be finite"),
        ("w", -5, "w and h must be >= 0"),
        ("class_confidence", NAN, "class_confidence nan must be finite"),
        ("class_id", 2, r"class_id must be in 0\.\.1 \(2 classes\)"),
    ]
    for field, value, why in cases:
        bad = dt.copy()
        bad[field][1] = value
        for protocol in PROTOCOLS:
            with pytest.raises(InvalidArgumentError, match=rf"dt_boxes\[0\]: box 1 \(t 2000000\): {why}"):
                gen1_metrics(gt, [bad], protocol)
    empty = dt.copy()
    empty["w"][1] = 0  # a zero-size detection is legal (and useless)
    assert gen1_metrics(gt, [empty], "frames")["AP"] < 1.0
    flat = gt[0].copy()
    flat["h"][0] = 0  # a label must have a size
    with pytest.raises(InvalidArgumentError, match=r"gt_boxes\[0\]: box 0 \(t 1000000\): w and h must be > 0"):
        gen1_metrics([flat], [dt], "frames")
    # The camera's classes set the range: the 1 Mpx camera has three.
    three = dt.copy()
    three["class_id"][1] = 2
    with pytest.raises(InvalidArgumentError, match=r"class_id must be in 0\.\.2 \(3 classes\)"):
        gen1_metrics(gt, [boxes([(1_000_000, 10, 10, 40, 40, 3, 1)])], "psee", camera=GEN4_PSEE)
    gen1_metrics(gt, [three], "frames", camera=GEN4_PSEE)


def _raw_library_stats(library, gt, dets):
    """The 12 statistics the library's own README way: COCO + loadRes (writing into copies) + COCOeval."""
    import contextlib
    import copy
    import io

    coco_cls, evaluator_cls = _coco_classes(library)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = coco_cls()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        evaluator = evaluator_cls(coco_gt, coco_gt.loadRes(copy.deepcopy(dets)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(v) for v in evaluator.stats[:12]]


def test_both_backends_give_raw_pycocotools_twelve_numbers_exactly():
    gt, dets = random_coco_case(seed=3, n_images=60)
    reference = _raw_library_stats("pycocotools", gt, dets)
    assert _raw_library_stats("faster", gt, dets) == reference
    for backend in ("pycocotools", "faster", "auto"):
        assert [coco_metrics(gt, dets, backend=backend)[k] for k in COCO_STAT_KEYS] == reference, backend


@pytest.mark.parametrize("library", ["pycocotools", "faster"])
def test_the_one_pass_result_index_is_the_index_load_res_builds(library):
    gt, dets = random_coco_case(seed=1)
    coco_cls, _ = _coco_classes(library)
    coco_gt = coco_cls()
    coco_gt.dataset = _prepared_gt(gt)
    coco_gt.createIndex()
    ours = _result_index(coco_cls, coco_gt, _columns_of_dicts(dets))
    import contextlib
    import copy
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        theirs = coco_gt.loadRes(copy.deepcopy(dets))

    def boxes_only(anns):  # loadRes adds a polygon that box scoring never reads
        return [{k: v for k, v in a.items() if k != "segmentation"} for a in anns]

    assert ours.anns.keys() == theirs.anns.keys()
    assert boxes_only(ours.anns.values()) == boxes_only(theirs.anns.values())
    assert ours.imgToAnns.keys() == theirs.imgToAnns.keys()
    for image_id, anns in theirs.imgToAnns.items():
        assert boxes_only(ours.imgToAnns[image_id]) == boxes_only(anns)
    assert dict(ours.catToImgs) == dict(theirs.catToImgs)
    assert ours.imgs == theirs.imgs and ours.cats == theirs.cats
    assert ours.imgToAnns[10**9] == []  # a defaultdict, as createIndex makes it


def test_scoring_leaves_the_detections_as_given_and_takes_columns_too():
    gt, dets = random_coco_case(seed=2)
    before = json.dumps(dets)
    by_dicts = coco_metrics(gt, dets, backend="faster")
    assert json.dumps(dets) == before  # loadRes would have added area, id, iscrowd and a polygon
    columns = DetectionColumns(
        np.array([d["image_id"] for d in dets]), np.array([d["category_id"] for d in dets]),
        np.array([d["bbox"] for d in dets]), np.array([d["score"] for d in dets]),
    )
    assert coco_metrics(gt, columns, backend="faster") == by_dicts
    assert coco_metrics(gt, iter(dets), backend="pycocotools") == coco_metrics(gt, columns, backend="pycocotools")


def test_to_coco_results_as_columns_equals_its_dicts():
    preds = [
        {"boxes": torch.tensor([[1.0, 2.0, 11.0, 22.0], [0.0, 0.0, 5.0, 5.0]]), "scores": torch.tensor([0.9, 0.1]),
         "labels": torch.tensor([0, 2])},
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)},
    ]
    dicts = to_coco_results(preds, [5, 6], category_ids=[1, 3, 7])
    columns = to_coco_results(preds, [5, 6], category_ids=[1, 3, 7], as_columns=True)
    assert isinstance(columns, DetectionColumns)
    assert dicts == [
        {"image_id": i, "category_id": c, "bbox": b, "score": s}
        for i, c, b, s in zip(*(col.tolist() for col in columns), strict=True)
    ]
    empty = to_coco_results([], [], as_columns=True)
    assert empty.bbox.shape == (0, 4) and to_coco_results([], []) == []


def test_auto_backend_is_faster_where_installed_else_the_reference(monkeypatch):
    assert resolve_backend("auto") == "faster"  # installed by the dev extra
    assert resolve_backend("pycocotools") == "pycocotools"
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "faster_coco_eval" else
                        real(name, *a))
    assert resolve_backend("auto") == "pycocotools"
    with pytest.raises(InvalidArgumentError, match="auto"):
        resolve_backend("torchmetrics")
