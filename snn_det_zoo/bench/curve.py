"""Accuracy against T for converted SNNs: one simulation to T_max, snapshots at every T of the curve.

:func:`accuracy_vs_T` runs each batch once for ``max(steps)`` steps, scores the detections of the head outputs
averaged over the first T steps for every T (the same decoding, NMS and track scoring as ``bench``), and counts
energy per T: every spike a convolution receives costs its fan-out in ACs, bursts of k counting k and
SpiCalib's negative spikes counting as ACs too (``|count|``), the stem's convolution of the analog image is a
MAC per step; 45 nm constants (:class:`~snn_det_zoo.energy.EnergyConstants`). :func:`steps_to_reach` gives the
T at which a fraction (95 %, 99 %) of the ANN's mAP@50 is first reached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..archs._conversion import ScaledInputConv2d
from ..archs.converted import SpiCalibYOLO
from ..energy import EnergyConstants
from ..errors import InvalidArgumentError
from ..nn.boxes import multiclass_nms
from ..nn.detector import Detector
from .tracks import Track, collate

__all__ = ["CURVE_STEPS", "accuracy_vs_T", "detections", "steps_to_reach"]

CURVE_STEPS = (8, 16, 32, 64, 128, 256, 512)


def detections(model: Detector, raw: list[torch.Tensor], mappings: Sequence[Any]) -> list[dict[str, torch.Tensor]]:
    """Raw head outputs of a batch -> per-image detections in original pixels (``predict``'s post-processing)."""
    boxes, scores = model.decode(raw)
    out = []
    for b, s, mapping in zip(boxes, scores, mappings, strict=True):
        det = multiclass_nms(b, s, model.score_thresh, model.iou_thresh, model.max_detections, model.multi_label)
        out.append({**{k: v.float().cpu() for k, v in det.items()}, "boxes": mapping.to_original(det["boxes"]).cpu()})
    return out


class _SpikeOps:
    """Forward hooks on the converted convolutions: cumulative ACs and MACs of everything run so far."""

    def __init__(self, model: SpiCalibYOLO) -> None:
        self.acs = 0.0
        self.macs = 0.0
        self.handles = [m.register_forward_hook(self._count) for m in model.modules()
                        if isinstance(m, ScaledInputConv2d)]

    def _count(self, module: ScaledInputConv2d, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        x = args[0]
        dense = out.numel() * (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
        if bool(module.spike_input):
            self.acs += dense * float(x.detach().abs().sum(dtype=torch.float64)) / max(x.numel(), 1)
        else:
            self.macs += dense

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def steps_to_reach(curve: Sequence[dict[str, float]], target: float, key: str = "map50") -> int | None:
    """The smallest T of ``curve`` (rows with ``T`` and ``key``) whose ``key`` is at least ``target``."""
    reached = [int(row["T"]) for row in curve if row[key] >= target]
    return min(reached) if reached else None


@torch.no_grad()
def accuracy_vs_T(model: SpiCalibYOLO, track: Track, *, steps: Sequence[int] = CURVE_STEPS, batch_size: int = 8,
                  limit: int | None = None, ann_map50: float | None = None,
                  constants: EnergyConstants | None = None, device: str | torch.device = "cpu") -> dict[str, Any]:
    """mAP and energy at every T of ``steps`` from one simulation per batch.

    Returns ``{"curve": [{"T", "map50", "map50_95", "energy_mj", "acs", "macs"}, ...], "T_95", "T_99",
    "ann_map50", "samples"}`` (energies per image; ``T_95``/``T_99`` need ``ann_map50``, else None).
    """
    if not isinstance(model, SpiCalibYOLO):
        raise InvalidArgumentError(f"accuracy_vs_T needs a converted SNN, got {type(model).__name__}")
    steps = sorted({int(t) for t in steps})
    constants = constants or EnergyConstants()
    model = model.eval().to(device)
    chunk = model.steps_per_call
    model.steps_per_call = next((c for c in (8, 4, 2, 1) if all(t % c == 0 for t in steps)), 1)
    count = len(track) if limit is None else min(limit, len(track))
    loader = DataLoader(torch.utils.data.Subset(track, range(count)), batch_size=batch_size, collate_fn=collate)
    predictions: dict[int, list[dict]] = {t: [] for t in steps}
    targets: list[dict] = []
    ops = _SpikeOps(model)
    energy: dict[int, list[float]] = {t: [0.0, 0.0] for t in steps}
    try:
        for inputs, batch_targets in loader:
            tensors, mappings = model.transform(inputs)
            batch = torch.stack(tensors).to(device)
            before = (ops.acs, ops.macs)

            def on_step(t: int, before: tuple[float, float] = before) -> None:
                if t in energy:
                    energy[t][0] += ops.acs - before[0]
                    energy[t][1] += ops.macs - before[1]

            raw_by_T = model.simulate(batch, steps, on_step=on_step)
            for t, raw in raw_by_T.items():
                predictions[t] += detections(model, raw, mappings)
            targets += batch_targets
    finally:
        ops.remove()
        model.steps_per_call = chunk
    curve = []
    for t in steps:
        stats = track.score(predictions[t], targets)
        acs, macs = (v / max(count, 1) for v in energy[t])
        curve.append({"T": t, "map50": stats["AP50"], "map50_95": stats["AP"], "acs": acs, "macs": macs,
                      "energy_mj": (acs * constants.e_ac_pj + macs * constants.e_mac_pj) * 1e-9})
    result: dict[str, Any] = {"curve": curve, "ann_map50": ann_map50, "samples": count, "T_95": None, "T_99": None}
    if ann_map50 is not None:
        result["T_95"] = steps_to_reach(curve, 0.95 * ann_map50)
        result["T_99"] = steps_to_reach(curve, 0.99 * ann_map50)
    return result
