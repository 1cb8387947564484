"""COCO box metrics: pycocotools is the reference, faster-coco-eval the fast path (proven equal in tests).

``coco_metrics`` returns the 12 statistics of ``COCOeval.summarize`` as a named dict; ``to_coco_results``
turns ``model.predict`` outputs into COCO result dicts. Nothing is printed unless ``verbose=True``.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import operator
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import DataFormatError, DataNotFoundError, InvalidArgumentError, MissingDependencyError
from .constants import COCO_STAT_KEYS

__all__ = ["BACKENDS", "check_coco_dict", "coco_metrics", "load_coco_json", "to_coco_results"]

BACKENDS = ("pycocotools", "faster")

_BOX_RULE = "[x, y, w, h] of finite numbers with w >= 0 and h >= 0"
_INT64_MAX = np.iinfo(np.int64).max


def load_coco_json(path: str | os.PathLike) -> dict:
    """Read an ``instances_*.json`` file and validate it with :func:`check_coco_dict`.

    :raises DataNotFoundError: the file does not exist.
    :raises DataFormatError: not JSON, or not a valid COCO ground truth (the message names the file).
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataNotFoundError(f"COCO annotation file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "expected a COCO annotation file"
        ) from exc
    return check_coco_dict(data, source=path)


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


def _as_array(values: Any, kinds: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """``values`` as an array of ``shape`` whose dtype kind is one of ``kinds``; ``None`` if it is not one."""
    if shape and not shape[0]:
        return np.zeros(shape, dtype=np.float64 if "f" in kinds else np.int64)
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError):  # ragged lists
        return None
    if arr.dtype.kind == "u" and arr.size and arr.max() > _INT64_MAX:  # so that every accepted id fits int64
        return None
    return arr if arr.shape == shape and arr.dtype.kind in kinds else None


def _column(
    values: Sequence, kinds: str, refuse: Callable[[int, Any], Exception], width: int | None = None
) -> np.ndarray:
    """One field of every record as one array (``kinds``: ``"iu"`` integers, ``"iuf"`` numbers), else
    ``refuse(index, value)`` of the first record whose value does not fit. Vectorised: one NumPy conversion
    in the common case, a Python scan only to name the culprit."""
    shape = (len(values),) if width is None else (len(values), width)
    arr = _as_array(values, kinds, shape)
    if arr is not None:
        return arr
    for i, value in enumerate(values):
        if _as_array(value, kinds, shape[1:]) is None:
            raise refuse(i, value)
    raise AssertionError("unreachable: the column failed but none of its values did")


def _first_repeat(ids: np.ndarray) -> tuple[int, int] | None:
    """``(i, j)``: record ``i`` is the first to repeat the id of the earlier record ``j``; ``None`` if none."""
    order = np.argsort(ids, kind="stable")
    repeats = order[1:][ids[order][1:] == ids[order][:-1]]
    if not repeats.size:
        return None
    i = int(repeats.min())
    return i, int(np.flatnonzero(ids == ids[i])[0])


def _bad_box(xywh: np.ndarray, scores: np.ndarray | None = None) -> tuple[int, str] | None:
    """The first row of ``xywh`` [N, 4] (and ``scores`` [N]) that no metric can score, and why.

    pycocotools' IoU counts a NaN box as a match and faster-coco-eval as a miss, so neither result means
    anything; a negative size gives a positive ``w * h`` area and a wrong IoU.
    """
    finite = np.isfinite(xywh).all(axis=1)
    ok = finite & (xywh[:, 2] >= 0) & (xywh[:, 3] >= 0)
    if scores is not None:
        ok &= np.isfinite(scores)
    bad = np.flatnonzero(~ok)
    if not bad.size:
        return None
    i = int(bad[0])
    if not finite[i]:
        return i, "box is not finite"
    if scores is not None and not np.isfinite(scores[i]):
        return i, "score is not finite"
    return i, "negative width or height"


def _ids(items: list, key: str, source: str) -> np.ndarray:
    """The ``id`` of every image or category, refusing entries without an integer id and repeated ids."""
    ids = _column(
        [item.get("id") if isinstance(item, Mapping) else None for item in items],
        "iu",
        lambda i, _: DataFormatError(f"{source}: {key}[{i}] must be an object with an integer 'id'"),
    )
    repeat = _first_repeat(ids)
    if repeat is not None:
        i, j = repeat
        raise DataFormatError(f"{source}: {key}[{i}] repeats id {ids[i]} of {key}[{j}]")
    return ids


