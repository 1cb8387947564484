"""COCO box scoring at val2017 scale: the zoo's two backends against raw pycocotools and raw faster-coco-eval.

A generated case the size of COCO val2017 (5000 images of 640x480, 80 categories with COCO's gapped ids,
~37.5k annotations with ~1% crowd, ~300k detections: a jittered copy of most annotations plus false positives)
is scored four ways in one run, each from the same Python objects:

- ``raw-pycocotools``: ``COCO()`` + ``loadRes`` + ``COCOeval`` evaluate/accumulate/summarize, as its README does;
- ``raw-faster``: the same with faster-coco-eval's ``COCO`` and ``COCOeval_faster``;
- ``zoo-pycocotools`` / ``zoo-faster``: :func:`snn_det_zoo.eval.coco.coco_metrics` (validation included).

Time is CPU time (``time.process_time``) of the process with one thread, median over ``--repeats`` runs,
because wall time on a shared machine is noisy. The raw paths get fresh copies of the detection dicts each
run (``loadRes`` writes into them), copied outside the timed region. The 12 statistics of all four must agree.

    python benchmarks/coco_eval.py                    # val2017 size, 3 repeats (about 5 minutes)
    python benchmarks/coco_eval.py --images 500       # a tenth of it, for a quick look

Rows are written to benchmarks/results/coco_eval-cpu-pt<torch>.csv (atomically).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from _results import write_results

from snn_det_zoo.constants import COCO80_TO_COCO91, COCO_STAT_KEYS
from snn_det_zoo.eval.coco import coco_metrics


def val2017_like_case(n_images: int = 5000, seed: int = 0) -> tuple[dict, list[dict]]:
    """A COCO ground truth and result list at val2017's scale per image: 7.5 annotations, 60 detections."""
    rng = np.random.default_rng(seed)
    cats = np.asarray(COCO80_TO_COCO91)
    images = [{"id": int(i), "width": 640, "height": 480, "file_name": f"{i:012d}.jpg"} for i in range(1, n_images + 1)]
    n_ann = round(7.5 * n_images)
    ann_img = np.sort(rng.integers(1, n_images + 1, n_ann))
    wh = np.exp(rng.uniform(np.log(4), np.log(400), (n_ann, 2)))
    xy = rng.uniform(0, 1, (n_ann, 2)) * (np.array([640, 480]) - wh).clip(1)
    ann_cat = rng.choice(cats, n_ann)
    crowd = rng.random(n_ann) < 0.01
    annotations = [
        {
            "id": k + 1,
            "image_id": int(i),
            "category_id": int(c),
            "bbox": [float(v) for v in (*p, *s)],
            "area": float(s[0] * s[1]),
            "iscrowd": int(cr),
        }
        for k, (i, c, p, s, cr) in enumerate(zip(ann_img, ann_cat, xy, wh, crowd, strict=True))
    ]
    # Detections: ~85% of the annotations jittered (some with a wrong class), the rest false positives.
    tp = rng.random(n_ann) < 0.85
    jit = rng.normal(0, 0.1, (int(tp.sum()), 4)) * np.concatenate([wh[tp], wh[tp]], axis=1)
    tp_box = np.concatenate([xy[tp] + jit[:, :2], np.maximum(1, wh[tp] + jit[:, 2:])], axis=1)
    tp_cat = np.where(rng.random(int(tp.sum())) < 0.9, ann_cat[tp], rng.choice(cats, int(tp.sum())))
    n_fp = 60 * n_images - len(tp_box)
    fp_wh = rng.uniform(4, 300, (n_fp, 2))
    fp_box = np.concatenate([rng.uniform(0, 1, (n_fp, 2)) * (np.array([640, 480]) - fp_wh), fp_wh], axis=1)
    det_img = np.concatenate([ann_img[tp], rng.integers(1, n_images + 1, n_fp)])
    det_cat = np.concatenate([tp_cat, rng.choice(cats, n_fp)])
    det_box = np.concatenate([tp_box, fp_box])
    det_score = np.concatenate([rng.uniform(0.2, 1, len(tp_box)), rng.uniform(0, 0.7, n_fp)])
    detections = [
        {"image_id": i, "category_id": c, "bbox": b, "score": s}
        for i, c, b, s in zip(det_img.tolist(), det_cat.tolist(), det_box.tolist(), det_score.tolist(), strict=True)
    ]
    categories = [{"id": int(c), "name": f"class{c}", "supercategory": "thing"} for c in cats]
    return {"images": images, "annotations": annotations, "categories": categories}, detections


