"""Event-to-frame representations for Prophesee Gen1, each a named function.

- :func:`last_event_polarity_frames`: the encoding both SpikeYOLO and EMS-YOLO use offline: a grey (127) frame
  per time bin in which every pixel that fired shows its *last* event's polarity (ON 255, OFF 0).
- :func:`spikeyolo_gen1_input` / :func:`emsyolo_gen1_input`: what each network actually receives, the
  authors' offline frames followed by their loaders' resize, padding, scaling and time order
  (reference/spikeyolo.md §6, reference/emsyolo.md §9).
- :func:`polarity_histogram`: plain per-bin ON/OFF event counts at sensor resolution.

Events are structured arrays with fields ``t`` (us), ``x``, ``y``, ``p`` (0/1), as :func:`.gen1.read_dat`
returns.
The time bins follow the toolbox's ``PSEELoader``: ``seek_time(t_label - window)`` then ``T`` calls of
``load_delta_t(window // T)``, i.e. half-open bins ``[start + k*dt, start + (k+1)*dt)``, where a start before
the recording (``<= 0``) resets to 0 (so early labels get a window that ends *after* the label).
One toolbox quirk is not reproduced: when a binary-search probe of ``seek_time`` hits the target time exactly,
it skips that one event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..constants import GEN1_HEIGHT, GEN1_WIDTH
from ..errors import InvalidArgumentError

__all__ = [
    "EMSYOLO_GEN1_GEOMETRY",
    "SPIKEYOLO_GEN1_GEOMETRY",
    "FrameGeometry",
    "bin_edges",
    "emsyolo_gen1_input",
    "last_event_polarity_frames",
    "polarity_histogram",
    "resize_linear_u8",
    "spikeyolo_gen1_input",
]

_GREY, _ON, _PAD = 127, 255, 114  # "no event" grey, ON value, Ultralytics' letterbox border


def bin_edges(t_label: int, window_us: int, T: int) -> np.ndarray:
    """The ``T + 1`` bin edges (us) of the window ending at ``t_label``, as ``PSEELoader`` cuts them."""
    if T < 1 or window_us < T:
        raise InvalidArgumentError(f"need T >= 1 and window_us >= T, got T={T}, window_us={window_us}")
    start = max(int(t_label) - int(window_us), 0)
    return start + (int(window_us) // T) * np.arange(T + 1, dtype=np.int64)


def _binned(events: np.ndarray, edges: np.ndarray, height: int, width: int):
    """Bin index, y, x and p of the events inside ``[edges[0], edges[-1])``, in time order."""
    t = events["t"]
    lo, hi = np.searchsorted(t, edges[0], "left"), np.searchsorted(t, edges[-1], "left")
    ev = events[lo:hi]
    x, y = ev["x"].astype(np.int64), ev["y"].astype(np.int64)
    if len(ev) and (x.max() >= width or y.max() >= height):
        raise InvalidArgumentError(
            f"events outside the {width}x{height} sensor (max x {x.max()}, max y {y.max()})"
        )
    # Bins are equal, so the index is arithmetic; searchsorted keeps it exact for the half-open edges.
    b = np.searchsorted(edges, ev["t"], "right") - 1
    return b, y, x, ev["p"].astype(np.int64)


def last_event_polarity_frames(
    events: np.ndarray, edges: np.ndarray, height: int = GEN1_HEIGHT, width: int = GEN1_WIDTH
) -> np.ndarray:
    """SpikeYOLO's and EMS-YOLO's offline Gen1 encoding (``create_data`` in their Gen1 scripts).

    :param events: events sorted by ``t``.
    :param edges: ``T + 1`` bin edges from :func:`bin_edges`.
    :returns: uint8 ``[T, height, width]``: 127 where no event fell in the bin, else 255 * p of the last one.
    """
    b, y, x, p = _binned(events, edges, height, width)
    frames = np.full((len(edges) - 1, height, width), _GREY, dtype=np.uint8)
    flat = (b * height + y) * width + x
    # The authors' fancy assignment keeps the last write; take each pixel's last event explicitly.
    _, first_from_end = np.unique(flat[::-1], return_index=True)
    last = len(flat) - 1 - first_from_end
    frames.reshape(-1)[flat[last]] = (_ON * p[last]).astype(np.uint8)
    return frames


def polarity_histogram(
    events: np.ndarray, edges: np.ndarray, height: int = GEN1_HEIGHT, width: int = GEN1_WIDTH
) -> np.ndarray:
    """Per-bin event counts by polarity: float32 ``[T, 2, height, width]``, channel 0 OFF, channel 1 ON."""
    b, y, x, p = _binned(events, edges, height, width)
    T = len(edges) - 1
    flat = ((b * 2 + p) * height + y) * width + x
    counts = np.bincount(flat, minlength=T * 2 * height * width)
    return counts.astype(np.float32).reshape(T, 2, height, width)


# OpenCV's INTER_LINEAR on 8-bit images is fixed point: 11-bit weights, a horizontal pass into int32, then its
# SIMD vertical pass (VResizeLinearVec_32s8u: >>4, 16-bit mulhi, rounding >>2), which covers every pixel.
# At the borders OpenCV clamps the column weights but only the row indices (the row weights keep their
# fraction). Checked bit-exact against opencv-python-headless 5.0 on random images of several sizes.
_COEF_BITS = 11
_COEF_ONE = 1 << _COEF_BITS


def _linear_taps(src: int, dst: int, clamp_weights: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source index pairs and fixed-point weights of OpenCV's half-pixel bilinear sampling along one axis."""
    scale = 1.0 / (np.float64(dst) / np.float64(src))  # OpenCV: scale in double, then the position in float
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(f).astype(np.int64)
    frac = f - i0.astype(np.float32)
    if clamp_weights:
        frac[(i0 < 0) | (i0 >= src - 1)] = 0
    one = np.float32(_COEF_ONE)
    weights = np.stack([np.rint((np.float32(1) - frac) * one), np.rint(frac * one)])  # saturate_cast<short>
    return np.clip(i0, 0, src - 1), np.clip(i0 + 1, 0, src - 1), weights.astype(np.int64)


