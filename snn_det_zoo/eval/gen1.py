"""Gen1 detection metrics under two named protocols.

- ``"psee"``: the corrected Prophesee protocol (constants and sources in :mod:`.constants`): ground truth and
  predictions are filtered alike (``t > 0.5 s``, diagonal >= 30 px, both sides >= 10 px); each labelled
  timestamp becomes one COCO image holding its ground truth and every prediction within +-50 ms; COCOeval
  on 304x240 images. This follows the toolbox's ``evaluate_detection`` / RVT's ``evaluate_list``.
- ``"frames"``: the per-slice evaluation of the SNN papers (SpikeYOLO, EMS-YOLO): every labelled timestamp is
  one image whose ground truth is processed as the authors do (last box per track, clamped; see
  :func:`..labels.authors_gen1_targets`), predictions count only when made at exactly that timestamp,
  nothing is filtered. The papers' own numbers come from Ultralytics / YOLOv5 ``ap_per_class`` on 320x320
  inputs; here COCOeval scores the same matches (AP50 and AP50:95 are unchanged by the axis scaling, the
  small/medium/large split is done at sensor resolution).

Boxes travel as ``BBOX_DTYPE`` arrays (one per recording, sorted by ``t``); :func:`predictions_to_boxes` makes
them from ``model.predict`` outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..constants import GEN1_PSEE, PseeProtocol
from ..errors import InvalidArgumentError
from ..labels import BBOX_DTYPE, authors_gen1_targets, first_bad_box
from .coco import coco_metrics

__all__ = ["PROTOCOLS", "filter_boxes", "gen1_metrics", "predictions_to_boxes"]

PROTOCOLS = ("psee", "frames")


def filter_boxes(boxes: np.ndarray, protocol: PseeProtocol = GEN1_PSEE) -> np.ndarray:
    """Keep boxes with ``t > skip_us``, ``w**2 + h**2 >= min_box_diag**2``, ``w >= min_box_side`` and
    ``h >= min_box_side`` (the toolbox's ``filter_boxes`` with the protocol's constants)."""
    w, h = boxes["w"].astype(np.float64), boxes["h"].astype(np.float64)
    keep = (
        (boxes["t"] > protocol.skip_us)
        & (w**2 + h**2 >= protocol.min_box_diag**2)
        & (w >= protocol.min_box_side)
        & (h >= protocol.min_box_side)
    )
    return boxes[keep]


def _checked(boxes: np.ndarray, where: str, num_classes: int, detections: bool) -> np.ndarray:
    """One recording's boxes, sorted by ``t``, once :func:`..data.gen1.first_bad_box` finds none to refuse
    (under ``psee`` a NaN box would otherwise vanish in the size filter without a word)."""
    fields = {"t", "x", "y", "w", "h", "class_id"} | ({"class_confidence"} if detections else set())
    if getattr(boxes, "dtype", None) is None or boxes.dtype.names is None or not fields <= set(boxes.dtype.names):
        raise InvalidArgumentError(
            f"{where} must be a structured box array with {', '.join(sorted(fields))} "
            "(see snn_det_zoo.data.gen1.BBOX_DTYPE)"
        )
    bad = first_bad_box(boxes, num_classes, detections=detections)
    if bad is not None:
        i, why = bad
        raise InvalidArgumentError(f"{where}: box {i} (t {int(boxes['t'][i])}): {why}")
    return boxes[np.argsort(boxes["t"], kind="stable")]


def _windows(gt: np.ndarray, dt: np.ndarray, tol_us: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each unique GT timestamp: its GT boxes and the detections with ``|t - ts| <= tol_us``."""
    out = []
    for ts in np.unique(gt["t"]):
        g = gt[np.searchsorted(gt["t"], ts, "left") : np.searchsorted(gt["t"], ts, "right")]
        d = dt[np.searchsorted(dt["t"], ts - tol_us, "left") : np.searchsorted(dt["t"], ts + tol_us, "right")]
        out.append((g, d))
    return out


