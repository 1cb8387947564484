"""Training and evaluation throughput: images/s of one training step and of ``predict``, per model.

    python benchmarks/train_speed.py spikeyolo_tiny ems_yolo_res10_tiny --batch 16 --size 128
    python benchmarks/train_speed.py spikeyolo_s --device cuda --size 640 --neuron-backend torch cupy

A training step is what ``snn-det-zoo train`` does per batch: forward in training mode, the family's loss
against targets, backward, an SGD step (AMP on CUDA). Evaluation is ``model.predict`` on the same batch
(transform, forward, decode, NMS). Both are timed by ``torch.utils.benchmark.Timer`` (warm-up, CUDA
synchronisation, repeats; the median and the interquartile range). With several neuron backends, each row
gives its speed-up over the first backend measured in the same run. Rows go to
benchmarks/results/train_speed-<device>-pt<torch>.csv (atomically).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _results import device_slug, write_results
from torch.utils.benchmark import Timer

import snn_det_zoo as zoo
from snn_det_zoo.data.synthetic import SyntheticEvents, SyntheticShapes
from snn_det_zoo.train import TrainingSet, parameter_groups, training_transform


def _batch(model, size: int, batch: int, device: torch.device):
    data_type = SyntheticEvents if model.modality == "events" else SyntheticShapes
    kwargs = {"T": model.T} if model.modality == "events" else {}
    data = data_type(batch, image_size=size, **kwargs)
    samples = [TrainingSet(data, training_transform(model, size), 0.0, 0)[i] for i in range(batch)]
    x = torch.stack([s[0] for s in samples])
    x = x.transpose(0, 1).contiguous() if x.dim() == 5 else x
    targets = [{k: v.to(device) for k, v in s[1].items()} for s in samples]
    originals = [data[i][0] for i in range(batch)]
    return x.to(device), targets, originals


def measure(name: str, backend: str | None, batch: int, size: int, device: torch.device, min_run_time: float
            ) -> dict:
    kwargs = {"img_size": size}
    if backend is not None:
        kwargs["neuron_backend"] = backend
    model = zoo.create_model(name, **kwargs).to(device).train()
    criterion = model.criterion(size)
    optimizer = torch.optim.SGD(parameter_groups(model, 5e-4), lr=1e-3, momentum=0.9, nesterov=True)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    x, targets, originals = _batch(model, size, batch, device)

    def step() -> None:
        with torch.autocast(device.type, enabled=amp):
            loss, _ = criterion(model(x), targets, tuple(x.shape[-2:]))
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    def evaluate() -> None:
        model.predict(originals)

    row = {"model": name, "neuron_backend": backend or "torch", "batch": batch, "image_size": size,
           "T": model.T, "D": model.D or 1, "params": sum(p.numel() for p in model.parameters())}
    for what, fn in (("train", step), ("eval", evaluate)):
        fn()  # warm-up: allocator, kernels, the transform's first call
        timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
        m = timer.blocked_autorange(min_run_time=min_run_time)
        row[f"{what}_images_per_s"] = round(batch / m.median, 2)
        row[f"{what}_ms_median"] = round(1e3 * m.median, 2)
        row[f"{what}_ms_iqr"] = round(1e3 * m.iqr, 2)
    row["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"cpu ({torch.get_num_threads()} threads)"
    row["torch"] = torch.__version__
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--neuron-backend", nargs="+", default=[None],
                        help="I-LIF backends to compare (SpikeYOLO), e.g. torch cupy")
    parser.add_argument("--min-run-time", type=float, default=5.0, help="seconds of timed repeats per number")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    rows = []
    for name in args.models:
        backends = args.neuron_backend if name.startswith("spikeyolo") else [None]
        first = None
        for backend in backends:
            row = measure(name, backend, args.batch, args.size, device, args.min_run_time)
            first = first or row
            row["train_speedup_vs_first_backend"] = round(row["train_images_per_s"] / first["train_images_per_s"], 3)
            rows.append(row)
            print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    write_results(rows, "train_speed", device_slug(device), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
