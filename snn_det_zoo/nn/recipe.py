"""Training recipes: the optimiser, schedule and augmentation settings each family's authors train with.

A recipe is plain data; :mod:`snn_det_zoo.train` carries it out. Both families train as their YOLO code
bases do (SGD with Nesterov momentum, three parameter groups, warm-up, an EMA of the weights, a nominal
batch of 64 reached by accumulating gradients); they differ in the schedule, the warm-up length and the
gradient clipping.

- :data:`ULTRALYTICS_RECIPE` (SpikeYOLO, Ultralytics 8.0.197 ``default.yaml`` and ``BaseTrainer``):
  lr0 0.01 decaying linearly to ``lr0 * 0.004``, warm-up of 10 epochs (at least 100 iterations), gradient
  norm clipped at 10, horizontal flips with probability 0.5.
- :data:`YOLOV5_RECIPE` (EMS-YOLO, YOLOv5 ``train.py`` with ``hyp.scratch.yaml``): lr0 0.01 on a cosine
  ("one cycle") to ``lr0 * 0.1``, warm-up of 3 epochs (at least 1000 iterations), no clipping.

Event data is never flipped or augmented (neither family augments Gen1); :meth:`TrainRecipe.for_modality`
gives the recipe for a modality.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["SCHEDULES", "ULTRALYTICS_RECIPE", "YOLOV5_RECIPE", "TrainRecipe"]

SCHEDULES = ("linear", "cosine")


@dataclass(frozen=True)
class TrainRecipe:
    """Optimiser, schedule, EMA and augmentation settings.

    Attributes:
        lr0: the initial learning rate (SGD).
        lrf: the final learning rate as a fraction of ``lr0``.
        schedule: ``"linear"`` (Ultralytics: ``(1 - e / epochs) * (1 - lrf) + lrf``) or ``"cosine"``
            (YOLOv5's ``one_cycle`` from 1 to ``lrf``), a factor per epoch.
        momentum: SGD (Nesterov) momentum.
        weight_decay: on conv and linear weights, scaled by ``batch * accumulate / nominal_batch``; norm
            weights and biases are not decayed.
        warmup_epochs, warmup_min_iters: the warm-up lasts ``max(warmup_epochs * batches, warmup_min_iters)``
            iterations; the bias learning rate falls from ``warmup_bias_lr``, the others rise from 0, the
            momentum rises from ``warmup_momentum``, and the accumulation rises from 1.
        nominal_batch: gradients are accumulated to about this many images per step (``nbs``).
        max_grad_norm: the gradient norm clip (``None``: no clipping).
        ema_decay, ema_tau: the weights' EMA decays by ``ema_decay * (1 - exp(-updates / ema_tau))``.
        fliplr: the probability of a horizontal flip of a training image.
    """

    lr0: float = 0.01
    lrf: float = 0.01
    schedule: str = "linear"
    momentum: float = 0.937
    weight_decay: float = 5e-4
    warmup_epochs: float = 3.0
    warmup_min_iters: int = 100
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1
    nominal_batch: int = 64
    max_grad_norm: float | None = None
    ema_decay: float = 0.9999
    ema_tau: float = 2000.0
    fliplr: float = 0.5

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise InvalidArgumentError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "warmup_momentum",
                     "warmup_bias_lr", "ema_decay", "ema_tau", "fliplr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or value < 0:
                raise InvalidArgumentError(f"recipe {name} must be a finite number >= 0, got {value!r}")
        if self.fliplr > 1 or self.ema_decay >= 1 or self.momentum >= 1:
            raise InvalidArgumentError("recipe fliplr must be at most 1, ema_decay and momentum below 1")
        for name in ("warmup_min_iters", "nominal_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name[0] == "w" else 1):
                raise InvalidArgumentError(f"recipe {name} must be a non-negative integer, got {value!r}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise InvalidArgumentError(f"recipe max_grad_norm must be positive or None, got {self.max_grad_norm!r}")

    def replace(self, **changes: Any) -> TrainRecipe:
        """A copy with some settings changed (``--recipe KEY=VALUE``); unknown names are errors."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InvalidArgumentError(f"unknown recipe settings {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **changes)

    def for_modality(self, modality: str) -> TrainRecipe:
        """Event frames are not flipped: the authors train Gen1 without augmentation."""
        return self.replace(fliplr=0.0) if modality == "events" else self

    def lr_factor(self, epochs: int) -> Callable[[int], float]:
        """The learning-rate factor of each epoch (``LambdaLR``'s ``lr_lambda``)."""
        lrf = self.lrf
        if self.schedule == "cosine":
            return lambda e: ((1 - math.cos(e * math.pi / epochs)) / 2) * (lrf - 1) + 1
        return lambda e: (1 - e / epochs) * (1.0 - lrf) + lrf

    def warmup_iters(self, batches_per_epoch: int) -> int:
        """Iterations of warm-up (0: none)."""
        if self.warmup_epochs <= 0:
            return 0
        return max(round(self.warmup_epochs * batches_per_epoch), self.warmup_min_iters)


# SpikeYOLO: Ultralytics 8.0.197 (reference/spikeyolo.md §4.1).
ULTRALYTICS_RECIPE = TrainRecipe(lrf=0.004, schedule="linear", warmup_epochs=10.0, warmup_min_iters=100,
                                 max_grad_norm=10.0)
# EMS-YOLO: YOLOv5 train.py, hyp.scratch.yaml (reference/emsyolo.md §8.1).
YOLOV5_RECIPE = TrainRecipe(lrf=0.1, schedule="cosine", warmup_epochs=3.0, warmup_min_iters=1000,
                            max_grad_norm=None)
