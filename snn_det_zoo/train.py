"""Training: any registered model on COCO, Gen1 or a built-in set, with its family's loss and recipe.

``snn-det-zoo train MODEL --dataset D`` (or :func:`train`) runs the loop both families' YOLO code bases run
(Ultralytics 8.0.197 ``BaseTrainer`` for SpikeYOLO, YOLOv5 ``train.py`` for EMS-YOLO), from the family's
:class:`~snn_det_zoo.nn.recipe.TrainRecipe` and ``criterion``:

- SGD with Nesterov momentum in three groups (biases, decayed weights, norm weights without decay), the
  weight decay scaled by ``batch * accumulate / 64``; gradients accumulated to a nominal batch of 64;
- warm-up (bias lr falling from 0.1, the others rising from 0, momentum rising from 0.8, accumulation rising
  from 1), then the per-epoch schedule (linear or cosine); gradient clipping where the recipe clips;
- an EMA of the weights (all float state, BatchNorm statistics included), which is what is validated and
  saved, as both code bases do; AMP on CUDA; neuron state reset at every forward (the Detector contract);
- the loss times the batch size, and times the world size under DDP (DDP averages gradients).

Training images are letterboxed to a square of ``img_size`` by the model's own transform settings (boxes
mapped by its :class:`~snn_det_zoo.nn.mapping.BoxMapping`) and flipped left-right with the recipe's
probability (never event frames). Mosaic, HSV and affine augmentations of the COCO recipes are not
implemented.

The output folder holds ``train.csv`` (one row per epoch: loss and its parts, lr, validation mAP, seconds),
``last.safetensors`` and ``best.safetensors`` (EMA state dicts; best by Ultralytics' fitness
``0.1 * mAP50 + 0.9 * mAP50-95``) and ``last_state.pt`` for ``--resume`` (tensors and plain values only: it
loads with ``torch.load(weights_only=True)``). Under ``torchrun`` every rank trains on its share of each
batch (a distributed sampler), BatchNorm statistics are synchronised across ranks
(:func:`~snn_det_zoo.nn.sync_batchnorm.synchronize_batchnorm`) and rank 0 writes.
"""

from __future__ import annotations

import copy
import math
import random
import shlex
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from ._atomic import atomic_path, writable_folder, write_csv_atomic
from .bench.loop import predict_track
from .bench.tracks import DATASETS, Track, make_track
from .distributed import barrier, init_from_env, local_rank, rank_and_world
from .errors import CheckpointFormatError, InvalidArgumentError, WeightsNotFoundError
from .factory import create_model
from .nn.detector import Detector
from .nn.recipe import TrainRecipe
from .nn.sync_batchnorm import synchronize_batchnorm
from .nn.transform import LetterboxTransform

__all__ = ["ModelEMA", "TrainArgs", "TrainingSet", "fitness", "parameter_groups", "train"]

