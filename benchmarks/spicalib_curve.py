"""Accuracy against T of the shipped SpiCalib SNN (and, with --ablation, the conversion ablation).

Writes benchmarks/results/spicalib_curve-<device>-pt<torch>.csv: one row per T (mAP@50, mAP@50:95, energy per
image, ACs, MACs) beside the ANN's mAP measured on the same images in the same run, and the T at 95 % and 99 % of
it; with --ablation also spicalib_ablation-<device>-pt<torch>.csv (one row per ablation step and T)::

    python benchmarks/spicalib_curve.py --num-samples 64 --ablation
"""

from __future__ import annotations

import argparse

import torch
from _results import device_slug, write_results

from snn_det_zoo import create_model
from snn_det_zoo.bench.ablation import ABLATION_STEPS, ablation_table
from snn_det_zoo.bench.curve import CURVE_STEPS, accuracy_vs_T
from snn_det_zoo.bench.loop import evaluate
from snn_det_zoo.bench.tracks import make_track


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snn", default="spicalib_yolov3_tiny.shapes")
    parser.add_argument("--ann", default="yolov3_tiny_relu.shapes")
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--steps", type=int, nargs="+", default=list(CURVE_STEPS))
    parser.add_argument("--ablation", action="store_true")
    parser.add_argument("--ablation-steps", type=int, nargs="+", default=list(ABLATION_STEPS))
    parser.add_argument("--ablation-samples", type=int, default=None, help="images of the ablation (default: all)")
    parser.add_argument("--search", type=int, nargs=3, default=None, metavar=("INIT", "ITER", "IMAGES"),
                        help="the ablation's last row searches p by BO with these init points, iterations and "
                             "images (default: it takes the shipped SNN's p)")
    parser.add_argument("--skip-curve", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ann = create_model(args.ann, pretrained=True).eval()
    snn = create_model(args.snn, pretrained=True).eval()
    track = make_track("synthetic-shapes", ann, num_samples=args.num_samples, image_size=max(ann.transform.img_size))
    ann_map50 = evaluate(ann, track, device=device, progress=False, timing_s=0.1)["stats"]["AP50"]
    if not args.skip_curve:
        measured = accuracy_vs_T(snn, track, steps=args.steps, ann_map50=ann_map50, device=device)
        rows = [{"model": args.snn, "ann": args.ann, "samples": measured["samples"], "ann_map50": round(ann_map50, 4),
                 **{k: round(v, 6) if isinstance(v, float) else v for k, v in point.items()},
                 "ratio_to_ann": round(point["map50"] / ann_map50, 4), "T_95": measured["T_95"],
                 "T_99": measured["T_99"]} for point in measured["curve"]]
        for row in rows:
            print(row)
        write_results(rows, "spicalib_curve", device_slug(device))
    if args.ablation:
        search = None
        if args.search:
            search = {"init_points": args.search[0], "n_iter": args.search[1], "search_images": args.search[2]}
        table = ablation_table(ann, track, steps=args.ablation_steps, limit=args.ablation_samples,
                               p_star=None if search else float(snn.conversion.p), search=search, device=device)
        for row in table:
            print(row)
        write_results(table, "spicalib_ablation", device_slug(device))


if __name__ == "__main__":
    main()
