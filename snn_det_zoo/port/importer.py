"""``snn-det-zoo import-weights NAME PATH``: turn a weights file into the cache entry of ``NAME = arch.tag``.

The card's weights entry of the tag says what the file must be: its format (an authors' pickle of the
family, or a zoo safetensors file) and, when known, its sha256. The result is written to the weights cache
(:func:`snn_det_zoo.hub.save_weights`), after which ``create_model(NAME, pretrained=True)`` works offline.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidArgumentError, WeightsNotFoundError
from ..hub import load_state_dict_file, save_weights, verify_sha256
from ..registry import family_of, model_info, split_model_name
from .formats import weights_format
from .keymap import map_state_dict, model_shapes

__all__ = ["convert_file", "import_weights"]


def convert_file(
    arch: str, tag: str, path: str | os.PathLike[str], entry: Mapping[str, Any]
) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
    """Check ``path`` against the weights entry of ``arch.tag`` and return ``(state dict, cache record)``.

    The state dict has exactly the keys and shapes of ``create_model(arch)`` with the card's defaults.

    Raises:
        HashMismatchError: the entry states a sha256 and the file has another.
        ValueError: wrong format for the family, or the file holds another variant (the message names it).
    """

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
        state_dict, checkpoint = weights_format(fmt, family_of(arch)).importer(path)
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

    arch, tag = split_model_name(name)
    if tag is None:
        raise InvalidArgumentError(f"import-weights needs NAME as arch.tag (e.g. spikeyolo_s.coco_official), got "
                                   f"{name!r}")
    entry = model_info(name)["weights"][tag]
    state_dict, record = convert_file(arch, tag, path, entry)
    return save_weights(arch, tag, state_dict, record)
