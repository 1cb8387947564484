"""The ``snn-det-zoo`` command. Heavy imports happen inside the subcommand that needs them."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

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

    for add in _EXTRA_COMMANDS:
        add(sub)
    return parser


# Subcommands that live with the code they drive add themselves here: each entry takes the subparsers
# object and registers one command whose ``func`` does its own (lazy) imports.
_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as exc:
        print(f"snn-det-zoo {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _add_import_weights(sub: argparse._SubParsersAction) -> None:
    from .port.importer import add_import_command

    add_import_command(sub)


_EXTRA_COMMANDS.append(_add_import_weights)


def _add_bench_and_leaderboard(sub: argparse._SubParsersAction) -> None:
    from .harness import add_command as add_bench
    from .leaderboard import add_command as add_leaderboard

    add_bench(sub)
    add_leaderboard(sub)


_EXTRA_COMMANDS.append(_add_bench_and_leaderboard)


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    from .reproduce import add_command

    add_command(sub)


_EXTRA_COMMANDS.append(_add_reproduce)


if __name__ == "__main__":
    sys.exit(main())
