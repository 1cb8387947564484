"""Forward+backward time of the I-LIF implementations on SpikeYOLO's layer shapes.

Compares, in one run: this project's torch path and CuPy kernel, SpikingJelly 2.0's ``ILIFNode`` (each CUDA
implementation it offers: native where built, Triton, torch; each in a subprocess because SpikingJelly reads
``SJ_ILIF_CUDA_IMPLEMENTATION`` once per process), and a naive per-step loop as the SpikeYOLO authors wrote
``mem_update``. Ratios are against SpikingJelly's fastest implementation measured in the same run. For the
CuPy kernel it also reports the DRAM bandwidth its two launches achieve against the device's peak.

    python benchmarks/neuron_kernels.py --device cpu            # 2 threads, [4, 8, 64, 40, 40] fp32
    python benchmarks/neuron_kernels.py --device cuda           # SpikeYOLO's shapes, fp32 and fp16

Rows are written to benchmarks/results/neuron_kernels-<device>-pt<torch>.csv (atomically).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from _results import RESULTS, device_slug
from torch.utils.benchmark import Timer

from snn_det_zoo._atomic import write_csv_atomic
from snn_det_zoo.neurons import ILIFNode, ilif_reference
from snn_det_zoo.neurons._ilif_backend import cupy_unavailable_reason

CUDA_SHAPES = [(1, 16, 64, 160, 160), (4, 16, 128, 80, 80), (4, 16, 512, 20, 20)]
CPU_SHAPES = [(4, 8, 64, 40, 40)]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(step: Callable[[], None], device: torch.device, warmup: int, repeats: int, inner: int = 10) -> float:
    """Median wall time of ``step`` in ms by ``torch.utils.benchmark.Timer``: ``repeats`` blocks of ``inner``
    steps queued back to back (one synchronisation per block on CUDA: the sustained rate, CPU launch work
    overlapping the GPU's), after ``warmup`` steps, with the process's thread count."""
    for _ in range(warmup):
        step()
    _sync(device)
    timer = Timer(stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads())
    return statistics.median(timer.timeit(inner).median for _ in range(repeats)) * 1e3


def gpu_ms(step: Callable[[], None], device: torch.device, repeats: int) -> float:
    """GPU kernel time of one ``step`` in ms (the profiler's device time, so no CPU launch overhead)."""
    from torch.profiler import ProfilerActivity, profile

    step()
    _sync(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            step()
        _sync(device)
    total_us = sum(e.self_device_time_total for e in prof.key_averages())
    return total_us / 1e3 / repeats


def _node_step(node: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    from spikingjelly.activation_based import functional

    def step() -> None:
        functional.reset_net(node)
        xx = x.detach().requires_grad_()
        node(xx).backward(grad)

    return step


def _naive_step(x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    # The authors' mem_update: a Python loop over T with an autograd quantiser per step.
    def step() -> None:
        xx = x.detach().requires_grad_()
        spikes, _, _ = ilif_reference(xx, torch.zeros_like(xx[0]), 4, 4.0 / 3.0, False, 1.0, True)
        spikes.backward(grad)

    return step


def _inputs(shape, dtype, device):
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = (torch.randn(shape, generator=gen) * 1.5 + 0.5).to(device=device, dtype=dtype)
    grad = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    return x, grad


def sj_worker(shape, dtype_name: str, device: torch.device, warmup: int, repeats: int) -> dict:
    """Time SpikingJelly's ILIFNode under the implementation its environment variable selects."""
    from spikingjelly.activation_based import functional, neuron

    x, grad = _inputs(shape, DTYPES[dtype_name], device)
    node = neuron.ILIFNode(detach_reset=True, step_mode="m").to(device)
    step = _node_step(node, x, grad)
    ms = time_ms(step, device, warmup, repeats)
    kernel_ms = gpu_ms(step, device, repeats) if device.type == "cuda" else None
    info = functional.neuron_implementation("ilif", device) if device.type == "cuda" else {}
    return {"ms": ms, "gpu_ms": kernel_ms, "implementation": str(info.get("implementation", "torch-reference"))}


def _run_sj(impl: str, shape, dtype_name: str, device: torch.device, warmup: int, repeats: int) -> dict | None:
    env = dict(os.environ, SJ_ILIF_CUDA_IMPLEMENTATION=impl)
    cmd = [sys.executable, __file__, "--worker", "--device", str(device), "--dtype", dtype_name,
           "--shape", ",".join(map(str, shape)), "--warmup", str(warmup), "--repeats", str(repeats)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(f"  spikingjelly[{impl}] unavailable: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if impl != "auto" and impl not in result["implementation"]:
        return None  # SpikingJelly fell back to another implementation: not a distinct row
    return result


def peak_bandwidth_gbs(device: torch.device) -> float | None:
    """Theoretical DRAM bandwidth from the device's memory clock and bus width (GB/s)."""
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(device.index or 0)
        return 2 * props["memoryClockRate"] * 1e3 * props["memoryBusWidth"] / 8 / 1e9
    except Exception:
        return None


def bytes_moved(shape, item_size: int) -> int:
    """DRAM bytes of one forward+backward of the CuPy kernels from a fresh state (no v0 read, no grad_v0)."""
    steps, n = shape[0], math.prod(shape[1:])
    mask = math.ceil(steps / 8) * n
    forward = 2 * steps * n * item_size + mask + 4 * n  # read x, write spikes, mask and v_last
    backward = 2 * steps * n * item_size + mask  # read grad_spikes and mask, write grad_x
    return forward + backward


def run(device: torch.device, shapes, dtype_names, warmup: int, repeats: int) -> list[dict]:
    rows = []
    has_cupy = device.type == "cuda" and cupy_unavailable_reason() is None
    sj_impls = ("cuda", "triton", "torch") if device.type == "cuda" else ("auto",)
    sj_fallback = "auto"  # fp16/bf16: SpikingJelly 2.0 leaves its fast op (a float32 state is required)
    peak = peak_bandwidth_gbs(device) if device.type == "cuda" else None
    for shape in shapes:
        for dtype_name in dtype_names:
            dtype = DTYPES[dtype_name]
            x, grad = _inputs(shape, dtype, device)
            timings: dict[str, tuple[float, float | None]] = {}
            for impl in sj_impls:
                result = _run_sj(impl, shape, dtype_name, device, warmup, repeats)
                if result is not None:
                    timings[f"spikingjelly[{result['implementation']}]"] = (result["ms"], result["gpu_ms"])
            if not timings and device.type == "cuda":
                result = _run_sj(sj_fallback, shape, dtype_name, device, warmup, repeats)
                if result is not None:
                    timings["spikingjelly[auto: python loop]"] = (result["ms"], result["gpu_ms"])
            steps = {"naive_loop": _naive_step(x, grad),
                     "zoo_torch": _node_step(ILIFNode(backend="torch").to(device), x, grad)}
            if has_cupy:
                steps["zoo_cupy"] = _node_step(ILIFNode(backend="cupy"), x, grad)
            for name, step in steps.items():
                timings[name] = (time_ms(step, device, warmup, repeats),
                                 gpu_ms(step, device, repeats) if device.type == "cuda" else None)
            sj = [t for k, t in timings.items() if k.startswith("spikingjelly")]
            sj_wall = min((t[0] for t in sj), default=None)
            sj_gpu = min((t[1] for t in sj if t[1] is not None), default=None)
            for impl, (wall, kernel) in timings.items():
                row = {
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else
                    f"cpu ({torch.get_num_threads()} threads)",
                    "torch": torch.__version__, "implementation": impl, "shape": "x".join(map(str, shape)),
                    "dtype": dtype_name, "fwd_bwd_wall_ms": round(wall, 4),
                    "wall_speedup_vs_best_spikingjelly": round(sj_wall / wall, 3) if sj_wall else "",
                    "fwd_bwd_gpu_ms": round(kernel, 4) if kernel else "",
                    "gpu_speedup_vs_best_spikingjelly": round(sj_gpu / kernel, 3) if sj_gpu and kernel else "",
                    "achieved_GBps": "", "peak_GBps": "", "pct_of_peak": "",
                }
                if impl == "zoo_cupy" and kernel:
                    achieved = bytes_moved(shape, x.element_size()) / (kernel * 1e-3) / 1e9
                    row["achieved_GBps"] = round(achieved, 1)
                    if peak:
                        row.update(peak_GBps=round(peak, 1), pct_of_peak=round(100 * achieved / peak, 1))
                rows.append(row)
                print(", ".join(f"{k}={v}" for k, v in row.items() if v != ""), flush=True)
    return rows


def default_results_path(prefix: str, device: torch.device) -> Path:
    """``results/<prefix>-<device>-pt<torch>.csv``: the file name states the conditions of the run."""
    return RESULTS / f"{prefix}-{device_slug(device)}-pt{torch.__version__.split('+')[0]}.csv"


def write_rows(rows: list[dict], path: Path) -> None:
    write_csv_atomic(path, list(rows[0]), rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", action="append", choices=sorted(DTYPES), help="repeatable (default fp32, "
                        "plus fp16 on CUDA)")
    parser.add_argument("--shape", action="append", help="T,B,C,H,W (repeatable); default: SpikeYOLO's")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--out", type=Path, help="CSV path (default benchmarks/results/neuron_kernels-...)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shape] if args.shape else (
        CUDA_SHAPES if device.type == "cuda" else CPU_SHAPES)
    dtypes = args.dtype or (["fp32", "fp16"] if device.type == "cuda" else ["fp32"])
    if args.worker:
        print(json.dumps(sj_worker(shapes[0], dtypes[0], device, args.warmup, args.repeats)))
        return 0
    out = args.out or default_results_path("neuron_kernels", device)
    write_rows(run(device, shapes, dtypes, args.warmup, args.repeats), out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
