"""COCO box metrics: pycocotools is the reference, faster-coco-eval the fast path (proven equal in tests).

``coco_metrics`` returns the 12 statistics of ``COCOeval.summarize`` as a named dict; ``to_coco_results``
turns ``model.predict`` outputs into COCO result dicts. Nothing is printed unless ``verbose=True``.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import io
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..constants import COCO_STAT_KEYS
from ..errors import DataFormatError, InvalidArgumentError, MissingDependencyError
from ..labels import BOX_RULE, check_coco_dict, column_array, first_bad_xywh, load_coco_json

__all__ = ["BACKENDS", "DetectionColumns", "coco_metrics", "faster_available", "resolve_backend", "to_coco_results"]

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


_DET_KEYS = ("image_id", "category_id", "bbox", "score")
_DET_SHAPE = "a dict with image_id, category_id, bbox [x, y, w, h] and score"


class DetectionColumns(NamedTuple):
    """Detections as columns (what :func:`to_coco_results` gives with ``as_columns=True``): ``image_id`` and
    ``category_id`` int64 ``[N]``, ``bbox`` float64 ``[N, 4]`` (x, y, w, h in pixels), ``score`` float64 ``[N]``.
    :func:`coco_metrics` takes them as well as result dicts, and skips building the dicts twice."""

    image_id: np.ndarray
    category_id: np.ndarray
    bbox: np.ndarray
    score: np.ndarray


def _columns_of_dicts(detections: Sequence[Mapping]) -> DetectionColumns:
    """The four fields of every result dict as arrays: one list comprehension per field (C-speed subscripts,
    no per-record copy), one NumPy conversion per column; a Python scan only to name a culprit."""
    try:
        fields = [[det[key] for det in detections] for key in _DET_KEYS]
    except (KeyError, TypeError, IndexError):
        for i, det in enumerate(detections):
            if not isinstance(det, Mapping) or not all(key in det for key in _DET_KEYS):
                raise InvalidArgumentError(f"detections[{i}] must be {_DET_SHAPE}, got {det!r:.200}") from None
        raise
    img_col, cat_col, box_col, score_col = fields

    def expected(field: str, what: str) -> Callable[[int, Any], Exception]:
        return lambda i, v: InvalidArgumentError(f"detections[{i}]['{field}'] is {v!r:.200}; expected {what}")

    return DetectionColumns(
        column_array(img_col, "iu", expected("image_id", "an integer")).astype(np.int64, copy=False),
        column_array(cat_col, "iu", expected("category_id", "an integer")).astype(np.int64, copy=False),
        column_array(box_col, "iuf", expected("bbox", "4 numbers [x, y, w, h]"), width=4).astype(
            np.float64, copy=False
        ),
        column_array(score_col, "iuf", expected("score", "a number")).astype(np.float64, copy=False),
    )


def _check_columns(dets: DetectionColumns, image_ids: np.ndarray) -> None:
    """Refuse detections of images the ground truth does not list, and boxes or scores no metric can score."""
    unknown = np.flatnonzero(~np.isin(dets.image_id, image_ids))
    if unknown.size:
        i = int(unknown[0])
        raise InvalidArgumentError(
            f"detections[{i}] has image_id {dets.image_id[i]}, which is not in the ground truth"
        )
    bad = first_bad_xywh(dets.bbox, dets.score)
    if bad is not None:
        i, why = bad
        raise InvalidArgumentError(
            f"detections[{i}] (image_id {dets.image_id[i]}): {why}: bbox {dets.bbox[i].tolist()}, "
            f"score {dets.score[i]}; expected bbox {_BOX_RULE} and a finite score"
        )


def _groups(keys: np.ndarray) -> tuple[np.ndarray, list[int], list[int]]:
    """``order`` (a stable sort of ``keys``), and each distinct key with where its run starts and ends in
    ``keys[order]``: records grouped by key, in their own order within a group."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    bounds = np.append(starts, len(keys)).tolist()
    return order, ordered[starts].tolist(), bounds