def _as_coco(
    windows: list[tuple[np.ndarray, np.ndarray]], classes: Sequence[str], width: int, height: int
) -> tuple[dict, list[dict]]:
    images, annotations, results = [], [], []
    for image_id, (gt, dt) in enumerate(windows, start=1):
        images.append({"id": image_id, "width": width, "height": height, "file_name": "n.a"})
        for b in gt:
            w, h = float(b["w"]), float(b["h"])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "area": w * h,
                    "iscrowd": 0,
                    "bbox": [float(b["x"]), float(b["y"]), w, h],
                    "category_id": int(b["class_id"]) + 1,
                }
            )
        for b in dt:
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(b["class_id"]) + 1,
                    "score": float(b["class_confidence"]),
                    "bbox": [float(b["x"]), float(b["y"]), float(b["w"]), float(b["h"])],
                }
            )
    categories = [{"id": i + 1, "name": name, "supercategory": "none"} for i, name in enumerate(classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _authors_gt(gt: np.ndarray, protocol: PseeProtocol) -> np.ndarray:
    """The ground truth of every timestamp as the SNN papers' label processing leaves it."""
    parts = []
    for ts in np.unique(gt["t"]):
        labels, xyxy = authors_gen1_targets(gt[gt["t"] == ts], "spikeyolo", protocol.width, protocol.height)
        part = np.zeros(len(labels), dtype=BBOX_DTYPE)
        part["t"], part["class_id"] = ts, labels
        part["x"], part["y"] = xyxy[:, 0], xyxy[:, 1]
        part["w"], part["h"] = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
        parts.append(part)
    return np.concatenate(parts) if parts else gt[:0]


def gen1_metrics(
    gt_boxes: Sequence[np.ndarray],
    dt_boxes: Sequence[np.ndarray],
    protocol: str = "psee",
    camera: PseeProtocol = GEN1_PSEE,
    backend: str = "pycocotools",
) -> dict[str, float]:
    """COCO statistics of Gen1 detections under a named protocol.

    :param gt_boxes: per recording, the labels as :func:`..data.gen1.read_boxes` returns them (unprocessed).
    :param dt_boxes: per recording (same order), the detections as ``BBOX_DTYPE`` arrays (``t`` = the time
        the prediction is made for; see :func:`predictions_to_boxes`).
    :param protocol: ``"psee"`` or ``"frames"`` (see the module docstring).
    :param camera: the sensor's constants (``GEN1_PSEE``; ``GEN4_PSEE`` for 1 Mpx).
    :param backend: COCO backend, as in :func:`.coco.coco_metrics`.
    :returns: the 12 COCO statistics (``AP``, ``AP50``, ... ``ARl``) plus ``"images"``, the number of
        timestamps evaluated.
    :raises InvalidArgumentError: a box that :func:`..data.gen1.first_bad_box` refuses (non-finite, a label
        with ``w`` or ``h`` <= 0, a detection with ``w`` or ``h`` < 0 or a non-finite score, a class id
        outside the camera's classes), naming the recording and the box; an unknown protocol; nothing left
        to evaluate.
    """
    if protocol not in PROTOCOLS:
        raise InvalidArgumentError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if len(gt_boxes) != len(dt_boxes):
        raise InvalidArgumentError(
            f"got ground truth for {len(gt_boxes)} recordings but detections for {len(dt_boxes)}"
        )
    n_classes = len(camera.classes)
    windows = []
    for i, (gt, dt) in enumerate(zip(gt_boxes, dt_boxes, strict=True)):
        gt = _checked(gt, f"gt_boxes[{i}]", n_classes, detections=False)
        dt = _checked(dt, f"dt_boxes[{i}]", n_classes, detections=True)
        if protocol == "psee":
            gt, dt = filter_boxes(gt, camera), (filter_boxes(dt, camera) if camera.filter_predictions else dt)
            windows += _windows(gt, dt, camera.time_tol_us)
        else:
            windows += _windows(_authors_gt(gt, camera), dt, 0)
    if not windows:
        raise InvalidArgumentError(f"no labelled timestamp left to evaluate under protocol {protocol!r}")
    gt_coco, results = _as_coco(windows, camera.classes, camera.width, camera.height)
    return {**coco_metrics(gt_coco, results, backend=backend), "images": float(len(windows))}


def predictions_to_boxes(
    predictions: Sequence[Mapping], timestamps: Sequence[int]
) -> np.ndarray:
    """``model.predict`` outputs of one recording -> a ``BBOX_DTYPE`` array sorted by ``t``.

    :param predictions: per sample, ``boxes`` ``[N, 4]`` xyxy in sensor pixels (as ``predict`` returns them),
        ``scores`` ``[N]``, ``labels`` ``[N]``.
    :param timestamps: per sample, the label time (us) the prediction is made for.
    """
    if len(predictions) != len(timestamps):
        raise InvalidArgumentError(f"got {len(predictions)} predictions but {len(timestamps)} timestamps")
    parts = []
    for k, (pred, ts) in enumerate(zip(predictions, timestamps, strict=True)):
        boxes = np.asarray(_numpy(pred["boxes"]), dtype=np.float64)
        if boxes.size and (boxes.ndim != 2 or boxes.shape[1] != 4):  # reshape would cut [N, 6] into boxes
            raise InvalidArgumentError(f"predictions[{k}]: boxes must have shape [N, 4], got {boxes.shape}")
        boxes = boxes.reshape(-1, 4)
        part = np.zeros(len(boxes), dtype=BBOX_DTYPE)
        part["t"] = int(ts)
        part["x"], part["y"] = boxes[:, 0], boxes[:, 1]
        part["w"], part["h"] = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        part["class_id"] = _numpy(pred["labels"]).astype(np.int64)
        part["class_confidence"] = _numpy(pred["scores"])
        parts.append(part)
    out = np.concatenate(parts) if parts else np.zeros(0, dtype=BBOX_DTYPE)
    return out[np.argsort(out["t"], kind="stable")]


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
