"""The ``snn-det-zoo`` command: every command's parser; each command imports what it needs when it runs.

Parsing imports nothing heavy (no torch), so ``--help`` answers at once. The zoo's own errors (bad input,
missing files, refused checkpoints) are printed as one line with exit status 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
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


def _device(name: str) -> str:
    """``auto`` -> ``cuda`` where a GPU is present, else ``cpu`` (resolved when a command runs)."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------------------------------------- commands


def _cmd_list(args: argparse.Namespace) -> int:
    from .registry import list_models

    for name in list_models(args.pattern or "*", pretrained=args.pretrained):
        print(name)
    return 0


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
    elif args.model is not None:
        keys = ("model", "dataset", "protocol", "T", "D", "samples", "AP", "AP50", "params_m", "gsops",
                "energy_mj", "firing_rate", "images_per_s", "latency_ms")
        for row in rows:
            print(", ".join(f"{k}={row[k]}" for k in keys))
    else:
        _print_table(rows)
    if args.model is None and results is not None and rows:
        from .leaderboard import build

        for path in build(results, results, plot=False):
            print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _print_table(rows: list[dict[str, str]]) -> None:
    """This run's rows as a fixed-width table (the leaderboard pages hold the full picture)."""
    columns = (("model", "model", ""), ("weights", "tag", ""), ("dataset", "dataset", ""), ("T", "T", ""),
               ("D", "D", ""), ("mAP50", "AP50", ".1f"), ("mAP50-95", "AP", ".1f"), ("energy mJ", "energy_mj", ".3g"),
               ("firing", "firing_rate", ".3f"), ("img/s", "images_per_s", ".1f"), ("+-ms", "latency_iqr_ms", ".1f"))

    def cell(value: str, spec: str) -> str:  # the rows keep every digit; the table rounds for reading
        try:
            return format(float(value), spec) if spec and value else value
        except ValueError:
            return value

    table = [[title for title, _, _ in columns]]
    table += [[cell(row[key], spec) for _, key, spec in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    print("mAP in percent on the validation split of each model's built-in set (pycocotools); energy per image "
          "(45 nm constants); speed: median images/s of repeated batches, +-ms the interquartile range of "
          "a batch's latency.")


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


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from .leaderboard import build

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
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples")
    p.add_argument("--num-samples", type=int, default=None,
                   help="size of the synthetic validation set (default 64; 256 with no model)")
    p.add_argument("--image-size", type=int, default=None,
                   help="side of the synthetic images, pixels (default: the model's input size)")
    p.add_argument("--seed", type=int, default=0, help="seed of the model's initialisation and the synthetic set")
    p.add_argument("--batch-size", type=int, default=8, help="samples per batch")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when present)")
    p.add_argument("--precision", default="fp32", choices=_PRECISIONS, help="autocast precision")
    p.add_argument("--e-ac", type=float, default=_E_AC_PJ, help="energy per accumulate, pJ")
    p.add_argument("--e-mac", type=float, default=_E_MAC_PJ, help="energy per multiply-accumulate, pJ")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="builder argument, repeatable (e.g. --model-arg T=2)")
    p.add_argument("--results", default=None, metavar="DIR",
                   help="folder the result row is appended to (default: the user's results folder, "
                        "$SNN_DET_ZOO_RESULTS or ~/.cache/snn_det_zoo/results)")
    p.add_argument("--no-save", action="store_true", help="print the row without writing files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--fuse", action=argparse.BooleanOptionalAction, default=False,
                   help="run SpikeYOLO's re-parameterisable blocks folded (energy is counted alike either way)")
    p.set_defaults(func=_cmd_bench)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model with its family's loss and recipe (torchrun for DDP)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", help="a registered arch")
    p.add_argument("--dataset", default="synthetic-shapes", choices=_DATASETS, help="the training set")
    p.add_argument("--epochs", type=int, default=30, help="epochs")
    p.add_argument("--batch-size", type=int, default=16, help="images per batch, over all processes")
    p.add_argument("--num-samples", type=int, default=1024, help="size of the synthetic training set")
    p.add_argument("--val-samples", type=int, default=128, help="size of the synthetic validation set")
    p.add_argument("--img-size", type=int, default=None, help="training input side (default: the model's)")
    p.add_argument("--out", default="runs/train", metavar="DIR", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when present)")
    p.add_argument("--seed", type=int, default=0, help="seed of the model, the data order and the data")
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes")
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


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="a paper's table rows (params, mAP, energy) against this code's",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("paper", help="a model family (spikeyolo, ems_yolo): its card's paper numbers")
    p.add_argument("--coco", default=None, metavar="DIR",
                   help="COCO root holding val2017/ and annotations/instances_val2017.json")
    p.add_argument("--gen1", default=None, metavar="DIR", help="Prophesee Gen1 root holding test/")
    p.add_argument("--csv", default=None, metavar="PATH", help="also write the table as CSV")
    p.add_argument("--results", default=None, metavar="DIR",
                   help="append the measured result rows to DIR/results-*.csv (default: not saved)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when present)")
    p.add_argument("--batch-size", type=int, default=8, help="samples per batch")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_reproduce)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snn-det-zoo", description="Spiking object detectors: models, "
                                     "weights, benchmarks.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered models (fnmatch pattern)")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern (default: every model)")
    p.add_argument("--pretrained", action="store_true", help="list arch.tag names that have weights entries")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="print a model card as JSON")
    p.add_argument("name", help="arch or arch.tag")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("import-weights", help="convert an authors' checkpoint, or your own weights, into the "
                       "weights cache as NAME = arch.tag")
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

    p = sub.add_parser("leaderboard", help="render LEADERBOARD.md, an HTML page and a plot from the result rows")
    p.add_argument("--results", default=None, metavar="DIR",
                   help="folder of results-*.csv (default: the user's results folder, "
                        "$SNN_DET_ZOO_RESULTS or ~/.cache/snn_det_zoo/results)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where to write the pages (default: the user's results folder)")
    p.add_argument("--no-cards", action="store_true", help="leave out the model cards' paper-reported rows")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plot (no matplotlib needed)")
    p.set_defaults(func=_cmd_leaderboard)

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
