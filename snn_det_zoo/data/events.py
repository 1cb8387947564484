"""Event-to-frame representations for Prophesee Gen1, each a named function.

- :func:`last_event_polarity_frames`: the encoding both SpikeYOLO and EMS-YOLO use offline: a grey (127) frame
  per time bin in which every pixel that fired shows its *last* event's polarity (ON 255, OFF 0).
- :func:`spikeyolo_gen1_input` / :func:`emsyolo_gen1_input`: the authors' offline frames with their loaders'
  scaling and time order, at sensor resolution (reference/spikeyolo.md §6, reference/emsyolo.md §9); the
  loaders' resize and padding into network pixels belong to each model's transform.
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

import numpy as np
import torch

from ..constants import GEN1_HEIGHT, GEN1_WIDTH
from ..errors import InvalidArgumentError

__all__ = [
    "bin_edges",
    "emsyolo_gen1_input",
    "last_event_polarity_frames",
    "polarity_histogram",
    "spikeyolo_gen1_input",
]

_GREY, _ON = 127, 255  # "no event" grey, ON value


def bin_edges(t_label: int, window_us: int, T: int) -> np.ndarray:
    """The ``T + 1`` bin edges (us) of the window ending at ``t_label``, as ``PSEELoader`` cuts them."""
    if T < 1 or window_us < T:
        raise InvalidArgumentError(f"need T >= 1 and window_us >= T, got T={T}, window_us={window_us}")
    start = max(int(t_label) - int(window_us), 0)
    return start + (int(window_us) // T) * np.arange(T + 1, dtype=np.int64)


def _in_bins(events: np.ndarray, edges: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The events inside ``[edges[0], edges[-1])`` and ``pos``: bin k is ``events[pos[k]:pos[k + 1]]``.

    One binary search per edge on the sorted times gives the half-open bins exactly, with no per-event search.
    """
    pos = np.searchsorted(events["t"], edges, "left")
    ev = events[pos[0] : pos[-1]]
    if len(ev) and (ev["x"].max() >= width or ev["y"].max() >= height):
        raise InvalidArgumentError(
            f"events outside the {width}x{height} sensor (max x {ev['x'].max()}, max y {ev['y'].max()})"
        )
    return ev, pos


def _binned(events: np.ndarray, edges: np.ndarray, height: int, width: int):
    """Bin index, y, x and p of the events inside ``[edges[0], edges[-1])``, in time order."""
    ev, pos = _in_bins(events, edges, height, width)
    b = np.repeat(np.arange(len(edges) - 1, dtype=np.int64), np.diff(pos))
    return b, ev["y"].astype(np.int64), ev["x"].astype(np.int64), ev["p"].astype(np.int64)


def last_event_polarity_frames(
    events: np.ndarray, edges: np.ndarray, height: int = GEN1_HEIGHT, width: int = GEN1_WIDTH
) -> np.ndarray:
    """SpikeYOLO's and EMS-YOLO's offline Gen1 encoding (``create_data`` in their Gen1 scripts).

    :param events: events sorted by ``t``.
    :param edges: ``T + 1`` bin edges from :func:`bin_edges`.
    :returns: uint8 ``[T, height, width]``: 127 where no event fell in the bin, else 255 * p of the last one.
    """
    ev, pos = _in_bins(events, edges, height, width)
    T = len(edges) - 1
    # int32 indices where they fit (always at sensor sizes): half the memory traffic of intp.
    index = np.int32 if max(T * height * width, len(ev)) < 2**31 else np.intp
    flat = ev["y"].astype(index)
    flat *= width
    flat += ev["x"]
    for k in range(1, T):  # each bin's plane offset, added to its run of events
        flat[pos[k] - pos[0] : pos[k + 1] - pos[0]] += k * height * width
    # The authors' fancy assignment keeps the last write; take each pixel's last event explicitly, with no
    # sort: counting events from the end (rank n-1-i), the smallest rank per pixel (an unbuffered minimum)
    # is its last event, and n where none fell. One gather from a small table then gives the pixel: 255*p of
    # that event, or grey for rank n (no boolean masks, no gather from the 13-byte records).
    n = len(flat)
    last = np.full(T * height * width, n, dtype=index)
    np.minimum.at(last, flat, np.arange(n - 1, -1, -1, dtype=index))
    table = np.empty(n + 1, dtype=np.uint8)
    np.multiply(ev["p"][::-1], _ON, out=table[:n], casting="unsafe")
    table[n] = _GREY
    return table.take(last).reshape(T, height, width)


def polarity_histogram(
    events: np.ndarray, edges: np.ndarray, height: int = GEN1_HEIGHT, width: int = GEN1_WIDTH
) -> np.ndarray:
    """Per-bin event counts by polarity: float32 ``[T, 2, height, width]``, channel 0 OFF, channel 1 ON."""
    b, y, x, p = _binned(events, edges, height, width)
    T = len(edges) - 1
    flat = ((b * 2 + p) * height + y) * width + x
    counts = np.bincount(flat, minlength=T * 2 * height * width)
    return counts.astype(np.float32).reshape(T, 2, height, width)


def _three_channels(frames_u8: np.ndarray) -> torch.Tensor:
    """``[T, H, W]`` uint8 -> float32 ``[T, 3, H, W]`` in [0, 1] (the authors keep 3 identical channels)."""
    x = torch.from_numpy(np.ascontiguousarray(frames_u8)).to(torch.float32).div_(255.0)
    return x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def spikeyolo_gen1_input(
    events: np.ndarray, t_label: int, T: int = 4, window_us: int = 250_000
) -> torch.Tensor:
    """SpikeYOLO's Gen1 frames for the label at ``t_label``: float32 ``[T, 3, 240, 304]`` at sensor resolution.

    ``pre_gen1.py``: ``T`` bins over the 250 ms before the label, :func:`last_event_polarity_frames`; the
    loader reverses the time axis (``[::-1]`` in ``_format_img``: the most recent bin first) and divides by
    255. Its resize to 253x320 and its letterbox to 320x320 are the model's transform (``SpikeYOLO`` with
    ``modality="events"``). The released Gen1 checkpoint uses ``T=2``; the script's default is ``T=4``.
    """
    frames = last_event_polarity_frames(events, bin_edges(t_label, window_us, T))
    return _three_channels(frames[::-1])


def emsyolo_gen1_input(
    events: np.ndarray, t_label: int, T: int = 5, window_us: int = 250_000, first_bin_only: bool = False
) -> torch.Tensor:
    """EMS-YOLO's Gen1 frames for the label at ``t_label``: float32 ``[T, 3, 240, 304]`` at sensor resolution.

    ``get_gen1_data.py``: five 50 ms bins over the 250 ms before the label, oldest first,
    :func:`last_event_polarity_frames`, divided by 255; the loader's stretch of every bin to 320x320 is the
    model's transform (``EMSYOLO`` with ``modality="events"``). ``first_bin_only=True`` reproduces the
    loader at the repository's HEAD, which feeds the oldest bin (``im[0]``) at every time step; commit
    914bd50 used ``im[i]`` (the default here).
    """
    frames = last_event_polarity_frames(events, bin_edges(t_label, window_us, T))
    if first_bin_only:
        frames = np.repeat(frames[:1], T, axis=0)
    return _three_channels(frames)