STATE_FILE = "last_state.pt"
CSV_FILE = "train.csv"
_NORMS = (_NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


@dataclass
class TrainArgs:
    """What a training run is asked to do (the ``snn-det-zoo train`` arguments)."""

    model: str
    dataset: str = "synthetic-shapes"
    epochs: int = 30
    batch_size: int = 16
    num_samples: int = 1024
    val_samples: int = 128
    img_size: int | None = None
    out: str = "runs/train"
    resume: bool = False
    device: str = "cpu"
    seed: int = 0
    workers: int = 0
    cache: bool = False
    amp: bool = True
    weights: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    model_args: dict[str, Any] = field(default_factory=dict)
    coco_root: str | None = None
    coco_ann: str | None = None
    val_coco_root: str | None = None
    val_coco_ann: str | None = None
    gen1_root: str | None = None
    progress: bool = True

    def check(self) -> None:
        if self.dataset not in DATASETS:
            raise InvalidArgumentError(f"unknown dataset {self.dataset!r}; choose from {', '.join(DATASETS)}")
        for name in ("epochs", "batch_size", "num_samples", "val_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
        if self.img_size is not None and (not isinstance(self.img_size, int) or self.img_size < 32):
            raise InvalidArgumentError(f"img_size must be an integer of at least 32, got {self.img_size!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise InvalidArgumentError(f"workers must be a non-negative integer, got {self.workers!r}")
        if self.weights is not None and not Path(self.weights).is_file():
            raise WeightsNotFoundError(f"--weights {self.weights}: no such file")

    def identity(self) -> dict[str, Any]:
        """What must not change between a run and its ``--resume``."""
        keys = ("model", "dataset", "num_samples", "img_size", "seed", "recipe", "model_args", "batch_size")
        return {k: getattr(self, k) for k in keys}


# ------------------------------------------------------------------------------------------- optimiser


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Both code bases' three groups: biases (no decay; the warm-up bias lr), weights (decayed), norm
    weights (no decay). The bias group comes first, as in Ultralytics."""
    biases, decayed, norms = [], [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if name == "bias":
                biases.append(param)
            elif isinstance(module, _NORMS):
                norms.append(param)
            else:
                decayed.append(param)
    return [{"params": biases, "weight_decay": 0.0, "name": "bias"},
            {"params": decayed, "weight_decay": weight_decay, "name": "weight"},
            {"params": norms, "weight_decay": 0.0, "name": "norm"}]


class ModelEMA:
    """Exponential moving average of every float entry of a model's state dict (weights and BatchNorm
    statistics), with the decay ramp of Ultralytics and YOLOv5: ``decay * (1 - exp(-updates / tau))``."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0) -> None:
        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        current = model.state_dict()
        for key, value in self.ema.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(current[key].detach().to(value.dtype), alpha=1 - d)


def fitness(map50: float, map50_95: float) -> float:
    """Ultralytics' and YOLOv5's model fitness (which epoch is ``best``)."""
    return 0.1 * map50 + 0.9 * map50_95


# ------------------------------------------------------------------------------------------------ data


def training_transform(model: Detector, img_size: int) -> LetterboxTransform:
    """The model's own pre-processing, padded to a fixed ``img_size`` square so that batches stack (event
    models that stretch keep stretching to the square)."""
    t = model.transform
    padding = "none" if t.resize == "stretch" else "square"
    return LetterboxTransform(img_size, t.stride, resize=t.resize, rounding=t.rounding, downscale=t.downscale,
                              padding=padding, scaleup=t.scaleup, fill=t.fill, backend=t.backend)


class TrainingSet(Dataset):
    """A track's samples as training pairs: the network input (letterboxed, maybe flipped) and its targets
    in input pixels (``boxes`` xyxy, ``labels``).

    Flips are drawn from ``(seed, epoch, index)``, so a run is repeatable whatever the workers; with
    ``cache`` the letterboxed inputs are kept in memory as uint8 after their first use.
    """

    def __init__(self, data: Dataset, transform: LetterboxTransform, fliplr: float, seed: int,
                 cache: bool = False) -> None:
        self.data, self.transform, self.fliplr, self.seed = data, transform, fliplr, seed
        self.epoch = 0
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.data)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _prepared(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._cache is not None and index in self._cache:
            pixels, boxes, labels = self._cache[index]
            return pixels.float().div_(255.0), boxes, labels
        item, target = self.data[index]
        (x,), (mapping,) = self.transform([item])
        boxes = mapping.to_input(target["boxes"].to(torch.float32).reshape(-1, 4))
        labels = target["labels"].to(torch.int64).reshape(-1)
        if self._cache is not None:
            self._cache[index] = (x.mul(255.0).round_().to(torch.uint8), boxes, labels)
        return x, boxes, labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, boxes, labels = self._prepared(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.fliplr and rng.random() < self.fliplr:
            width = x.shape[-1]
            x = x.flip(-1)
            boxes = torch.stack((width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]), 1)
        return x, {"boxes": boxes, "labels": labels}


def _stack(batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[torch.Tensor, list[dict]]:
    inputs = torch.stack([sample[0] for sample in batch])
    if inputs.dim() == 5:  # event frames [B, T, C, H, W] -> [T, B, C, H, W]
        inputs = inputs.transpose(0, 1).contiguous()
    return inputs, [sample[1] for sample in batch]


# ------------------------------------------------------------------------------------------ the loop


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidArgumentError(f"--device {name}: CUDA is not available here")
        if rank_and_world()[1] > 1:
            device = torch.device("cuda", local_rank())
    return device


def _tracks(args: TrainArgs, model: Detector, img_size: int) -> tuple[Track, Track]:
    common = dict(num_samples=args.num_samples, image_size=img_size, seed=args.seed, gen1_root=args.gen1_root)
    if args.dataset == "coco":
        if args.val_coco_root is None or args.val_coco_ann is None:
            raise InvalidArgumentError("training on coco needs --val-coco-root and --val-coco-ann (val2017) as "
                                       "well as --coco-root and --coco-ann (train2017)")
        train_track = make_track("coco", model, coco_root=args.coco_root, coco_ann=args.coco_ann, **common)
        val_track = make_track("coco", model, coco_root=args.val_coco_root, coco_ann=args.val_coco_ann, **common)
        return train_track, val_track
    train_track = make_track(args.dataset, model, split="train", **common)
    val_common = {**common, "num_samples": args.val_samples}
    val_track = make_track(args.dataset, model, split="val", **val_common)
    return train_track, val_track


def _read_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise WeightsNotFoundError(f"--resume: {path} not found; a run writes it after its first epoch")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged files
        raise CheckpointFormatError(f"{path}: not a readable training state ({exc})") from exc
    needed = {"epoch", "model", "ema", "ema_updates", "optimizer", "scaler", "best_fitness", "rows", "args",
              "last_step"}
    if not isinstance(state, dict) or not needed <= set(state):
        raise CheckpointFormatError(f"{path}: a training state needs the entries {sorted(needed)}")
    return state


def _save_weights(path: Path, model: nn.Module, metadata: Mapping[str, str]) -> None:
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    data = save(tensors, metadata=dict(metadata))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _save_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _warmup(optimizer: torch.optim.Optimizer, recipe: TrainRecipe, ni: int, nw: int, lr_epoch: float,
            nominal: float) -> int:
    """Set the groups' lr and momentum for iteration ``ni`` of a warm-up of ``nw``; the accumulation."""
    xi = [0, nw]
    for group in optimizer.param_groups:
        start = recipe.warmup_bias_lr if group["name"] == "bias" else 0.0
        group["lr"] = float(np.interp(ni, xi, [start, group["initial_lr"] * lr_epoch]))
        group["momentum"] = float(np.interp(ni, xi, [recipe.warmup_momentum, recipe.momentum]))
    return max(1, int(np.interp(ni, xi, [1, nominal]).round()))


def _batches(loader: DataLoader, progress: bool, desc: str) -> Iterator[Any]:
    from tqdm import tqdm

    yield from tqdm(loader, desc=desc, disable=not progress, leave=False)


def train(args: TrainArgs) -> Path:
    """Train ``args.model``; returns the output folder (``train.csv``, ``last/best.safetensors``)."""
    args.check()
    init_from_env(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    rank, world = rank_and_world()
    device = _device(args.device)
    out = writable_folder(args.out) if rank == 0 else Path(args.out)
    state = _read_state(out / STATE_FILE) if args.resume else None
    if state is not None and state["args"] != args.identity():
        changed = sorted(k for k, v in args.identity().items() if state["args"].get(k) != v)
        raise InvalidArgumentError(f"--resume: {out / STATE_FILE} was trained with other settings ({changed}); "
                                   "resume with the same arguments or start a new --out folder")
    _seed_everything(args.seed)
    model = create_model(args.model, checkpoint_path=args.weights, **args.model_args)
    if not isinstance(model, Detector):
        raise InvalidArgumentError(f"{args.model} is not a Detector")
    if model.recipe is None:
        raise InvalidArgumentError(f"{type(model).__name__} has no training recipe")
    recipe = model.recipe.for_modality(model.modality).replace(**args.recipe)
    img_size = args.img_size or max(model.transform.img_size)
    if img_size % max(model.strides):
        raise InvalidArgumentError(f"img_size {img_size} must be a multiple of the model's stride {max(model.strides)}")
    train_track, val_track = _tracks(args, model, img_size)
    model.to(device).train()
    criterion = model.criterion(img_size)

    # The nominal batch of 64 by accumulation; the weight decay scaled to it (both code bases).
    accumulate = max(round(recipe.nominal_batch / args.batch_size), 1)
    decay = recipe.weight_decay * args.batch_size * accumulate / recipe.nominal_batch
    optimizer = torch.optim.SGD(parameter_groups(model, decay), lr=recipe.lr0, momentum=recipe.momentum,
                                nesterov=True)
    lr_factor = recipe.lr_factor(args.epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lr_factor)
    amp = args.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    ema = ModelEMA(model, recipe.ema_decay, recipe.ema_tau)
    start_epoch, best, rows, last_step = 0, -1.0, [], -1
    if state is not None:
        model.load_state_dict(state["model"])
        ema.ema.load_state_dict(state["ema"])
        ema.updates = int(state["ema_updates"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best, rows = int(state["epoch"]) + 1, float(state["best_fitness"]), list(state["rows"])
        last_step = int(state["last_step"])
        scheduler.last_epoch = start_epoch - 1
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * lr_factor(start_epoch)
    if world > 1:
        synchronize_batchnorm(model)
        net: nn.Module = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        net = model

    per_rank = args.batch_size // world
    if per_rank * world != args.batch_size:
        raise InvalidArgumentError(f"batch size {args.batch_size} does not split over {world} processes")
    train_set = TrainingSet(train_track.data, training_transform(model, img_size), recipe.fliplr, args.seed,
                            cache=args.cache)
    generator = torch.Generator().manual_seed(args.seed)
    sampler = DistributedSampler(train_set, world, rank, shuffle=True, seed=args.seed) if world > 1 else \
        RandomSampler(train_set, generator=generator)
    loader = DataLoader(train_set, batch_size=per_rank, sampler=sampler, collate_fn=_stack,
                        num_workers=args.workers, drop_last=False)
    batches = len(loader)
    warmup = recipe.warmup_iters(batches)
    command = " ".join(shlex.quote(a) for a in ["snn-det-zoo", *sys.argv[1:]]) if sys.argv[1:2] == ["train"] \
        else ""
    metadata = {"arch": args.model, "dataset": args.dataset, "format": "snn_det_zoo"}
    if rank == 0 and args.progress:
        print(f"train {args.model} on {args.dataset}: {len(train_set)} samples, {args.epochs} epochs, batch "
              f"{args.batch_size} (x{accumulate} accumulated), img {img_size}, {world} process(es) on {device}")
    for epoch in range(start_epoch, args.epochs):
        started = time.perf_counter()
        net.train()
        train_set.set_epoch(epoch)
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        else:
            generator.manual_seed(args.seed + epoch)
        sums: dict[str, float] = {}
        seen = 0
        optimizer.zero_grad()
        for i, (inputs, targets) in enumerate(_batches(loader, args.progress and rank == 0,
                                                       f"epoch {epoch + 1}/{args.epochs}")):
            ni = i + batches * epoch
            if ni <= warmup and warmup > 0:
                accumulate = _warmup(optimizer, recipe, ni, warmup, lr_factor(epoch),
                                     recipe.nominal_batch / args.batch_size)
            inputs = inputs.to(device, non_blocking=True)
            targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
            with torch.autocast(device.type, enabled=amp):
                raw = net(inputs)
                loss, parts = criterion(raw, targets, tuple(inputs.shape[-2:]))
            if world > 1:
                loss = loss * world  # DDP averages the gradients of the ranks
            scaler.scale(loss).backward()
            if ni - last_step >= accumulate:
                if recipe.max_grad_norm is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=recipe.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad()
                ema.update(model)
                last_step = ni
            seen += 1
            for key, value in {"loss": float(sum(parts.values())), **{k: float(v) for k, v in parts.items()}}.items():
                sums[key] = sums.get(key, 0.0) + value
        lr = optimizer.param_groups[1]["lr"]  # the weights' lr at the end of the epoch, before the schedule
        scheduler.step()
        means = _mean_over_ranks({k: v / max(seen, 1) for k, v in sums.items()}, device)
        stats = _validate(ema.ema, val_track, args, device)
        row = {"epoch": epoch + 1, **{k: round(v, 6) for k, v in means.items()}, "lr": round(lr, 8)}
        seconds = time.perf_counter() - started
        if rank == 0:
            assert stats is not None
            row.update(map50=round(stats["AP50"], 6), map50_95=round(stats["AP"], 6), seconds=round(seconds, 1))
            rows.append(row)
            write_csv_atomic(out / CSV_FILE, list(rows[0]), rows)
            score = fitness(stats["AP50"], stats["AP"])
            meta = {**metadata, "epoch": str(epoch + 1), "map50": f"{stats['AP50']:.4f}",
                    "map50_95": f"{stats['AP']:.4f}", "command": command}
            _save_weights(out / "last.safetensors", ema.ema, meta)
            if score > best:
                best = score
                _save_weights(out / "best.safetensors", ema.ema, meta)
            _save_state(out / STATE_FILE, {
                "epoch": epoch, "model": model.state_dict(), "ema": ema.ema.state_dict(),
                "ema_updates": ema.updates, "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "last_step": last_step,
                "best_fitness": best, "rows": rows, "args": args.identity(), "recipe": asdict(recipe),
            })
            if args.progress:
                parts_text = " ".join(f"{k}={v:.4g}" for k, v in means.items())
                print(f"epoch {epoch + 1}/{args.epochs}: {parts_text} map50={stats['AP50']:.4f} "
                      f"map50_95={stats['AP']:.4f} ({seconds:.0f} s)", flush=True)
        barrier()
    return out


def _mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    import torch.distributed as dist

    _, world = rank_and_world()
    if world == 1:
        return values
    keys = list(values)  # every rank's parts in the same order
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.tolist(), strict=True)}


def _validate(model: Detector, track: Track, args: TrainArgs, device: torch.device) -> dict[str, float] | None:
    """The EMA model's COCO statistics on the validation track (rank 0; ``None`` elsewhere)."""
    predictions, targets, _ = predict_track(model, track, batch_size=args.batch_size * 2, device=device,
                                            progress=args.progress, num_workers=args.workers)
    if rank_and_world()[0] != 0:
        return None
    return track.score(predictions, targets)

