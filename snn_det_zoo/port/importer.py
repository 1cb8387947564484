"""``snn-det-zoo import-weights NAME PATH``: turn a weights file into the cache entry of ``NAME = arch.tag``.

The card's weights entry of the tag says what the file must be: its format (an authors' pickle of the
family, or a zoo safetensors file) and, when known, its sha256. The result is written to the weights cache
(:func:`snn_det_zoo.hub.save_weights`), after which ``create_model(NAME, pretrained=True)`` works offline.
"""

from __future__ import annotations

import argparse
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidArgumentError, WeightsNotFoundError
from .ems_yolo import import_ems_yolo
from .keymap import map_state_dict, model_shapes
from .spikeyolo import import_spikeyolo

__all__ = ["add_import_command", "convert_file", "import_weights"]

Importer = Callable[[str | os.PathLike[str]], tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]]
# family -> (the card format of its authors' releases, the importer).
_IMPORTERS: dict[str, tuple[str, Importer]] = {
    "spikeyolo": ("ultralytics-pickle", import_spikeyolo),
    "ems_yolo": ("yolov5-pickle", import_ems_yolo),
}


def convert_file(
    arch: str, tag: str, path: str | os.PathLike[str], entry: Mapping[str, Any]
) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
    """Check ``path`` against the weights entry of ``arch.tag`` and return ``(state dict, cache record)``.

    The state dict has exactly the keys and shapes of ``create_model(arch)`` with the card's defaults.

    Raises:
        HashMismatchError: the entry states a sha256 and the file has another.
        ValueError: wrong format for the family, or the file holds another variant (the message names it).
    """
    from ..hub import load_state_dict_file, verify_sha256
    from ..registry import family_of, model_info

    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file not found: {path}")
    source_sha = verify_sha256(path, entry.get("sha256"), f"weights {arch}.{tag}: file")
    fmt = entry["format"]
    record: dict[str, Any] = {"source": str(path.resolve()), "source_sha256": source_sha, "format": fmt,
                              "card_source": entry.get("source"), "variant": arch}
    if fmt == "safetensors":
        state_dict = load_state_dict_file(path)
    else:
        family = family_of(arch)
        expected_fmt, importer = _IMPORTERS.get(family, (None, None))
        if importer is None or expected_fmt != fmt:
            raise InvalidArgumentError(f"weights {arch}.{tag} have format {fmt!r}, which no importer of the "
                                       f"{family!r} family reads (importers: {sorted(_IMPORTERS)})")
        state_dict, checkpoint = importer(path)
        if checkpoint["variant"] != arch:
            found = checkpoint["variant"]
            raise InvalidArgumentError(f"{path} holds a {found} checkpoint, not {arch}; import it as {found}.<tag>")
        record["checkpoint"] = checkpoint
    defaults = model_info(arch)["defaults"]
    target = model_shapes(arch, **defaults)
    state_dict = map_state_dict(state_dict, target, what=f"weights file {path} (for {arch} with its card "
                                f"defaults {defaults})")
    return state_dict, record


def import_weights(name: str, path: str | os.PathLike[str]) -> Path:
    """Convert ``path`` for ``name`` (``arch.tag``) and store it in the weights cache; returns the file."""
    from ..hub import save_weights
    from ..registry import model_info, split_model_name

    arch, tag = split_model_name(name)
    if tag is None:
        raise InvalidArgumentError(f"import-weights needs NAME as arch.tag (e.g. spikeyolo_s.coco_official), got "
                                   f"{name!r}")
    entry = model_info(name)["weights"][tag]
    state_dict, record = convert_file(arch, tag, path, entry)
    return save_weights(arch, tag, state_dict, record)


def _cmd_import(args: argparse.Namespace) -> int:
    out = import_weights(args.name, args.path)
    print(f"imported {args.name} -> {out}")
    return 0


def add_import_command(sub: argparse._SubParsersAction) -> None:
    """Register ``import-weights NAME PATH`` on the CLI's subparsers."""
    p = sub.add_parser("import-weights", help="convert an authors' checkpoint (or a safetensors file) into "
                       "the weights cache as NAME = arch.tag")
    p.add_argument("name", help="arch.tag, e.g. spikeyolo_s.coco_official")
    p.add_argument("path", help="the downloaded checkpoint file")
    p.set_defaults(func=_cmd_import)
