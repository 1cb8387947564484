"""Write tests/data/loss_golden.json, the golden outputs of the AUTHORS' two training losses (once, by hand; never CI).

Usage::

    python tests/data/make_loss_golden.py /path/to/SpikeYOLO-checkout /path/to/EMS-YOLO-checkout

The checkouts are unmodified scratch copies (``git archive HEAD | tar -x``) of BICLab/SpikeYOLO @ 309ef5e
(``ultralytics/utils/loss.py``: ``v8DetectionLoss``, Ultralytics 8.0.197) and BICLab/EMS-YOLO @ fbfc2ca
(``utils/loss.py`` at the repository root: YOLOv5's ``ComputeLoss``). Only those loss modules and what they
import are loaded: the SpikeYOLO tree's ``ultralytics/__init__.py`` (which builds every model class) is
skipped by registering a bare ``ultralytics`` package whose path is the checkout's, so ``ultralytics.utils``
and its modules are the checkout's own. Their imports need torch, torchvision, numpy, opencv, matplotlib,
PyYAML, tqdm, requests, pandas, psutil and ``pkg_resources`` (setuptools): use a scratch venv that sees this
project's venv (a ``.pth`` line naming its site-packages) plus ``pip install pandas psutil``. The Ultralytics
settings file is written under a temporary ``YOLO_CONFIG_DIR``, not the user's home.

Each loss gets a stand-in for the model its constructor reads: for ``v8DetectionLoss`` ``model.args`` (gains
box 7.5, cls 0.5, dfl 1.5, the SpikeYOLO recipe), ``model.model[-1]`` (``nc``, ``no``, ``reg_max`` 16,
``stride`` [8, 16, 32]) and ``model.parameters()`` (the device); for ``ComputeLoss`` ``model.hyp`` (the
``hyp.scratch.yaml`` gains already scaled the way EMS-YOLO's ``train.py`` L247-250 scales them: box by 3/nl,
cls by nc/80*3/nl, obj by (imgsz/640)**2*3/nl; cls_pw = obj_pw = 1, fl_gamma 0, anchor_t 4, label_smoothing 0)
and ``model.model[-1]`` (a Detect with ``na`` 3, ``nc``, ``nl`` 2, ``anchors`` [2, 3, 2] in grid units: the
COCO P4/P5 anchors in pixels divided by the strides 16 and 32, ``stride`` [16, 32]).

Geometry: a 128x128 input, 5 classes. SpikeYOLO's head maps are [B, 64+5, 16, 16], [B, 69, 8, 8], [B, 69, 4, 4];
EMS-YOLO's raw outputs [B, 3, 8, 8, 10] and [B, 3, 4, 4, 10]. The logits are float64, drawn uniformly from
[-scale, scale) by a pure-Python splitmix64 stream (:func:`loss_golden_inputs.uniform`, which the test draws with
too; the file stores a checksum of each input to prove it). The targets are hand-made boxes whose
corners are multiples of 1/8 px, so the authors' formats (Ultralytics ``{'batch_idx', 'cls', 'bboxes'}`` and
YOLOv5's ``[N, 6]`` rows, normalised xywh, float32 as their data loaders give them) hold exactly the boxes our
per-image xyxy dicts hold: no rounding hides in the format conversion.

The authors' code runs as it does in their training, with torch's default dtype float32: both accumulate the
parts in float32 tensors (``loss = torch.zeros(3)``; ``lbox = torch.zeros(1)``), so the stored totals and parts
are float32-rounded (relative 6e-8), while the gradients flow through in float64.

Stored per case: the targets, the logits' seed and scale, the authors' total and parts, and the gradient of
the total with respect to every input map as fingerprints (sum, sum of magnitudes and the dot product with a
second splitmix64 stream), plus the full gradient of the smallest map for the cases marked ``full_grad``.
Nothing of the authors' code is stored.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType, SimpleNamespace

import torch

# The inputs are drawn by the module the test draws them with (tests/loss_golden_inputs.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loss_golden_inputs import grid_anchors, uniform
from loss_golden_inputs import v8_maps as v8_maps_of

UPSTREAM = {"v8": "BICLab/SpikeYOLO@309ef5e ultralytics/utils/loss.py v8DetectionLoss",
            "v5": "BICLab/EMS-YOLO@fbfc2ca utils/loss.py ComputeLoss"}
IMG, NC, REG_MAX = 128, 5, 16
V8_STRIDES = (8, 16, 32)
V8_GAINS = {"box": 7.5, "cls": 0.5, "dfl": 1.5}
V5_STRIDES = (16, 32)
V5_ANCHORS_PX = ((10, 14, 23, 27, 37, 58), (81, 82, 135, 169, 344, 319))  # COCO P4, P5 (EMS-YOLO's yaml)
V5_BASE = {"box": 0.05, "obj": 1.0, "cls": 0.5}  # hyp.scratch.yaml
WEIGHT_SEED_OFFSET = 1_000_003  # the fingerprint weights' stream: seed + this


def v8_shapes(batch: int) -> list[tuple[int, ...]]:
    return [(batch, 4 * REG_MAX + NC, IMG // s, IMG // s) for s in V8_STRIDES]


def v8_maps(case: dict) -> list[torch.Tensor]:
    """SpikeYOLO head maps of a case (see :func:`loss_golden_inputs.v8_maps`)."""
    return v8_maps_of(case["seed"], case["scale"], case["dist_slope"], case["cls_offset"],
                      v8_shapes(len(case["images"])), REG_MAX)


def v5_shapes(batch: int) -> list[tuple[int, ...]]:
    return [(batch, 3, IMG // s, IMG // s, 5 + NC) for s in V5_STRIDES]


def v5_hyp() -> dict[str, float]:
    """``hyp.scratch.yaml`` scaled exactly as EMS-YOLO's ``train.py`` L247-250 does (same operation order)."""
    nl = len(V5_STRIDES)
    hyp = dict(V5_BASE, cls_pw=1.0, obj_pw=1.0, fl_gamma=0.0, anchor_t=4.0, label_smoothing=0.0)
    hyp["box"] *= 3 / nl
    hyp["cls"] *= NC / 80 * 3 / nl
    hyp["obj"] *= (IMG / 640) ** 2 * 3 / nl
    return hyp


