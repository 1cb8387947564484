"""The benchmark harness: one run = model x weights x dataset x protocol -> one result row.

A run evaluates the whole set (or its first ``limit`` samples) once with an
:class:`~snn_det_zoo.energy.EnergyMeter` attached, so accuracy and firing rates come from the same forward
passes; it then times a few batches without hooks (warm-up first, synchronised on CUDA) for images/s and
latency. Under ``torchrun`` every rank evaluates a strided shard, and predictions and energy sums are gathered
on rank 0, which computes the metrics and writes the row.

Datasets (:data:`DATASETS`) and the protocol each is scored under (every result row names it):

- ``synthetic-shapes`` (static) and ``synthetic-events`` (event frames): built in, protocol ``coco``;
- ``coco``: a COCO ``instances_*.json`` and its image folder (:class:`~snn_det_zoo.data.coco.CocoDetection`),
  protocol ``coco`` (pycocotools on original-image boxes; not the papers' Ultralytics/YOLOv5-internal AP);
- ``gen1``: a Prophesee Gen1 split (:class:`~snn_det_zoo.data.gen1_dataset.Gen1Detection`, in the model
  family's own representation), protocol ``psee`` or ``frames`` (:mod:`snn_det_zoo.eval.gen1`).

:func:`evaluate` also takes any dataset object with ``(input, target)`` items (targets carrying ``image_id``)
that either has ``score(predictions, targets) -> stats`` or ``coco_ground_truth()`` and ``category_ids``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ._atomic import writable_folder
from .energy import EnergyConstants, EnergyMeter, EnergyReport
from .errors import InvalidArgumentError
from .results import append_rows, check_results_file, default_results_dir, make_row, results_path

__all__ = ["DATASETS", "PROTOCOLS", "SYNTHETIC_DATASETS", "CocoTrack", "Gen1Track", "evaluate", "make_dataset",
           "run"]

SYNTHETIC_DATASETS = ("synthetic-shapes", "synthetic-events")
DATASETS = (*SYNTHETIC_DATASETS, "coco", "gen1")
# The protocols each dataset can be scored under; the first is the default.
PROTOCOLS: dict[str, tuple[str, ...]] = {
    "synthetic-shapes": ("coco",), "synthetic-events": ("coco",), "coco": ("coco",), "gen1": ("psee", "frames"),
}
# Which Gen1 representation each family's models were trained on (data/gen1_dataset.REPRESENTATIONS).
_GEN1_REPRESENTATION = {"spikeyolo": "spikeyolo", "ems_yolo": "emsyolo"}
_PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def make_dataset(
    name: str, num_samples: int = 64, image_size: int = 64, T: int = 2, seed: int = 0
) -> Dataset:
    """A built-in data set by name (see :data:`SYNTHETIC_DATASETS`); real sets: :class:`CocoTrack`,
    :class:`Gen1Track`."""
    from .data.synthetic import SyntheticEvents, SyntheticShapes

    if name == "synthetic-shapes":
        return SyntheticShapes(num_samples, image_size=image_size, seed=seed)
    if name == "synthetic-events":
        return SyntheticEvents(num_samples, T=T, image_size=image_size, seed=seed)
    raise InvalidArgumentError(f"unknown dataset {name!r}; built-in sets: {', '.join(SYNTHETIC_DATASETS)} "
                               "(coco and gen1 need their files: CocoTrack, Gen1Track)")


def _check_protocol(dataset: str, protocol: str) -> str:
    if dataset not in PROTOCOLS:
        raise InvalidArgumentError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    if protocol not in PROTOCOLS[dataset]:
        raise InvalidArgumentError(f"dataset {dataset!r} is scored under protocol {' or '.join(PROTOCOLS[dataset])}, "
                                   f"got {protocol!r}")
    return protocol


class CocoTrack(Dataset):
    """COCO val images for the harness: letterboxed inputs, scored by pycocotools on original pixels.

    Items are ``(image [3, S, S], {"image_id", "letterbox"})``; :meth:`score` maps each prediction (in
    letterboxed pixels, as ``model.predict`` returns them for an input of the model's own size) back to the
    original image and runs COCOeval against ``ann_file`` on the evaluated images.
    """

    protocol = "coco"

    def __init__(self, image_dir: str | os.PathLike[str], ann_file: str | os.PathLike[str], img_size: int) -> None:
        from .data.coco import CocoDetection

        self.data = CocoDetection(image_dir, ann_file, img_size=img_size)
        stem = Path(ann_file).stem
        self.split = stem[len("instances_"):] if stem.startswith("instances_") else stem
        self.name = f"coco-{self.split}"  # e.g. coco-val2017, as the model cards name it

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image, target = self.data[index]
        return image, {"image_id": target["image_id"], "letterbox": target["letterbox"]}

    def score(self, predictions: list[dict], targets: list[dict]) -> dict[str, float]:
        from .eval.coco import coco_metrics, to_coco_results
        from .nn.transform import unletterbox_boxes

        mapped = [{**p, "boxes": unletterbox_boxes(p["boxes"], t["letterbox"])}
                  for p, t in zip(predictions, targets, strict=True)]
        ids = [int(t["image_id"]) for t in targets]
        results = to_coco_results(mapped, ids, category_ids=self.data.categories.ids)
        return coco_metrics(self.data.ann_file, results, img_ids=sorted(set(ids)))


class Gen1Track(Dataset):
    """A Prophesee Gen1 split for the harness, in a model family's representation, scored under a protocol.

    Items are ``(frames [T, 3, 320, 320], {"image_id", "t", "sequence"})``; :meth:`score` maps predictions
    back to sensor pixels and runs :func:`~snn_det_zoo.eval.gen1.gen1_metrics` on the labelled timestamps
    that were evaluated (``psee``: filtered boxes, +-50 ms matching; ``frames``: the papers' per-slice AP).
    """

    name = "gen1"

    def __init__(self, root: str | os.PathLike[str], protocol: str, split: str = "test",
                 representation: str = "spikeyolo", T: int | None = None) -> None:
        from .data.gen1_dataset import Gen1Detection

        self.protocol = _check_protocol("gen1", protocol)
        self.split = split
        self.data = Gen1Detection(root, split, representation=representation, T=T)
        self.T = self.data.T

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        frames, target = self.data[index]
        return frames, {k: target[k] for k in ("image_id", "t", "sequence")}

    def score(self, predictions: list[dict], targets: list[dict]) -> dict[str, float]:
        import numpy as np

        from .eval.gen1 import gen1_metrics, predictions_to_boxes

        by_sequence: dict[str, list[tuple[dict, int]]] = {}
        for pred, target in zip(predictions, targets, strict=True):
            by_sequence.setdefault(target["sequence"], []).append((pred, int(target["t"])))
        gt, dt = [], []
        for sequence, items in sorted(by_sequence.items()):
            times = [t for _, t in items]
            raw = self.data.raw_boxes(sequence)
            gt.append(raw[np.isin(raw["t"], times)])  # only the timestamps evaluated (``limit``)
            dt.append(predictions_to_boxes([p for p, _ in items], times, geometry=self.data.geometry))
        stats = gen1_metrics(gt, dt, protocol=self.protocol)
        stats.pop("images")
        return stats


def _dist() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(obj: Any) -> list[Any]:
    import torch.distributed as dist

    _, world = _dist()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _collate(batch: Sequence[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[torch.Tensor, list[dict]]:
    from .data.synthetic import collate_detection

    return collate_detection(batch)


def _autocast(device: torch.device, precision: str) -> Any:
    dtype = _PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model_steps(model: nn.Module, dataset: Dataset) -> tuple[int, int]:
    """T and D of a model: its attributes, else the data's T and binary spikes (D = 1)."""
    T = getattr(model, "T", getattr(dataset, "T", 1))
    D = getattr(model, "D", 1)
    return int(T), int(D)


def _time_batches(
    model: nn.Module, loader: DataLoader, device: torch.device, precision: str, batches: int, warmup: int
) -> tuple[float, float]:
    """(images/s, median ms per batch) of ``model.predict`` on full batches after a warm-up, no hooks.

    Partial (last) batches are timed only when the set has no full batch after the warm-up.
    """
    timed: list[tuple[int, float]] = []
    with torch.no_grad(), _autocast(device, precision):
        for i, (images, _) in enumerate(loader):
            if len(timed) >= batches:
                break
            images = images.to(device)
            _sync(device)
            start = time.perf_counter()
            model.predict(images)
            _sync(device)
            if i >= warmup or len(loader) <= warmup:
                timed.append(
                    (images.shape[1] if images.dim() == 5 else images.shape[0], time.perf_counter() - start)
                )
    full = [t for t in timed if t[0] == loader.batch_size] or timed
    seconds = sorted(t for _, t in full)
    return sum(n for n, _ in full) / sum(seconds), 1000 * seconds[len(seconds) // 2]


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 8,
    limit: int | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    constants: EnergyConstants | None = None,
    timing_batches: int = 5,
    warmup_batches: int = 1,
    progress: bool = True,
    num_workers: int = 0,
    fuse: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``dataset``: COCO statistics, energy report and speed.

    Returns ``{"stats": {AP, AP50, ...} (0-1, pycocotools), "energy": EnergyReport, "samples", "T", "D",
    "params", "images_per_s", "latency_ms", "batch", "precision", "device"}``; on ranks other than 0 of a
    distributed run, ``stats`` and ``energy`` are ``None``.

    Energy is counted as the authors count it whether or not the model is fused: a re-parameterisable block
    (SpikeYOLO's RepConv, SepRepConv) is one convolution on its spike input (``fused_conv_geometry()``).
    With ``fuse``, a model that has a ``fuse()`` method runs as the folded inference network instead
    (outputs agree to float rounding, firing rates to the rare count that rounding flips).
    """
    from tqdm import tqdm

    _check_eval_args(batch_size, limit, precision)
    if not callable(getattr(dataset, "score", None)) and not (
        hasattr(dataset, "coco_ground_truth") and hasattr(dataset, "category_ids")
    ):
        raise TypeError(f"{type(dataset).__name__} needs score(predictions, targets), or coco_ground_truth() "
                        "and category_ids, to be evaluated")
    device = torch.device(device)
    rank, world = _dist()
    count = len(dataset) if limit is None else min(limit, len(dataset))
    shard = Subset(dataset, list(range(rank, count, world)))
    loader = DataLoader(
        shard, batch_size=batch_size, shuffle=False, collate_fn=_collate, num_workers=num_workers
    )
    model = model.eval().to(device)
    params = sum(p.numel() for p in model.parameters())  # as published, before any folding
    if fuse and callable(getattr(model, "fuse", None)):
        model.fuse()
    T, D = _model_steps(model, dataset)
    meter = EnergyMeter(model, T=T, D=D, constants=constants)
    predictions: list[dict[str, torch.Tensor]] = []
    kept_targets: list[dict[str, Any]] = []
    with meter, torch.no_grad(), _autocast(device, precision):
        for images, targets in tqdm(loader, desc="evaluate", disable=not progress or rank != 0):
            outputs = model.predict(images.to(device))
            predictions += [{k: v.detach().float().cpu() for k, v in out.items()} for out in outputs]
            kept_targets += targets
    meter.sync_distributed()
    gathered = _gather((predictions, kept_targets))
    images_per_s, latency_ms = _time_batches(model, loader, device, precision, timing_batches, warmup_batches)
    result: dict[str, Any] = {
        "stats": None,
        "energy": None,
        "samples": count,
        "T": T,
        "D": D,
        "params": params,
        "images_per_s": images_per_s * world,
        "latency_ms": latency_ms,
        "batch": batch_size,
        "precision": precision,
        "device": _device_name(device),
    }
    if rank == 0:
        all_preds = [p for preds, _ in gathered for p in preds]
        all_targets = [t for _, targets in gathered for t in targets]
        result["stats"] = _score(dataset, all_preds, all_targets)
        result["energy"] = meter.report()
    return result


def _score(dataset: Dataset, predictions: list[dict], targets: list[dict]) -> dict[str, float]:
    """COCO statistics (0-1) of the predictions: the dataset's own ``score``, else its COCO ground truth."""
    if callable(getattr(dataset, "score", None)):
        return dataset.score(predictions, targets)  # type: ignore[attr-defined]
    from .eval.coco import coco_metrics, to_coco_results

    ids = [int(t["image_id"]) for t in targets]
    results = to_coco_results(predictions, ids, category_ids=dataset.category_ids)  # type: ignore[attr-defined]
    return coco_metrics(dataset.coco_ground_truth(), results, img_ids=sorted(set(ids)))  # type: ignore[attr-defined]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _weights_sha256(name: str, pretrained: bool) -> str:
    if not pretrained:
        return ""
    from .registry import model_info, split_model_name

    info = model_info(name)
    tag = split_model_name(name)[1] or info.get("default_tag")
    return (info["weights"].get(tag) or {}).get("sha256") or ""


def _init_distributed(device: str) -> None:
    """Join the process group torchrun describes in the environment (once)."""
    import torch.distributed as dist

    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def _build_dataset(dataset: str, model: nn.Module, arch: str, protocol: str, split: str | None,
                   num_samples: int, image_size: int, seed: int, coco_root: str | os.PathLike[str] | None,
                   coco_ann: str | os.PathLike[str] | None, gen1_root: str | os.PathLike[str] | None,
                   ) -> tuple[Dataset, str, str, str]:
    """(data set, its row name, split, input size) for the harness's named datasets."""
    from .registry import family_of

    if dataset == "coco":
        if coco_root is None or coco_ann is None:
            raise InvalidArgumentError("--dataset coco needs --coco-root DIR (the image folder, e.g. val2017/) and "
                                       "--coco-ann FILE (e.g. annotations/instances_val2017.json)")
        size = int(max(model.transform.img_size))  # type: ignore[union-attr]
        data = CocoTrack(coco_root, coco_ann, img_size=size)
        return data, data.name, split or data.split, str(size)
    if dataset == "gen1":
        if gen1_root is None:
            raise InvalidArgumentError("--dataset gen1 needs --gen1-root DIR (the folder holding train/, val/, test/)")
        family = family_of(arch)
        if family not in _GEN1_REPRESENTATION:
            raise InvalidArgumentError(f"no Gen1 representation is known for family {family!r}")
        data = Gen1Track(gen1_root, protocol, split or "test", _GEN1_REPRESENTATION[family],
                         T=int(getattr(model, "T", 1)))
        h, w = data.data.geometry.input_size
        return data, data.name, data.split, f"{h}x{w}"
    synthetic = make_dataset(dataset, num_samples=num_samples, image_size=image_size,
                             T=getattr(model, "T", 2), seed=seed)
    return synthetic, dataset, split or "val", str(image_size)


def _check_eval_args(batch_size: Any = 8, limit: Any = None, precision: Any = "fp32", **_: Any) -> None:
    if precision not in _PRECISIONS:
        raise InvalidArgumentError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidArgumentError(f"limit must be a positive integer or None, got {limit!r}")


def run(
    name: str,
    dataset: str = "synthetic-shapes",
    *,
    pretrained: bool = False,
    protocol: str | None = None,
    split: str | None = None,
    num_samples: int = 64,
    image_size: int = 64,
    seed: int = 0,
    coco_root: str | os.PathLike[str] | None = None,
    coco_ann: str | os.PathLike[str] | None = None,
    gen1_root: str | os.PathLike[str] | None = None,
    results_dir: str | os.PathLike[str] | None = None,
    constants: EnergyConstants | None = None,
    model_args: dict[str, Any] | None = None,
    notes: str = "",
    **eval_kwargs: Any,
) -> dict[str, str] | None:
    """Build ``name`` (``arch`` or ``arch.tag``), evaluate it and return its result row (rank 0; else None).

    ``dataset`` is one of :data:`DATASETS`; ``protocol`` one of its :data:`PROTOCOLS` (default: the first).
    ``coco`` needs ``coco_root`` (image folder) and ``coco_ann``; ``gen1`` needs ``gen1_root`` and reads
    ``split`` (default ``test``) in the model family's representation with the model's T.
    With ``results_dir`` the row is appended to ``results-<dataset>-<protocol>.csv`` there and the per-layer
    energy goes to ``energy/<model>-<dataset>-<protocol>.csv`` beside it; without it nothing is written.

    Every argument, the row's settings and the results file are checked before anything is evaluated, so a
    mistake costs seconds, not an evaluation.
    """
    from . import __version__
    from .registry import create_model, family_of, split_model_name

    protocol = _check_protocol(dataset, protocol or PROTOCOLS.get(dataset, ("",))[0])
    _check_eval_args(**eval_kwargs)
    _init_distributed(str(eval_kwargs.get("device", "cpu")))
    args = dict(model_args or {})
    if dataset in SYNTHETIC_DATASETS:
        args.setdefault("img_size", image_size)
        if not pretrained:
            args.setdefault("num_classes", 3)  # the synthetic sets' three shape classes
    model = create_model(name, pretrained=pretrained, **args)
    arch, tag = split_model_name(name)
    data, data_name, split, input_size = _build_dataset(
        dataset, model, arch, protocol, split, num_samples, image_size, seed, coco_root, coco_ann, gen1_root
    )
    T, D = _model_steps(model, data)
    limit = eval_kwargs.get("limit")
    fused = bool(eval_kwargs.get("fuse")) and callable(getattr(model, "fuse", None))
    settings: dict[str, Any] = dict(
        model=arch,
        tag=tag or (getattr(model, "weights_tag", None) if pretrained else "") or "",
        family=family_of(arch),
        weights_sha256=_weights_sha256(name, pretrained),
        dataset=data_name,
        split=split,
        protocol=protocol,
        T=T,
        D=D,
        input_size=input_size,
        samples=len(data) if limit is None else min(limit, len(data)),
        batch=eval_kwargs.get("batch_size", 8),
        precision=eval_kwargs.get("precision", "fp32"),
        torch=torch.__version__,
        zoo_version=__version__,
        source="measured",
        notes="; ".join(filter(None, ["re-parameterised blocks fused" if fused else "", notes])),
    )
    make_row(**settings)  # a setting the row cannot hold fails now
    if results_dir is not None:
        rows_file = check_results_file(results_path(data_name, protocol, results_dir))
        energy_file = writable_folder(Path(results_dir) / "energy") / f"{name}-{data_name}-{protocol}.csv"
    out = evaluate(model, data, constants=constants, **eval_kwargs)
    if out["stats"] is None:
        return None
    energy: EnergyReport = out["energy"]
    stats = {k: 100 * v for k, v in out["stats"].items() if v >= 0}  # -1: nothing to measure
    row = make_row(**{
        **settings,
        **stats,
        "T": out["T"],
        "D": out["D"],
        "samples": out["samples"],
        "params_m": out["params"] / 1e6,
        "gmacs": energy.dense_macs / 1e9,
        "gsops": energy.synaptic_ops / 1e9,
        "energy_mj": energy.energy_mj,
        "energy_constants": energy.constants.describe(),
        "firing_rate": energy.firing_rate,
        "images_per_s": out["images_per_s"],
        "latency_ms": out["latency_ms"],
        "device": out["device"],
    })
    if results_dir is not None:
        append_rows(rows_file, [row])
        energy.to_csv(energy_file)
    return row


def _parse_model_args(pairs: Sequence[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgumentError(f"--model-arg expects KEY=VALUE, got {pair!r}")
        out[key] = yaml.safe_load(value)  # ints, floats, booleans and strings as a user would write them
    return out


def _cmd_bench(args: argparse.Namespace) -> int:
    constants = EnergyConstants(e_ac_pj=args.e_ac, e_mac_pj=args.e_mac)
    row = run(
        args.model,
        args.dataset,
        pretrained=args.pretrained,
        protocol=args.protocol,
        split=args.split,
        coco_root=args.coco_root,
        coco_ann=args.coco_ann,
        gen1_root=args.gen1_root,
        num_samples=args.num_samples,
        image_size=args.image_size,
        seed=args.seed,
        results_dir=None if args.no_save else (args.results or default_results_dir()),
        constants=constants,
        model_args=_parse_model_args(args.model_arg),
        batch_size=args.batch_size,
        limit=args.limit,
        device=args.device,
        precision=args.precision,
        progress=not args.quiet,
        fuse=args.fuse,
    )
    if row is not None:
        keys = (
            "model",
            "dataset",
            "protocol",
            "T",
            "D",
            "samples",
            "AP",
            "AP50",
            "params_m",
            "gsops",
            "energy_mj",
            "firing_rate",
            "images_per_s",
            "latency_ms",
        )
        print(", ".join(f"{k}={row[k]}" for k in keys))
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    """Register ``snn-det-zoo bench``."""
    p = sub.add_parser("bench", help="evaluate a model: accuracy, energy, speed -> one result row")
    p.add_argument("model", help="arch or arch.tag")
    p.add_argument("--dataset", default="synthetic-shapes", choices=DATASETS)
    p.add_argument("--protocol", default=None, choices=sorted({p for ps in PROTOCOLS.values() for p in ps}),
                   help="scoring protocol: coco (synthetic, coco), psee or frames (gen1; default psee)")
    p.add_argument("--coco-root", default=None, metavar="DIR", help="COCO image folder, e.g. val2017/")
    p.add_argument("--coco-ann", default=None, metavar="FILE", help="COCO instances_*.json")
    p.add_argument("--gen1-root", default=None, metavar="DIR", help="Gen1 folder holding train/ val/ test/")
    p.add_argument("--split", default=None, help="Gen1 split (default test); a label for other datasets")
    p.add_argument("--pretrained", action="store_true")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples")
    p.add_argument("--num-samples", type=int, default=64, help="size of the synthetic set")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="fp32", choices=sorted(_PRECISIONS))
    p.add_argument("--e-ac", type=float, default=EnergyConstants().e_ac_pj, help="pJ per AC (default 0.9)")
    p.add_argument("--e-mac", type=float, default=EnergyConstants().e_mac_pj, help="pJ per MAC (default 4.6)")
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="builder argument, repeatable (e.g. --model-arg T=2)",
    )
    p.add_argument("--results", default=None, metavar="DIR",
                   help="folder the result row is appended to (default: the user's results folder, "
                        "$SNN_DET_ZOO_RESULTS or ~/.cache/snn_det_zoo/results)")
    p.add_argument("--no-save", action="store_true", help="print the row without writing files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--fuse", action=argparse.BooleanOptionalAction, default=False,
                   help="run SpikeYOLO's re-parameterisable blocks folded (energy is counted alike either way)")
    p.set_defaults(func=_cmd_bench)
