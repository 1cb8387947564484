"""Map a checkpoint's state-dict keys onto a model's, proving that every key on both sides is used."""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .. import archs  # noqa: F401  (registers every family, for build_model)
from ..errors import KeyMapError
from ..registry import build_model
from .checkpoint import AuthorCheckpoint, load_checkpoint

__all__ = ["KeyMapError", "load_state_dict_strict", "map_state_dict", "model_shapes"]


def _listing(title: str, items: Sequence[str], limit: int = 40) -> str:
    shown = ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
    return f"{title} ({len(items)}): {shown}"


def map_state_dict(
    source: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Size | torch.Tensor],
    renames: Sequence[tuple[str, str]] = (),
    what: str = "checkpoint",
) -> OrderedDict[str, torch.Tensor]:
    """Rename ``source``'s keys with ``renames`` (regex, replacement; applied in order) onto ``target``.

    ``target`` maps each key of the model to its shape (or a tensor of that shape). The result has exactly
    ``target``'s keys, in its order.

    Raises:
        KeyMapError: listing the source keys that map to nothing, the model keys left uncovered, keys hit
            twice, and shape mismatches.
    """
    compiled = [(re.compile(pattern), repl) for pattern, repl in renames]
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    unused, duplicates, shapes = [], [], []
    for key, tensor in source.items():
        new = key
        for pattern, repl in compiled:
            new = pattern.sub(repl, new)
        if new not in target:
            unused.append(key if new == key else f"{key} (-> {new})")
            continue
        if new in mapped:
            duplicates.append(f"{origin[new]} and {key} -> {new}")
            continue
        want = target[new].shape if isinstance(target[new], torch.Tensor) else torch.Size(target[new])
        if tensor.shape != want:
            shapes.append(f"{key}: {tuple(tensor.shape)} in the {what}, {tuple(want)} in the model")
        mapped[new], origin[new] = tensor, key
    missing = [k for k in target if k not in mapped]
    if unused or missing or duplicates or shapes:
        parts = [f"the {what} does not match the model"]
        listings = (("unexpected keys (not in the model)", unused), ("missing keys (not in the file)",
                    missing), ("keys mapped twice", duplicates), ("shape mismatches", shapes))
        for title, items in listings:
            if items:
                parts.append(_listing(title, items))
        raise KeyMapError("; ".join(parts))
    return OrderedDict((k, mapped[k]) for k in target)


def model_shapes(arch: str, **overrides: object) -> OrderedDict[str, torch.Size]:
    """Key -> shape of the state dict of the registered model ``arch`` built with ``overrides``.

    Built on the meta device (no memory, no init cost) when the builder allows it; builders that probe with
    real numbers (``.item()``) are built on the CPU instead.
    """
    try:
        with torch.device("meta"):
            model = build_model(arch, **overrides)
    except (RuntimeError, NotImplementedError):
        model = build_model(arch, **overrides)
    return OrderedDict((k, v.shape) for k, v in model.state_dict().items())


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(strict=True)``, with one error listing missing, unexpected, misshapen keys."""
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    model.load_state_dict(map_state_dict(state_dict, shapes, what=f"weights file {source}"), strict=True)


def import_authors_checkpoint(
    path: str | os.PathLike[str],
    family: str,
    detect_variant: Callable[[AuthorCheckpoint], tuple[str, dict[str, Any]]],
    renames: Sequence[tuple[str, str]] = (),
) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
    """Read an authors' checkpoint of ``family``: its variant from ``detect_variant``, every tensor mapped."""
    ckpt = load_checkpoint(path)
    variant, facts = detect_variant(ckpt)
    target = model_shapes(variant, num_classes=facts["nc"])
    state_dict = map_state_dict(ckpt.state_dict, target, renames, what=f"checkpoint {ckpt.path}")
    return state_dict, {"family": family, "variant": variant, **facts, **ckpt.provenance()}