def raw_metrics(library: str, gt: dict, detections: list[dict]) -> np.ndarray:
    """The 12 statistics as the library's README computes them (``detections`` is written into)."""
    if library == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval as Evaluator
    else:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as Evaluator
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(detections)
        evaluator = Evaluator(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats[:12], dtype=np.float64)


def _fresh(gt: dict, detections: list[dict]) -> tuple[dict, list[dict]]:
    """Copies one level deep of what the raw paths write into (their dicts, not the box lists)."""
    return (
        {
            **gt,
            "annotations": [dict(a) for a in gt["annotations"]],
            "images": [dict(i) for i in gt["images"]],
            "categories": [dict(c) for c in gt["categories"]],
        },
        [dict(d) for d in detections],
    )


def cpu_seconds(run: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    start = time.process_time()
    stats = run()
    return time.process_time() - start, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)

    gt, detections = val2017_like_case(args.images)
    print(f"case: {len(gt['images'])} images, {len(gt['annotations'])} annotations, {len(detections)} detections")

    def prepare(name: str) -> Callable[[], np.ndarray]:
        """A zero-argument run of ``name``; the raw paths' fresh copies are made here, outside the timing."""
        kind, library = name.split("-", 1)
        if kind == "zoo":
            return lambda: _zoo(gt, detections, library)
        fresh_gt, fresh_dets = _fresh(gt, detections)
        return lambda: raw_metrics(library, fresh_gt, fresh_dets)

    variants = ("raw-pycocotools", "zoo-pycocotools", "raw-faster", "zoo-faster")
    times: dict[str, list[float]] = {name: [] for name in variants}
    stats: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):  # interleaved, so that a noisy spell hits every variant alike
        for name in variants:
            seconds, stats[name] = cpu_seconds(prepare(name))
            times[name].append(seconds)
    reference = stats["raw-pycocotools"]
    for name, value in stats.items():
        if not np.array_equal(value, reference):
            raise SystemExit(f"{name} disagrees with raw pycocotools: {value.tolist()} vs {reference.tolist()}")
    med = {name: statistics.median(t) for name, t in times.items()}
    print("runs (s):", {name: [round(v, 2) for v in t] for name, t in times.items()})
    raw_of = {
        "raw-pycocotools": "raw-pycocotools",
        "zoo-pycocotools": "raw-pycocotools",
        "raw-faster": "raw-faster",
        "zoo-faster": "raw-faster",
    }
    rows = []
    for name, seconds in med.items():
        row = {
            "device": "cpu (1 thread)",
            "torch": torch.__version__,
            "variant": name,
            "images": len(gt["images"]),
            "annotations": len(gt["annotations"]),
            "detections": len(detections),
            "repeats": args.repeats,
            "cpu_s_median": round(seconds, 3),
            "speedup_vs_raw_pycocotools": round(med["raw-pycocotools"] / seconds, 3),
            "speedup_vs_own_raw": round(med[raw_of[name]] / seconds, 3),
            "stats_equal_to_raw_pycocotools": True,
        }
        rows.append(row)
        print(
            f"{name:16s} {seconds:7.2f} s CPU  x{row['speedup_vs_raw_pycocotools']:.2f} vs raw pycocotools  "
            f"x{row['speedup_vs_own_raw']:.2f} vs {raw_of[name]}"
        )
    print("AP, AP50 =", reference[:2].round(4).tolist(), "(all four equal)")
    write_results(rows, "coco_eval", "cpu")


def _zoo(gt: dict, detections: list[dict], backend: str) -> np.ndarray:
    metrics = coco_metrics(gt, detections, backend=backend)
    return np.asarray([metrics[k] for k in COCO_STAT_KEYS], dtype=np.float64)


if __name__ == "__main__":
    main()
