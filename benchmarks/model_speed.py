"""Inference speed of whole detectors: images/s and latency, I-LIF on torch against CuPy, in one run.

    python benchmarks/model_speed.py spikeyolo_s --batch 16 --precision fp32 fp16

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--batch", type=int, nargs="+", default=[16])
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--precision", nargs="+", default=["fp32", "fp16"], choices=sorted(PRECISIONS))
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
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
