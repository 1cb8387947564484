"""Inference speed of whole detectors: images/s and latency, I-LIF on torch against CuPy, in one run.

    python benchmarks/model_speed.py spikeyolo_s --batch 16 --precision fp32 fp16
    python benchmarks/model_speed.py spikeyolo_tiny spikeyolo_n --device cpu --size 320   # 1 thread

On the CPU (``--device cpu``) each model runs plain fp32 (the reference), ``fuse()``, bf16 autocast, both, and
``torch.compile`` of the network (with and without fuse and bf16); the numbers are medians of CPU time
(``time.process_time``) at ``--threads`` (default 1), the variants interleaved call by call so that the
machine's load hits them alike, and each row has its speed-up over plain fp32 of the same run. Compilation
happens in the warm-up. Rows go to benchmarks/results/model_speed-cpu-pt<torch>.csv.

One inference is the whole forward of a batch (all T steps, state reset included), under ``torch.no_grad``;
the median over timed repetitions after a warm-up, CUDA events around each. GPU latency is not
neuromorphic latency. Rows go to benchmarks/results/model_speed-<device>-pt<torch>.csv (atomically).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import snn_det_zoo as zoo
from snn_det_zoo.nn.detector import Detector

sys.path.insert(0, str(Path(__file__).resolve().parent))
from neuron_kernels import default_results_path, time_ms, write_rows  # the sibling script's helpers

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def measure(name: str, backend: str, batch: int, size: int, precision: str, warmup: int, repeats: int) -> dict:
    device = torch.device("cuda")
    model = zoo.create_model(name, neuron_backend=backend).to(device).eval()
    images = torch.rand(batch, 3, size, size, device=device)
    autocast = torch.autocast("cuda", dtype=PRECISIONS[precision], enabled=PRECISIONS[precision] is not None)

    def step() -> None:
        with torch.no_grad(), autocast:
            model(images)

    ms = time_ms(step, device, warmup, repeats, inner=1)
    return {"model": name, "neuron_backend": backend, "batch": batch, "image_size": size, "precision": precision,
            "T": model.T, "D": model.D, "latency_ms": round(ms, 3), "images_per_s": round(batch / ms * 1e3, 1),
            "device": torch.cuda.get_device_name(device), "torch": torch.__version__}


CPU_VARIANTS = {  # name -> (fuse, precision, compile)
    "fp32": (False, "fp32", False),
    "fuse": (True, "fp32", False),
    "bf16": (False, "bf16", False),
    "fuse+bf16": (True, "bf16", False),
    "compile": (False, "fp32", True),
    "fuse+compile": (True, "fp32", True),
    "fuse+bf16+compile": (True, "bf16", True),
}


def model_input(model: Detector, batch: int, size: int) -> torch.Tensor:
    """What the model takes, the same for every variant: images ``[B, C, H, W]``, or ``T`` frames
    ``[T, B, C, H, W]`` for an event model (EMS-YOLO's Gen1 variants, spikeyolo_s_gen1)."""
    shape = (batch, model.in_chans, size, size)
    if model.modality == "events":
        shape = (model.T, *shape)
    return torch.rand(shape, generator=torch.Generator().manual_seed(0))


def _cpu_step(name: str, fuse: bool, precision: str, compiled: bool, batch: int, size: int):
    model = zoo.create_model(name).eval()
    if fuse:
        model.fuse()
    if compiled:
        model.forward_network = torch.compile(model.forward_network)
    autocast = torch.autocast("cpu", dtype=PRECISIONS[precision], enabled=PRECISIONS[precision] is not None)
    images = model_input(model, batch, size)

    def step() -> None:
        with torch.no_grad(), autocast:
            model(images)

    return model, step


def measure_cpu(name: str, batch: int, size: int, warmup: int, repeats: int, variants: list[str]) -> list[dict]:
    """CPU-time medians of every variant of ``name``, interleaved, with speed-ups over plain fp32."""
    import time

    from ilif_cpu import cpu_ms  # the sibling script's interleaved CPU-time medians

    # Each model's compiled variants start from an empty compile cache: the models of one run share code (the
    # neurons, the detector's forward), and past dynamo's recompile limit a function silently runs eagerly.
    torch._dynamo.reset()
    steps, models, compile_s = {}, {}, {}
    for variant in variants:
        models[variant], steps[variant] = _cpu_step(name, *CPU_VARIANTS[variant], batch, size)
        start = time.perf_counter()
        for _ in range(warmup):
            steps[variant]()
        compile_s[variant] = time.perf_counter() - start
    ms = cpu_ms(steps, 0, repeats)  # warmed up above
    reference = ms.get("fp32")
    rows = []
    for variant in variants:
        fuse, precision, compiled = CPU_VARIANTS[variant]
        rows.append({"model": name, "variant": variant, "fuse": fuse, "precision": precision, "compile": compiled,
                     "batch": batch, "image_size": size, "T": models[variant].T, "D": models[variant].D,
                     "latency_cpu_ms": round(ms[variant], 2),
                     "images_per_cpu_s": round(batch / ms[variant] * 1e3, 2),
                     "speedup_vs_fp32": round(reference / ms[variant], 3) if reference else "",
                     "warmup_s": round(compile_s[variant], 1), "threads": torch.get_num_threads(),
                     "device": "cpu", "torch": torch.__version__})
        print(", ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--batch", type=int, nargs="+", default=[16])
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--precision", nargs="+", default=["fp32", "fp16"], choices=sorted(PRECISIONS))
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (--device cpu)")
    parser.add_argument("--variant", nargs="+", choices=list(CPU_VARIANTS), default=list(CPU_VARIANTS),
                        help="CPU variants (--device cpu); fp32 is the reference")
    args = parser.parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
        rows = [row for name in args.models for batch in args.batch
                for row in measure_cpu(name, batch, args.size, max(2, args.warmup // 2), args.repeats, args.variant)]
        out = args.out or default_results_path("model_speed", torch.device("cpu"))
        write_rows(rows, out)
        print(f"wrote {out}")
        return 0
    if not torch.cuda.is_available():
        parser.error("needs a CUDA device")
    rows = []
    for name in args.models:
        for batch in args.batch:
            for precision in args.precision:
                pair = {b: measure(name, b, batch, args.size, precision, args.warmup, args.repeats)
                        for b in ("torch", "cupy")}
                for row in pair.values():
                    row["speedup_vs_torch_neurons"] = round(pair["torch"]["latency_ms"] / row["latency_ms"], 3)
                    rows.append(row)
                    print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    out = args.out or default_results_path("model_speed", torch.device("cuda", torch.cuda.current_device()))
    write_rows(rows, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
