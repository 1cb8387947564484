"""The evaluation loop: a model over a track, with energy and speed, on one process or under ``torchrun``.

One pass over the set (or its first ``limit`` samples) with an :class:`~snn_det_zoo.energy.EnergyMeter`
attached, so accuracy and firing rates come from the same forward passes; then one full batch is timed without
hooks by ``torch.utils.benchmark.Timer`` (warm-up, CUDA synchronisation and repeats are its business), and the
median and interquartile range of its runs are reported. Under ``torchrun`` every rank evaluates a strided
shard; predictions and energy sums are gathered on rank 0, which scores them.
"""

from __future__ import annotations

import logging
import platform
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..distributed import gather_objects, rank_and_world
from ..energy import EnergyConstants, EnergyMeter
from ..errors import InvalidArgumentError
from ..nn.detector import Detector
from .tracks import Track, collate

__all__ = ["PRECISIONS", "check_eval_args", "evaluate", "predict_track", "time_predict"]

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def check_eval_args(batch_size: Any = 8, limit: Any = None, precision: Any = "fp32", compile: Any = False,
                    **_: Any) -> None:
    """Refuse bad evaluation settings before anything is built or run."""
    if not isinstance(compile, bool):
        raise InvalidArgumentError(f"compile must be True or False, got {compile!r}")
    if precision not in PRECISIONS:
        raise InvalidArgumentError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidArgumentError(f"limit must be a positive integer or None, got {limit!r}")


def _autocast(device: torch.device, precision: str) -> Any:
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def time_predict(model: nn.Module, inputs: list[torch.Tensor], device: torch.device, precision: str,
                 min_run_time: float = 1.0) -> dict[str, float]:
    """``predict`` on one batch, timed by ``torch.utils.benchmark.Timer`` with the process's threads.

    Returns ``images_per_s`` (batch size over the median), ``latency_ms`` (the median batch), and
    ``latency_iqr_ms`` (the interquartile range of the runs).
    """
    # torch.utils.benchmark imports cpp_extension, which warns about CUDA_HOME on machines without a GPU.
    cpp_log = logging.getLogger("torch.utils.cpp_extension")
    level = cpp_log.level
    cpp_log.setLevel(logging.ERROR)
    try:
        from torch.utils.benchmark import Timer
    finally:
        cpp_log.setLevel(level)

    def run() -> None:
        with torch.no_grad(), _autocast(device, precision):
            model.predict(inputs)

    run()  # warm-up: kernels, allocator, the transform's first call
    timer = Timer(stmt="run()", globals={"run": run}, num_threads=torch.get_num_threads())
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return {"images_per_s": len(inputs) / measurement.median, "latency_ms": 1000 * measurement.median,
            "latency_iqr_ms": 1000 * measurement.iqr}


def evaluate(
    model: nn.Module,
    track: Track,
    *,
    batch_size: int = 8,
    limit: int | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    constants: EnergyConstants | None = None,
    timing_s: float = 1.0,
    progress: bool = True,
    num_workers: int = 0,
    fuse: bool = False,
    compile: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``track``: COCO statistics, energy report and speed.

    Returns ``{"stats": {AP, AP50, ...} (0-1), "energy": EnergyReport, "samples", "T", "D", "params",
    "images_per_s", "latency_ms", "latency_iqr_ms", "batch", "precision", "device"}``; on ranks other than 0
    of a distributed run, ``stats`` and ``energy`` are ``None``.

    Energy is counted as the authors count it whether or not the model is fused: a re-parameterisable block
    (SpikeYOLO's RepConv, SepRepConv) is one convolution on its spike input (``fused_conv_geometry()``).
    With ``fuse``, the model runs as its folded inference network (``Detector.fuse``) instead. With
    ``compile``, the speed is measured with the network (``forward_network``) under ``torch.compile`` (the
    I-LIF op is traced through, no graph break); predictions and energy come from the eager pass, whose
    hooks the compiler would otherwise have to trace.
    """
    check_eval_args(batch_size, limit, precision, compile)
    if not callable(getattr(track, "score", None)):
        raise InvalidArgumentError(f"{type(track).__name__} has no score(predictions, targets)")
    device = torch.device(device)
    rank, world = rank_and_world()
    count = len(track) if limit is None else min(limit, len(track))
    model = model.eval().to(device)
    params = sum(p.numel() for p in model.parameters())  # as published, before any folding
    if fuse:
        model.fuse()
    T, D = int(model.T), int(model.D or 1)
    meter = EnergyMeter(model, T=T, D=D, constants=constants)
    with meter:
        all_preds, all_targets, first_batch = predict_track(
            model, track, batch_size=batch_size, limit=limit, device=device, precision=precision,
            progress=progress, num_workers=num_workers)
    meter.sync_distributed()
    network = "forward_network" if hasattr(model, "forward_network") else "forward"
    if compile:  # an instance attribute over the method, removed below
        setattr(model, network, torch.compile(getattr(model, network)))
    try:
        speed = time_predict(model, first_batch or [], device, precision, timing_s)
    finally:
        if compile:
            delattr(model, network)
    result: dict[str, Any] = {
        "stats": None,
        "energy": None,
        "samples": count,
        "T": T,
        "D": D,
        "params": params,
        **speed,
        "images_per_s": speed["images_per_s"] * world,
        "batch": batch_size,
        "precision": precision,
        "device": _device_name(device),
    }
    if rank == 0:
        result["stats"] = track.score(all_preds, all_targets)
        result["energy"] = meter.report()
    return result


def predict_track(
    model: Detector,
    track: Track,
    *,
    batch_size: int = 8,
    limit: int | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    progress: bool = True,
    num_workers: int = 0,
) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, Any]], list[torch.Tensor]]:
    """``model.predict`` over ``track`` (its first ``limit`` samples): ``(predictions, targets, first batch)``.

    Under ``torchrun`` every rank predicts a strided shard; rank 0 returns every rank's predictions and
    targets, the other ranks empty lists. The model must already be on ``device`` in the wanted mode.
    """
    from tqdm import tqdm

    device = torch.device(device)
    rank, world = rank_and_world()
    count = len(track) if limit is None else min(limit, len(track))
    shard = Subset(track, list(range(rank, count, world)))
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers)
    predictions: list[dict[str, torch.Tensor]] = []
    kept_targets: list[dict[str, Any]] = []
    first_batch: list[torch.Tensor] | None = None
    with torch.no_grad(), _autocast(device, precision):
        for inputs, targets in tqdm(loader, desc="evaluate", disable=not progress or rank != 0, leave=False):
            first_batch = first_batch or inputs
            outputs = model.predict(inputs)
            predictions += [{k: v.detach().float().cpu() for k, v in out.items()} for out in outputs]
            kept_targets += targets
    gathered = gather_objects((predictions, kept_targets))
    if rank != 0:
        return [], [], first_batch or []
    return ([p for preds, _ in gathered for p in preds], [t for _, targets in gathered for t in targets],
            first_batch or [])
