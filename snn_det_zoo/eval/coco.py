"""COCO box metrics: pycocotools is the reference, faster-coco-eval the fast path (proven equal in tests).

``coco_metrics`` returns the 12 statistics of ``COCOeval.summarize`` as a named dict; ``to_coco_results``
turns ``model.predict`` outputs into COCO result dicts. Nothing is printed unless ``verbose=True``.
"""

from __future__ import annotations

import contextlib
import gc
import io
import operator
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..constants import COCO_STAT_KEYS
from ..errors import DataFormatError, InvalidArgumentError, MissingDependencyError
from ..labels import BOX_RULE, check_coco_dict, column_array, first_bad_xywh, load_coco_json

__all__ = ["BACKENDS", "coco_metrics", "to_coco_results"]

BACKENDS = ("pycocotools", "faster")

_BOX_RULE = BOX_RULE


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while hundreds of thousands of small dicts and lists are built: each
    allocation burst otherwise triggers collections that rescan the whole heap (measured: 300k detections take
    2-5x longer). Nothing built here holds a reference cycle."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _prepared_gt(gt: Mapping | str | os.PathLike) -> dict:
    """A private copy of the ground truth with the defaults pycocotools needs (area, iscrowd)."""
    if isinstance(gt, str | os.PathLike):
        source, data = os.fspath(gt), load_coco_json(gt)
    else:
        source, data = "ground truth", check_coco_dict(gt)
    annotations = []
    for ann in data["annotations"]:
        # pycocotools marks a detection matched to annotation id 0 as unmatched (a silent false positive).
        if ann["id"] < 1:
            raise DataFormatError(
                f"{source}: annotation ids must be >= 1 (pycocotools treats id 0 as 'unmatched'); "
                f"got id {ann['id']}"
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


_DET_FIELDS = operator.itemgetter("image_id", "category_id", "bbox", "score")
_DET_SHAPE = "a dict with image_id, category_id, bbox [x, y, w, h] and score"


def _checked_detections(detections: Iterable[Mapping], image_ids: set[int]) -> list[dict]:
    """The detections as the result annotations ``COCO.loadRes`` makes (area = w*h, ids from 1), checked.

    A Python pass only picks the four fields; the checks run on arrays, so 300k detections cost well under a
    second.
    """
    rows = []
    for i, det in enumerate(detections):
        try:
            rows.append(_DET_FIELDS(det))
        except (KeyError, TypeError):
            raise InvalidArgumentError(f"detections[{i}] must be {_DET_SHAPE}, got {det!r:.200}") from None
    img_col, cat_col, box_col, score_col = zip(*rows, strict=True) if rows else ((), (), (), ())

    def expected(field: str, what: str) -> Callable[[int, Any], Exception]:
        return lambda i, v: InvalidArgumentError(f"detections[{i}]['{field}'] is {v!r:.200}; expected {what}")

    img = column_array(img_col, "iu", expected("image_id", "an integer"))
    cat = column_array(cat_col, "iu", expected("category_id", "an integer"))
    xywh = column_array(box_col, "iuf", expected("bbox", "4 numbers [x, y, w, h]"), width=4).astype(np.float64)
    scores = column_array(score_col, "iuf", expected("score", "a number")).astype(np.float64)
    unknown = np.flatnonzero(~np.isin(img, np.fromiter(image_ids, np.int64, len(image_ids))))
    if unknown.size:
        i = int(unknown[0])
        raise InvalidArgumentError(f"detections[{i}] has image_id {img[i]}, which is not in the ground truth")
    bad = first_bad_xywh(xywh, scores)
    if bad is not None:
        i, why = bad
        raise InvalidArgumentError(
            f"detections[{i}] (image_id {img[i]}): {why}: bbox {xywh[i].tolist()}, score {scores[i]}; "
            f"expected bbox {_BOX_RULE} and a finite score"
        )
    areas = (xywh[:, 2] * xywh[:, 3]).tolist()
    return [
        {"image_id": i, "category_id": c, "bbox": b, "score": s, "area": a, "id": k, "iscrowd": 0}
        for k, (i, c, b, s, a) in enumerate(
            zip(img.tolist(), cat.tolist(), xywh.tolist(), scores.tolist(), areas, strict=True), start=1
        )
    ]


def _result_index(coco_cls: type, gt_data: dict, results: list[dict]):
    """The detections' COCO object from :func:`_checked_detections`' annotations, empty or not."""
    res = coco_cls()
    res.dataset = {"images": gt_data["images"], "categories": gt_data["categories"], "annotations": results}
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
            raise MissingDependencyError(
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
        raise InvalidArgumentError(f"backend must be one of {BACKENDS}, got {backend!r}")
    sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with _gc_paused():
        gt_data = _prepared_gt(gt)
        known = {im["id"] for im in gt_data["images"]}
        dets = _checked_detections(detections, known)
        ids = None
        if img_ids is not None:
            ids = [int(i) for i in img_ids]
            missing = sorted(set(ids) - known)
            if missing:
                raise InvalidArgumentError(f"img_ids not in the ground truth: {missing[:10]}")
        with sink:
            stats = _evaluate(backend, gt_data, dets, ids)
    return {key: float(v) for key, v in zip(COCO_STAT_KEYS, stats, strict=True)}


def _as_numpy(x: Any, name: str, shape: tuple[int | None, ...]) -> np.ndarray:
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if arr.ndim != len(shape) or any(w not in (None, g) for g, w in zip(arr.shape, shape, strict=True)):
        want = "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"
        raise InvalidArgumentError(f"{name} must have shape {want}, got {tuple(arr.shape)}")
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
    :raises InvalidArgumentError: a non-finite box or score, a box with ``x2 < x1`` or ``y2 < y1``, a label
        outside ``category_ids``; the message names the prediction, its image id and the box.
    """
    if len(predictions) != len(image_ids):
        raise InvalidArgumentError(f"got {len(predictions)} predictions but {len(image_ids)} image ids")
    cat_map = None if category_ids is None else np.asarray(category_ids, dtype=np.int64)
    results: list[dict] = []
    with _gc_paused():
        for k, (pred, image_id) in enumerate(zip(predictions, image_ids, strict=True)):
            results += _results_of(pred, f"predictions[{k}] (image_id {image_id})", int(image_id), cat_map)
    return results


def _results_of(pred: Mapping, where: str, image_id: int, cat_map: np.ndarray | None) -> list[dict]:
    """The COCO result dicts of one prediction (see :func:`to_coco_results`); ``where`` names it in errors."""
    if not isinstance(pred, Mapping) or not {"boxes", "scores", "labels"} <= pred.keys():
        raise InvalidArgumentError(f"{where} must be a dict with 'boxes', 'scores' and 'labels'")
    xyxy = _as_numpy(pred["boxes"], f"{where}: boxes", (None, 4)).astype(np.float64)
    scores = _as_numpy(pred["scores"], f"{where}: scores", (len(xyxy),)).astype(np.float64)
    labels = _as_numpy(pred["labels"], f"{where}: labels", (len(xyxy),)).astype(np.int64)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    bad = first_bad_xywh(xywh, scores)
    if bad is not None:
        j, why = bad
        raise InvalidArgumentError(
            f"{where}: box {j} {xyxy[j].tolist()} with score {scores[j]}: {why}; "
            "expected finite xyxy with x2 >= x1 and y2 >= y1 and a finite score"
        )
    if cat_map is not None:
        outside = np.flatnonzero((labels < 0) | (labels >= len(cat_map)))
        if outside.size:
            raise InvalidArgumentError(f"{where}: label {labels[outside[0]]} outside the {len(cat_map)} classes")
        labels = cat_map[labels]
    return [
        {"image_id": image_id, "category_id": c, "bbox": b, "score": s}
        for b, s, c in zip(xywh.tolist(), scores.tolist(), labels.tolist(), strict=True)
    ]
