"""The ``snn-det-zoo`` command: every command's parser; each command imports what it needs when it runs.

Parsing imports nothing heavy (no torch), so ``--help`` answers at once. The zoo's own errors (bad input,
missing files, refused checkpoints) are printed as one line with exit status 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

from .errors import InvalidArgumentError, ZooError

__all__ = ["main"]

# Defaults shared by the parsers and their help texts (the energy constants are the 45 nm ones of
# snn_det_zoo.energy.EnergyConstants; a test keeps the two in step).
_E_AC_PJ, _E_MAC_PJ = 0.9, 4.6
_DATASETS = ("synthetic-shapes", "synthetic-events", "coco", "gen1")
_PROTOCOLS = ("coco", "frames", "psee")
_PRECISIONS = ("bf16", "fp16", "fp32")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Help with each option's default, unless the text gives it already or there is none to give."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is False or action.default == [] or action.default == argparse.SUPPRESS:
            return text
        if action.default is None:  # an option that is simply not given unless asked for
            return f"{text} (default: not given)" if action.option_strings else text
        return super()._get_help_string(action)


def _fraction(text: str) -> float:
    """An argparse type: a number in [0, 1] (a threshold)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"needs a number in [0, 1], got {text!r}")
    return value


def _milliseconds(text: str) -> float:
    """An argparse type: a finite, non-negative number of milliseconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"needs a finite number of milliseconds, at least 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"needs a whole number of at least 1, got {text!r}")
    return int(text)


def _device(name: str) -> str:
    """``auto`` -> ``cuda`` where a GPU is present, else ``cpu`` (resolved when a command runs); a CUDA device
    where none is visible is refused in the option's name."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidArgumentError(f"--device {name}: no CUDA GPU is visible here (--device cpu, or auto)")
    return name


# ---------------------------------------------------------------------------------------------- commands


def _list_record(name: str) -> dict[str, object]:
    """One line of ``list``: what the card says of ``arch`` (or ``arch.tag``), from the catalog alone."""
    from .registry import model_info, split_model_name, weights_status

    arch, tag = split_model_name(name)
    info = model_info(name)
    defaults = dict(info.get("defaults") or {})
    if tag is not None:  # what the weights were trained with (e.g. the event modality and T)
        defaults.update((info["weights"].get(tag) or {}).get("model_args") or {})
        defaults.update((info.get("user_weights") or {}).get("model_args") or {})
    tags = [tag] if tag is not None else sorted(info.get("weights") or {})
    return {
        "name": name,
        "family": info["family"],
        "params_m": round(info["num_params"] / 1e6, 2) if info.get("num_params") else None,
        "T": defaults.get("T"),
        "D": defaults.get("D"),
        "modality": defaults.get("modality", "image"),
        "weights": {t: weights_status(arch, t) for t in tags},
    }


def _cmd_list(args: argparse.Namespace) -> int:
    from .registry import list_models

    names = list_models(args.pattern or "*", pretrained=args.pretrained)
    if args.names:
        for name in names:
            print(name)
        return 0
    records = [_list_record(name) for name in names]
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    if not records:
        print(f"no model matches {args.pattern!r} (snn-det-zoo list shows them all)")
        return 0
    header = ("name", "family", "params (M)", "T", "D", "input", "weights")
    table = [header] + [
        (r["name"], r["family"], "" if r["params_m"] is None else f"{r['params_m']:g}", str(r["T"] or ""),
         str(r["D"] or ""), r["modality"], ", ".join(f"{t} ({s})" for t, s in r["weights"].items()) or "none")
        for r in records
    ]
    _print_columns(table)
    return 0


def _print_columns(table: Sequence[Sequence[str]]) -> None:
    """Rows of text cells as left-aligned columns."""
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def _cmd_info(args: argparse.Namespace) -> int:
    from .registry import model_info

    print(json.dumps(model_info(args.name), indent=2, default=str))
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from .bench.runner import parse_model_args
    from .port import import_weights

    out = import_weights(args.name, args.path, model_args=parse_model_args(args.model_arg) or None)
    print(f"imported {args.name} -> {out}")
    return 0


