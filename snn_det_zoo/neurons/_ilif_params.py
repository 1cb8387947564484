"""The constants of one I-LIF neuron, shared by the torch and CuPy implementations."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InvalidArgumentError

__all__ = ["ILIFParams"]


@dataclass(frozen=True)
class ILIFParams:
    """Validated I-LIF constants; ``beta = 1 - 1/tau`` is the decay of the ``decay_input=False`` form."""

    max_level: int
    tau: float
    decay_input: bool
    v_threshold: float
    detach_reset: bool

    def __post_init__(self) -> None:
        if isinstance(self.max_level, bool) or not isinstance(self.max_level, int) or self.max_level < 1:
            raise InvalidArgumentError(f"max_level (D) must be an integer >= 1, got {self.max_level!r}")
        if not math.isfinite(self.tau) or self.tau < 1.0:
            raise InvalidArgumentError(
                f"tau must be a finite number >= 1 (decay 1 - 1/tau in [0, 1)), got {self.tau!r}")
        if not math.isfinite(self.v_threshold) or self.v_threshold <= 0:
            raise InvalidArgumentError(f"v_threshold must be a finite number > 0, got {self.v_threshold!r}")

    @property
    def beta(self) -> float:
        return 1.0 - 1.0 / self.tau
