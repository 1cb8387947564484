"""Turn a training run's ``best.safetensors`` into a weights file that ships with the zoo (maintainers).

Floating-point tensors are stored as float16 (half the size; the model loads them into its float32
parameters), the run's metadata is kept, and the file's sha256 is printed for the card's weights entry::

    python benchmarks/ship_weights.py /work/runs/spikeyolo_tiny-shapes/best.safetensors \\
        --out models/weights/spikeyolo_tiny-shapes.safetensors

Then point the card's entry at ``package:weights/<file>`` with that sha256, and measure it with
``snn-det-zoo bench --json``.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save

from snn_det_zoo._atomic import atomic_path


def ship(source: Path, out: Path) -> str:
    with safe_open(str(source), framework="pt") as fh:
        metadata = dict(fh.metadata() or {})
        tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    data = save(half, metadata={**metadata, "stored_as": "float16"})
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the run's best.safetensors")
    parser.add_argument("--out", type=Path, required=True, help="the shipped file, e.g. models/weights/X.safetensors")
    args = parser.parse_args()
    digest = ship(args.source, args.out)
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.2f} MB, sha256 {digest}")
    print({k: v for k, v in safe_open(str(args.out), framework="pt").metadata().items()})


if __name__ == "__main__":
    main()