_ONE_MODEL_OPTIONS = ("dataset", "protocol", "coco_root", "coco_ann", "gen1_root", "split", "pretrained", "weights",
                      "image_size", "model_arg")


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench.rows import default_results_dir
    from .bench.runner import BUILTIN_SAMPLES, json_record, parse_model_args, run, run_builtin
    from .energy import EnergyConstants

    if args.pretrained and args.weights:
        raise InvalidArgumentError("--pretrained loads the card's weights and --weights FILE your own: give one")
    if args.pretrained and args.model is not None:
        _check_has_weights(args.model)
    results = None if args.no_save else (args.results or default_results_dir())
    common = dict(
        results_dir=results,
        seed=args.seed,
        constants=EnergyConstants(e_ac_pj=args.e_ac, e_mac_pj=args.e_mac),
        batch_size=args.batch_size,
        limit=args.limit,
        device=_device(args.device),
        precision=args.precision,
        progress=not args.quiet and not args.json,
        fuse=args.fuse,
        compile=args.compile,
        coco_backend=args.coco_backend,
    )
    if args.model is None:  # the main command: every model with built-in weights
        # Options that choose one model's track or weights mean nothing here: refuse them, do not drop them.
        given = [f"--{name.replace('_', '-')}" for name in _ONE_MODEL_OPTIONS if getattr(args, name)]
        if given:
            raise InvalidArgumentError(f"bench without MODEL measures the shipped weights on their built-in sets; "
                                       f"{', '.join(given)} need a MODEL (e.g. snn-det-zoo bench spikeyolo_n ...)")
        rows = run_builtin(num_samples=args.num_samples or BUILTIN_SAMPLES, **common)
    else:
        row = run(
            args.model,
            args.dataset or "synthetic-shapes",
            pretrained=args.pretrained,
            checkpoint_path=args.weights,
            protocol=args.protocol,
            split=args.split,
            coco_root=args.coco_root,
            coco_ann=args.coco_ann,
            gen1_root=args.gen1_root,
            num_samples=args.num_samples or 64,
            image_size=args.image_size,
            model_args=parse_model_args(args.model_arg),
            **common,
        )
        rows = [] if row is None else [row]
    if args.json:
        for row in rows:
            print(json.dumps(json_record(row)))
    else:
        _print_table(rows, builtin=args.model is None)
    if args.model is None and results is not None and rows:
        from .leaderboard import build

        for path in build(results, results, plot=False):
            print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _print_table(rows: list[dict[str, str]], builtin: bool) -> None:
    """This run's rows as a fixed-width table with units (the leaderboard pages hold the full picture)."""
    columns = (("model", "model", ""), ("weights", "tag", ""), ("dataset", "dataset", ""),
               ("protocol", "protocol", ""), ("T", "T", ""), ("D", "D", ""), ("samples", "samples", ""),
               ("size", "input_size", ""), ("mAP50 %", "AP50", ".1f"), ("mAP50-95 %", "AP", ".1f"),
               ("energy mJ", "energy_mj", ".3g"), ("firing", "firing_rate", ".3f"), ("img/s", "images_per_s", ".1f"),
               ("+-ms", "latency_iqr_ms", ".1f"))

    def cell(value: str, spec: str) -> str:  # the rows keep every digit; the table rounds for reading
        try:
            return format(float(value), spec) if spec and value else value
        except ValueError:
            return value

    table = [[title for title, _, _ in columns]]
    table += [[cell(row[key], spec) for _, key, spec in columns] for row in rows]
    _print_columns(table)
    where = "on the validation split of each model's built-in set" if builtin else "under the protocol named"
    print(f"mAP in percent {where} (coco: COCO mAP by pycocotools or faster-coco-eval, the same numbers); "
          "energy per sample in mJ (the constants of the row, 45 nm by default); firing: mean firing rate; speed: "
          "median images/s of repeated batches, +-ms the interquartile range of a batch's latency.")


