"""Accuracy against T for converted SNNs: one simulation to T_max, snapshots at every T of the curve.

:func:`accuracy_vs_T` runs each batch once for ``max(steps)`` steps, scores the detections of the head outputs
averaged over the first T steps for every T (the same decoding, NMS and track scoring as ``bench``), and counts
energy per T: every spike a convolution receives costs its fan-out in ACs, bursts of k counting k and
SpiCalib's negative spikes counting as ACs too (``|count|``), the stem's convolution of the analog image is a
MAC per step; 45 nm constants (:class:`~snn_det_zoo.energy.EnergyConstants`). :func:`steps_to_reach` gives the
T at which a fraction (95 %, 99 %) of the ANN's mAP@50 is first reached.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..archs._conversion import ScaledInputConv2d
from ..archs.converted import SpiCalibYOLO
from ..energy import EnergyConstants
from ..errors import InvalidArgumentError
from ..nn.detector import Detector
from .tracks import Track, collate

__all__ = ["CURVE_STEPS", "accuracy_vs_T", "detections", "run_curve", "steps_to_reach"]

CURVE_STEPS = (8, 16, 32, 64, 128, 256, 512)


def detections(model: Detector, raw: list[torch.Tensor], mappings: Sequence[Any]) -> list[dict[str, torch.Tensor]]:
    """Raw head outputs of a batch -> per-image detections in original pixels at the model's thresholds
    (:meth:`~snn_det_zoo.nn.detector.Detector.postprocess`, as ``predict``), as float tensors on the CPU."""
    found = model.postprocess(raw, mappings, model.score_thresh, model.iou_thresh, model.max_detections)
    return [{k: v.float().cpu() for k, v in det.items()} for det in found]


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


def run_curve(
    name: str,
    dataset: str = "synthetic-shapes",
    *,
    steps: Sequence[int] = CURVE_STEPS,
    num_samples: int = 256,
    seed: int = 0,
    batch_size: int = 8,
    device: str = "cpu",
    results_dir: str | os.PathLike[str] | None = None,
    constants: EnergyConstants | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """``snn-det-zoo curve``: the converted model ``name`` (arch.tag, with its weights) and its ANN twin (the card's
    ``ann``, same tag) measured on one track; the SNN from one simulation to ``max(steps)``.

    Returns ``{"ann_row", "rows", "T_95", "T_99"}``: the ANN's ordinary result row (:func:`.runner.run`) and one
    result row per T of the SNN (AP, AP50 and the energy of the curve harness: bursts and negative spikes as
    ACs), appended to ``results_dir`` where given, so that the leaderboard draws the curve under its ceiling.
    """
    from .. import __version__
    from ..factory import create_model
    from ..registry import family_of, model_info, split_model_name
    from .rows import append_rows, check_results_file, make_row, results_path
    from .runner import _weights_sha256, run
    from .tracks import make_track

    arch, tag = split_model_name(name)
    ann = model_info(arch).get("ann")
    if not ann or tag is None:
        raise InvalidArgumentError(f"{name}: the accuracy-against-T curve is for a converted model with weights "
                                   "(arch.tag whose card names its ANN, e.g. spicalib_yolov3_tiny.shapes)")
    constants = constants or EnergyConstants()
    if results_dir is not None:
        check_results_file(results_path(dataset, "coco", results_dir))
    ann_row = run(f"{ann}.{tag}", dataset, pretrained=True, split="val", num_samples=num_samples, seed=seed,
                  results_dir=results_dir, batch_size=batch_size, device=device, progress=progress,
                  constants=constants)
    snn = create_model(name, pretrained=True)
    track = make_track(dataset, snn, num_samples=num_samples, image_size=max(snn.transform.img_size), seed=seed,
                       split="val")
    measured = accuracy_vs_T(snn, track, steps=steps, batch_size=batch_size, constants=constants, device=device,
                             ann_map50=float(ann_row["AP50"]) / 100 if ann_row else None)
    top = max(int(t) for t in steps)
    rows = []
    for point in measured["curve"]:
        rows.append(make_row(
            model=arch, tag=tag, family=family_of(arch), weights_sha256=_weights_sha256(name, True, None),
            dataset=track.name, split=track.split, protocol=track.protocol, T=point["T"], D=1,
            input_size=track.input_size(), samples=measured["samples"], seed=seed, AP=100 * point["map50_95"],
            AP50=100 * point["map50"], params_m=sum(p.numel() for p in snn.parameters()) / 1e6,
            gsops=point["acs"] / 1e9, energy_mj=point["energy_mj"], energy_constants=constants.describe(),
            batch=batch_size, precision="fp32", device=str(device), torch=torch.__version__, zoo_version=__version__,
            source="measured",
            notes=(f"accuracy against T: one simulation to T={top}, snapshot at T={point['T']}; ANN {ann}.{tag} "
                   f"mAP50 {ann_row['AP50'] if ann_row else '?'}%; T95={measured['T_95']}, T99={measured['T_99']}; "
                   "bursts and negative spikes counted as ACs"),
        ))
    if results_dir is not None:
        append_rows(results_path(track.name, track.protocol, results_dir), rows)
    return {"ann_row": ann_row, "rows": rows, "T_95": measured["T_95"], "T_99": measured["T_99"]}
