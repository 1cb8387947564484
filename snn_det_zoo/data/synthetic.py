"""Built-in synthetic detection sets: no download, deterministic from a seed, hard enough to learn from.

They let the whole pipeline (training, predictions, COCO metrics, energy, the leaderboard) run on a fresh
machine, and give tests data whose ground truth is exact.

- :class:`SyntheticShapes`: static RGB images of five filled shape classes of many sizes on a shaded,
  noisy, cluttered background (lines and specks that are not objects), objects occluding each other; one
  ``[3, H, W]`` image in ``[0, 1]`` per sample.
- :class:`SyntheticEvents`: the same scenes with the shapes moving, seen by an idealised event camera
  (a log-intensity change of ``contrast`` fires an event), so each sample is a stream of ``(t, x, y, p)``
  events in Gen1's record layout, binned into ``T`` frames exactly as SpikeYOLO and EMS-YOLO encode Gen1
  (:func:`.events.last_event_polarity_frames`: grey 127 = no event, 255 = last event ON, 0 = OFF, /255, three
  identical channels). Labels are the boxes at the end of the window, as Gen1 labels a timestamp with the
  events before it.

Boxes are the tight boxes of each object's *visible* pixels (xyxy, pixels, exclusive right/bottom edge); an
object drawn later hides at most 60 % of an earlier one, so every drawn object is labelled. Sample ``i`` of a
split depends only on ``(seed, split, i)``: any subset or order gives the same data, another seed gives a
fresh draw of the same distribution, and the ``val`` split never shares a draw with ``train``. The built-in
validation set of the zoo is ``split="val", seed=VAL_SEED``.

Targets follow torchvision's detection convention: ``{"boxes": [N, 4] float, "labels": [N] int64,
"image_id": int}``; :meth:`coco_ground_truth` gives the same boxes as a COCO dict (category id = label + 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..constants import SHAPE_CLASSES
from ..errors import InvalidArgumentError
from .events import bin_edges, last_event_polarity_frames
from .gen1 import EVENT_DTYPE

__all__ = ["SHAPE_CLASSES", "SPLITS", "VAL_SEED", "SyntheticEvents", "SyntheticShapes"]

SPLITS = ("train", "val")
VAL_SEED = 0  # the zoo's built-in validation split is split "val" of seed 0
_MAX_PLACEMENT_TRIES = 50  # rejection sampling; fewer objects if it fails
_MAX_HIDDEN = 0.6  # a later object may hide at most this share of an earlier one
_MIN_VISIBLE_SIDE = 4  # pixels: smaller visible parts are not placed


def _size_pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """``64`` or ``(h, w)`` -> ``(h, w)``, checked."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 16 for v in pair):
        raise InvalidArgumentError(f"{name} must be an int or an (height, width) pair of ints >= 16, got {value!r}")
    return pair  # type: ignore[return-value]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class _Shape:
    """One object: its class, its box at time 0 (float xywh) and its displacement over the window (dx, dy)."""

    label: int
    x: float
    y: float
    w: float
    h: float
    intensity: tuple[float, float, float]
    dx: float = 0.0
    dy: float = 0.0

    def mask(self, height: int, width: int, tau: float = 0.0) -> np.ndarray:
        """Pixels covered at time ``tau`` in [0, 1], sampled at pixel centres."""
        x0, y0 = self.x + self.dx * tau, self.y + self.dy * tau
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
        inside_box = (xx >= x0) & (xx < x0 + self.w) & (yy >= y0) & (yy < y0 + self.h)
        kind = SHAPE_CLASSES[self.label]
        u, v = (xx - x0) / self.w, (yy - y0) / self.h  # 0..1 across the box
        if kind == "rectangle":
            return inside_box
        if kind == "ellipse":
            return (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
        if kind == "triangle":  # apex at the top centre: below both slanted edges
            return inside_box & (np.abs(u - 0.5) <= 0.5 * v)
        if kind == "cross":  # two bars a third of the box wide
            return inside_box & ((np.abs(u - 0.5) <= 1 / 6) | (np.abs(v - 0.5) <= 1 / 6))
        radius = (u - 0.5) ** 2 + (v - 0.5) ** 2  # ring: an ellipse with a hole of half its size
        return (radius <= 0.25) & (radius >= 0.0625)


def _tight_box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


class _SyntheticDetection(Dataset):
    """What both sets share: seeding, object layout with occlusion, clutter, targets, the COCO ground truth."""

    classes: tuple[str, ...] = SHAPE_CLASSES

    def __init__(self, num_samples: int, image_size: int | Sequence[int], max_objects: int, min_size: int,
                 seed: int, split: str) -> None:
        self.num_samples = _check_int("num_samples", num_samples, 1)
        self.height, self.width = _size_pair(image_size, "image_size")
        self.max_objects = _check_int("max_objects", max_objects, 1)
        self.min_size = _check_int("min_size", min_size, 4)
        if self.min_size * 2 > min(self.height, self.width):
            raise InvalidArgumentError(f"min_size={min_size} leaves no room in a {self.height}x{self.width} image")
        self.seed = _check_int("seed", seed, 0)
        if split not in SPLITS:
            raise InvalidArgumentError(f"split must be one of {SPLITS}, got {split!r}")
        self.split = split

    def __len__(self) -> int:
        return self.num_samples

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        # One independent stream per (seed, split, sample, purpose): layout and pixels never share draws.
        return np.random.default_rng([self.seed, SPLITS.index(self.split), index, stream])

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"sample index must be an integer, got {type(index).__name__}")
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"sample {index} out of range for {self.num_samples} samples")
        return int(index) % self.num_samples

    def _max_shift(self) -> float:
        """How far an object may travel over one sample (0 for static images)."""
        return 0.0

    def _visible(self, shapes: list[_Shape], tau: float = 1.0) -> list[np.ndarray]:
        """Each object's visible pixels at ``tau``: its mask less those of the objects drawn after it."""
        masks = [s.mask(self.height, self.width, tau) for s in shapes]
        covered = np.zeros((self.height, self.width), dtype=bool)
        visible = [np.zeros(0)] * len(masks)
        for i in range(len(masks) - 1, -1, -1):
            visible[i] = masks[i] & ~covered
            covered |= masks[i]
        return visible

    def _layout(self, index: int) -> list[_Shape]:
        rng = self._rng(index, 0)
        count = int(rng.integers(1, self.max_objects + 1))
        shapes: list[_Shape] = []
        max_side = max(self.min_size + 1, min(self.height, self.width) // 2)
        for _ in range(count):
            for _ in range(_MAX_PLACEMENT_TRIES):
                # Log-uniform sizes: as many small objects as large ones, as in natural scenes.
                w, h = (float(round(v)) for v in np.exp(rng.uniform(np.log(self.min_size), np.log(max_side), 2)))
                shift = self._max_shift()
                dx, dy = (float(v) for v in rng.uniform(-shift, shift, size=2))
                # The whole trajectory stays inside the image.
                x_lo, x_hi = max(0.0, -dx), self.width - w - max(0.0, dx)
                y_lo, y_hi = max(0.0, -dy), self.height - h - max(0.0, dy)
                if x_hi <= x_lo or y_hi <= y_lo:
                    continue
                x, y = float(rng.uniform(x_lo, x_hi)), float(rng.uniform(y_lo, y_hi))
                label = int(rng.integers(len(self.classes)))
                intensity = tuple(float(v) for v in rng.uniform(0.55, 1.0, size=3))
                candidate = [*shapes, _Shape(label, x, y, w, h, intensity, dx, dy)]  # type: ignore[arg-type]
                if self._acceptable(candidate):
                    shapes = candidate
                    break
        return shapes

    def _acceptable(self, shapes: list[_Shape]) -> bool:
        """Every object keeps at least 40 % of its pixels and a visible part of a few pixels across."""
        full = [s.mask(self.height, self.width, 1.0) for s in shapes]
        for mask, visible in zip(full, self._visible(shapes), strict=True):
            if not mask.any() or visible.sum() < (1 - _MAX_HIDDEN) * mask.sum():
                return False
            x1, y1, x2, y2 = _tight_box(visible)
            if min(x2 - x1, y2 - y1) < _MIN_VISIBLE_SIDE:
                return False
        return True

    def target(self, index: int) -> dict[str, Any]:
        """The ground truth of sample ``index`` (visible boxes at the end of the sample's time window)."""
        index = self._check_index(index)
        shapes = self._layout(index)
        boxes = [_tight_box(v) for v in self._visible(shapes, tau=1.0)]
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([s.label for s in shapes], dtype=torch.int64),
            "image_id": index + 1,  # COCO ids start at 1
        }

    @property
    def category_ids(self) -> tuple[int, ...]:
        """COCO category id of each class index (``label + 1``)."""
        return tuple(range(1, len(self.classes) + 1))

    def coco_ground_truth(self) -> dict[str, Any]:
        """Every sample's boxes as a COCO ground-truth dict (``bbox`` is ``[x, y, w, h]``)."""
        images, annotations = [], []
        for index in range(self.num_samples):
            target = self.target(index)
            images.append({"id": target["image_id"], "width": self.width, "height": self.height,
                           "file_name": f"synthetic_{self.split}_{self.seed}_{index:06d}"})
            for box, label in zip(target["boxes"].tolist(), target["labels"].tolist(), strict=True):
                x1, y1, x2, y2 = box
                annotations.append({
                    "id": len(annotations) + 1, "image_id": target["image_id"],
                    "category_id": self.category_ids[label], "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                })
        categories = [{"id": cid, "name": name}
                      for cid, name in zip(self.category_ids, self.classes, strict=True)]
        return {"images": images, "annotations": annotations, "categories": categories}

    def _background(self, index: int) -> np.ndarray:
        """A dim, smoothly shaded, noisy ``[H, W, 3]`` scene with clutter: thin lines and small specks, some as
        bright as the objects, that no box covers."""
        rng = self._rng(index, 1)
        level = rng.uniform(0.05, 0.35, size=3)
        ramp = np.linspace(-0.05, 0.05, self.width)[None, :, None]
        noise = rng.normal(0.0, 0.02, size=(self.height, self.width, 3))
        scene = np.clip(level + ramp + noise, 0.0, 0.45)
        yy, xx = np.mgrid[0:self.height, 0:self.width].astype(np.float64) + 0.5
        for _ in range(int(rng.integers(0, 5))):  # line segments, one or two pixels wide
            (x0, x1), (y0, y1) = rng.uniform(0, self.width, 2), rng.uniform(0, self.height, 2)
            length = max(np.hypot(x1 - x0, y1 - y0), 1.0)
            t = np.clip(((xx - x0) * (x1 - x0) + (yy - y0) * (y1 - y0)) / length ** 2, 0, 1)
            near = np.hypot(xx - (x0 + t * (x1 - x0)), yy - (y0 + t * (y1 - y0))) <= rng.uniform(0.5, 1.0)
            scene[near] = rng.uniform(0.3, 0.9, size=3)
        for _ in range(int(rng.integers(0, 6))):  # specks of two or three pixels
            side = int(rng.integers(2, 4))
            x, y = int(rng.integers(0, self.width - side)), int(rng.integers(0, self.height - side))
            scene[y:y + side, x:x + side] = rng.uniform(0.3, 0.9, size=3)
        return scene

    def _render(self, background: np.ndarray, shapes: list[_Shape], tau: float) -> np.ndarray:
        image = background.copy()
        for shape in shapes:  # in order: later objects occlude earlier ones
            image[shape.mask(self.height, self.width, tau)] = shape.intensity
        return image

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_samples={self.num_samples}, "
                f"image_size=({self.height}, {self.width}), max_objects={self.max_objects}, "
                f"split={self.split!r}, seed={self.seed})")


class SyntheticShapes(_SyntheticDetection):
    """Static images of filled shapes for the COCO-style (static-image) track.

    Args:
        num_samples: number of images.
        image_size: ``int`` or ``(height, width)``, at least 16; the default 128 leaves a 4x4 grid at stride 32.
        max_objects: each image holds 1 to ``max_objects`` shapes.
        min_size: the smallest box side in pixels (sizes are log-uniform up to half the image).
        seed: the data set's seed; image ``i`` is a function of ``(seed, split, i)`` only.
        split: ``"train"`` or ``"val"``: two draws that never share an image.

    ``dataset[i]`` is ``(image [3, H, W] float32 in [0, 1], target)``.
    """

    def __init__(self, num_samples: int = 64, image_size: int | Sequence[int] = 128, max_objects: int = 6,
                 min_size: int = 10, seed: int = 0, split: str = "train") -> None:
        super().__init__(num_samples, image_size, max_objects, min_size, seed, split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        index = self._check_index(index)
        image = self._render(self._background(index), self._layout(index), tau=1.0)
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
        return tensor, self.target(index)


class SyntheticEvents(_SyntheticDetection):
    """Moving shapes seen by an event camera, for the Gen1-style (event) track.

    Args:
        num_samples: number of samples (each is one labelled timestamp with its event window).
        T: time bins per sample (the model's time steps).
        image_size: ``int`` or ``(height, width)`` of the sensor, at least 16.
        max_objects: 1 to ``max_objects`` shapes per sample.
        min_size: the smallest box side in pixels.
        window_us: the window of events before the label, in microseconds (Gen1 models use 250 ms).
        substeps: scene renders per window; each pixel fires at most one event per render.
        contrast: log-intensity change that fires an event.
        noise_rate: background-activity events per pixel per window (uniform in time, random polarity).
        seed: the data set's seed; sample ``i`` is a function of ``(seed, split, i)`` only.
        split: ``"train"`` or ``"val"``.

    ``dataset[i]`` is ``(frames [T, 3, H, W] float32, target)``; :meth:`events` gives the raw stream.
    """

    def __init__(self, num_samples: int = 32, T: int = 2, image_size: int | Sequence[int] = 128,
                 max_objects: int = 4, min_size: int = 10, window_us: int = 250_000, substeps: int = 16,
                 contrast: float = 0.2, noise_rate: float = 0.01, seed: int = 0, split: str = "train") -> None:
        super().__init__(num_samples, image_size, max_objects, min_size, seed, split)
        self.T = _check_int("T", T, 1)
        self.window_us = _check_int("window_us", window_us, 1)
        if self.window_us < self.T:
            raise InvalidArgumentError(f"window_us={window_us} is shorter than T={T} bins of 1 us")
        self.substeps = _check_int("substeps", substeps, 2)
        if not 0 < contrast < 5:
            raise InvalidArgumentError(f"contrast must be a log-intensity step in (0, 5), got {contrast!r}")
        if not 0 <= noise_rate <= 1:
            raise InvalidArgumentError(f"noise_rate must be in [0, 1] events per pixel per window, got {noise_rate!r}")
        self.contrast, self.noise_rate = float(contrast), float(noise_rate)

    def _max_shift(self) -> float:
        # Objects travel up to a quarter of the short side per window: enough to leave clear edges.
        return min(self.height, self.width) / 4

    def label_time_us(self, index: int) -> int:
        """The timestamp sample ``index`` is labelled at (its window ends there)."""
        return (self._check_index(index) + 1) * self.window_us

    def events(self, index: int) -> np.ndarray:
        """The event stream of sample ``index``: Gen1's ``EVENT_DTYPE`` records, sorted by time."""
        index = self._check_index(index)
        shapes, background = self._layout(index), self._background(index)
        rng = self._rng(index, 2)
        t0 = self.label_time_us(index) - self.window_us
        grey = lambda img: img.mean(axis=2)  # noqa: E731 (one-line luminance)
        reference = np.log(grey(self._render(background, shapes, 0.0)) + 1e-3)
        chunks = []
        for step in range(1, self.substeps + 1):
            tau = step / self.substeps
            log_now = np.log(grey(self._render(background, shapes, tau)) + 1e-3)
            change = log_now - reference
            ys, xs = np.nonzero(np.abs(change) >= self.contrast)
            if len(xs):
                t_lo = t0 + (step - 1) * self.window_us / self.substeps
                times = t_lo + rng.uniform(0, self.window_us / self.substeps, size=len(xs))
                chunks.append(self._records(times, xs, ys, change[ys, xs] > 0))
                reference[ys, xs] = log_now[ys, xs]
        n_noise = rng.binomial(self.height * self.width, self.noise_rate)
        if n_noise:
            chunks.append(self._records(t0 + rng.uniform(0, self.window_us, size=n_noise),
                                        rng.integers(0, self.width, size=n_noise),
                                        rng.integers(0, self.height, size=n_noise),
                                        rng.integers(0, 2, size=n_noise).astype(bool)))
        events = np.concatenate(chunks) if chunks else np.zeros(0, dtype=EVENT_DTYPE)
        return events[np.argsort(events["t"], kind="stable")]

    @staticmethod
    def _records(times: np.ndarray, xs: np.ndarray, ys: np.ndarray, on: np.ndarray) -> np.ndarray:
        records = np.zeros(len(xs), dtype=EVENT_DTYPE)
        records["t"], records["x"], records["y"], records["p"] = np.floor(times), xs, ys, on
        return records

    def to_frames(self, events: np.ndarray, t_end: int) -> torch.Tensor:
        """Bin ``events`` of the window ending at ``t_end`` into ``[T, 3, H, W]`` frames, oldest first, exactly
        as the Gen1 representations do (:func:`.events.last_event_polarity_frames`, then /255)."""
        frames = last_event_polarity_frames(events, bin_edges(t_end, self.window_us, self.T), self.height,
                                            self.width)
        x = torch.from_numpy(frames).to(torch.float32).div_(255.0)
        return x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        index = self._check_index(index)
        return self.to_frames(self.events(index), self.label_time_us(index)), self.target(index)

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, T={self.T}, window_us={self.window_us})"