def _cmd_train(args: argparse.Namespace) -> int:
    from .bench.runner import parse_model_args
    from .train import TrainArgs, train

    out = train(TrainArgs(
        model=args.model, dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
        num_samples=args.num_samples, val_samples=args.val_samples, img_size=args.img_size, out=args.out,
        resume=args.resume, device=args.device, seed=args.seed, workers=args.workers, cache=args.cache,
        amp=args.amp, weights=args.weights, recipe=parse_model_args(args.recipe, "--recipe"),
        model_args=parse_model_args(args.model_arg), coco_root=args.coco_root, coco_ann=args.coco_ann,
        val_coco_root=args.val_coco_root, val_coco_ann=args.val_coco_ann, gen1_root=args.gen1_root,
        progress=not args.quiet,
    ))
    print(f"wrote {out}")
    return 0


def _check_has_weights(name: str) -> None:
    """Refuse, in the command line's words, a model without weights of the zoo's (before building it)."""
    from .registry import model_info, split_model_name

    arch, tag = split_model_name(name)
    if tag is None and model_info(arch).get("default_tag") is None:
        raise InvalidArgumentError(f"{name} has no weights of the zoo's: give --weights FILE, or a model with "
                                   "weights (snn-det-zoo list --pretrained)")


def _cmd_predict(args: argparse.Namespace) -> int:
    from ._atomic import check_writable_folder
    from .bench.runner import parse_model_args
    from .factory import create_model
    from .predict import RecordingWindows, predict_files

    if args.weights is None:
        _check_has_weights(args.model)
    check_writable_folder(args.out)  # before the model is built and run
    model = create_model(args.model, pretrained=args.weights is None, checkpoint_path=args.weights,
                         **parse_model_args(args.model_arg)).to(_device(args.device))
    windows = RecordingWindows(window_ms=args.window_ms, every_ms=args.every_ms, start_ms=args.start_ms,
                               end_ms=args.end_ms)
    paths = predict_files(model, args.inputs, args.out, score_thresh=args.score_thresh, iou_thresh=args.iou_thresh,
                          max_detections=args.max_detections, batch_size=args.batch_size, windows=windows,
                          representation=args.representation, name=args.model)
    pictures = len(paths) - 1
    print(f"wrote {pictures} picture{'s' * (pictures != 1)} and {paths[-1]}")
    return 0


def _cmd_curve(args: argparse.Namespace) -> int:
    from .bench.curve import run_curve
    from .bench.rows import default_results_dir
    from .energy import EnergyConstants

    results = None if args.no_save else (args.results or default_results_dir())
    out = run_curve(args.model, steps=args.steps, num_samples=args.num_samples, seed=args.seed,
                    batch_size=args.batch_size, device=_device(args.device), results_dir=results,
                    constants=EnergyConstants(e_ac_pj=args.e_ac, e_mac_pj=args.e_mac), progress=not args.quiet)
    ann = out["ann_row"]
    table = [("model", "T", "mAP50 %", "mAP50-95 %", "of the ANN's mAP50", "energy mJ")]
    table.append((f"{ann['model']}.{ann['tag']} (ANN)", "", f"{float(ann['AP50']):.1f}", f"{float(ann['AP']):.1f}",
                  "", f"{float(ann['energy_mj']):.3g}"))
    for row in out["rows"]:
        share = float(row["AP50"]) / float(ann["AP50"]) if float(ann["AP50"]) else float("nan")
        table.append((f"{row['model']}.{row['tag']}", row["T"], f"{float(row['AP50']):.1f}",
                      f"{float(row['AP']):.1f}", f"{share:.1%}", f"{float(row['energy_mj']):.3g}"))
    _print_columns(table)
    def reached(T: int | None) -> str:
        return f"T={T}" if T is not None else f"not within T<={max(args.steps)}"

    print(f"95% of the ANN's mAP50 at {reached(out['T_95'])}, 99% at {reached(out['T_99'])} ({ann['samples']} "
          f"validation images, seed {args.seed}; energy per image, bursts and negative spikes counted as ACs)")
    return 0


