"""The ``snn-det-zoo`` command. Heavy imports happen inside the subcommand that needs them."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from .errors import ZooError

__all__ = ["main"]


def _cmd_list(args: argparse.Namespace) -> int:
    from .registry import list_models

    for name in list_models(args.pattern or "*", pretrained=args.pretrained):
        print(name)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .registry import model_info

    print(json.dumps(model_info(args.name), indent=2, default=str))
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snn-det-zoo", description="Spiking object detectors: models, "
                                     "weights, benchmarks.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered models (fnmatch pattern)")
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--pretrained", action="store_true", help="list arch.tag names that have weights entries")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="print a model card as JSON")
    p.add_argument("name")
    p.set_defaults(func=_cmd_info)

    for module, function in _EXTRA_COMMANDS:
        getattr(importlib.import_module(module, __package__), function)(sub)
    return parser


# Subcommands that live with the code they drive: (module, function) pairs; the function takes the
# subparsers object and registers one command whose ``func`` runs it.
_EXTRA_COMMANDS: tuple[tuple[str, str], ...] = (
    (".port.importer", "add_import_command"),
    (".harness", "add_command"),
    (".leaderboard", "add_command"),
    (".reproduce", "add_command"),
)


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