def _result_index(coco_cls: type, coco_gt: Any, dets: DetectionColumns) -> Any:
    """The detections' COCO object, built in one pass from checked columns: the result annotations
    ``COCO.loadRes`` would make (area = w*h, ids from 1, not crowd; no segmentation polygon, which box
    scoring never reads) and the index ``createIndex`` would build from them (``anns``, ``imgToAnns`` and
    ``catToImgs`` in detection order; ``imgs``, ``cats`` shared with the ground truth), without its Python loop."""
    n = len(dets.score)
    areas = (dets.bbox[:, 2] * dets.bbox[:, 3]).tolist()
    image_of = dets.image_id.tolist()
    results = [
        {"image_id": i, "category_id": c, "bbox": b, "score": s, "area": a, "id": k, "iscrowd": 0}
        for k, i, c, b, s, a in zip(
            range(1, n + 1), image_of, dets.category_id.tolist(), dets.bbox.tolist(), dets.score.tolist(), areas,
            strict=True,
        )
    ]
    res = coco_cls()
    res.dataset = {"images": coco_gt.dataset["images"], "categories": coco_gt.dataset["categories"],
                   "annotations": results}
    res.anns = dict(zip(range(1, n + 1), results, strict=True))
    res.imgs, res.cats = coco_gt.imgs, coco_gt.cats
    res.imgToAnns, res.catToImgs = defaultdict(list), defaultdict(list)
    if n:
        order, images, bounds = _groups(dets.image_id)
        by_image = [results[j] for j in order.tolist()]
        for image_id, a, b in zip(images, bounds[:-1], bounds[1:], strict=True):
            res.imgToAnns[image_id] = by_image[a:b]
        order, categories, bounds = _groups(dets.category_id)
        image_by_category = dets.image_id[order].tolist()
        for category_id, a, b in zip(categories, bounds[:-1], bounds[1:], strict=True):
            res.catToImgs[category_id] = image_by_category[a:b]
    return res


def _coco_classes(backend: str) -> tuple[type, type]:
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    try:
        from faster_coco_eval import COCO, COCOeval_faster
    except ImportError as exc:
        raise MissingDependencyError(
            "backend='faster' needs faster-coco-eval: pip install 'snn-det-zoo[fast]'"
        ) from exc
    return COCO, COCOeval_faster


def _evaluate(backend: str, gt_data: dict, dets: DetectionColumns, img_ids: list[int] | None) -> np.ndarray:
    coco_cls, evaluator_cls = _coco_classes(backend)
    coco_gt = coco_cls()
    coco_gt.dataset = gt_data
    coco_gt.createIndex()
    evaluator = evaluator_cls(coco_gt, _result_index(coco_cls, coco_gt, dets), "bbox")
    if img_ids is not None:
        evaluator.params.imgIds = sorted(img_ids)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return np.asarray(evaluator.stats[: len(COCO_STAT_KEYS)], dtype=np.float64)


def faster_available() -> bool:
    """Whether faster-coco-eval is installed (found without importing it)."""
    return importlib.util.find_spec("faster_coco_eval") is not None


def resolve_backend(backend: str) -> str:
    """``backend``, with ``"auto"`` resolved: ``"faster"`` where faster-coco-eval is installed (the same 12
    numbers as pycocotools, proven by the tests, 5-9x sooner), else ``"pycocotools"``.

    :raises InvalidArgumentError: not one of ``"auto"`` and :data:`BACKENDS`.
    """
    if backend == "auto":
        return "faster" if faster_available() else "pycocotools"
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {('auto', *BACKENDS)}, got {backend!r}")
    return backend


