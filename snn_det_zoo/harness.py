"""The benchmark harness: one run = model x weights x dataset x protocol -> one result row.

A run evaluates the whole set (or its first ``limit`` samples) once with an
:class:`~snn_det_zoo.energy.EnergyMeter` attached, so accuracy and firing rates come from the same forward
passes; it then times a few batches without hooks (warm-up first, synchronised on CUDA) for images/s and
latency. Under ``torchrun`` every rank evaluates a strided shard, and predictions and energy sums are gathered
on rank 0, which computes the metrics and writes the row.

Datasets: the built-in ``synthetic-shapes`` (static, COCO protocol) and ``synthetic-events`` (event frames,
COCO statistics per labelled timestamp); any dataset object with ``coco_ground_truth()``, ``category_ids`` and
``(input, target)`` items (targets carrying ``image_id``) can be passed to :func:`evaluate`.
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

from .energy import EnergyConstants, EnergyMeter, EnergyReport
from .results import RESULTS_DIR, append_rows, make_row, results_path

__all__ = ["SYNTHETIC_DATASETS", "evaluate", "make_dataset", "run"]

SYNTHETIC_DATASETS = ("synthetic-shapes", "synthetic-events")
_PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def make_dataset(
    name: str, num_samples: int = 64, image_size: int = 64, T: int = 2, seed: int = 0
) -> Dataset:
    """A built-in data set by name (see :data:`SYNTHETIC_DATASETS`)."""
    from .data.synthetic import SyntheticEvents, SyntheticShapes

    if name == "synthetic-shapes":
        return SyntheticShapes(num_samples, image_size=image_size, seed=seed)
    if name == "synthetic-events":
        return SyntheticEvents(num_samples, T=T, image_size=image_size, seed=seed)
    raise ValueError(f"unknown dataset {name!r}; built-in sets: {', '.join(SYNTHETIC_DATASETS)}")


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
    fuse: bool = True,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``dataset``: COCO statistics, energy report and speed.

    Returns ``{"stats": {AP, AP50, ...} (0-1, pycocotools), "energy": EnergyReport, "samples", "T", "D",
    "params", "images_per_s", "latency_ms", "batch", "precision", "device"}``; on ranks other than 0 of a
    distributed run, ``stats`` and ``energy`` are ``None``.

    With ``fuse`` (default), a model that has a ``fuse()`` method (SpikeYOLO) is evaluated as the
    inference-time network its authors count energy on: re-parameterised blocks and batch norms folded into
    single convolutions, so every synaptic layer sees spikes except the stem. Unfused, the batch norms
    *inside* a RepConv feed real values to its inner convolutions, which would be charged as MACs. Outputs
    agree to float rounding.
    """
    from tqdm import tqdm

    from .eval.coco import coco_metrics, to_coco_results

    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if not hasattr(dataset, "coco_ground_truth") or not hasattr(dataset, "category_ids"):
        raise TypeError(
            f"{type(dataset).__name__} needs coco_ground_truth() and category_ids to be evaluated"
        )
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
    predictions, image_ids = [], []
    with meter, torch.no_grad(), _autocast(device, precision):
        for images, targets in tqdm(loader, desc="evaluate", disable=not progress or rank != 0):
            outputs = model.predict(images.to(device))
            predictions += [{k: v.detach().float().cpu() for k, v in out.items()} for out in outputs]
            image_ids += [int(t["image_id"]) for t in targets]
    meter.sync_distributed()
    gathered = _gather((predictions, image_ids))
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
        all_ids = [i for _, ids in gathered for i in ids]
        gt = dataset.coco_ground_truth()  # type: ignore[attr-defined]
        results = to_coco_results(all_preds, all_ids, category_ids=dataset.category_ids)  # type: ignore[attr-defined]
        result["stats"] = coco_metrics(gt, results, img_ids=sorted(set(all_ids)))
        result["energy"] = meter.report()
    return result


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