def _cmd_ablation(args: argparse.Namespace) -> int:
    from .bench.ablation import ablation_table
    from .bench.tracks import make_track
    from .factory import create_model

    if args.weights is None:
        _check_has_weights(args.model)
    ann = create_model(args.model, pretrained=args.weights is None, checkpoint_path=args.weights).eval()
    track = make_track("synthetic-shapes", ann, num_samples=args.num_samples, image_size=max(ann.transform.img_size),
                       seed=args.seed, split="val")
    search = dict(zip(("init_points", "n_iter", "search_images"), args.search, strict=True)) if args.search else None
    rows = ablation_table(ann, track, steps=args.steps, p_star=args.p, search=search,
                          calibration_images=args.calibration_images)
    table = [("step", "T", "mAP50 %", "of the ANN's", "mAP50-95 %", "energy mJ", "p")]
    for row in rows:
        table.append((row["row"], str(row["T"]), f"{100 * row['map50']:.1f}", f"{row['ratio_to_ann']:.1%}",
                      f"{100 * row['map50_95']:.1f}", f"{row['energy_mj']:.3g}", f"{row['p']:.4g}"))
    _print_columns(table)
    print(f"{args.model} (ANN): mAP50 {100 * rows[0]['ann_map50']:.1f}% on the same {len(track)} images; each step "
          "adds to the one above it (snn_det_zoo.bench.ablation)")
    if args.csv:
        from ._atomic import write_csv_atomic

        write_csv_atomic(args.csv, list(rows[0]), rows)
        print(f"wrote {args.csv}")
    return 0


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .errors import DataNotFoundError
    from .leaderboard import build

    if args.results is not None and not Path(args.results).exists():  # a mistyped folder is not "no rows yet"
        raise DataNotFoundError(f"--results {args.results}: no such folder")

    for path in build(args.results, args.out, include_cards=not args.no_cards, plot=not args.no_plot):
        print(path)
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bench.reproduce import paper_table, to_markdown, write_csv
    from .errors import DataNotFoundError

    for option, root in (("--coco", args.coco), ("--gen1", args.gen1)):
        if root is not None and not Path(root).is_dir():
            raise DataNotFoundError(f"{option} {root}: no such directory")
    rows = paper_table(args.paper, coco=args.coco, gen1=args.gen1, device=_device(args.device),
                       batch_size=args.batch_size, limit=args.limit, progress=not args.quiet,
                       results_dir=args.results)
    print(to_markdown(args.paper, rows), end="")
    if args.csv:
        print(f"wrote {write_csv(args.csv, rows)}")
    return 0


