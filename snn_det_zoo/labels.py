"""Label formats that data loaders and metrics share: COCO ground truth and Gen1 box arrays.

One validation for each: :func:`check_coco_dict` (COCO ``instances_*.json``), :func:`first_bad_box` (Gen1
labels and detections), and the authors' Gen1 label processing (:func:`authors_gen1_targets`), which both the
datasets and the ``frames`` protocol apply. Below ``data`` and ``eval``, which import neither each other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .constants import GEN1_CLASSES, GEN1_HEIGHT, GEN1_WIDTH
from .errors import DataFormatError, DataNotFoundError, InvalidArgumentError

__all__ = [
    "BBOX_DTYPE",
    "BOX_RULE",
    "GEN1_NUM_CLASSES",
    "authors_gen1_targets",
    "check_coco_dict",
    "column_array",
    "first_bad_box",
    "first_bad_xywh",
    "load_coco_json",
]

_INT64_MAX = np.iinfo(np.int64).max

# The toolbox's current label layout (src/io/box_loading.py); read_boxes converts every older variant to it.
BBOX_DTYPE = np.dtype(
    {
        "names": ["t", "x", "y", "w", "h", "class_id", "track_id", "class_confidence"],
        "formats": ["<i8", "<f4", "<f4", "<f4", "<f4", "<u4", "<u4", "<f4"],
        "offsets": [0, 8, 12, 16, 20, 24, 28, 32],
        "itemsize": 40,
    }
)


# Class ids of the Gen1 labels: 0 = car, 1 = pedestrian (constants.GEN1_CLASSES names them).
GEN1_NUM_CLASSES = len(GEN1_CLASSES)


# ---------------------------------------------------------------------------------------------- COCO

BOX_RULE = "[x, y, w, h] of finite numbers with w >= 0 and h >= 0"


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


def column_array(
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


def first_bad_xywh(xywh: np.ndarray, scores: np.ndarray | None = None) -> tuple[int, str] | None:
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
    ids = column_array(
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
        column_array([ann.get(key) for ann in annotations], "iu", needs_int(key))
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
    xywh = column_array(
        [ann.get("bbox") for ann in annotations],
        "iuf",
        lambda i, bbox: DataFormatError(f"{source}: annotations[{i}]['bbox'] must be {BOX_RULE}, got {bbox!r}"),
        width=4,
    ).astype(np.float64)
    bad = first_bad_xywh(xywh)
    if bad is not None:
        i, why = bad
        raise DataFormatError(
            f"{source}: annotations[{i}] (id {ids[i]}): {why}: bbox {annotations[i]['bbox']!r}; expected {BOX_RULE}"
        )

    def bad_area(i: int, area: Any) -> DataFormatError:
        return DataFormatError(
            f"{source}: annotations[{i}] (id {ids[i]}) has area {area!r}; expected a finite number >= 0"
        )

    area = column_array([ann.get("area", 0.0) for ann in annotations], "iuf", bad_area).astype(np.float64)
    wrong = np.flatnonzero(~(np.isfinite(area) & (area >= 0)))
    if wrong.size:
        raise bad_area(int(wrong[0]), annotations[int(wrong[0])]["area"])
    return dict(data)




# ---------------------------------------------------------------------------------------------- Gen1


def _is_count(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and value > 0


def first_bad_box(
    boxes: np.ndarray, num_classes: int = GEN1_NUM_CLASSES, detections: bool = False
) -> tuple[int, str] | None:
    """The index of the first box no metric can use, and why; ``None`` when every box is fine.

    Labels need finite ``x``, ``y``, ``w``, ``h`` with ``w > 0`` and ``h > 0`` and a ``class_id`` in
    ``0 .. num_classes - 1``. Detections (``detections=True``) may have zero size (``w, h >= 0``) and need a
    finite ``class_confidence``. Vectorised: any field layout with those names (every :func:`read_boxes`
    input version, ``BBOX_DTYPE``).
    """
    if not _is_count(num_classes):
        raise InvalidArgumentError(f"num_classes must be a positive integer, got {num_classes!r}")
    x, y, w, h = (np.asarray(boxes[k], dtype=np.float64) for k in ("x", "y", "w", "h"))
    cls = np.asarray(boxes["class_id"])
    finite = np.isfinite(x) & np.isfinite(y) & np.isfinite(w) & np.isfinite(h)
    sized = ((w >= 0) & (h >= 0)) if detections else ((w > 0) & (h > 0))
    known = (cls >= 0) & (cls < num_classes)
    scored = np.isfinite(boxes["class_confidence"]) if detections else np.ones(len(x), dtype=bool)
    bad = np.flatnonzero(~(finite & sized & known & scored))
    if not bad.size:
        return None
    i = int(bad[0])
    if not finite[i]:
        why = "x, y, w and h must be finite"
    elif not sized[i]:
        why = "w and h must be >= 0" if detections else "w and h must be > 0"
    elif not known[i]:
        why = f"class_id must be in 0..{num_classes - 1} ({num_classes} classes)"
    else:
        why = f"class_confidence {boxes['class_confidence'][i]} must be finite"
    return i, f"{why}; got x {x[i]}, y {y[i]}, w {w[i]}, h {h[i]}, class_id {cls[i]}"


def authors_gen1_targets(
    boxes: np.ndarray, style: str = "spikeyolo", width: int = GEN1_WIDTH, height: int = GEN1_HEIGHT
) -> tuple[np.ndarray, np.ndarray]:
    """The labels of one timestamp as SpikeYOLO / EMS-YOLO make them (``create_targets``), as xyxy pixels.

    Both keep the last box of every ``track_id``, clamp x and w to ``[0, width]`` and y and h to
    ``[0, height]`` *independently* (so a box is shifted rather than clipped), take centres, and drop boxes
    with zero width or height. SpikeYOLO clamps the centres and sizes once more; EMS-YOLO does not.

    :param boxes: ``BBOX_DTYPE`` records of one timestamp (as :func:`read_boxes` returns).
    :param style: ``"spikeyolo"`` or ``"emsyolo"``.
    :returns: ``(labels int64 [N], boxes float32 [N, 4] xyxy in sensor pixels)``, ordered as the authors' code
        orders them (by decreasing track id).
    """
    if style not in ("spikeyolo", "emsyolo"):
        raise InvalidArgumentError(f"style must be 'spikeyolo' or 'emsyolo', got {style!r}")
    # np.unique on the reversed ids finds each track's last row; the authors flip the result, so do we.
    _, first_rev = np.unique(boxes["track_id"][::-1], return_index=True)
    keep = (len(boxes) - 1 - first_rev)[::-1]
    picked = boxes[keep]
    xywh = np.stack([picked[k].astype(np.float32) for k in ("x", "y", "w", "h")], axis=1).reshape(-1, 4)
    limits = np.array([width, height, width, height], dtype=np.float32)
    xywh = np.clip(xywh, 0, limits)
    centres = xywh[:, :2] + xywh[:, 2:] / 2
    cxcywh = np.concatenate([centres, xywh[:, 2:]], axis=1)
    if style == "spikeyolo":
        cxcywh = np.clip(cxcywh, 0, limits)
    valid = (cxcywh[:, 2] != 0) & (cxcywh[:, 3] != 0)
    cxcywh = cxcywh[valid]
    xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
    return picked["class_id"][valid].astype(np.int64), xyxy.astype(np.float32)
