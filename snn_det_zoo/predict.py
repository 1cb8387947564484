"""Seeing detections: ``snn-det-zoo predict MODEL INPUT...`` draws a model's boxes on images and recordings.

An INPUT is an image file, a folder of images (and recordings), or a Prophesee ``.dat`` event recording. An
image model draws its boxes, class names and scores on each image
(:func:`torchvision.utils.draw_bounding_boxes`); an event model reads a recording window by window (the
events before each prediction time, in the model family's own Gen1 representation), draws its boxes on a
two-colour rendering of each window and writes the windows as an animated GIF. Every run writes
``detections.json`` beside the pictures: per input (and per window), the boxes in the input's own pixels, the
scores, the label indices and the class names. All files of a run are renamed into place together.

Shaped after ``yolo predict`` of Ultralytics: pictures and a machine-readable record in an output folder of
the user's choosing (default ``runs/predict``).
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._atomic import check_writable_folder, write_files_atomic
from .data.gen1 import DatFile
from .data.gen1_dataset import REPRESENTATIONS
from .data.images import read_image
from .errors import DataFormatError, DataNotFoundError, InvalidArgumentError
from .nn.detector import Detector

__all__ = ["IMAGE_SUFFIXES", "MAX_WINDOWS", "RecordingWindows", "collect_inputs", "draw_detections", "predict_files",
           "render_events", "visible"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
RECORDING_SUFFIX = ".dat"
MAX_WINDOWS = 5000  # windows of one recording per run: each is a PNG kept until the run's files are renamed
MAX_GIF_FRAMES = 400  # the GIF shows at most this many windows, evenly spaced (GIF encoders keep every frame)
# Colour-blind-safe class colours (Okabe-Ito), one per label index modulo their number.
_PALETTE = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
            (204, 121, 167), (0, 0, 0))
_READABLE_SIDE = 384  # pictures smaller than this are enlarged for the labels' sake
# Event renderings: white where no event fell, ON and OFF events in two colours (the last event of a pixel).
_BACKGROUND, _ON_COLOUR, _OFF_COLOUR = (255, 255, 255), (0, 90, 181), (220, 50, 32)


@dataclass(frozen=True)
class RecordingWindows:
    """Which windows of a recording an event model sees: one prediction every ``every_ms`` from
    ``start_ms + window_ms`` to ``end_ms`` (default: the recording's last event), each from the ``window_ms``
    of events before it."""

    window_ms: float = 250.0
    every_ms: float | None = None  # default: window_ms (windows side by side)
    start_ms: float = 0.0
    end_ms: float | None = None

    def times_us(self, last_event_us: int) -> list[int]:
        """The prediction times (the end of each window), in whole microseconds, at most :data:`MAX_WINDOWS`."""
        for option, value in (("--window-ms", self.window_ms), ("--every-ms", self.every_ms),
                              ("--start-ms", self.start_ms), ("--end-ms", self.end_ms)):
            if value is not None and not math.isfinite(value):
                raise InvalidArgumentError(f"{option} needs a finite number of milliseconds, got {value!r}")
        window, every = self.window_ms * 1000, (self.every_ms or self.window_ms) * 1000
        if window < 1 or every < 1 or self.start_ms < 0:
            raise InvalidArgumentError(f"window and step must be at least 1 us (0.001 ms) and the start not "
                                       f"negative, got --window-ms {self.window_ms}, --every-ms {self.every_ms}, "
                                       f"--start-ms {self.start_ms}")
        if self.start_ms * 1000 > last_event_us:
            raise InvalidArgumentError(f"--start-ms {self.start_ms:g} is after the recording's last event "
                                       f"({last_event_us / 1000:g} ms)")
        first = self.start_ms * 1000 + window
        if self.end_ms is None:  # up to the first window that holds the last event (windows are half-open)
            count = max(1, math.ceil((last_event_us + 1 - first) / every) + 1)
        else:
            if self.end_ms * 1000 < first:
                raise InvalidArgumentError(f"the first window ends at {first / 1000:g} ms, after the end of the "
                                           f"span ({self.end_ms:g} ms); shorten --window-ms or move --start-ms/"
                                           "--end-ms")
            count = math.floor((self.end_ms * 1000 - first) / every + 1e-9) + 1
        if count > MAX_WINDOWS:
            raise InvalidArgumentError(f"{count} windows (one every {every / 1000:g} ms) is more than "
                                       f"{MAX_WINDOWS}: raise --every-ms or narrow --start-ms/--end-ms")
        return sorted({round(first + k * every) for k in range(count)})


def collect_inputs(paths: Iterable[str | os.PathLike[str]], kind: str | None = None) -> list[Path]:
    """Image files and recordings named by ``paths``: a file as given, a folder's files (not its subfolders)
    with an image or ``.dat`` suffix in name order; of a folder only the ``kind`` (``"image"`` or
    ``"recording"``) a model takes, where given.

    Raises:
        DataNotFoundError: a path that does not exist, a folder with no such file, or no input at all.
        InvalidArgumentError: a file that is neither an image nor a ``.dat`` recording.
    """
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = sorted(p for p in path.iterdir()
                            if p.is_file() and _kind(p) is not None and kind in (None, _kind(p)))
            if not inside:
                what = {"image": f"image ({', '.join(IMAGE_SUFFIXES)})", "recording": f"{RECORDING_SUFFIX} recording"}
                wanted = what[kind] if kind else f"{what['image']} or {what['recording']}"
                raise DataNotFoundError(f"{path}: no {wanted} in this folder")
            found += inside
        elif path.is_file():
            if _kind(path) is None:
                raise InvalidArgumentError(f"{path}: not an image ({', '.join(IMAGE_SUFFIXES)}) nor a Prophesee "
                                           f"{RECORDING_SUFFIX} recording")
            found.append(path)
        elif path.exists():
            raise InvalidArgumentError(f"{path}: not a regular file or folder")
        else:
            raise DataNotFoundError(f"{path}: no such file or folder")
    if not found:
        raise DataNotFoundError("no input given: name image files, folders or .dat recordings")
    return found


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "recording" if suffix == RECORDING_SUFFIX else None


def draw_detections(image: torch.Tensor, detections: dict[str, torch.Tensor],
                    class_names: Sequence[str]) -> torch.Tensor:
    """``image`` (uint8 ``[3, H, W]``) with each box, class name and score drawn on it.

    A small image is enlarged by a whole factor first (nearest neighbour, to at least 384 pixels on its long
    side) so that the labels stay readable; the boxes are scaled with it.
    """
    from torchvision.utils import draw_bounding_boxes

    scale = max(1, -(-_READABLE_SIDE // max(image.shape[-2:])))
    if scale > 1:
        image = image.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    labels = detections["labels"].tolist()
    if not labels:
        return image
    names = [_class_name(class_names, label) for label in labels]
    colours = [_PALETTE[label % len(_PALETTE)] for label in labels]
    text = [f"{name} {score:.2f}" for name, score in zip(names, detections["scores"].tolist(), strict=True)]
    width = max(2, round(max(image.shape[-2:]) / 320))
    return draw_bounding_boxes(image, detections["boxes"].float().cpu() * scale, labels=text, colors=colours,
                               width=width, fill_labels=True, label_colors=(0, 0, 0),
                               label_background_colors=colours)


def _class_name(class_names: Sequence[str], label: int) -> str:
    return class_names[label] if 0 <= label < len(class_names) else str(label)


def render_events(events: np.ndarray, height: int, width: int) -> torch.Tensor:
    """A window of events as a uint8 ``[3, height, width]`` picture: white where no event fell, ON events blue,
    OFF events red (each pixel shows its last event)."""
    picture = np.empty((height, width, 3), dtype=np.uint8)
    picture[:] = _BACKGROUND
    if len(events):
        x, y = events["x"].astype(np.int64), events["y"].astype(np.int64)
        if x.max() >= width or y.max() >= height:
            raise DataFormatError(f"events outside the {width}x{height} sensor (max x {x.max()}, max y {y.max()})")
        colours = np.where(events["p"].astype(bool)[:, None], _ON_COLOUR, _OFF_COLOUR).astype(np.uint8)
        picture[y, x] = colours  # in time order: a later event of a pixel overwrites an earlier one
    return torch.from_numpy(picture).permute(2, 0, 1).contiguous()


def _encode(picture: torch.Tensor) -> bytes:
    """A uint8 ``[3, H, W]`` picture as PNG (Pillow: torchvision's own codecs are deprecated since 0.29)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture.permute(1, 2, 0).cpu().numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def visible(detections: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The detections whose box keeps an area after clipping to the input (a box predicted beyond the edge
    ends up as a line along it)."""
    boxes = detections["boxes"]
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return {key: value[keep] for key, value in detections.items()}


def _record(detections: dict[str, torch.Tensor], class_names: Sequence[str]) -> list[dict[str, Any]]:
    return [{"box": [round(v, 2) for v in box], "score": round(score, 4), "label": label,
             "name": _class_name(class_names, label)}
            for box, score, label in zip(detections["boxes"].tolist(), detections["scores"].tolist(),
                                         detections["labels"].tolist(), strict=True)]


def _check_stems(files: Sequence[Path]) -> None:
    stems = [p.stem for p in files]
    odd = [p for p in files if p.stem in (".", "..")]
    if odd:  # "<stem>.png" and "<stem>/" would name the output folder or its parent
        raise InvalidArgumentError(f"{odd[0]}: its name gives no picture name; rename it")
    if len(set(stems)) != len(stems):
        twice = sorted({s for s in stems if stems.count(s) > 1})
        raise InvalidArgumentError(f"two inputs would write the same pictures ({', '.join(twice)}): give them in "
                                   "separate runs or rename one")


def _batches(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _representation(model: Detector, representation: str | None) -> str:
    name = representation or model.event_representation
    if name not in REPRESENTATIONS:
        raise InvalidArgumentError(f"unknown event representation {name!r}; known: {', '.join(REPRESENTATIONS)}")
    return name


def predict_files(
    model: Detector,
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    score_thresh: float | None = None,
    iou_thresh: float | None = None,
    max_detections: int | None = None,
    batch_size: int = 8,
    windows: RecordingWindows | None = None,
    representation: str | None = None,
    name: str = "",
) -> list[Path]:
    """Run ``model`` on ``inputs`` and write the pictures and ``detections.json`` into ``out_dir``.

    Images give ``<stem>.png``; a recording gives ``<stem>/<t>ms.png`` per window (``0000250.000ms.png``) and
    ``<stem>.gif`` (at most :data:`MAX_GIF_FRAMES` windows, evenly spaced). Returns the written paths
    (``detections.json`` last). An image model refuses recordings and an event model images. Detections are
    ``model.predict``'s, less the boxes left with no area after clipping to the input (:func:`visible`).
    """
    wanted = "recording" if model.modality == "events" else "image"
    files = collect_inputs(inputs, wanted)
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    _check_stems(files)
    check_writable_folder(out_dir)
    thresholds = dict(score_thresh=score_thresh, iou_thresh=iou_thresh, max_detections=max_detections)
    out, names = Path(out_dir), list(model.class_names)
    written: dict[Path, bytes] = {}
    records: list[dict[str, Any]] = []
    images = [p for p in files if _kind(p) == "image"]
    recordings = [p for p in files if _kind(p) == "recording"]
    wrong = recordings if wanted == "image" else images
    if wrong:
        raise InvalidArgumentError(f"{wrong[0]}: {name or model.model_name or 'this model'} takes "
                                   f"{'event recordings (.dat)' if wanted == 'recording' else 'images'} "
                                   f"(its modality is {model.modality!r})")
    for batch in _batches(images, batch_size):
        pictures = [read_image(p, exif_transpose=True) for p in batch]  # photos upright, as viewers show them
        for path, picture, det in zip(batch, pictures, model.predict(pictures, **thresholds), strict=True):
            det = visible(det)
            written[out / f"{path.stem}.png"] = _encode(draw_detections(picture, det, names))
            records.append({"input": str(path), "picture": f"{path.stem}.png", "height": picture.shape[-2],
                            "width": picture.shape[-1], "detections": _record(det, names)})
    if recordings:
        make = REPRESENTATIONS[_representation(model, representation)].make
        windows = windows or RecordingWindows()
        for path in recordings:
            records += _predict_recording(model, path, out, make, windows, thresholds, names, written)
    meta = {"model": name or model.model_name, "weights_tag": getattr(model, "weights_tag", None),
            "score_thresh": model.score_thresh if score_thresh is None else score_thresh,
            "iou_thresh": model.iou_thresh if iou_thresh is None else iou_thresh,
            "boxes": "xyxy in the input's own pixels; boxes with no area after clipping to the input are left out",
            "inputs": records}
    written[out / "detections.json"] = (json.dumps(meta, indent=1) + "\n").encode()
    return write_files_atomic(written)


def _predict_recording(model: Detector, path: Path, out: Path, make: Any, windows: RecordingWindows,
                       thresholds: dict[str, Any], names: Sequence[str], written: dict[Path, bytes]) -> list[dict]:
    dat = DatFile(path)
    if not len(dat):
        raise DataFormatError(f"{path}: no events in this recording")
    window_us = round(windows.window_ms * 1000)
    times = windows.times_us(dat.last_time)
    if window_us < model.T:
        raise InvalidArgumentError(f"--window-ms {windows.window_ms} is shorter than the model's T={model.T} bins")
    shown = set(times[:: math.ceil(len(times) / MAX_GIF_FRAMES)])
    gif_frames, records = [], []
    for t in times:
        events = dat.window(max(0, t - window_us), t)
        inputs = make(events, t, T=model.T, window_us=window_us)  # [T, C, H, W] at the sensor's resolution
        (det,) = model.predict([inputs], **thresholds)
        det = visible(det)
        height, width = (dat.header.height or inputs.shape[-2]), (dat.header.width or inputs.shape[-1])
        picture = draw_detections(render_events(events, height, width), det, names)
        png = f"{path.stem}/{t / 1000:011.3f}ms.png"  # t is whole microseconds: one name per window
        written[out / png] = _encode(picture)
        if t in shown:
            gif_frames.append(_quantised(picture))
        records.append({"input": str(path), "picture": png, "t_ms": t / 1000, "window_ms": windows.window_ms,
                        "events": len(events), "height": height, "width": width, "detections": _record(det, names)})
    step_ms = (windows.every_ms or windows.window_ms) * len(times) / len(gif_frames)  # the recording's pace
    written[out / f"{path.stem}.gif"] = _gif(gif_frames, duration=max(20, round(step_ms)))
    return records


def _quantised(picture: torch.Tensor) -> Any:
    """A picture as a palette image (a quarter of its RGB size), the form a GIF stores."""
    from PIL import Image

    return Image.fromarray(picture.permute(1, 2, 0).cpu().numpy()).quantize(colors=64)


def _gif(frames: Sequence[Any], duration: int) -> bytes:
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=list(frames[1:]), duration=duration, loop=0)
    return buffer.getvalue()
