"""One benchmark run: model x weights x track x protocol -> one result row (``snn-det-zoo bench MODEL``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .._atomic import writable_folder
from ..constants import SHAPE_CLASSES
from ..distributed import init_from_env
from ..energy import EnergyConstants, EnergyReport
from ..errors import InvalidArgumentError
from ..nn.detector import Detector
from .loop import check_eval_args, evaluate
from .rows import append_rows, check_results_file, make_row, results_path
from .tracks import SYNTHETIC_DATASETS, SYNTHETIC_IMAGE_SIZE, check_protocol, make_track

__all__ = ["BUILTIN_SAMPLES", "builtin_weights", "json_record", "parse_model_args", "run", "run_builtin"]


def _weights_sha256(name: str, pretrained: bool, checkpoint_path: str | os.PathLike[str] | None) -> str:
    """The sha256 of the weights file the model was loaded from ('' for random initialisation)."""
    from ..hub import read_cached_card, sha256_file
    from ..registry import model_info, split_model_name

    if checkpoint_path is not None:
        return sha256_file(checkpoint_path)
    if not pretrained:
        return ""
    arch, tag = split_model_name(name)
    tag = tag or model_info(arch).get("default_tag")
    card = read_cached_card(arch, tag) or {}
    return card.get("sha256") or (model_info(arch)["weights"].get(tag) or {}).get("sha256") or ""


_SCORERS = {"pycocotools": "pycocotools", "faster": "faster-coco-eval"}  # the libraries behind the backends


def run(
    name: str,
    dataset: str = "synthetic-shapes",
    *,
    pretrained: bool = False,
    checkpoint_path: str | os.PathLike[str] | None = None,
    protocol: str | None = None,
    split: str | None = None,
    num_samples: int = 64,
    image_size: int | None = None,
    seed: int = 0,
    coco_root: str | os.PathLike[str] | None = None,
    coco_ann: str | os.PathLike[str] | None = None,
    gen1_root: str | os.PathLike[str] | None = None,
    results_dir: str | os.PathLike[str] | None = None,
    constants: EnergyConstants | None = None,
    model_args: dict[str, Any] | None = None,
    notes: str = "",
    coco_backend: str = "auto",
    **eval_kwargs: Any,
) -> dict[str, str] | None:
    """Build ``name`` (``arch`` or ``arch.tag``), evaluate it and return its result row (rank 0; else None).

    ``dataset`` is one of :data:`~.tracks.DATASETS`; ``protocol`` one of its protocols (default: the first).
    ``coco`` needs ``coco_root`` (image folder) and ``coco_ann``; ``gen1`` needs ``gen1_root`` and reads
    ``split`` (default ``test``) in the model family's representation with the model's T. Weights:
    ``pretrained`` (the card's) or ``checkpoint_path`` (a file of the user's); otherwise the network is
    randomly initialised and the row says so. With ``results_dir`` the row is appended to
    ``results-<dataset>-<protocol>.csv`` there and the per-layer energy goes to
    ``energy/<model>-<dataset>-<protocol>.csv`` beside it; without it nothing is written. ``coco_backend``
    scores the predictions (:func:`~snn_det_zoo.eval.coco.resolve_backend`: ``"auto"`` takes faster-coco-eval
    where installed, ``"pycocotools"`` the reference; the numbers are the same).

    Every argument, the row's settings and the results file are checked before anything is evaluated, so a
    mistake costs seconds, not an evaluation.
    """
    from .. import __version__
    from ..eval.coco import resolve_backend
    from ..factory import create_model
    from ..registry import family_of, split_model_name

    protocol = check_protocol(dataset, protocol)
    check_eval_args(**eval_kwargs)
    coco_backend = resolve_backend(coco_backend)
    if pretrained and checkpoint_path is not None:
        raise InvalidArgumentError("give the card's weights (pretrained) or a file (checkpoint_path), not both")
    init_from_env(str(eval_kwargs.get("device", "cpu")))
    args = dict(model_args or {})
    if dataset in SYNTHETIC_DATASETS:
        if image_size is None and not pretrained and checkpoint_path is None:
            image_size = SYNTHETIC_IMAGE_SIZE  # a random network is built for the built-in sets' size
        if image_size is not None:
            args.setdefault("img_size", image_size)
        if not pretrained and checkpoint_path is None:
            args.setdefault("num_classes", len(SHAPE_CLASSES))
            args.setdefault("class_names", "shapes")
    torch.manual_seed(seed)  # a randomly initialised model is a function of the seed too
    model = create_model(name, pretrained=pretrained, checkpoint_path=checkpoint_path, **args)
    if image_size is None:  # the synthetic images come at the model's own input size
        image_size = max(model.transform.img_size)
    arch, tag = split_model_name(name)
    track = make_track(dataset, model, protocol=protocol, split=split, num_samples=num_samples,
                       image_size=image_size, seed=seed, coco_root=coco_root, coco_ann=coco_ann,
                       gen1_root=gen1_root, coco_backend=coco_backend)
    limit = eval_kwargs.get("limit")
    fused = bool(eval_kwargs.get("fuse")) and type(model).fuse is not Detector.fuse
    weights = "" if not pretrained else (tag or model.weights_tag or "")
    random_init = not pretrained and checkpoint_path is None
    settings: dict[str, Any] = dict(
        model=arch,
        tag=weights if checkpoint_path is None else f"file:{Path(checkpoint_path).name}",
        family=family_of(arch),
        weights_sha256=_weights_sha256(name, pretrained, checkpoint_path),
        dataset=track.name,
        split=track.split,
        protocol=protocol,
        T=int(model.T),
        D=int(model.D or 1),
        input_size=track.input_size(),
        samples=len(track) if limit is None else min(limit, len(track)),
        seed=seed,
        batch=eval_kwargs.get("batch_size", 8),
        precision=eval_kwargs.get("precision", "fp32"),
        torch=torch.__version__,
        zoo_version=__version__,
        source="measured",
        notes="; ".join(filter(None, ["randomly initialised (no weights)" if random_init else "",
                                      "fused (BatchNorm and re-parameterised blocks folded)" if fused else "",
                                      "timed under torch.compile" if eval_kwargs.get("compile") else "",
                                      f"scored by {_SCORERS[coco_backend]}", notes])),
    )
    make_row(**settings)  # a setting the row cannot hold fails now
    if results_dir is not None:
        rows_file = check_results_file(results_path(track.name, protocol, results_dir))
        energy_file = writable_folder(Path(results_dir) / "energy") / f"{name}-{track.name}-{protocol}.csv"
    out = evaluate(model, track, constants=constants, **eval_kwargs)
    if out["stats"] is None:
        return None
    energy: EnergyReport = out["energy"]
    stats = {k: 100 * v for k, v in out["stats"].items() if v >= 0}  # -1: nothing to measure
    row = make_row(**{
        **settings,
        **stats,
        "samples": out["samples"],
        "params_m": out["params"] / 1e6,
        "gmacs": energy.dense_macs / 1e9,
        "gsops": energy.synaptic_ops / 1e9,
        "energy_mj": energy.energy_mj,
        "energy_constants": energy.constants.describe(),
        "firing_rate": energy.firing_rate,
        "images_per_s": out["images_per_s"],
        "latency_ms": out["latency_ms"],
        "latency_iqr_ms": out["latency_iqr_ms"],
        "device": out["device"],
    })
    if results_dir is not None:
        append_rows(rows_file, [row])
        energy.to_csv(energy_file)
    return row


def parse_model_args(pairs: list[str], option: str = "--model-arg") -> dict[str, Any]:
    """``KEY=VALUE`` pairs (``--model-arg``, ``--recipe``) -> a dict, values read as YAML (ints, floats,
    lists)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgumentError(f"{option} expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise InvalidArgumentError(f"{option} {pair!r}: the value is not readable as YAML "
                                       f"({str(exc).splitlines()[0]})") from None
    return out


