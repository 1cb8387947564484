"""COCO box metrics: pycocotools is the reference, faster-coco-eval the fast path (proven equal in tests).

``coco_metrics`` returns the 12 statistics of ``COCOeval.summarize`` as a named dict; ``to_coco_results``
turns ``model.predict`` outputs into COCO result dicts. Nothing is printed unless ``verbose=True``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .constants import COCO_STAT_KEYS

__all__ = ["BACKENDS", "coco_metrics", "load_coco_json", "to_coco_results"]

BACKENDS = ("pycocotools", "faster")


def load_coco_json(path: str | os.PathLike) -> dict:
    """Read an ``instances_*.json`` file and check its top-level shape.

    :raises FileNotFoundError: the file does not exist.
    :raises ValueError: not JSON, or the ``images`` / ``annotations`` / ``categories`` lists are missing.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "expected a COCO annotation file"
        ) from exc
    return check_coco_dict(data, source=path)


def check_coco_dict(data: Any, source: str = "ground truth") -> dict:
    """Validate a COCO ground-truth dict; returns it unchanged. ``source`` names it in error messages."""
    if not isinstance(data, Mapping):
        raise ValueError(
            f"{source}: expected a JSON object with 'images', 'annotations' and 'categories', "
            f"got {type(data).__name__}"
        )
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            found = "missing" if key not in data else type(data[key]).__name__
            raise ValueError(f"{source}: expected '{key}' to be a list ({found})")
    for i, img in enumerate(data["images"]):
        if not isinstance(img, Mapping) or not isinstance(img.get("id"), int):
            raise ValueError(f"{source}: images[{i}] must be an object with an integer 'id'")
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, Mapping) or not isinstance(cat.get("id"), int):
            raise ValueError(f"{source}: categories[{i}] must be an object with an integer 'id'")
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, Mapping):
            raise ValueError(f"{source}: annotations[{i}] must be an object")
        for key in ("id", "image_id", "category_id"):
            if not isinstance(ann.get(key), int):
                raise ValueError(f"{source}: annotations[{i}] needs an integer '{key}'")
        bbox = ann.get("bbox")
        if not (
            isinstance(bbox, Sequence) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)
        ):
            raise ValueError(f"{source}: annotations[{i}]['bbox'] must be [x, y, w, h] numbers, got {bbox!r}")
    return dict(data)


def _prepared_gt(gt: Mapping | str | os.PathLike) -> dict:
    """A private copy of the ground truth with the defaults pycocotools needs (area, iscrowd)."""
    data = load_coco_json(gt) if isinstance(gt, str | os.PathLike) else check_coco_dict(gt)
    annotations = []
    for ann in data["annotations"]:
        # pycocotools marks a detection matched to annotation id 0 as unmatched (a silent false positive).
        if ann["id"] < 1:
            raise ValueError(
                f"annotation ids must be >= 1 (pycocotools treats id 0 as 'unmatched'); got id {ann['id']}"
            )
        ann = dict(ann)
        ann.setdefault("area", float(ann["bbox"][2]) * float(ann["bbox"][3]))
        ann.setdefault("iscrowd", 0)
        annotations.append(ann)
    return {
        **data,
        "annotations": annotations,
        "images": [dict(im) for im in data["images"]],
        "categories": [dict(c) for c in data["categories"]],
    }


def _checked_detections(detections: Iterable[Mapping], image_ids: set[int]) -> list[dict]:
    out = []
    for i, det in enumerate(detections):
        if not isinstance(det, Mapping) or not {"image_id", "category_id", "bbox", "score"} <= det.keys():
            raise ValueError(
                f"detections[{i}] must be a dict with image_id, category_id, bbox [x,y,w,h], score"
            )
        bbox = [float(v) for v in det["bbox"]]
        if len(bbox) != 4:
            raise ValueError(f"detections[{i}]['bbox'] must have 4 numbers (x, y, w, h), got {det['bbox']!r}")
        if int(det["image_id"]) not in image_ids:
            raise ValueError(
                f"detections[{i}] has image_id {det['image_id']}, which is not in the ground truth"
            )
        out.append(
            {
                "image_id": int(det["image_id"]),
                "category_id": int(det["category_id"]),
                "bbox": bbox,
                "score": float(det["score"]),
            }
        )
    return out


def _result_index(coco_cls: type, gt_data: dict, dets: list[dict]):
    """The detections' COCO object, built as ``COCO.loadRes`` does (area = w*h, ids from 1), empty or not."""
    anns = []
    for k, det in enumerate(dets, start=1):
        w, h = det["bbox"][2:]
        anns.append({**det, "area": w * h, "id": k, "iscrowd": 0})
    res = coco_cls()
    res.dataset = {"images": gt_data["images"], "categories": gt_data["categories"], "annotations": anns}
    res.createIndex()
    return res


