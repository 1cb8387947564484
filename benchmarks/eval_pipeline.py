"""Where an evaluation's time goes: waiting on the data loader and COCO scoring, per second of the model.

    python benchmarks/eval_pipeline.py spikeyolo_s --device cuda --images 500 --batch 16 --workers 0 4 8
    python benchmarks/eval_pipeline.py spikeyolo_tiny --images 16 --batch 4 --workers 0 2   # CPU, a quick look

A COCO-format set is written to a temporary folder: ``--images`` JPEGs of 640x480 (COCO's typical size, smooth
random content at quality 90) and the val2017-like annotations of ``benchmarks/coco_eval.py``. The model runs
over it as ``snn-det-zoo bench`` runs it (the :class:`~snn_det_zoo.bench.tracks.CocoTrack`, the same
``DataLoader`` and collate, ``predict`` under ``torch.no_grad``; random weights: only time matters here),
once per ``--workers`` count, and three wall times are taken (a pipeline starves in wall time):

- ``loader_wait_s``: time blocked in the loader's ``next()``, reading and decoding the images;
- ``model_s``: ``predict`` with the device synchronised before and after: the model's device-seconds;
- ``score_s``: scoring the predictions, with faster-coco-eval and with pycocotools.

Each row gives the loader's wait and the scoring per model-second; a wait per model-second near 0 means the
loader never starves the model. Rows go to benchmarks/results/eval_pipeline-<device>-pt<torch>.csv.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _results import device_slug, write_results
from coco_eval import val2017_like_case  # the sibling script's val2017-sized case
from PIL import Image
from torch.utils.data import DataLoader

import snn_det_zoo as zoo
from snn_det_zoo.bench.tracks import CocoTrack, collate
from snn_det_zoo.errors import MissingDependencyError


def write_coco_set(root: Path, n_images: int, seed: int = 0) -> tuple[Path, Path]:
    """JPEG images of 640x480 and their val2017-like annotations: ``(image folder, annotation file)``."""
    gt, _ = val2017_like_case(n_images, seed)
    rng = np.random.default_rng(seed)
    images = root / "val2017"
    images.mkdir()
    for info in gt["images"]:
        coarse = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
        picture = np.asarray(coarse.resize((info["width"], info["height"]), Image.BILINEAR), dtype=np.int16)
        picture = (picture + rng.integers(-12, 13, picture.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(picture).save(images / info["file_name"], quality=90)
    ann_file = root / "instances_val2017.json"
    ann_file.write_text(json.dumps(gt))
    return images, ann_file


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_once(model, track: CocoTrack, device: torch.device, batch: int, workers: int) -> dict:
    loader = DataLoader(track, batch_size=batch, shuffle=False, collate_fn=collate, num_workers=workers,
                        pin_memory=device.type == "cuda")
    wait = model_time = 0.0
    predictions, targets = [], []
    with torch.no_grad():
        batches = iter(loader)
        while True:
            start = time.perf_counter()
            try:
                inputs, kept = next(batches)
            except StopIteration:
                break
            wait += time.perf_counter() - start
            synchronize(device)
            start = time.perf_counter()
            outputs = model.predict(inputs)
            synchronize(device)
            model_time += time.perf_counter() - start
            predictions += [{k: v.float().cpu() for k, v in out.items()} for out in outputs]
            targets += kept
    scores = {}
    for backend in ("faster", "pycocotools"):
        track.coco_backend = backend
        start = time.perf_counter()
        try:
            track.score(predictions, targets)
        except MissingDependencyError:  # faster-coco-eval is optional: its column stays empty
            scores[backend] = float("nan")
            continue
        scores[backend] = time.perf_counter() - start
    return {"loader_wait_s": wait, "model_s": model_time, "score_faster_s": scores["faster"],
            "score_pycocotools_s": scores["pycocotools"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=1, help="runs per worker count (medians)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    model = zoo.create_model(args.model).eval().to(device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        images, ann_file = write_coco_set(Path(tmp), args.images)
        track = CocoTrack(images, ann_file)
        run_once(model, track, device, args.batch, 0)  # warm-up: kernels, allocator, the file cache
        for workers in args.workers:
            runs = [run_once(model, track, device, args.batch, workers) for _ in range(args.repeats)]
            t = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            rows.append({
                "model": args.model, "device": torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"cpu ({torch.get_num_threads()} threads)", "images": args.images, "image_size": "640x480",
                "batch": args.batch, "workers": workers, **{k: round(v, 3) for k, v in t.items()},
                "loader_wait_per_model_s": round(t["loader_wait_s"] / t["model_s"], 3),
                "score_faster_per_model_s": round(t["score_faster_s"] / t["model_s"], 3),
                "score_pycocotools_per_model_s": round(t["score_pycocotools_s"] / t["model_s"], 3),
                "torch": torch.__version__,
            })
            print(", ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    write_results(rows, "eval_pipeline", device_slug(device), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