def check_coco_dict(data: Any, source: str = "ground truth") -> dict:
    """Validate a COCO ground-truth dict; returns a shallow copy. ``source`` names it in error messages.

    Refused, naming the entry and its id: entries without integer ids, repeated image, category or annotation
    ids, annotations of images or categories that are not listed, boxes that are not ``[x, y, w, h]`` of
    finite numbers with ``w >= 0`` and ``h >= 0``, and an ``area`` that is not a finite number >= 0.
    Zero-size boxes are allowed: COCO's own instances_train2017.json has two (height 0.0, annotation ids 918
    and 2206849; cocodataset/cocoapi#355); :class:`..data.coco.CocoDetection` drops them from its targets.
    This is the one validation of COCO ground truth: the metrics and the dataset both call it.

    :raises DataFormatError: the first problem found.
    """
    if not isinstance(data, Mapping):
        raise DataFormatError(
            f"{source}: expected a JSON object with 'images', 'annotations' and 'categories', "
            f"got {type(data).__name__}"
        )
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            found = "missing" if key not in data else type(data[key]).__name__
            raise DataFormatError(f"{source}: expected '{key}' to be a list ({found})")
    image_ids = _ids(data["images"], "images", source)
    category_ids = _ids(data["categories"], "categories", source)
    annotations = data["annotations"]
    for i, ann in enumerate(annotations):
        if not isinstance(ann, Mapping):
            raise DataFormatError(f"{source}: annotations[{i}] must be an object")

    def needs_int(key: str) -> Callable[[int, Any], Exception]:
        return lambda i, _: DataFormatError(f"{source}: annotations[{i}] needs an integer '{key}'")

    ids, image_of, category_of = (
        _column([ann.get(key) for ann in annotations], "iu", needs_int(key))
        for key in ("id", "image_id", "category_id")
    )
    repeat = _first_repeat(ids)
    if repeat is not None:
        i, j = repeat
        raise DataFormatError(f"{source}: annotations[{i}] repeats id {ids[i]} of annotations[{j}]")
    for refs, known, key, listed in (
        (image_of, image_ids, "image_id", "images"),
        (category_of, category_ids, "category_id", "categories"),
    ):
        unknown = np.flatnonzero(~np.isin(refs, known))
        if unknown.size:
            i = int(unknown[0])
            raise DataFormatError(
                f"{source}: annotations[{i}] (id {ids[i]}) refers to {key} {refs[i]}, which is not in '{listed}'"
            )
    xywh = _column(
        [ann.get("bbox") for ann in annotations],
        "iuf",
        lambda i, bbox: DataFormatError(f"{source}: annotations[{i}]['bbox'] must be {_BOX_RULE}, got {bbox!r}"),
        width=4,
    ).astype(np.float64)
    bad = _bad_box(xywh)
    if bad is not None:
        i, why = bad
        raise DataFormatError(
            f"{source}: annotations[{i}] (id {ids[i]}): {why}: bbox {annotations[i]['bbox']!r}; expected {_BOX_RULE}"
        )

    def bad_area(i: int, area: Any) -> DataFormatError:
        return DataFormatError(
            f"{source}: annotations[{i}] (id {ids[i]}) has area {area!r}; expected a finite number >= 0"
        )

    area = _column([ann.get("area", 0.0) for ann in annotations], "iuf", bad_area).astype(np.float64)
    wrong = np.flatnonzero(~(np.isfinite(area) & (area >= 0)))
    if wrong.size:
        raise bad_area(int(wrong[0]), annotations[int(wrong[0])]["area"])
    return dict(data)


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

    img = _column(img_col, "iu", expected("image_id", "an integer"))
    cat = _column(cat_col, "iu", expected("category_id", "an integer"))
    xywh = _column(box_col, "iuf", expected("bbox", "4 numbers [x, y, w, h]"), width=4).astype(np.float64)
    scores = _column(score_col, "iuf", expected("score", "a number")).astype(np.float64)
    unknown = np.flatnonzero(~np.isin(img, np.fromiter(image_ids, np.int64, len(image_ids))))
    if unknown.size:
        i = int(unknown[0])
        raise InvalidArgumentError(f"detections[{i}] has image_id {img[i]}, which is not in the ground truth")
    bad = _bad_box(xywh, scores)
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
    bad = _bad_box(xywh, scores)
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
