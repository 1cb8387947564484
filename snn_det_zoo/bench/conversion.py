"""Converting a trained ReLU ANN into its SpiCalib SNN from a recorded calibration list (reference/spicalib.md §7.2).

:func:`calibration_list` draws the list (built-in synthetic training images, a fixed seed and indices) and
records it (dataset, seed, split, indices, sha256 of the pre-processed tensors); :func:`convert` folds BN,
samples post-ReLU activations, takes p (given, or chosen by Bayesian optimisation against the detection
objective on the first ``search_images`` images at ``T_design`` steps), sets every layer's scale and returns
the SNN with its conversion record. The SNN's state dict then holds everything needed to use it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..archs._conversion import detection_objective, record_activations, search_p, set_scales
from ..archs.converted import ReLUYOLO, SpiCalibYOLO
from ..errors import InvalidArgumentError

__all__ = ["CalibrationList", "ConversionResult", "calibration_list", "convert", "snn_for"]


@dataclass(frozen=True)
class CalibrationList:
    """The images the scales come from, pre-processed by the model's transform, and how to draw them again."""

    images: torch.Tensor
    dataset: str
    split: str
    seed: int
    indices: tuple[int, ...]
    sha256: str

    def manifest(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "split": self.split, "seed": self.seed,
                "indices": f"{self.indices[0]}-{self.indices[-1]}", "count": len(self.indices),
                "sha256": self.sha256}

    def batches(self, size: int = 16) -> list[torch.Tensor]:
        return list(self.images.split(size))


def calibration_list(model: ReLUYOLO, num_images: int = 64, dataset: str = "synthetic-shapes", seed: int = 0,
                     split: str = "train", image_size: int | None = None) -> CalibrationList:
    """The first ``num_images`` images of a built-in set's ``split`` (seed ``seed``), through ``model.transform``."""
    from ..data.synthetic import SyntheticShapes

    if dataset != "synthetic-shapes":
        raise InvalidArgumentError(f"calibration lists are drawn from synthetic-shapes, got {dataset!r}")
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise InvalidArgumentError(f"num_images must be a positive integer, got {num_images!r}")
    size = image_size or max(model.transform.img_size)
    data = SyntheticShapes(num_images, image_size=size, seed=seed, split=split)
    tensors, _ = model.transform([data[i][0] for i in range(num_images)])
    images = torch.stack(tensors)
    digest = hashlib.sha256(images.numpy().tobytes()).hexdigest()
    return CalibrationList(images, dataset, split, seed, tuple(range(num_images)), digest)


@dataclass
class ConversionResult:
    """What a conversion chose: p, how (``given`` or ``bayes_opt``), the search trace and the calibration list."""

    p: float
    p_search: str
    objective: str
    calibration: dict[str, Any]
    trace: list[dict[str, float]] = field(default_factory=list)
    scales: dict[str, float] = field(default_factory=dict)

    def metadata(self) -> dict[str, str]:
        """Flat strings for a safetensors header."""
        data = asdict(self)
        return {"conversion_" + k: str(v) for k, v in data.items() if k not in ("trace", "scales")} | {
            "conversion_trace": ";".join(f"{r['p']:.6f}:{r['objective']:.6g}" for r in self.trace)}


def snn_for(ann: ReLUYOLO, **snn_args: Any) -> SpiCalibYOLO:
    """A SpiCalib SNN built like ``ann`` (same arch, classes, width, input size, thresholds) with its weights."""
    args = dict(arch=ann.arch, num_classes=ann.num_classes, class_names=list(ann.class_names), in_chans=ann.in_chans,
                width_multiple=ann.width_multiple, img_size=ann.transform.img_size, score_thresh=ann.score_thresh,
                iou_thresh=ann.iou_thresh, max_detections=ann.max_detections, multi_label=ann.multi_label)
    return SpiCalibYOLO(**{**args, **snn_args}).load_ann(ann)


@torch.no_grad()
def convert(ann: ReLUYOLO, calibration: CalibrationList, *, p: float | None = None, T_design: int = 256,
            gamma: int = 5, allowance: int | None = None, faithful: bool = True, pool: str = "lossless",
            search_images: int = 16, init_points: int = 5, n_iter: int = 30, seed: int = 0) -> tuple[SpiCalibYOLO,
                                                                                                     ConversionResult]:
    """Convert ``ann`` into a SpiCalib SNN (``T = T_design``); p given, or chosen by Bayesian optimisation.

    ``allowance`` defaults to ``T_design // 2`` (the authors' choice; 0 disables SpiCalib).
    """
    ann = ann.eval()
    snn = snn_for(ann, T=T_design, gamma=gamma, allowance=T_design // 2 if allowance is None else allowance,
                  faithful=faithful, pool=pool).eval()
    sample = record_activations(ann.core, calibration.batches(), seed=seed)
    example = calibration.images[:1]
    search = calibration.images[:search_images]
    reference = ann(search) if p is None else None

    def objective(value: float) -> float:
        set_scales(snn.core, sample.scales(value), example)
        return detection_objective(snn(search), reference)

    trace: list[dict[str, float]] = []
    how = "given"
    if p is None:
        p, trace = search_p(objective, init_points=init_points, n_iter=n_iter)
        how = f"bayes_opt (init_points={init_points}, n_iter={n_iter}, random_state=1)"
    elif not 0 < p <= 1:
        raise InvalidArgumentError(f"p must be in (0, 1], got {p!r}")
    scales = sample.scales(p)
    set_scales(snn.core, scales, example)
    snn.conversion.p.fill_(p)
    result = ConversionResult(
        p=float(p), p_search=how,
        objective=(f"mean Bernoulli KL(ANN||SNN) of objectness and classes + mean squared raw box difference, "
                   f"{len(search)} calibration images, T={T_design}"),
        calibration=calibration.manifest(), trace=trace, scales=scales)
    return snn, result
