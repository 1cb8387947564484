"""Where the benchmark scripts put their CSVs: benchmarks/results/<name>-<device>-pt<torch release>.csv, one file
per script, device and torch release, rewritten whole by each run (so it always holds one run's rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from snn_det_zoo._atomic import write_csv_atomic

RESULTS = Path(__file__).resolve().parent / "results"


def device_slug(device: torch.device) -> str:
    """``cpu``, or the GPU's model: "NVIDIA H100 80GB HBM3" -> ``h100``, "NVIDIA H200" -> ``h200``."""
    if device.type != "cuda":
        return device.type
    words = [w for w in torch.cuda.get_device_name(device).split() if w.upper() != "NVIDIA"]
    model = next((w for w in words if any(c.isdigit() for c in w)), words[0] if words else "cuda")
    return model.lower()


def write_results(rows: list[dict[str, Any]], name: str, device: str, out: Path | None = None) -> Path:
    """Write ``rows`` atomically to ``out`` or to the results folder's file for ``name`` on ``device``."""
    version = torch.__version__.split("+")[0]  # 2.14.1, not 2.14.1+cu130: one file per release
    path = out or RESULTS / f"{name}-{device}-pt{version}.csv"
    write_csv_atomic(path, list(rows[0]), rows)
    print(f"wrote {path}")
    return path
