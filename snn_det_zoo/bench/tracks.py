"""Benchmark tracks: a data set and the way it is scored, by name.

- ``synthetic-shapes`` (static images) and ``synthetic-events`` (event frames): built in, protocol ``coco``;
- ``coco``: a COCO ``instances_*.json`` and its image folder, protocol ``coco`` (pycocotools on
  original-image boxes; not the papers' Ultralytics/YOLOv5-internal AP);
- ``gen1``: a Prophesee Gen1 split in the model family's own representation, protocol ``psee`` or ``frames``
  (:mod:`snn_det_zoo.eval.gen1`).

Every track yields ``(input, target)`` with the input as it is (an image or a frame stack of its own size)
and the target in original pixels; the model's transform does the rest. ``score(predictions, targets)``
gives COCO statistics (fractions in [0, 1]) of predictions in original pixels, computed by the track's
``coco_backend``: ``"auto"`` (default) scores with faster-coco-eval where it is installed (the same 12 numbers
as pycocotools, proven by tests/test_eval.py, 5-9x sooner at val2017 scale), else with pycocotools, the
reference; ``"pycocotools"`` forces the reference.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..errors import InvalidArgumentError
from ..nn.detector import Detector

__all__ = ["DATASETS", "PROTOCOLS", "SYNTHETIC_DATASETS", "SYNTHETIC_IMAGE_SIZE", "CocoTrack", "Gen1Track",
           "SyntheticTrack", "Track", "check_protocol", "collate", "make_track"]

SYNTHETIC_DATASETS = ("synthetic-shapes", "synthetic-events")
SYNTHETIC_IMAGE_SIZE = 128  # the built-in sets' default side: stride 32 still sees a 4x4 grid
DATASETS = (*SYNTHETIC_DATASETS, "coco", "gen1")
# The protocols each dataset can be scored under; the first is the default.
PROTOCOLS: dict[str, tuple[str, ...]] = {
    "synthetic-shapes": ("coco",), "synthetic-events": ("coco",), "coco": ("coco",), "gen1": ("psee", "frames"),
}


def check_protocol(dataset: str, protocol: str | None) -> str:
    """``protocol`` (default: the dataset's first) if the dataset is scored under it."""
    if dataset not in PROTOCOLS:
        raise InvalidArgumentError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    protocol = protocol or PROTOCOLS[dataset][0]
    if protocol not in PROTOCOLS[dataset]:
        raise InvalidArgumentError(f"dataset {dataset!r} is scored under protocol "
                                   f"{' or '.join(PROTOCOLS[dataset])}, got {protocol!r}")
    return protocol


def collate(batch: Sequence[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[list[torch.Tensor], list[dict]]:
    """Inputs and targets as lists: ``predict`` takes inputs of any sizes."""
    return [sample[0] for sample in batch], [sample[1] for sample in batch]


class Track(Dataset):
    """A data set with its name, split, protocol and scoring; subclasses wrap one data set each."""

    name: str
    split: str
    protocol: str
    data: Dataset
    coco_backend: str = "auto"  # eval.coco.coco_metrics' backend

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        return self.data[index]

    def input_size(self) -> str:
        """What one sample is, for the result row (``HxW`` of the data's own pixels)."""
        first = self.data[0][0]
        return f"{first.shape[-2]}x{first.shape[-1]}" if len(self.data) else ""

    def score(self, predictions: list[dict], targets: list[dict]) -> dict[str, float]:
        raise NotImplementedError


class SyntheticTrack(Track):
    """A built-in synthetic set, scored by pycocotools against its own COCO ground truth."""

    protocol = "coco"

    def __init__(self, name: str, num_samples: int = 64, image_size: int = SYNTHETIC_IMAGE_SIZE, T: int = 2,
                 seed: int = 0, split: str = "val") -> None:
        from ..data.synthetic import SyntheticEvents, SyntheticShapes

        if name == "synthetic-shapes":
            self.data = SyntheticShapes(num_samples, image_size=image_size, seed=seed, split=split)
        elif name == "synthetic-events":
            self.data = SyntheticEvents(num_samples, T=T, image_size=image_size, seed=seed, split=split)
        else:
            raise InvalidArgumentError(f"unknown synthetic set {name!r}; built-in sets: "
                                       f"{', '.join(SYNTHETIC_DATASETS)}")
        self.name, self.split = name, split

    def score(self, predictions: list[dict], targets: list[dict]) -> dict[str, float]:
        from ..eval.coco import coco_metrics, to_coco_results

        ids = [int(t["image_id"]) for t in targets]
        results = to_coco_results(predictions, ids, category_ids=self.data.category_ids, as_columns=True)
        return coco_metrics(self.data.coco_ground_truth(), results, backend=self.coco_backend,
                            img_ids=sorted(set(ids)))


class CocoTrack(Track):
    """COCO images in original pixels, scored by COCOeval against ``ann_file`` on the evaluated images."""

    protocol = "coco"

    def __init__(self, image_dir: str | os.PathLike[str], ann_file: str | os.PathLike[str],
                 split: str | None = None) -> None:
        from ..data.coco import CocoDetection

        self.data = CocoDetection(image_dir, ann_file)
        stem = Path(ann_file).stem
        self.split = split or (stem[len("instances_"):] if stem.startswith("instances_") else stem)
        self.name = f"coco-{self.split}"  # e.g. coco-val2017, as the model cards name it

    def input_size(self) -> str:
        return "original (COCO sizes)"

    def score(self, predictions: list[dict], targets: list[dict]) -> dict[str, float]:
        from ..eval.coco import coco_metrics, to_coco_results

        ids = [int(t["image_id"]) for t in targets]
        results = to_coco_results(predictions, ids, category_ids=self.data.categories.ids, as_columns=True)
        return coco_metrics(self.data.ann_file, results, backend=self.coco_backend, img_ids=sorted(set(ids)))


class Gen1Track(Track):
    """A Prophesee Gen1 split in a representation, scored under a protocol on the evaluated timestamps
    (``psee``: filtered boxes, +-50 ms matching; ``frames``: the papers' per-slice AP)."""

    name = "gen1"

    def __init__(self, root: str | os.PathLike[str], protocol: str, split: str = "test",
                 representation: str = "spikeyolo", T: int | None = None) -> None:
        from ..data.gen1_dataset import Gen1Detection

        self.protocol = check_protocol("gen1", protocol)
        self.split = split
        self.data = Gen1Detection(root, split, representation=representation, T=T)
        self.T = self.data.T

    def score(self, predictions: list[dict], targets: list[dict]) -> dict[str, float]:
        import numpy as np

        from ..eval.gen1 import gen1_metrics, predictions_to_boxes

        by_sequence: dict[str, list[tuple[dict, int]]] = {}
        for pred, target in zip(predictions, targets, strict=True):
            by_sequence.setdefault(target["sequence"], []).append((pred, int(target["t"])))
        gt, dt = [], []
        for sequence, items in sorted(by_sequence.items()):
            times = [t for _, t in items]
            raw = self.data.raw_boxes(sequence)
            gt.append(raw[np.isin(raw["t"], times)])  # only the timestamps evaluated (``limit``)
            dt.append(predictions_to_boxes([p for p, _ in items], times))
        stats = gen1_metrics(gt, dt, protocol=self.protocol, backend=self.coco_backend)
        stats.pop("images")
        return stats


def make_track(
    dataset: str,
    model: Detector,
    *,
    protocol: str | None = None,
    split: str | None = None,
    num_samples: int = 64,
    image_size: int = SYNTHETIC_IMAGE_SIZE,
    seed: int = 0,
    coco_root: str | os.PathLike[str] | None = None,
    coco_ann: str | os.PathLike[str] | None = None,
    gen1_root: str | os.PathLike[str] | None = None,
    coco_backend: str = "auto",
) -> Track:
    """The track ``dataset`` for ``model``: Gen1 in the model family's representation with the model's T,
    scored by ``coco_backend`` (``"auto"``: faster-coco-eval where installed, else pycocotools)."""
    from ..eval.coco import resolve_backend

    protocol = check_protocol(dataset, protocol)
    backend = resolve_backend(coco_backend)
    track = _make_track(dataset, model, protocol, split, num_samples, image_size, seed, coco_root, coco_ann,
                        gen1_root)
    track.coco_backend = backend
    return track


def _make_track(dataset: str, model: Detector, protocol: str, split: str | None, num_samples: int,
                image_size: int, seed: int, coco_root: str | os.PathLike[str] | None,
                coco_ann: str | os.PathLike[str] | None, gen1_root: str | os.PathLike[str] | None) -> Track:
    if dataset == "coco":
        if coco_root is None or coco_ann is None:
            raise InvalidArgumentError("--dataset coco needs --coco-root DIR (the image folder, e.g. val2017/) "
                                       "and --coco-ann FILE (e.g. annotations/instances_val2017.json)")
        return CocoTrack(coco_root, coco_ann, split)
    if dataset == "gen1":
        if gen1_root is None:
            raise InvalidArgumentError("--dataset gen1 needs --gen1-root DIR (the folder holding train/, val/, "
                                       "test/)")
        representation = model.event_representation
        if representation is None:
            raise InvalidArgumentError(f"{type(model).__name__} names no Gen1 representation "
                                       "(event_representation)")
        return Gen1Track(gen1_root, protocol, split or "test", representation, T=model.T)
    return SyntheticTrack(dataset, num_samples=num_samples, image_size=image_size, T=model.T,
                          seed=seed, split=split or "val")
