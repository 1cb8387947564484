"""Convert a trained ReLU ANN into its SpiCalib SNN and write the SNN's weights file (maintainers).

The file holds the folded convolutions and the whole converted state (every layer's scale, p, gamma, allowance,
T_design) as float32, and in its header the calibration list and how p was chosen::

    python benchmarks/spicalib_convert.py yolov3_tiny_relu.shapes --p 0.999 \\
        --out models/weights/spicalib_yolov3_tiny-shapes.safetensors

Without ``--p``, p is chosen by Bayesian optimisation (``pip install 'snn-det-zoo[spicalib]'``). Then point the
card's entry at ``package:weights/<file>`` with the printed sha256 and measure it with ``snn-det-zoo bench``.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import torch
from safetensors.torch import save

from snn_det_zoo import create_model
from snn_det_zoo._atomic import atomic_path
from snn_det_zoo.bench.conversion import calibration_list, convert


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ann", help="the ANN and its weights, e.g. yolov3_tiny_relu.shapes")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--p", type=float, default=None, help="the percentile (default: Bayesian optimisation)")
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--T-design", type=int, default=256)
    parser.add_argument("--gamma", type=int, default=5)
    parser.add_argument("--search-images", type=int, default=16)
    parser.add_argument("--init-points", type=int, default=5)
    parser.add_argument("--n-iter", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ann = create_model(args.ann, pretrained=True).eval()
    calibration = calibration_list(ann, args.calibration_images)
    snn, result = convert(ann, calibration, p=args.p, T_design=args.T_design, gamma=args.gamma,
                          search_images=args.search_images, init_points=args.init_points, n_iter=args.n_iter)
    tensors = {k: v.detach().contiguous() for k, v in snn.state_dict().items()}
    metadata = {"format": "snn_det_zoo", "arch": snn.arch, "ann": args.ann, **result.metadata()}
    data = save(tensors, metadata=metadata)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_bytes(data)
    print(f"{args.out}: {len(data) / 1e6:.2f} MB, sha256 {hashlib.sha256(data).hexdigest()}")
    print(metadata)


if __name__ == "__main__":
    main()
