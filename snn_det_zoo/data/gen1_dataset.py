"""The Prophesee Gen1 detection dataset: one sample per labelled timestamp of every recording.

Layout (as distributed): ``<root>/<split>/<name>_td.dat`` and ``<name>_bbox.npy`` for split in train/val/test.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataNotFoundError, InvalidArgumentError
from ..labels import authors_gen1_targets
from .events import (
    bin_edges,
    emsyolo_gen1_input,
    polarity_histogram,
    spikeyolo_gen1_input,
)
from .gen1 import DatFile, read_boxes

__all__ = ["REPRESENTATIONS", "Gen1Detection", "Representation"]


def _histogram_input(events: np.ndarray, t_label: int, T: int, window_us: int) -> torch.Tensor:
    return torch.from_numpy(polarity_histogram(events, bin_edges(t_label, window_us, T)))


@dataclass(frozen=True)
class Representation:
    """A named event-to-frame representation: ``make(events, t_label, T, window_us) -> [T, C, H, W]`` at
    sensor resolution (the model's transform maps it into network pixels)."""

    name: str
    make: Callable[..., torch.Tensor]
    default_T: int
    label_style: str  # whose label processing the targets follow (see authors_gen1_targets)


REPRESENTATIONS: dict[str, Representation] = {
    "spikeyolo": Representation("spikeyolo", spikeyolo_gen1_input, 4, "spikeyolo"),
    "emsyolo": Representation("emsyolo", emsyolo_gen1_input, 5, "emsyolo"),
    "emsyolo_head": Representation("emsyolo_head", partial(emsyolo_gen1_input, first_bin_only=True), 5, "emsyolo"),
    "histogram": Representation("histogram", _histogram_input, 5, "spikeyolo"),
}


class Gen1Detection(Dataset):
    """Gen1 samples: ``(frames [T, C, H, W] float32, target)`` for each labelled timestamp.

    ``target`` holds ``boxes`` (float32 ``[N, 4]``, xyxy in *sensor* pixels, 304x240; map them to the network
    input with the model's transform), ``labels`` (int64, 0 car, 1 pedestrian), ``t`` (the label
    timestamp, us), ``sequence`` (the recording's name) and ``image_id`` (index + 1). Boxes follow the
    representation's authors' label processing (:func:`..labels.authors_gen1_targets`); the raw labels of a
    recording, for the ``psee`` protocol, come from :meth:`raw_boxes`.

    :param root: the folder holding ``train``, ``val`` and ``test``.
    :param split: one of those folder names.
    :param representation: a key of :data:`REPRESENTATIONS` (``spikeyolo``, ``emsyolo``, ``emsyolo_head``,
        ``histogram``).
    :param T: time bins (default: the representation's: 4, 5, 5, 5).
    :param window_us: length of the window that ends at each label (250 ms in both papers).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "test",
        representation: str = "spikeyolo",
        T: int | None = None,
        window_us: int = 250_000,
    ):
        if representation not in REPRESENTATIONS:
            raise InvalidArgumentError(
                f"unknown representation {representation!r}; choose from {sorted(REPRESENTATIONS)}"
            )
        self.representation = REPRESENTATIONS[representation]
        self.T = self.representation.default_T if T is None else int(T)
        bin_edges(0, window_us, self.T)  # validates T and window_us
        self.window_us = int(window_us)
        self.folder = os.path.join(os.fspath(root), split)
        if not os.path.isdir(self.folder):
            raise DataNotFoundError(f"Gen1 split folder not found: {self.folder}")
        names = sorted(f[: -len("_bbox.npy")] for f in os.listdir(self.folder) if f.endswith("_bbox.npy"))
        if not names:
            raise DataNotFoundError(f"no *_bbox.npy label files in {self.folder}")
        self.sequences: list[str] = names
        self._boxes: list[np.ndarray] = []
        self._samples: list[tuple[int, int, int]] = []  # (sequence index, first row, end row) per timestamp
        for seq, name in enumerate(names):
            dat = self._dat_path(name)
            if not os.path.isfile(dat):
                raise DataNotFoundError(f"events file missing for labels {name}_bbox.npy: {dat}")
            boxes = read_boxes(os.path.join(self.folder, name + "_bbox.npy"))
            self._boxes.append(boxes)
            starts = np.flatnonzero(np.r_[True, boxes["t"][1:] != boxes["t"][:-1]])
            ends = np.r_[starts[1:], len(boxes)]
            self._samples.extend((seq, int(a), int(b)) for a, b in zip(starts, ends, strict=True))
        self._dat: dict[int, DatFile] = {}  # opened lazily, per worker process

    def _dat_path(self, name: str) -> str:
        return os.path.join(self.folder, name + "_td.dat")

    def raw_boxes(self, sequence: int | str) -> np.ndarray:
        """All labels of one recording, unprocessed (``BBOX_DTYPE``), e.g. as ``psee`` ground truth."""
        index = self.sequences.index(sequence) if isinstance(sequence, str) else sequence
        return self._boxes[index]

    def __len__(self) -> int:
        return len(self._samples)

    def __repr__(self) -> str:
        return (
            f"Gen1Detection(folder={self.folder!r}, samples={len(self)}, sequences={len(self.sequences)}, "
            f"representation={self.representation.name!r}, T={self.T}, window_us={self.window_us})"
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        seq, lo, hi = self._samples[index]
        boxes = self._boxes[seq][lo:hi]
        t_label = int(boxes["t"][0])
        if seq not in self._dat:
            self._dat[seq] = DatFile(self._dat_path(self.sequences[seq]))
        edges = bin_edges(t_label, self.window_us, self.T)
        events = self._dat[seq].window(int(edges[0]), int(edges[-1]))
        frames = self.representation.make(events, t_label, T=self.T, window_us=self.window_us)
        labels, xyxy = authors_gen1_targets(boxes, self.representation.label_style)
        target = {
            "boxes": torch.from_numpy(xyxy),
            "labels": torch.from_numpy(labels),
            "t": t_label,
            "sequence": self.sequences[seq],
            "image_id": (index % len(self)) + 1,
        }
        return frames, target