def resize_linear_u8(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 ``[..., H, W]`` images to ``size = (h, w)`` like ``cv2.resize(..., INTER_LINEAR)``.

    The authors' loaders resize with OpenCV; this reproduces its fixed-point arithmetic without needing it.
    """
    if image.dtype != np.uint8:
        raise TypeError(f"resize_linear_u8 expects uint8 images, got {image.dtype}")
    h, w = size
    y0, y1, wy = _linear_taps(image.shape[-2], h, clamp_weights=False)
    x0, x1, wx = _linear_taps(image.shape[-1], w, clamp_weights=True)
    src = image.astype(np.int64)
    rows = src[..., x0] * wx[0] + src[..., x1] * wx[1]  # horizontal pass, int32 in OpenCV
    top, bottom = rows[..., y0, :] >> 4, rows[..., y1, :] >> 4
    wy0, wy1 = wy[0][:, None], wy[1][:, None]
    out = (((top * wy0) >> 16) + ((bottom * wy1) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class FrameGeometry:
    """How a representation maps sensor pixels to network-input pixels: ``input = sensor * scale + pad``."""

    input_size: tuple[int, int]  # (h, w) of the frames the network sees
    scale: tuple[float, float] = (1.0, 1.0)  # (sx, sy)
    pad: tuple[float, float] = (0.0, 0.0)  # (left, top)

    def to_sensor(self, boxes_xyxy: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Map ``[N, 4]`` xyxy boxes from network-input pixels back to sensor pixels."""
        (sx, sy), (px, py) = self.scale, self.pad
        out = (
            boxes_xyxy.clone()
            if isinstance(boxes_xyxy, torch.Tensor)
            else np.array(boxes_xyxy, dtype=np.float64)
        )
        out[..., 0::2] = (out[..., 0::2] - px) / sx
        out[..., 1::2] = (out[..., 1::2] - py) / sy
        return out

    def to_input(self, boxes_xyxy: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Map ``[N, 4]`` xyxy boxes from sensor pixels to network-input pixels."""
        (sx, sy), (px, py) = self.scale, self.pad
        out = (
            boxes_xyxy.clone()
            if isinstance(boxes_xyxy, torch.Tensor)
            else np.array(boxes_xyxy, dtype=np.float64)
        )
        out[..., 0::2] = out[..., 0::2] * sx + px
        out[..., 1::2] = out[..., 1::2] * sy + py
        return out


# SpikeYOLO: long side to 320 (304x240 -> 320x253, Ultralytics load_image: ceil, capped at imgsz), then the
# LetterBox to 320x320 pads dh = 67 as top round(33.5 - 0.1) = 33, bottom round(33.5 + 0.1) = 34.
_SPIKEYOLO_RESIZED = (253, 320)
_SPIKEYOLO_PAD_TOP, _SPIKEYOLO_PAD_BOTTOM = 33, 34
SPIKEYOLO_GEN1_GEOMETRY = FrameGeometry(
    input_size=(320, 320), scale=(320 / GEN1_WIDTH, 253 / GEN1_HEIGHT), pad=(0.0, float(_SPIKEYOLO_PAD_TOP))
)
# EMS-YOLO: cv2.resize stretches each bin to 320x320.
EMSYOLO_GEN1_GEOMETRY = FrameGeometry(input_size=(320, 320), scale=(320 / GEN1_WIDTH, 320 / GEN1_HEIGHT))


def _three_channels(frames_u8: np.ndarray) -> torch.Tensor:
    """``[T, H, W]`` uint8 -> float32 ``[T, 3, H, W]`` in [0, 1] (the authors keep 3 identical channels)."""
    x = torch.from_numpy(np.ascontiguousarray(frames_u8)).to(torch.float32).div_(255.0)
    return x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def spikeyolo_gen1_input(
    events: np.ndarray, t_label: int, T: int = 4, window_us: int = 250_000
) -> torch.Tensor:
    """SpikeYOLO's Gen1 input for the label at ``t_label``: float32 ``[T, 3, 320, 320]``.

    ``pre_gen1.py``: ``T`` bins over the 250 ms before the label, :func:`last_event_polarity_frames`. Loader
    (``ultralytics/data/base.py``, ``augment.py``): bilinear resize to 253x320, letterbox to 320x320 with grey
    114 (33 rows on top, 34 below), time axis reversed (``[::-1]`` in ``_format_img``: the most recent bin
    first), divided by 255. The released Gen1 checkpoint uses ``T=2``; the script's default is ``T=4``.
    """
    frames = last_event_polarity_frames(events, bin_edges(t_label, window_us, T))
    resized = resize_linear_u8(frames, _SPIKEYOLO_RESIZED)
    padded = np.pad(
        resized, ((0, 0), (_SPIKEYOLO_PAD_TOP, _SPIKEYOLO_PAD_BOTTOM), (0, 0)), constant_values=_PAD
    )
    return _three_channels(padded[::-1])


def emsyolo_gen1_input(
    events: np.ndarray, t_label: int, T: int = 5, window_us: int = 250_000, first_bin_only: bool = False
) -> torch.Tensor:
    """EMS-YOLO's Gen1 input for the label at ``t_label``: float32 ``[T, 3, 320, 320]``.

    ``get_gen1_data.py``: five 50 ms bins over the 250 ms before the label, oldest first,
    :func:`last_event_polarity_frames`. Loader (``utils/datasets_g1T.py``): each bin stretched to 320x320 with
    bilinear resize, divided by 255. ``first_bin_only=True`` reproduces the loader at the repository's HEAD,
    which feeds the oldest bin (``im[0]``) at every time step; commit 914bd50 used ``im[i]`` (the default
    here).
    """
    frames = last_event_polarity_frames(events, bin_edges(t_label, window_us, T))
    if first_bin_only:
        frames = np.repeat(frames[:1], T, axis=0)
    return _three_channels(resize_linear_u8(frames, EMSYOLO_GEN1_GEOMETRY.input_size))
