"""The inputs of the golden loss cases, drawn one way for both sides: ``tests/data/make_loss_golden.py`` feeds them
to the authors' losses, ``tests/test_losses_golden.py`` to ours. The values come from a pure-Python splitmix64
stream, so they are the same float64 numbers on every machine; the golden file stores each input's exact sum,
which the test checks, to prove it.

Plain torch and math only: the generator imports this beside the authors' code, outside this project's venv.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

_MASK = (1 << 64) - 1


def splitmix64(seed: int) -> Iterator[int]:
    """Vigna's splitmix64: 64-bit integers, the same on every machine (pure integer arithmetic)."""
    state = seed & _MASK
    while True:
        state = (state + 0x9E3779B97F4A7C15) & _MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        yield z ^ (z >> 31)


def uniform(seed: int, shapes: Sequence[tuple[int, ...]], scale: float) -> list[torch.Tensor]:
    """float64 tensors of ``shapes`` (filled in order, C order) uniform on [-scale, scale): exact dyadic values
    ``(k / 2**52 - 1) * scale`` for a power-of-two ``scale``."""
    stream = splitmix64(seed)
    out = []
    for shape in shapes:
        n = math.prod(shape)
        values = [((next(stream) >> 11) * 2.0 ** -52 - 1.0) * scale for _ in range(n)]
        out.append(torch.tensor(values, dtype=torch.float64).view(shape))
    return out


def v8_maps(seed: int, scale: float, dist_slope: float, cls_offset: float, shapes: Sequence[tuple[int, ...]],
            reg_max: int) -> list[torch.Tensor]:
    """SpikeYOLO head maps ``[B, 4*reg_max+nc, H, W]``: uniform logits, then ``-dist_slope * bin`` added to each
    side's ``reg_max`` distance logits (so the expected distances are a few bins and every level's predictions
    fit some box, as after a little training) and ``cls_offset`` to the class logits. All values stay exact
    (dyadic) floats."""
    maps = uniform(seed, shapes, scale)
    bins = torch.arange(reg_max, dtype=torch.float64).view(1, 1, reg_max, 1)
    for m in maps:
        flat = m.view(m.shape[0], m.shape[1], -1)
        flat[:, :4 * reg_max] -= (dist_slope * bins).expand(-1, 4, -1, -1).reshape(1, 4 * reg_max, 1)
        flat[:, 4 * reg_max:] += cls_offset
    return maps


def grid_anchors(anchors_px: Sequence[Sequence[float]], strides: Sequence[int]) -> torch.Tensor:
    """YOLOv5's ``Detect.anchors`` after ``check_anchor_order`` and the stride division: the anchors in pixels
    over each level's stride, ``[levels, 3, 2]`` in grid units (float32, as the authors' buffer)."""
    px = torch.tensor(anchors_px, dtype=torch.float32).view(len(strides), 3, 2)
    return px / torch.tensor(strides, dtype=torch.float32).view(-1, 1, 1)