# ---------------------------------------------------------------------------------------------- parsers


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="evaluate a model (or, with no model, every model with built-in weights "
                       "on its built-in set): accuracy, energy, speed -> result rows and the leaderboard",
                       formatter_class=_Help)
    p.add_argument("model", nargs="?", default=None,
                   help="arch or arch.tag; none: every model whose weights ship with the zoo, on the built-in "
                        "validation sets, then the leaderboard pages")
    p.add_argument("--json", action="store_true", help="print each result row as one JSON object per line")
    p.add_argument("--dataset", default=None, choices=_DATASETS, help="the track (default synthetic-shapes)")
    p.add_argument("--protocol", default=None, choices=_PROTOCOLS,
                   help="scoring protocol: coco (synthetic, coco), psee or frames (gen1; default psee)")
    p.add_argument("--coco-root", default=None, metavar="DIR", help="COCO image folder, e.g. val2017/")
    p.add_argument("--coco-ann", default=None, metavar="FILE", help="COCO instances_*.json")
    p.add_argument("--gen1-root", default=None, metavar="DIR", help="Gen1 folder holding train/ val/ test/")
    p.add_argument("--split", default=None, help="Gen1 split (default test); a label for other datasets")
    p.add_argument("--pretrained", action="store_true", help="load the card's weights for the tag")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="load a safetensors or state-dict file of your own instead")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="evaluate only the first N samples (default: all)")
    p.add_argument("--num-samples", type=int, default=None, metavar="N",
                   help="size of the synthetic validation set (default 64; 256 with no model)")
    p.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="side of the synthetic images, pixels (default: the model's input size)")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the model's initialisation and the synthetic set")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="samples per batch")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when present)")
    p.add_argument("--precision", default="fp32", choices=_PRECISIONS, help="autocast precision")
    p.add_argument("--e-ac", type=float, default=_E_AC_PJ, metavar="PJ", help="energy per accumulate, pJ")
    p.add_argument("--e-mac", type=float, default=_E_MAC_PJ, metavar="PJ", help="energy per multiply-accumulate, pJ")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="builder argument, repeatable (e.g. --model-arg T=2)")
    p.add_argument("--results", default=None, metavar="DIR",
                   help="folder the result row is appended to (default: the user's results folder, "
                        "$SNN_DET_ZOO_RESULTS or ~/.cache/snn_det_zoo/results)")
    p.add_argument("--no-save", action="store_true", help="print the row without writing files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--coco-backend", default="auto", choices=("auto", "pycocotools", "faster"),
                   help="what scores the detections: faster-coco-eval where installed (auto; the same 12 numbers, "
                        "pip install 'snn-det-zoo[fast]'), or pycocotools, the reference")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="time the network under torch.compile (predictions and energy from the eager run; the "
                        "first batches compile, which takes a minute on a CPU)")
    p.add_argument("--fuse", action=argparse.BooleanOptionalAction, default=False,
                   help="run the model folded for inference (fuse(): BatchNorm into convs, SpikeYOLO's "
                        "re-parameterisable blocks into separable chains; energy is counted alike either way)")
    p.set_defaults(func=_cmd_bench)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model with its family's loss and recipe (torchrun for DDP)",
                       formatter_class=_Help)
    p.add_argument("model", help="a registered arch")
    p.add_argument("--dataset", default="synthetic-shapes", choices=_DATASETS, help="the training set")
    p.add_argument("--epochs", type=int, default=30, metavar="N", help="epochs")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="images per batch, over all processes")
    p.add_argument("--num-samples", type=int, default=1024, metavar="N", help="size of the synthetic training set")
    p.add_argument("--val-samples", type=int, default=128, metavar="N", help="size of the synthetic validation set")
    p.add_argument("--img-size", type=int, default=None, metavar="N", help="training input side (default: the model's)")
    p.add_argument("--out", default="runs/train", metavar="DIR", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when present)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the model, the data order and the data")
    p.add_argument("--workers", type=int, default=0, metavar="N", help="data-loading worker processes")
    p.add_argument("--cache", action="store_true", help="keep the pre-processed training inputs in memory")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="mixed precision on CUDA (ignored on the CPU)")
    p.add_argument("--weights", default=None, metavar="FILE", help="start from a safetensors or state-dict file")
    p.add_argument("--recipe", action="append", default=[], metavar="KEY=VALUE",
                   help="change a setting of the family's recipe, repeatable (e.g. --recipe warmup_epochs=1)")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="builder argument, repeatable (e.g. --model-arg T=2)")
    p.add_argument("--coco-root", default=None, metavar="DIR", help="COCO training images, e.g. train2017/")
    p.add_argument("--coco-ann", default=None, metavar="FILE", help="COCO instances_train2017.json")
    p.add_argument("--val-coco-root", default=None, metavar="DIR", help="COCO validation images (val2017/)")
    p.add_argument("--val-coco-ann", default=None, metavar="FILE", help="COCO instances_val2017.json")
    p.add_argument("--gen1-root", default=None, metavar="DIR", help="Gen1 folder holding train/ val/ test/")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    p.set_defaults(func=_cmd_train)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="draw a model's detections on images, folders of images or Prophesee .dat "
                       "recordings (PNG per image or window, a GIF per recording, detections.json)",
                       formatter_class=_Help)
    p.add_argument("model", help="arch.tag whose weights to use (e.g. spikeyolo_tiny.shapes), or arch with --weights")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or .dat recordings")
    p.add_argument("--weights", default=None, metavar="FILE", help="a safetensors or state-dict file of your own "
                   "instead of the zoo's weights")
    p.add_argument("--out", default="runs/predict", metavar="DIR", help="output folder")
    p.add_argument("--score-thresh", type=_fraction, default=0.25, metavar="X",
                   help="keep detections scoring at least X (the models' mAP setting is 0.001)")
    p.add_argument("--iou-thresh", type=_fraction, default=None, metavar="X",
                   help="NMS IoU threshold (default: the model's)")
    p.add_argument("--max-detections", type=_positive_int, default=None, metavar="N",
                   help="detections kept per input (default: the model's)")
    p.add_argument("--batch-size", type=_positive_int, default=8, metavar="N", help="images per forward pass")
    p.add_argument("--window-ms", type=_milliseconds, default=250.0, metavar="MS",
                   help="recordings: the events before each prediction, ms")
    p.add_argument("--every-ms", type=_milliseconds, default=None, metavar="MS",
                   help="recordings: one prediction every MS ms (default: --window-ms, windows side by side)")
    p.add_argument("--start-ms", type=_milliseconds, default=0.0, metavar="MS",
                   help="recordings: where the first window starts, ms")
    p.add_argument("--end-ms", type=_milliseconds, default=None, metavar="MS",
                   help="recordings: the last prediction time, ms (default: the last event)")
    p.add_argument("--representation", default=None, metavar="NAME",
                   help="recordings: the event representation (default: the "
                   "model family's own: spikeyolo, emsyolo; also emsyolo_head, histogram)")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="builder argument, repeatable (e.g. --model-arg T=2)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when present)")
    p.set_defaults(func=_cmd_predict)