def _evaluate(backend: str, gt_data: dict, dets: list[dict], img_ids: list[int] | None) -> np.ndarray:
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval as Evaluator
    else:
        try:
            from faster_coco_eval import COCO
            from faster_coco_eval import COCOeval_faster as Evaluator
        except ImportError as exc:
            raise ImportError(
                "backend='faster' needs faster-coco-eval: pip install 'snn-det-zoo[fast]'"
            ) from exc
    coco_gt = COCO()
    coco_gt.dataset = gt_data
    coco_gt.createIndex()
    coco_dt = _result_index(COCO, gt_data, dets)
    evaluator = Evaluator(coco_gt, coco_dt, "bbox")
    if img_ids is not None:
        evaluator.params.imgIds = sorted(img_ids)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return np.asarray(evaluator.stats[: len(COCO_STAT_KEYS)], dtype=np.float64)


def coco_metrics(
    gt: Mapping | str | os.PathLike,
    detections: Iterable[Mapping],
    backend: str = "pycocotools",
    img_ids: Iterable[int] | None = None,
    verbose: bool = False,
) -> dict[str, float]:
    """The 12 COCO box statistics of ``detections`` against ``gt``.

    :param gt: a COCO ground-truth dict or the path of an ``instances_*.json`` file.
    :param detections: COCO result dicts ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``
        (absolute pixels; see :func:`to_coco_results`).
    :param backend: ``"pycocotools"`` (the reference) or ``"faster"`` (faster-coco-eval, same numbers).
    :param img_ids: evaluate only these images (default: every image of ``gt``).
    :param verbose: let the backend print its progress and summary table.
    :returns: ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}``;
        -1.0 where COCOeval has nothing to measure (e.g. no large objects), as pycocotools reports it.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    gt_data = _prepared_gt(gt)
    known = {im["id"] for im in gt_data["images"]}
    dets = _checked_detections(detections, known)
    ids = None
    if img_ids is not None:
        ids = [int(i) for i in img_ids]
        missing = sorted(set(ids) - known)
        if missing:
            raise ValueError(f"img_ids not in the ground truth: {missing[:10]}")
    sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with sink:
        stats = _evaluate(backend, gt_data, dets, ids)
    return {key: float(v) for key, v in zip(COCO_STAT_KEYS, stats, strict=True)}


def _as_numpy(x: Any, name: str, ndim: int) -> np.ndarray:
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(arr.shape)}")
    return arr


def to_coco_results(
    predictions: Sequence[Mapping], image_ids: Sequence[int], category_ids: Sequence[int] | None = None
) -> list[dict]:
    """Turn ``model.predict`` outputs into COCO result dicts.

    :param predictions: one dict per image with ``boxes`` ``[N, 4]`` (xyxy, original-image pixels), ``scores``
        ``[N]`` and ``labels`` ``[N]`` (contiguous class indices); tensors or arrays.
    :param image_ids: the COCO image id of each prediction, same order.
    :param category_ids: class index -> COCO category id (e.g. ``COCO80_TO_COCO91``); ``None`` keeps the
        labels as category ids.
    :returns: ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``.
    """
    if len(predictions) != len(image_ids):
        raise ValueError(f"got {len(predictions)} predictions but {len(image_ids)} image ids")
    results = []
    for pred, image_id in zip(predictions, image_ids, strict=True):
        if not isinstance(pred, Mapping) or not {"boxes", "scores", "labels"} <= pred.keys():
            raise ValueError("each prediction must be a dict with 'boxes', 'scores' and 'labels'")
        boxes = _as_numpy(pred["boxes"], "boxes", 2).astype(np.float64).reshape(-1, 4)
        scores = _as_numpy(pred["scores"], "scores", 1).astype(np.float64)
        labels = _as_numpy(pred["labels"], "labels", 1).astype(np.int64)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(
                f"image {image_id}: boxes, scores and labels differ in length "
                f"({len(boxes)}, {len(scores)}, {len(labels)})"
            )
        for (x1, y1, x2, y2), score, label in zip(boxes, scores, labels, strict=True):
            if category_ids is None:
                cat = int(label)
            elif 0 <= label < len(category_ids):
                cat = int(category_ids[label])
            else:
                raise ValueError(f"image {image_id}: label {label} outside the {len(category_ids)} classes")
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": cat,
                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                    "score": float(score),
                }
            )
    return results
