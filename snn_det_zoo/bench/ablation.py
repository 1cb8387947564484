"""The conversion ablation (reference/spicalib.md §7.3): what each piece of SpiCalib's conversion adds.

Rows, cumulative, each converted from the same ANN and calibration list and measured by
:func:`~snn_det_zoo.bench.curve.accuracy_vs_T` (one simulation per row to the largest T):

1. ``stock``: SpikingJelly 2.0's stock rate-coding conversion (``RateCodingRecipe``'s semantics: IF neurons
   with soft reset, threshold 1 after dividing by the layer's 99.9th percentile, every max-pool applied per step
   to the spikes). It is run with the zoo's own modules in that configuration, not with SpikingJelly's
   ``FXConverter``: that one keeps its max-pools per step as well, estimates scales as an EMA over batches with
   ``torch.quantile`` (which refuses tensors over 2**24 elements) and has no burst, SpiCalib or lossless pool,
   so the rows below could not be built on it;
2. ``+lossless_maxpool``: every max-pool a :class:`~snn_det_zoo.neurons.LosslessMaxPool2d`;
3. ``+burst``: up to ``gamma`` spikes per step;
4. ``+spicalib``: SpiCalib with allowance ``T_design // 2``;
5. ``+chosen_p``: p chosen by Bayesian optimisation (or the given ``p_star``) instead of 0.999.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..archs.converted import ReLUYOLO
from .conversion import CalibrationList, convert
from .curve import accuracy_vs_T
from .tracks import Track

__all__ = ["ABLATION_ROWS", "ABLATION_STEPS", "ablation_table", "run_ablation"]

ABLATION_STEPS = (32, 64, 128, 256)
STOCK_P = 0.999
# row -> (pool, gamma, SpiCalib on, chosen p)
ABLATION_ROWS: dict[str, tuple[str, int, bool, bool]] = {
    "stock": ("naive", 1, False, False),
    "+lossless_maxpool": ("lossless", 1, False, False),
    "+burst": ("lossless", 5, False, False),
    "+spicalib": ("lossless", 5, True, False),
    "+chosen_p": ("lossless", 5, True, True),
}


def run_ablation(ann: ReLUYOLO, calibration: CalibrationList, track: Track, *, steps: Sequence[int] = ABLATION_STEPS,
                 p_star: float | None = None, T_design: int = 256, limit: int | None = None, batch_size: int = 8,
                 rows: Sequence[str] = tuple(ABLATION_ROWS), search: dict[str, Any] | None = None,
                 ann_map50: float | None = None) -> list[dict[str, Any]]:
    """One result per (row, T): ``{"row", "T", "map50", "map50_95", "energy_mj", "p", "gamma", "allowance",
    "pool"}``. ``p_star`` None: the last row searches p (``search``: ``convert``'s search settings)."""
    out: list[dict[str, Any]] = []
    for row in rows:
        pool, gamma, calibrated, chosen = ABLATION_ROWS[row]
        p = (p_star if chosen else STOCK_P)
        snn, result = convert(ann, calibration, p=p, T_design=T_design, gamma=gamma,
                              allowance=T_design // 2 if calibrated else 0, pool=pool, **(search or {}))
        if p is None:
            p_star = result.p
        measured = accuracy_vs_T(snn, track, steps=steps, batch_size=batch_size, limit=limit, ann_map50=ann_map50)
        for point in measured["curve"]:
            out.append({"row": row, "T": point["T"], "map50": point["map50"], "map50_95": point["map50_95"],
                        "energy_mj": point["energy_mj"], "p": result.p, "p_search": result.p_search,
                        "gamma": gamma, "allowance": snn.allowance, "pool": pool})
    return out


def ablation_table(ann: ReLUYOLO, track: Track, *, steps: Sequence[int] = ABLATION_STEPS, p_star: float | None = None,
                   search: dict[str, Any] | None = None, calibration_images: int = 64, limit: int | None = None,
                   device: str = "cpu") -> list[dict[str, Any]]:
    """:func:`run_ablation` from ``ann``'s own calibration list (its first ``calibration_images`` training
    images), each row with ``ann_map50`` (the ANN on the same images of ``track``) and ``ratio_to_ann``: the
    ablation of ``snn-det-zoo ablation`` and ``benchmarks/spicalib_curve.py --ablation``."""
    from .conversion import calibration_list
    from .loop import evaluate

    ann_map50 = evaluate(ann, track, device=device, progress=False, timing_s=0.1, limit=limit)["stats"]["AP50"]
    rows = run_ablation(ann.to(device), calibration_list(ann, calibration_images), track, steps=steps, limit=limit,
                        p_star=p_star, search=search, ann_map50=ann_map50)
    return [{**row, "ann_map50": round(ann_map50, 4), "ratio_to_ann": round(row["map50"] / ann_map50, 4)}
            for row in rows]