def coco_metrics(
    gt: Mapping | str | os.PathLike,
    detections: Iterable[Mapping] | DetectionColumns,
    backend: str = "pycocotools",
    img_ids: Iterable[int] | None = None,
    verbose: bool = False,
) -> dict[str, float]:
    """The 12 COCO box statistics of ``detections`` against ``gt``.

    :param gt: a COCO ground-truth dict or the path of an ``instances_*.json`` file.
    :param detections: COCO result dicts ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``
        (absolute pixels; see :func:`to_coco_results`), or the same as :class:`DetectionColumns`. They are
        checked and indexed in one pass; the dicts given are not written into (``COCO.loadRes`` would).
    :param backend: ``"pycocotools"`` (the reference), ``"faster"`` (faster-coco-eval, same numbers) or
        ``"auto"`` (faster where installed: :func:`resolve_backend`).
    :param img_ids: evaluate only these images (default: every image of ``gt``).
    :param verbose: let the backend print its progress and summary table.
    :returns: ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}``;
        -1.0 where COCOeval has nothing to measure (e.g. no large objects), as pycocotools reports it.
    """
    backend = resolve_backend(backend)
    sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with _gc_paused():
        gt_data = _prepared_gt(gt)
        known = np.fromiter((im["id"] for im in gt_data["images"]), np.int64, len(gt_data["images"]))
        if not isinstance(detections, DetectionColumns):
            detections = _columns_of_dicts(detections if isinstance(detections, Sequence) else list(detections))
        _check_columns(detections, known)
        ids = None
        if img_ids is not None:
            ids = [int(i) for i in img_ids]
            missing = sorted(set(ids) - set(known.tolist()))
            if missing:
                raise InvalidArgumentError(f"img_ids not in the ground truth: {missing[:10]}")
        with sink:
            stats = _evaluate(backend, gt_data, detections, ids)
    return {key: float(v) for key, v in zip(COCO_STAT_KEYS, stats, strict=True)}


def _as_numpy(x: Any, name: str, shape: tuple[int | None, ...]) -> np.ndarray:
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if arr.ndim != len(shape) or any(w not in (None, g) for g, w in zip(arr.shape, shape, strict=True)):
        want = "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"
        raise InvalidArgumentError(f"{name} must have shape {want}, got {tuple(arr.shape)}")
    return arr


def to_coco_results(
    predictions: Sequence[Mapping],
    image_ids: Sequence[int],
    category_ids: Sequence[int] | None = None,
    as_columns: bool = False,
) -> list[dict] | DetectionColumns:
    """Turn ``model.predict`` outputs into COCO result dicts.

    :param predictions: one dict per image with ``boxes`` ``[N, 4]`` (xyxy, original-image pixels), ``scores``
        ``[N]`` and ``labels`` ``[N]`` (contiguous class indices); tensors or arrays.
    :param image_ids: the COCO image id of each prediction, same order.
    :param category_ids: class index -> COCO category id (e.g. ``COCO80_TO_COCO91``); ``None`` keeps the
        labels as category ids.
    :param as_columns: give :class:`DetectionColumns` (what :func:`coco_metrics` scores without making any
        dict of its own) instead of the list of dicts.
    :returns: ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``, or the same as columns.
    :raises InvalidArgumentError: a non-finite box or score, a box with ``x2 < x1`` or ``y2 < y1``, a label
        outside ``category_ids``; the message names the prediction, its image id and the box.
    """
    if len(predictions) != len(image_ids):
        raise InvalidArgumentError(f"got {len(predictions)} predictions but {len(image_ids)} image ids")
    cat_map = None if category_ids is None else np.asarray(category_ids, dtype=np.int64)
    parts = [
        _columns_of(pred, f"predictions[{k}] (image_id {image_id})", int(image_id), cat_map)
        for k, (pred, image_id) in enumerate(zip(predictions, image_ids, strict=True))
    ]
    columns = DetectionColumns(*(
        np.concatenate([p[f] for p in parts]) if parts else np.zeros((0, 4) if f == 2 else 0, dtype)
        for f, dtype in enumerate((np.int64, np.int64, np.float64, np.float64))
    ))
    if as_columns:
        return columns
    with _gc_paused():
        return [
            {"image_id": i, "category_id": c, "bbox": b, "score": s}
            for i, c, b, s in zip(*(column.tolist() for column in columns), strict=True)
        ]


def _columns_of(pred: Mapping, where: str, image_id: int, cat_map: np.ndarray | None) -> DetectionColumns:
    """The checked result columns of one prediction (see :func:`to_coco_results`); ``where`` names it."""
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
    return DetectionColumns(np.full(len(xywh), image_id, np.int64), labels, xywh, scores)
