"""What SpikeYOLO's inference modes change: integer, fused and spike-driven, in float32 and float64.

    python benchmarks/spikeyolo_modes.py spikeyolo_tiny.shapes spikeyolo_tiny.shapes_events --num-samples 256

The three modes compute the same function (a fused convolution is the same linear map; D binary slots summed
are the integer count), so any difference is floating-point rounding: a convolution's summation order, or
BatchNorm folded into the weights, moves a membrane value by an ulp, and where it sits at a quantiser edge
(``round(clamp(H, 0, D))`` at x.5) the integer spike flips, and the flip propagates. For each mode and dtype
this prints and writes the mAP on the built-in validation set, the share of detections that differ from the
integer model of the same dtype and from the integer float32 model (no detection of the same class with a box
within 1e-3 px and a score within 1e-4), the share of I-LIF outputs that differ from float64 integer inference
on the first sample, and the largest head-map difference there.
Rows go to benchmarks/results/spikeyolo_modes-cpu-pt<torch>.csv (atomically).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from _results import write_results

import snn_det_zoo as zoo
from snn_det_zoo.bench.loop import predict_track
from snn_det_zoo.bench.tracks import make_track
from snn_det_zoo.neurons import ILIFNode
from snn_det_zoo.nn import Detector

MODES = ("integer", "fused", "spike-driven")


def in_mode(model: Detector, mode: str, dtype: torch.dtype) -> Detector:
    out = copy.deepcopy(model).to(dtype).eval()
    if mode == "fused":
        out.fuse()
    elif mode == "spike-driven":
        out.to_spike_driven()
    return out


def neuron_outputs(model: torch.nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Every I-LIF's output (the integer counts) and the head maps for input ``x``."""
    outputs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _a, out: outputs.append(out.detach().double()))
             for m in model.modules() if isinstance(m, ILIFNode)]
    try:
        with torch.no_grad():
            maps = model(x.to(next(model.parameters()).dtype))
    finally:
        for h in hooks:
            h.remove()
    return outputs, [m.double() for m in maps]


def _confident(dets: dict, min_score: float) -> dict:
    keep = dets["scores"] >= min_score
    return {k: v[keep] for k, v in dets.items()}


def differing_share(a: list[dict], b: list[dict], min_score: float = 0.0) -> float:
    """Share of detections scoring ``min_score`` or more (of the larger set per image) without an equal
    counterpart in the other."""
    differing = total = 0
    for da, db in zip(a, b, strict=True):
        da, db = _confident(da, min_score), _confident(db, min_score)
        n = max(len(da["scores"]), len(db["scores"]))
        total += n
        if not n:
            continue
        if len(da["scores"]) and len(db["scores"]):
            same_label = da["labels"][:, None] == db["labels"][None]
            close_box = (da["boxes"][:, None].double() - db["boxes"][None].double()).abs().amax(-1) <= 1e-3
            close_score = (da["scores"][:, None].double() - db["scores"][None].double()).abs() <= 1e-4
            matched = int((same_label & close_box & close_score).any(1).sum())
        else:
            matched = 0
        differing += n - matched
    return differing / total if total else 0.0


def measure(name: str, dataset: str | None, num_samples: int, seed: int, batch_size: int) -> list[dict]:
    base = zoo.create_model(name, pretrained=True).eval()
    arch, tag = base.model_name, base.weights_tag  # the card's default tag where the name has none
    dataset = dataset or zoo.model_info(arch)["weights"][tag]["dataset"]  # the set the weights were trained on
    track = make_track(dataset, base, split="val", num_samples=num_samples, seed=seed)
    first = track[0][0]
    (x,), _ = base.transform([first])
    x = x.unsqueeze(1 if x.dim() == 4 else 0)
    ref_spikes, ref_maps = neuron_outputs(in_mode(base, "integer", torch.float64), x)
    first_reference = None
    rows = []
    for dtype in (torch.float32, torch.float64):
        reference = None
        for mode in MODES:
            model = in_mode(base, mode, dtype)
            predictions, targets, _ = predict_track(model, track, batch_size=batch_size, progress=False)
            stats = track.score(predictions, targets)
            reference = reference if reference is not None else predictions  # integer comes first per dtype
            first_reference = first_reference if first_reference is not None else predictions
            spikes, maps = neuron_outputs(model, x)
            flips = sum(int((a != b).sum()) for a, b in zip(spikes, ref_spikes, strict=True))
            count = sum(a.numel() for a in spikes)
            row = {
                "model": name, "dataset": dataset, "samples": len(track), "seed": seed, "mode": mode,
                "dtype": str(dtype).removeprefix("torch."), "map50": round(stats["AP50"], 6),
                "map50_95": round(stats["AP"], 6),
                "detections": sum(len(p["scores"]) for p in predictions),
                "differing_detections": round(differing_share(reference, predictions), 6),
                "differing_detections_score_0.25": round(differing_share(reference, predictions, 0.25), 6),
                "differing_from_float32_integer": round(differing_share(first_reference, predictions), 6),
                "neuron_outputs_differing": round(flips / count, 8),
                "max_head_map_diff": float(max((a - b).abs().max() for a, b in zip(maps, ref_maps, strict=True))),
                "torch": torch.__version__,
            }
            rows.append(row)
            print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=["spikeyolo_tiny.shapes", "spikeyolo_tiny.shapes_events"],
                        help="SpikeYOLO arch.tag names with weights (default: the shipped ones)")
    parser.add_argument("--dataset", default=None, help="default: the set each model's weights were trained on")
    parser.add_argument("--num-samples", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = [row for name in args.models
            for row in measure(name, args.dataset, args.num_samples, args.seed, args.batch_size)]
    write_results(rows, "spikeyolo_modes", "cpu", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
