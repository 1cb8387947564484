"""I-LIF forward and backward on the CPU as fused compiled loops (``_ilif_cpu.c``), the torch loops' fast path.

The torch loops make one pass through memory per op and step (about 16% of a copy's bandwidth at SpikeYOLO's
shapes); the C loop walks the neurons in L1-sized blocks over all T steps, reading x and writing the spikes
once, with the arithmetic of the torch loops (bit-identical, tested). The source is compiled at first use
by :mod:`snn_det_zoo._native` into ``$SNN_DET_ZOO_HOME/kernels`` and loaded with ctypes, which releases the
GIL, so torch's intra-op thread count is honoured by splitting the neurons across a thread pool. Where no
compiler works, :func:`cpu_kernel_unavailable_reason` says why and the torch loops run instead: never an
error.
"""

from __future__ import annotations

import ctypes
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import torch

from .._native import load_library
from ._cpu_buffers import empty
from ._ilif_params import ILIFParams

__all__ = [
    "CPU_FLAGS",
    "CPU_SOURCE",
    "cpu_kernel_unavailable_reason",
    "fused_backward_supports",
    "fused_forward_supports",
    "ilif_backward_cpu",
    "ilif_forward_cpu",
]

CPU_SOURCE = Path(__file__).with_name("_ilif_cpu.c")
# No contraction of a*b+c into an FMA (torch rounds the product and the sum separately). -O3 vectorises the
# inner loops; _native adds -march=native where it can (AVX2/AVX-512: 1.9x the baseline ISA's speed for
# float32, 3x for bfloat16).
CPU_FLAGS = ("-O3", "-std=gnu11", "-ffp-contract=off", "-fno-fast-math")
_BLOCK = 1024  # BLOCK in _ilif_cpu.c: thread ranges are cut at multiples of it
_MIN_NEURONS_PER_THREAD = 32768
# The (c + 2^23) - 2^23 rounding of the C loop is exact below these levels (float32 / float64 state).
_MAX_LEVEL = {torch.float32: 2**22, torch.float64: 2**51}
_SUFFIX = {torch.float32: "f32", torch.float64: "f64", torch.bfloat16: "bf16", torch.float16: "f16"}


@cache
def _library() -> tuple[ctypes.CDLL | None, str | None]:
    # _Float16 needs GCC >= 12 or Clang >= 15 on x86: without it, the library lacks only the float16 loops.
    return load_library(CPU_SOURCE, CPU_FLAGS, (("-DILIF_HAVE_FLOAT16",), ()))


def cpu_kernel_unavailable_reason() -> str | None:
    """``None`` when the fused CPU loop is compiled and loaded, else why not (the torch loops run then)."""
    return _library()[1]


def fused_forward_supports(
    x_seq: torch.Tensor, v0: torch.Tensor | None, p: ILIFParams, state_dtype: torch.dtype
) -> bool:
    """Whether :func:`ilif_forward_cpu` runs this call (else the torch loops do)."""
    return _has_kernel("forward", x_seq) and _state_like(state_dtype, v0) and p.max_level <= _MAX_LEVEL[state_dtype]


def _has_kernel(direction: str, t: torch.Tensor) -> bool:
    """The library is loaded and has the ``direction`` loop for ``t``, a contiguous CPU tensor."""
    lib = _library()[0]
    return (
        lib is not None
        and t.device.type == "cpu"
        and t.is_contiguous()
        and hasattr(lib, f"ilif_{direction}_{_SUFFIX.get(t.dtype, '?')}")
    )


def _state_like(state_dtype: torch.dtype, *tensors: torch.Tensor | None) -> bool:
    """Every tensor given is absent or a contiguous tensor of the state's dtype."""
    return all(t is None or (t.dtype == state_dtype and t.is_contiguous()) for t in tensors)


@cache
def _pool(pid: int, workers: int) -> ThreadPoolExecutor:
    # Keyed by the process id too: a forked child inherits the parent's executor without its threads.
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ilif-cpu")