def v5_anchors() -> torch.Tensor:
    """``Detect.anchors`` after ``check_anchor_order``/stride division: [levels, 3, 2] in grid units."""
    return grid_anchors(V5_ANCHORS_PX, V5_STRIDES)


# Boxes per image: (x1, y1, x2, y2, class) in input pixels, corners multiples of 1/8.
V8_CASES = [
    {"name": "batch2_mixed", "seed": 11, "scale": 4.0, "dist_slope": 1.0, "cls_offset": -2.0, "full_grad": True,
     "images": [
         [(20, 20, 100, 100, 0), (30, 30, 90, 90, 1),  # nested: anchors claimed by both
          (3.5, 60.25, 40.75, 127.5, 2)],
         [(12, 12, 44, 44, 3),  # stride-8 anchor centres (4 + 8k) lie on its edges: outside
          (5, 5, 11, 11, 4),  # one anchor centre inside, (8, 8) of stride 16
          (0, 0, 128, 128, 1), (64.125, 8.5, 70.875, 120, 0), (90, 90, 126, 100, 2), (90, 92, 126, 102, 2)],
     ]},
    {"name": "one_image_empty", "seed": 26, "scale": 4.0, "dist_slope": 0.5, "cls_offset": 0.0, "full_grad": False,
     "images": [
         [],
         [(0, 0, 31.5, 47.25, 4), (96.625, 0, 128, 16.375, 0), (40, 40, 88, 88, 2), (44, 44, 84, 84, 2),
          (0, 56, 128, 72, 3)],  # the image's width: far edges beyond 15 bins from the end anchors (DFL clamp)
     ]},
    {"name": "no_boxes", "seed": 13, "scale": 4.0, "dist_slope": 0.0, "cls_offset": -4.0, "full_grad": False,
     "images": [[], []]},
    {"name": "single_crowded", "seed": 14, "scale": 8.0, "dist_slope": 1.0, "cls_offset": 0.0, "full_grad": False,
     "images": [
         [(8, 8, 56, 56, 0), (16, 16, 48, 48, 1), (24, 24, 40, 40, 2), (60, 10, 62, 118, 3), (10, 60, 118, 62, 4)],
     ]},
]

