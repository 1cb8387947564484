"""I-LIF on CUDA through CuPy: ``_ilif_kernel.cu`` compiled by NVRTC, launched on torch's current stream.

Tensors are allocated by torch (its caching allocator, no CuPy pool) and handed to the kernels as raw
device pointers, which works alike for float32, float16 and bfloat16 (CuPy has no bfloat16 dtype). No host
synchronisation and no copies: a launch is queued on ``torch.cuda.current_stream()``, so it orders with
torch's own work on side streams, under DDP and in CUDA-graph capture.
"""

from __future__ import annotations

import math
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import torch

from ._ilif_params import ILIFParams

__all__ = [
    "KERNEL_SOURCE",
    "NVRTC_OPTIONS",
    "VECTOR_WIDTH",
    "ilif_backward_cupy",
    "ilif_forward_cupy",
    "kernel_name",
    "vector_width",
]

KERNEL_SOURCE = Path(__file__).with_name("_ilif_kernel.cu")
# No fused multiply-add and IEEE division: the kernel then rounds exactly where torch's separate ops do.
NVRTC_OPTIONS = ("--std=c++17", "--fmad=false", "--prec-div=true")
_SUFFIX = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
# Four neurons per thread for every dtype: 8 neurons of 16-bit input (16-byte loads) measured slower on an
# H100 (fewer threads, so a ragged last wave) - see benchmarks/results/neuron_kernels-*.csv.
VECTOR_WIDTH = {torch.float32: 4, torch.float16: 4, torch.bfloat16: 4}
_BLOCK = 256
_NULL = np.uint64(0)


def kernel_name(direction: str, dtype: torch.dtype, vector_width: int = 1) -> str:
    """The extern "C" kernel for ``direction`` (``forward``/``backward``), input dtype and neurons per thread."""
    if dtype not in _SUFFIX:
        raise TypeError(f"the CuPy I-LIF kernels take float32, float16 or bfloat16 inputs, got {dtype}; "
                        "use backend='torch' for other dtypes")
    return f"ilif_{direction}_{_SUFFIX[dtype]}" + (f"_v{vector_width}" if vector_width > 1 else "")


def vector_width(dtype: torch.dtype, n_neurons: int, tensors: tuple[torch.Tensor | None, ...]) -> int:
    """Neurons per thread: 4 (one 16-byte access per float32 state pack) where sizes and alignments allow."""
    width = VECTOR_WIDTH[dtype]
    # A pack of `width` float32 states spans 4 * width bytes; every base pointer must be aligned to it.
    aligned = all(t is None or t.data_ptr() % (4 * width) == 0 for t in tensors)
    return width if n_neurons % width == 0 and aligned else 1


@cache
def _module(device_index: int):
    import cupy

    with cupy.cuda.Device(device_index):
        module = cupy.RawModule(code=KERNEL_SOURCE.read_text(), options=NVRTC_OPTIONS)
        module.compile()
    return module


@cache
def _function(device_index: int, name: str):
    return _module(device_index).get_function(name)


@cache
def _cupy_stream(device_index: int, stream_ptr: int):
    # The pointer is all CuPy needs to queue on torch's stream; caching it saves a Python object per launch.
    import cupy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # CuPy 14 prefers Stream.from_external
        return cupy.cuda.ExternalStream(stream_ptr, device_index)


def _ptr(t: torch.Tensor | None) -> np.uint64:
    return _NULL if t is None else np.uint64(t.data_ptr())


def _launch(direction: str, dtype: torch.dtype, device: torch.device, n_neurons: int,
            tensors: tuple[torch.Tensor | None, ...], scalars: tuple) -> None:
    import cupy

    width = vector_width(dtype, n_neurons, tensors)
    kernel = _function(device.index, kernel_name(direction, dtype, width))
    grid = max(1, min(math.ceil(n_neurons / width / _BLOCK), 2**31 - 1))
    stream = _cupy_stream(device.index, torch.cuda.current_stream(device).cuda_stream)
    with cupy.cuda.Device(device.index), stream:
        kernel((grid,), (_BLOCK,), tuple(_ptr(t) for t in tensors) + scalars)


def _scalars(p: ILIFParams) -> tuple[np.float32, np.float32, np.float32]:
    return np.float32(p.beta), np.float32(p.tau), np.float32(p.v_threshold)


def ilif_forward_cupy(
    x_seq: torch.Tensor, v0: torch.Tensor | None, p: ILIFParams, store_v_seq: bool, save_mask: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Return ``(spikes, v_last, v_seq or None, packed mask [ceil(T/8), N] uint8 or None)``.

    ``v0=None`` starts from zeros; ``save_mask=False`` (inference) writes no mask.
    """
    steps = x_seq.shape[0]
    n_neurons = x_seq[0].numel()
    if v0 is not None and v0.dtype != torch.float32:
        raise TypeError(f"the CuPy I-LIF kernels keep a float32 state, got a {v0.dtype} state")
    spikes = torch.empty_like(x_seq)
    mask = torch.empty((math.ceil(steps / 8), *x_seq.shape[1:]), dtype=torch.uint8, device=x_seq.device) \
        if save_mask else None
    v_last = torch.empty(x_seq.shape[1:], dtype=torch.float32, device=x_seq.device)
    v_seq = torch.empty(x_seq.shape, dtype=torch.float32, device=x_seq.device) if store_v_seq else None
    if n_neurons:
        beta, tau, v_th = _scalars(p)
        _launch("forward", x_seq.dtype, x_seq.device, n_neurons, (x_seq, v0, spikes, mask, v_last, v_seq),
                (np.int64(n_neurons), np.int32(steps), beta, tau, v_th, np.float32(p.max_level),
                 np.int32(p.decay_input)))
    return spikes, v_last, v_seq, mask


def ilif_backward_cupy(
    grad_spikes: torch.Tensor,
    grad_v_last: torch.Tensor | None,
    grad_v_seq: torch.Tensor | None,
    mask: torch.Tensor,
    p: ILIFParams,
    state_dtype: torch.dtype,
    need_grad_v0: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Backpropagate through all steps in one launch; return ``(grad_x, grad_v0 or None)``."""
    steps = grad_spikes.shape[0]
    n_neurons = grad_spikes[0].numel()
    grad_x = torch.empty_like(grad_spikes)
    grad_v0 = torch.empty(grad_spikes.shape[1:], dtype=torch.float32, device=grad_spikes.device) \
        if need_grad_v0 else None
    grad_v_last = None if grad_v_last is None else grad_v_last.to(torch.float32).contiguous()
    grad_v_seq = None if grad_v_seq is None else grad_v_seq.to(torch.float32).contiguous()
    if n_neurons:
        beta, tau, v_th = _scalars(p)
        _launch("backward", grad_spikes.dtype, grad_spikes.device, n_neurons,
                (grad_spikes, grad_v_last, grad_v_seq, mask, grad_x, grad_v0),
                (np.int64(n_neurons), np.int32(steps), beta, tau, v_th, np.int32(p.decay_input),
                 np.int32(p.detach_reset)))
    return grad_x, grad_v0