def run(
    name: str,
    dataset: str = "synthetic-shapes",
    *,
    pretrained: bool = False,
    protocol: str = "coco",
    split: str = "val",
    num_samples: int = 64,
    image_size: int = 64,
    seed: int = 0,
    results_dir: str | os.PathLike[str] | None = RESULTS_DIR,
    constants: EnergyConstants | None = None,
    model_args: dict[str, Any] | None = None,
    notes: str = "",
    **eval_kwargs: Any,
) -> dict[str, str] | None:
    """Build ``name`` (``arch`` or ``arch.tag``), evaluate it and return its result row (rank 0; else None).

    With ``results_dir`` the row is appended to ``results-<dataset>-<protocol>.csv`` there and the per-layer
    energy goes to ``energy/<model>-<dataset>-<protocol>.csv`` beside it.
    """
    from . import __version__
    from .registry import create_model, family_of, split_model_name

    _init_distributed(str(eval_kwargs.get("device", "cpu")))
    args = dict(model_args or {})
    if dataset in SYNTHETIC_DATASETS:
        args.setdefault("img_size", image_size)
        if not pretrained:
            args.setdefault("num_classes", 3)  # the synthetic sets' three shape classes
    model = create_model(name, pretrained=pretrained, **args)
    data = make_dataset(
        dataset, num_samples=num_samples, image_size=image_size, T=getattr(model, "T", 2), seed=seed
    )
    out = evaluate(model, data, constants=constants, **eval_kwargs)
    if out["stats"] is None:
        return None
    energy: EnergyReport = out["energy"]
    stats = {k: 100 * v for k, v in out["stats"].items() if v >= 0}  # -1: nothing to measure
    arch, tag = split_model_name(name)
    row = make_row(
        model=arch,
        tag=tag or (getattr(model, "weights_tag", None) if pretrained else "") or "",
        family=family_of(arch),
        weights_sha256=_weights_sha256(name, pretrained),
        dataset=dataset,
        split=split,
        protocol=protocol,
        T=out["T"],
        D=out["D"],
        input_size=str(image_size),
        samples=out["samples"],
        **stats,
        params_m=out["params"] / 1e6,
        gmacs=energy.dense_macs / 1e9,
        gsops=energy.synaptic_ops / 1e9,
        energy_mj=energy.energy_mj,
        energy_constants=energy.constants.describe(),
        firing_rate=energy.firing_rate,
        images_per_s=out["images_per_s"],
        latency_ms=out["latency_ms"],
        batch=out["batch"],
        precision=out["precision"],
        device=out["device"],
        torch=torch.__version__,
        zoo_version=__version__,
        source="measured",
        notes="; ".join(
            filter(None, ["re-parameterised blocks fused" if getattr(model, "fused", False) else "", notes])
        ),
    )
    if results_dir is not None:
        append_rows(results_path(dataset, protocol, results_dir), [row])
        label = name.replace("/", "_")
        energy.to_csv(Path(results_dir) / "energy" / f"{label}-{dataset}-{protocol}.csv")
    return row


def _parse_model_args(pairs: Sequence[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-arg expects KEY=VALUE, got {pair!r}")
        out[key] = yaml.safe_load(value)  # ints, floats, booleans and strings as a user would write them
    return out


def _cmd_bench(args: argparse.Namespace) -> int:
    constants = EnergyConstants(e_ac_pj=args.e_ac, e_mac_pj=args.e_mac)
    row = run(
        args.model,
        args.dataset,
        pretrained=args.pretrained,
        num_samples=args.num_samples,
        image_size=args.image_size,
        seed=args.seed,
        results_dir=None if args.no_save else args.results,
        constants=constants,
        model_args=_parse_model_args(args.model_arg),
        batch_size=args.batch_size,
        limit=args.limit,
        device=args.device,
        precision=args.precision,
        progress=not args.quiet,
        fuse=not args.no_fuse,
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
    p.add_argument("--dataset", default="synthetic-shapes", choices=SYNTHETIC_DATASETS)
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
    p.add_argument("--results", default=str(RESULTS_DIR), help="results directory (default: %(default)s)")
    p.add_argument("--no-save", action="store_true", help="print the row without writing files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-fuse", action="store_true", help="evaluate re-parameterisable blocks unfused")
    p.set_defaults(func=_cmd_bench)