V5_CASES = [
    {"name": "batch2_mixed", "seed": 21, "scale": 4.0, "full_grad": True, "images": [
        # level-0 grid x of the centres 3.4375, 2.0625 (left neighbour), 5.5 (none), 4.0 (both: a large box)
        [(39, 40, 71, 72, 0), (25, 30, 41, 50, 1), (72, 60, 104, 84, 2), (4, 8, 124, 110, 3),
         (79.5, 20, 95.5, 36, 4),  # grid x 5.46875: within 0.5 of the left border but not within 0.45
         (60.5, 100, 99.5, 114, 1)],  # 39 px wide: ratio 3.9 to the first anchor, just under anchor_t
        # in the first cell and in the last (no neighbour beyond the border), two targets in one cell
        [(2, 2, 14, 22, 4), (110, 114, 126, 126, 0), (60, 60, 84, 92, 1), (61, 61, 85, 91, 3),
         (4, 62, 124, 64, 2)],  # thin: fails anchor_t on every anchor of both levels
    ]},
    {"name": "one_image_empty", "seed": 22, "scale": 4.0, "full_grad": False, "images": [
        [(8, 8, 16, 48, 1), (50.5, 20.25, 90.75, 30.125, 2), (0, 0, 128, 128, 4)],
        [],
    ]},
    {"name": "no_boxes", "seed": 23, "scale": 4.0, "full_grad": False, "images": [[], []]},
    {"name": "small_only", "seed": 24, "scale": 2.0, "full_grad": False, "images": [
        [(60, 60, 68, 68, 0), (24.125, 40, 32.125, 49, 3), (96, 16, 104, 20, 2)],  # nothing matches level 1
    ]},
]


def ours_targets(images: list) -> list[dict[str, list]]:
    """Per-image xyxy boxes and labels, the format our losses take (stored in the JSON)."""
    return [{"boxes": [list(map(float, b[:4])) for b in boxes], "labels": [int(b[4]) for b in boxes]}
            for boxes in images]


def normalised_rows(images: list) -> torch.Tensor:
    """[N, 6] (image, class, cx, cy, w, h normalised), float32; asserts the conversion is exact."""
    rows = []
    for i, boxes in enumerate(images):
        for x1, y1, x2, y2, c in boxes:
            row = (i, c, (x1 + x2) / 2 / IMG, (y1 + y2) / 2 / IMG, (x2 - x1) / IMG, (y2 - y1) / IMG)
            assert all(float(torch.tensor(v, dtype=torch.float32)) == v for v in row), row  # exact in float32
            rows.append(row)
    return torch.tensor(rows, dtype=torch.float32).view(-1, 6)


def fingerprints(grads: list[torch.Tensor], seed: int) -> list[dict[str, float]]:
    weights = uniform(seed + WEIGHT_SEED_OFFSET, [tuple(g.shape) for g in grads], 1.0)
    return [{"sum": g.sum().item(), "abs_sum": g.abs().sum().item(), "weighted": (g * w).sum().item()}
            for g, w in zip(grads, weights, strict=True)]


def input_check(inputs: list[torch.Tensor]) -> list[float]:
    return [math.fsum(t.flatten().tolist()) for t in inputs]


def _import_v8(checkout: Path) -> ModuleType:
    os.environ["YOLO_CONFIG_DIR"] = tempfile.mkdtemp(prefix="yolo_cfg_")
    package = ModuleType("ultralytics")  # skip ultralytics/__init__.py (it imports every model)
    package.__path__ = [str(checkout / "ultralytics")]
    package.__version__ = "8.0.197"
    sys.modules["ultralytics"] = package
    from ultralytics.utils import loss  # the authors' module

    assert Path(loss.__file__).is_relative_to(checkout), loss.__file__
    return loss


def _import_v5(checkout: Path) -> ModuleType:
    sys.path.insert(0, str(checkout))
    from utils import loss  # the authors' module

    assert Path(loss.__file__).is_relative_to(checkout), loss.__file__
    return loss


def _parameters():
    return iter([torch.zeros(1)])


def run_v8(loss_module: ModuleType) -> list[dict]:
    detect = SimpleNamespace(nc=NC, no=4 * REG_MAX + NC, reg_max=REG_MAX,
                             stride=torch.tensor(V8_STRIDES, dtype=torch.float32))
    model = SimpleNamespace(args=SimpleNamespace(**V8_GAINS), model=[detect], parameters=_parameters)
    criterion = loss_module.v8DetectionLoss(model)
    _guard_topk_ties(criterion.assigner)
    results = []
    for case in V8_CASES:
        maps = [m.requires_grad_() for m in v8_maps(case)]
        rows = normalised_rows(case["images"])
        labels = {"batch_idx": rows[:, 0], "cls": rows[:, 1:2], "bboxes": rows[:, 2:6]}
        total, parts = criterion(maps, labels)
        total.backward()
        results.append(_record(case, maps, total, parts))
    return results