def _add_curve_and_ablation(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("curve", help="a converted model's accuracy against T (one simulation, snapshots at each T) "
                       "beside its ANN twin, as result rows the leaderboard plots", formatter_class=_Help)
    p.add_argument("model", help="a converted model with weights, e.g. spicalib_yolov3_tiny.shapes")
    p.add_argument("--steps", type=_positive_int, nargs="+", default=[8, 16, 32, 64, 128, 256, 512], metavar="T",
                   help="the T of the snapshots")
    p.add_argument("--num-samples", type=_positive_int, default=256, metavar="N",
                   help="validation images of the built-in set")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the validation draw")
    p.add_argument("--batch-size", type=_positive_int, default=8, metavar="N", help="images per batch")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when present)")
    p.add_argument("--e-ac", type=float, default=_E_AC_PJ, metavar="PJ", help="energy per accumulate, pJ")
    p.add_argument("--e-mac", type=float, default=_E_MAC_PJ, metavar="PJ", help="energy per multiply-accumulate, pJ")
    p.add_argument("--results", default=None, metavar="DIR",
                   help="folder the rows are appended to (default: the user's results folder)")
    p.add_argument("--no-save", action="store_true", help="print the table without writing rows")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_curve)

    p = sub.add_parser("ablation", help="what each step of the SpiCalib conversion adds: stock SpikingJelly "
                       "conversion, + lossless max-pool, + burst, + SpiCalib, + chosen p", formatter_class=_Help)
    p.add_argument("model", help="the ReLU ANN, e.g. yolov3_tiny_relu.shapes")
    p.add_argument("--weights", default=None, metavar="FILE", help="the ANN's weights from a file of your own")
    p.add_argument("--steps", type=_positive_int, nargs="+", default=[32, 64, 128, 256], metavar="T",
                   help="the T each step is measured at")
    p.add_argument("--num-samples", type=_positive_int, default=64, metavar="N",
                   help="validation images of the built-in set")
    p.add_argument("--calibration-images", type=_positive_int, default=64, metavar="N",
                   help="training images whose activations set the scales (recorded in the weights)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the validation draw")
    choice = p.add_mutually_exclusive_group()
    choice.add_argument("--p", type=_fraction, default=None, metavar="P",
                        help="the last step's percentile p, given (default: chosen by Bayesian optimisation, "
                             "pip install 'snn-det-zoo[spicalib]')")
    choice.add_argument("--search", type=_positive_int, nargs=3, default=None,
                        metavar=("INIT", "ITER", "IMAGES"),
                        help="Bayesian optimisation of p: initial points, iterations, images (default: convert's)")
    p.add_argument("--csv", default=None, metavar="FILE", help="also write the rows as CSV")
    p.set_defaults(func=_cmd_ablation)


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="a paper's table rows (params, mAP, energy) against this code's",
                       formatter_class=_Help)
    p.add_argument("paper", help="a model family (spikeyolo, ems_yolo): its card's paper numbers")
    p.add_argument("--coco", default=None, metavar="DIR",
                   help="COCO root holding val2017/ and annotations/instances_val2017.json")
    p.add_argument("--gen1", default=None, metavar="DIR", help="Prophesee Gen1 root holding test/")
    p.add_argument("--csv", default=None, metavar="PATH", help="also write the table as CSV")
    p.add_argument("--results", default=None, metavar="DIR",
                   help="append the measured result rows to DIR/results-*.csv (default: not saved)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when present)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="samples per batch")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="evaluate only the first N samples (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_reproduce)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snn-det-zoo", description="Spiking object detectors: models, "
                                     "weights, benchmarks. AP in percent, energy in mJ per sample.",
                                     formatter_class=_Help)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="registered models as a table: family, params, T, D, input, and where each "
                       "weights tag is (built-in, cached, downloadable, manual)",
                       formatter_class=_Help)
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'spikeyolo*'")
    p.add_argument("--pretrained", action="store_true", help="one line per weights entry (arch.tag) instead")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="the table as a JSON list")
    form.add_argument("--names", action="store_true", help="the names alone, one per line (for scripts)")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="print a model card as JSON (params, defaults, weights, paper metrics)",
                       formatter_class=_Help)
    p.add_argument("name", help="arch or arch.tag (snn-det-zoo list shows them)")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("import-weights", help="convert an authors' checkpoint, or your own weights, into the "
                       "weights cache as NAME = arch.tag", formatter_class=_Help)
    p.add_argument("name", help="arch.tag: a tag of the model card (e.g. spikeyolo_s.coco_official) takes the "
                   "file its weights entry describes; any other tag (e.g. spikeyolo_n.mine) stores your own "
                   "safetensors or plain state-dict file, checked strictly against the model")
    p.add_argument("path", help="the checkpoint file")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="for your own tag: a builder argument the weights were trained with (e.g. "
                        "--model-arg num_classes=5), stored with them; repeatable")
    p.set_defaults(func=_cmd_import)

    _add_bench(sub)
    _add_train(sub)

    p = sub.add_parser("leaderboard", help="render LEADERBOARD.md, a sortable HTML page and the plots (AP against "
                       "energy; AP against T) from the result rows and the model cards",
                       formatter_class=_Help)
    p.add_argument("--results", default=None, metavar="DIR",
                   help="folder of results-*.csv (default: the user's results folder, "
                        "$SNN_DET_ZOO_RESULTS or ~/.cache/snn_det_zoo/results)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where to write the pages (default: the user's results folder)")
    p.add_argument("--no-cards", action="store_true", help="leave out the model cards' paper-reported rows")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plot (no matplotlib needed)")
    p.set_defaults(func=_cmd_leaderboard)

    _add_predict(sub)
    _add_curve_and_ablation(sub)
    _add_reproduce(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. The zoo's own errors (bad input, missing files, refused checkpoints) are printed as
    one line with exit status 2; anything else is a bug and keeps its traceback."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ZooError as exc:
        print(f"snn-det-zoo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
