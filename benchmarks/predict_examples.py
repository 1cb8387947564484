"""The README's pictures of detections, made by ``snn-det-zoo predict`` with the shipped weights on inputs this
script writes in the real formats: a PNG of the built-in synthetic-shapes validation split, and a Prophesee
``.dat`` recording of the synthetic-events validation split (four windows of moving shapes at Gen1's 304x240).

    python benchmarks/predict_examples.py      # -> benchmarks/predict_examples/{shapes.png,events.gif}
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from snn_det_zoo.cli import main
from snn_det_zoo.data.gen1 import write_dat
from snn_det_zoo.data.synthetic import SyntheticEvents, SyntheticShapes

OUT = Path(__file__).resolve().parent / "predict_examples"


def run() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        image, _ = SyntheticShapes(1, 128, seed=0, split="val")[0]
        pixels = (image * 255).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(pixels).save(scratch / "shapes.png")
        data = SyntheticEvents(4, T=2, image_size=(240, 304), seed=0, split="val")
        write_dat(scratch / "events_td.dat", np.concatenate([data.events(i) for i in range(len(data))]))
        for model, source, made, name in (
            ("spikeyolo_tiny.shapes", "shapes.png", "shapes.png", "shapes.png"),
            ("spikeyolo_tiny.shapes_events", "events_td.dat", "events_td.gif", "events.gif"),
        ):
            out = scratch / model
            if main(["predict", model, str(scratch / source), "--out", str(out), "--device", "cpu"]) != 0:
                raise SystemExit(f"snn-det-zoo predict {model} failed")
            OUT.mkdir(exist_ok=True)
            shutil.copyfile(out / made, OUT / name)
            print(f"wrote {OUT / name}")


if __name__ == "__main__":
    run()