def _ptr(t: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(None if t is None else t.data_ptr())


def ilif_forward_cpu(
    x_seq: torch.Tensor,
    v0: torch.Tensor | None,
    p: ILIFParams,
    store_v_seq: bool,
    save_mask: bool,
    state_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The torch loops' forward (same outputs, a bool mask ``[T, ...]``) as one fused loop; see the module."""
    steps, n = x_seq.shape[0], x_seq[0].numel()
    spikes = empty(x_seq.shape, x_seq.dtype)
    mask = empty(x_seq.shape, torch.bool) if save_mask else None
    v_last = empty(x_seq.shape[1:], state_dtype)
    v_seq = empty(x_seq.shape, state_dtype) if store_v_seq else None
    real = ctypes.c_double if state_dtype == torch.float64 else ctypes.c_float
    pointers = [_ptr(t) for t in (x_seq, v0, spikes, mask, v_last, v_seq)]
    scalars = [
        ctypes.c_int32(steps),
        real(p.beta),
        real(p.tau),
        real(p.v_threshold),
        real(p.max_level),
        ctypes.c_int32(int(p.decay_input)),
    ]
    _split(getattr(_library()[0], f"ilif_forward_{_SUFFIX[x_seq.dtype]}"), pointers, n, scalars)
    return spikes, v_last, v_seq, mask


def fused_backward_supports(
    grad_spikes: torch.Tensor,
    grad_v_last: torch.Tensor | None,
    grad_v_seq: torch.Tensor | None,
    mask: torch.Tensor,
    state_dtype: torch.dtype,
) -> bool:
    """Whether :func:`ilif_backward_cpu` runs this call (else the torch loops do)."""
    return (
        _has_kernel("backward", grad_spikes)
        and mask.dtype == torch.bool
        and mask.shape == grad_spikes.shape
        and mask.is_contiguous()
        and _state_like(state_dtype, grad_v_last, grad_v_seq)
    )


def ilif_backward_cpu(
    grad_spikes: torch.Tensor,
    grad_v_last: torch.Tensor | None,
    grad_v_seq: torch.Tensor | None,
    mask: torch.Tensor,
    p: ILIFParams,
    state_dtype: torch.dtype,
    need_grad_v0: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The torch loops' backward (same gradients, bit for bit) as one fused loop; see the module."""
    steps, n = grad_spikes.shape[0], grad_spikes[0].numel()
    grad_x = empty(grad_spikes.shape, grad_spikes.dtype)
    grad_v0 = empty(grad_spikes.shape[1:], state_dtype) if need_grad_v0 else None
    real = ctypes.c_double if state_dtype == torch.float64 else ctypes.c_float
    pointers = [_ptr(t) for t in (grad_spikes, grad_v_last, grad_v_seq, mask, grad_x, grad_v0)]
    scalars = [
        ctypes.c_int32(steps),
        real(p.beta),
        real(p.tau),
        real(p.v_threshold),
        ctypes.c_int32(int(p.decay_input)),
        ctypes.c_int32(int(p.detach_reset)),
    ]
    _split(getattr(_library()[0], f"ilif_backward_{_SUFFIX[grad_spikes.dtype]}"), pointers, n, scalars)
    return grad_x, grad_v0


def _split(fn, pointers: list, n: int, scalars: list) -> None:
    """Run ``fn(*pointers, n, lo, hi, *scalars)`` over the neurons ``0 .. n``, cut into ranges of whole blocks
    for torch's intra-op thread count (ctypes releases the GIL, so the ranges run in parallel)."""

    def run(lo: int, hi: int) -> None:
        fn(*pointers, ctypes.c_int64(n), ctypes.c_int64(lo), ctypes.c_int64(hi), *scalars)

    workers = max(1, min(torch.get_num_threads(), n // _MIN_NEURONS_PER_THREAD))
    if workers == 1:
        run(0, n)
        return
    per = -(-n // workers // _BLOCK) * _BLOCK
    bounds = [(lo, min(n, lo + per)) for lo in range(0, n, per)]
    futures = [_pool(os.getpid(), workers).submit(run, lo, hi) for lo, hi in bounds[1:]]
    run(*bounds[0])
    for future in futures:
        future.result()