def _guard_topk_ties(assigner) -> None:
    """Wrap the authors' ``get_pos_mask`` so it fails if the loss could depend on how ``torch.topk`` breaks
    ties: an anchor inside a box tied with the box's 10th metric value across the cut, unless the tie is at
    metric 0 with overlap 0 (such an anchor, chosen or not, gets target score 0 and weight 0 and cannot raise
    the box's best overlap, so it changes neither the loss nor its gradient)."""
    original = assigner.get_pos_mask
    select_in_gts = sys.modules["ultralytics.utils.tal"].select_candidates_in_gts

    def checked(pd_scores, pd_bboxes, gt_labels, gt_bboxes, anc_points, mask_gt):
        mask_pos, metric, overlaps = original(pd_scores, pd_bboxes, gt_labels, gt_bboxes, anc_points, mask_gt)
        inside = select_in_gts(anc_points, gt_bboxes).bool()
        ranked = metric.sort(-1, descending=True).values
        cut = ranked[..., assigner.topk - 1:assigner.topk]
        tied_across = (ranked[..., assigner.topk:assigner.topk + 1] == cut) & mask_gt.bool()
        matters = (metric == cut) & inside & ((cut > 0) | (overlaps > 0))
        ambiguous = tied_across & matters.any(-1, keepdim=True)
        assert not ambiguous.any(), f"top-k ties at (image, box) {ambiguous.squeeze(-1).nonzero().tolist()}"
        return mask_pos, metric, overlaps

    assigner.get_pos_mask = checked


def run_v5(loss_module: ModuleType) -> list[dict]:
    detect = SimpleNamespace(na=3, nc=NC, nl=len(V5_STRIDES), anchors=v5_anchors(),
                             stride=torch.tensor(V5_STRIDES, dtype=torch.float32))
    model = SimpleNamespace(hyp=v5_hyp(), model=[detect], parameters=_parameters)
    criterion = loss_module.ComputeLoss(model)
    results = []
    for case in V5_CASES:
        batch = len(case["images"])
        raw = [r.requires_grad_() for r in uniform(case["seed"], v5_shapes(batch), case["scale"])]
        total, parts = criterion(raw, normalised_rows(case["images"]))
        total.sum().backward()  # their total has shape [1]
        results.append(_record(case, raw, total, parts))
    return results


def _record(case: dict, inputs: list[torch.Tensor], total: torch.Tensor, parts: torch.Tensor) -> dict:
    grads = [t.grad for t in inputs]
    return {
        "name": case["name"], "seed": case["seed"], "scale": case["scale"],
        **{k: case[k] for k in ("dist_slope", "cls_offset") if k in case},
        "targets": ours_targets(case["images"]),
        "input_fsum": input_check([t.detach() for t in inputs]),
        "total": float(total.sum()), "total_dtype": str(total.dtype), "parts": parts.tolist(),
        "grad": fingerprints(grads, case["seed"]),
        "grad_last_map": grads[-1].flatten().tolist() if case["full_grad"] else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("spikeyolo", type=Path, help="scratch copy of BICLab/SpikeYOLO @ 309ef5e")
    parser.add_argument("ems_yolo", type=Path, help="scratch copy of BICLab/EMS-YOLO @ fbfc2ca")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "loss_golden.json")
    args = parser.parse_args()
    v8 = run_v8(_import_v8(args.spikeyolo.resolve()))
    v5 = run_v5(_import_v5(args.ems_yolo.resolve()))
    golden = {
        "upstream": UPSTREAM, "torch": torch.__version__,
        "settings": {"img": IMG, "num_classes": NC, "reg_max": REG_MAX, "v8_strides": V8_STRIDES,
                     "v8_gains": V8_GAINS, "v5_strides": V5_STRIDES, "v5_anchors_px": V5_ANCHORS_PX,
                     "v5_base_gains": V5_BASE, "v5_hyp_scaled": v5_hyp(),
                     "weight_seed_offset": WEIGHT_SEED_OFFSET},
        "v8": v8, "v5": v5,
    }
    args.out.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    for family, cases in (("v8", v8), ("v5", v5)):
        for case in cases:
            print(family, case["name"], case["total"], case["parts"])


if __name__ == "__main__":
    main()