BUILTIN_SAMPLES = 256  # validation images per built-in set in the main command


def builtin_weights() -> list[tuple[str, str]]:
    """``(arch.tag, dataset)`` of every weights entry that ships with the zoo, for the built-in set it was
    trained for, in the registry's order."""
    from ..registry import list_models, model_info

    out = []
    for name in list_models():
        for tag, entry in model_info(name)["weights"].items():
            if str(entry["source"]).startswith("package:") and entry.get("dataset") in SYNTHETIC_DATASETS:
                out.append((f"{name}.{tag}", entry["dataset"]))
    return out


def run_builtin(*, num_samples: int = BUILTIN_SAMPLES, seed: int = 0,
                results_dir: str | os.PathLike[str] | None = None, **eval_kwargs: Any) -> list[dict[str, str]]:
    """The main command: every model with built-in weights on the validation split of its built-in set
    (``num_samples`` images drawn with ``seed``); one measured row each, appended to ``results_dir``."""
    found = builtin_weights()
    if not found:
        raise InvalidArgumentError("no model card names weights that ship with the zoo (source package:)")
    if results_dir is not None:  # every results file is checked before the first model runs
        for dataset in dict.fromkeys(dataset for _, dataset in found):
            check_results_file(results_path(dataset, check_protocol(dataset, None), results_dir))
    rows = []
    for name, dataset in found:
        row = run(name, dataset, pretrained=True, split="val", num_samples=num_samples, seed=seed,
                  results_dir=results_dir, **eval_kwargs)
        if row is not None:
            rows.append(row)
    return rows


def json_record(row: dict[str, str]) -> dict[str, Any]:
    """A result row as the ``--json`` record: accuracy as fractions in [0, 1] (the cards' unit)."""

    def number(key: str, divisor: float = 1.0) -> float | None:
        # Rounded so that the percent "68.2884" prints as 0.682884, not 0.6828839999999999.
        return round(float(row[key]) / divisor, 10) if row.get(key) else None

    size: int | str = row.get("input_size", "")
    height, _, width = str(size).partition("x")
    if height.isdigit() and height == width:
        size = int(height)
    return {
        "model": row["model"], "weights": row["tag"], "dataset": row["dataset"], "protocol": row["protocol"],
        "T": int(row["T"]), "D": int(row["D"]), "map50": number("AP50", 100), "map50_95": number("AP", 100),
        "energy_mj": number("energy_mj"), "firing_rate": number("firing_rate"),
        "params": round(float(row["params_m"]) * 1e6) if row.get("params_m") else None,
        "images_per_s": number("images_per_s"), "latency_iqr_ms": number("latency_iqr_ms"),
        "num_samples": int(row["samples"]), "img_size": size, "seed": int(row["seed"]) if row.get("seed") else None,
    }
