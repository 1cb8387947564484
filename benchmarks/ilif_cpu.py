"""I-LIF inference forward on the CPU against the one-thread copy bandwidth measured in the same run.

    python benchmarks/ilif_cpu.py                               # [4,16,128,80,80], fp32 and bf16, 1 thread

Every number is a median of CPU time (``time.process_time``, all threads of the process) over repeats, so a
busy shared machine slows it less than wall time. Bandwidth counts the bytes a call must move at least:
reading x and writing the spikes and the last state (a copy: reading and writing the tensor). The reference
is ``dst.copy_(x)`` into a buffer allocated once (the memory system's rate); copies into a fresh buffer
(``x.clone()``, and a fresh NumPy buffer with huge pages) show what faulting in new pages costs. The zoo's
fused C loop (what ``ILIFNode`` runs on the CPU) lends its outputs cached buffers (``_cpu_buffers``); it is
also timed with that cache off (``SNN_DET_ZOO_CPU_BUFFER_CACHE_MB=0``: fresh huge-page buffers). Then the zoo's
torch loops (the fallback without a C compiler), the authors' naive per-step loop (``mem_update``), and a
training step's forward (with the backward's window) + backward, fused loops against torch loops.
Rows go to benchmarks/results/ilif_cpu-cpu-pt<torch>.csv.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _results import write_results

from snn_det_zoo.neurons import ilif_reference
from snn_det_zoo.neurons._ilif_cpu import cpu_kernel_unavailable_reason, ilif_backward_cpu, ilif_forward_cpu
from snn_det_zoo.neurons._ilif_params import ILIFParams
from snn_det_zoo.neurons._ilif_torch import ilif_backward_torch, ilif_forward_torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
COCO = ILIFParams(4, 4.0 / 3.0, False, 1.0, True)
CACHE_ENV = "SNN_DET_ZOO_CPU_BUFFER_CACHE_MB"


def without_buffer_cache(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with the fused loop's output-buffer cache off (every output in fresh pages)."""

    def run() -> object:
        before = os.environ.get(CACHE_ENV)
        os.environ[CACHE_ENV] = "0"
        try:
            return fn()
        finally:
            if before is None:
                del os.environ[CACHE_ENV]
            else:
                os.environ[CACHE_ENV] = before

    return run


def cpu_ms(fns: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, float]:
    """Median CPU time of one call of each function in ms, the functions interleaved call by call so that a
    change of the machine's load hits the references and the implementations alike, in an order shuffled each
    round (seeded) so that none always runs after the same one, whose leftovers in the caches and the allocator
    would slow it."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names, order = list(fns), random.Random(0)
    for _ in range(repeats):
        order.shuffle(names)
        for name in names:
            fn = fns[name]
            start = time.process_time()
            fn()
            times[name].append(time.process_time() - start)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def run(shape: tuple[int, ...], dtype_names: list[str], warmup: int, repeats: int) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(shape, generator=gen) * 1.5 + 0.5
    n = math.prod(shape[1:])
    rows: list[dict] = []
    fp32_fused_ms = None
    for dtype_name in dtype_names:
        x = base.to(DTYPES[dtype_name])
        size = x.numel() * x.element_size()
        dst = torch.empty_like(x)
        copies = {
            "copy_preallocated": lambda x=x, dst=dst: dst.copy_(x),
            "copy_fresh_clone": lambda x=x: x.clone(),
            "copy_fresh_hugepage": lambda x=x, size=size: torch.frombuffer(np.empty(size, np.uint8), dtype=x.dtype)
            .view(x.shape)
            .copy_(x),
        }
        forward_bytes = 2 * size + 4 * n  # x in, spikes out, v_last (float32) out
        zero = torch.zeros(shape[1:], dtype=x.dtype)
        fused = {
            "zoo_fused_loop": lambda x=x: ilif_forward_cpu(x, None, COCO, False, False, torch.float32),
            "zoo_fused_loop+mask": lambda x=x: ilif_forward_cpu(x, None, COCO, False, True, torch.float32),
            "zoo_fused_loop, cache off": without_buffer_cache(
                lambda x=x: ilif_forward_cpu(x, None, COCO, False, False, torch.float32)
            ),
        }
        slow = {  # timed apart: their many temporaries fragment memory and would slow the others' allocations
            "zoo_torch_loops": lambda x=x: ilif_forward_torch(x, None, COCO, False, False),
            "naive_loop": lambda x=x, z=zero: ilif_reference(x, z, 4, 4.0 / 3.0, False, 1.0, True),
        }
        grad = torch.ones_like(x)

        def train_step(forward, backward, x=x, grad=grad):
            mask = forward(x)[3]
            backward(grad, None, None, mask, COCO, torch.float32, False)

        training = {  # forward with the backward's window, then the backward: what a training step runs
            "zoo_fused_loops fwd+bwd": lambda: train_step(
                lambda xs: ilif_forward_cpu(xs, None, COCO, False, True, torch.float32), ilif_backward_cpu
            ),
            "zoo_torch_loops fwd+bwd": lambda: train_step(
                lambda xs: ilif_forward_torch(xs, None, COCO, False, True), ilif_backward_torch
            ),
        }
        impls = {**fused, **slow, **training}
        with torch.no_grad():
            timed = cpu_ms({**copies, **fused}, warmup, repeats)
            timed.update(cpu_ms(slow, 1, max(3, repeats // 3)))
            timed.update(cpu_ms(training, 1, max(3, repeats // 3)))
            copy_rate = {k: 2 * size / timed[k] / 1e6 for k in copies}  # GB/s
            for impl in impls:
                ms = timed[impl]
                moved = forward_bytes + (x.numel() if "mask" in impl else 0)
                rate = moved / ms / 1e6 if impl not in training else None
                if impl == "zoo_fused_loop" and dtype_name == "fp32":
                    fp32_fused_ms = ms
                rows.append(
                    {
                        "implementation": impl,
                        "shape": "x".join(map(str, shape)),
                        "dtype": dtype_name,
                        "pass": "forward+backward" if impl in training else "forward",
                        "cpu_ms": round(ms, 2),
                        "GBps": round(rate, 2) if rate else "",
                        **{f"pct_of_{k}": round(100 * rate / r, 1) if rate else "" for k, r in copy_rate.items()},
                        **{f"{k}_GBps": round(r, 2) for k, r in copy_rate.items()},
                        "time_vs_fp32_fused": round(ms / fp32_fused_ms, 3)
                        if fp32_fused_ms and rate is not None
                        else "",
                        "threads": torch.get_num_threads(),
                        "torch": torch.__version__,
                    }
                )
                print(", ".join(f"{k}={v}" for k, v in rows[-1].items() if v != ""), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="4,16,128,80,80", help="T,B,C,H,W")
    parser.add_argument("--dtype", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    reason = cpu_kernel_unavailable_reason()
    if reason is not None:
        parser.error(f"the fused CPU loop is unavailable here: {reason}")
    torch.set_num_threads(args.threads)
    rows = run(tuple(int(v) for v in args.shape.split(",")), args.dtype, args.warmup, args.repeats)
    write_results(rows, "ilif_cpu", "cpu", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
