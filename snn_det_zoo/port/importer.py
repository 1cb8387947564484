"""``snn-det-zoo import-weights NAME PATH``: turn a weights file into the cache entry of ``NAME = arch.tag``.

For a tag of the card, its weights entry says what the file must be: its format (an authors' pickle of the
family, or a zoo safetensors file) and its sha256, when the card states one or else when the file of an earlier
download was recorded (trust on first use, :mod:`snn_det_zoo.hub`). For a tag the card does not have, the file
is the user's own: a safetensors file or a plain state dict of the model ``create_model(arch, **model_args)``
builds, checked strictly against its shapes. Either way the result is written to the weights cache
(:func:`snn_det_zoo.hub.save_weights`), after which ``create_model(NAME, pretrained=True)`` works offline; the
user's entries are marked ``"kind": "user"`` and listed by ``list_models(pretrained=True)``.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointFormatError, InvalidArgumentError, WeightsNotFoundError
from ..hub import load_state_dict_file, save_weights, sha256_file, verify_entry_file
from ..registry import USER_KIND, check_user_tag, family_of, model_info, split_model_name
from .formats import weights_format
from .keymap import map_state_dict, model_shapes

__all__ = ["convert_file", "convert_user_file", "import_weights"]


def convert_file(
    arch: str, tag: str, path: str | os.PathLike[str], entry: Mapping[str, Any]
) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
    """Check ``path`` against the weights entry of ``arch.tag`` and return ``(state dict, cache record)``.

    The state dict has exactly the keys and shapes of ``create_model("arch.tag")``: the card's defaults under
    the entry's ``model_args``.

    Raises:
        HashMismatchError: the file's sha256 is not the entry's (or the one recorded on its first download).
        ValueError: wrong format for the family, or the file holds another variant (the message names it).
    """

    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file not found: {path}")
    source_sha = verify_entry_file(arch, tag, entry, path)
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
    info = model_info(arch)
    model_args = dict(entry.get("model_args") or {})
    # Through the tag when the card has it, so that its model_args (not the default tag's) apply.
    target = model_shapes(f"{arch}.{tag}" if tag in info["weights"] else arch, **model_args)
    built = {**info["defaults"], **model_args}
    state_dict = map_state_dict(state_dict, target, what=f"weights file {path} (for {arch}.{tag}: {arch} with "
                                f"{built})")
    return state_dict, record


def convert_user_file(
    arch: str, tag: str, path: str | os.PathLike[str], model_args: Mapping[str, Any] | None = None
) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
    """Check the user's own weights ``path`` for ``arch.tag`` (a tag the card does not have).

    ``path`` is a safetensors file or a plain state dict (what :func:`snn_det_zoo.hub.load_state_dict_file`
    reads) of the model ``create_model(arch, **model_args)`` builds; its keys and shapes must match exactly.
    Returns ``(state dict, cache record)``; the record marks the entry as the user's.

    Raises:
        InvalidArgumentError: a tag that is not 1-64 letters, digits, ``_`` and ``-``, or ``model_args`` that
            cannot be stored as JSON.
        CheckpointFormatError: the file is neither safetensors nor a plain state dict.
        KeyMapError: the keys or shapes do not fit (lists them).
    """
    check_user_tag(tag)
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file not found: {path}")
    args = dict(model_args or {})
    try:  # stored in card.json, and read back by create_model
        args = json.loads(json.dumps(args))
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"model_args for {arch}.{tag} must be plain JSON values, got {args!r}") from exc
    info = model_info(arch)
    source_sha = sha256_file(path)
    try:
        state_dict = load_state_dict_file(path)
    except CheckpointFormatError as exc:
        card_tags = ", ".join(f"{arch}.{t}" for t in sorted(info["weights"])) or "none for this model"
        raise CheckpointFormatError(f"{exc}. Weights under a tag of your own must be a safetensors file or a plain "
                                    f"state dict; the authors' checkpoints are imported under the card's tags "
                                    f"({card_tags})") from exc
    # Named as on the command line, where import-weights is mostly run (the same builder arguments in Python).
    built = arch + "".join(f" --model-arg {k}={v}" for k, v in args.items())
    state_dict = map_state_dict(state_dict, model_shapes(arch, **args),
                                what=f"weights file {path} (for {arch}.{tag}: the model {built} builds)")
    record: dict[str, Any] = {"kind": USER_KIND, "source": str(path.resolve()), "source_sha256": source_sha,
                              "format": "state_dict", "variant": arch, "model_args": args}
    return state_dict, record


def import_weights(name: str, path: str | os.PathLike[str], *, model_args: Mapping[str, Any] | None = None) -> Path:
    """Convert ``path`` for ``name`` (``arch.tag``) and store it in the weights cache; returns the file.

    A tag of the card takes the file its weights entry describes. Any other tag stores the user's own weights
    (see :func:`convert_user_file`; ``model_args`` are the builder arguments they were trained with, stored
    with them and applied by ``create_model(name)``); a card's tag is never taken for the user's.
    """

    arch, tag = split_model_name(name)
    if tag is None:
        raise InvalidArgumentError(f"import-weights needs NAME as arch.tag (e.g. spikeyolo_s.coco_official), got "
                                   f"{name!r}")
    weights = model_info(arch)["weights"]
    if tag in weights:
        if model_args:
            raise InvalidArgumentError(f"{name} is a weights entry of the model card, which sets its own model "
                                       "arguments; model_args are for tags of your own")
        state_dict, record = convert_file(arch, tag, path, weights[tag])
    else:
        state_dict, record = convert_user_file(arch, tag, path, model_args)
    return save_weights(arch, tag, state_dict, record)
