"""``create_model``: the one place where the registry, the builders, the weights cache and the importers meet.

Shaped after timm's ``_factory.py``, which sits above ``_registry``, ``_builder`` and ``_hub``: the registry
knows names and cards, the families build networks, ``hub`` moves files (cache, hashes, downloads) and knows
no checkpoint formats, ``port`` reads the authors' formats. Weights are loaded strictly: a missing,
unexpected or misshapen key is an error that lists them.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from . import archs  # noqa: F401  (registers every family)
from .errors import DownloadError, MissingDependencyError, OfflineError, UnknownModelError, WeightsNotFoundError
from .hub import (
    CorruptCacheEntry,
    cached_user_weights,
    cached_weights,
    fetch_source,
    load_state_dict_file,
    save_weights,
)
from .port import convert_file, load_state_dict_strict
from .registry import build_model, model_info, split_model_name

__all__ = ["create_model", "load_pretrained"]


def create_model(
    name: str,
    pretrained: bool = False,
    checkpoint_path: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model, optionally with weights.

    Args:
        name: ``arch`` or ``arch.tag``; the tag picks a weights entry of the card (else its ``default_tag``),
            or weights the user imported under a tag of their own (``snn-det-zoo import-weights``).
        pretrained: load the weights of the tag (from the local cache, downloading when allowed; the user's
            own weights come from the cache only).
        checkpoint_path: load these weights instead: a safetensors file or a plain state dict (the user's
            own training; an authors' pickled checkpoint is converted with ``snn-det-zoo import-weights``).
        **overrides: builder arguments that override the card's defaults (``num_classes``, ``T``, ``D``,
            ``score_thresh``...).

    Returns:
        the model (a :class:`~snn_det_zoo.nn.detector.Detector`), in training mode as torch builds it.
    """
    model = build_model(name, **overrides)
    if checkpoint_path is not None:
        path = os.fspath(checkpoint_path)
        load_state_dict_strict(model, load_state_dict_file(path), path)
    elif pretrained:
        arch, _ = split_model_name(name)
        tag = model.weights_tag
        weights = model_info(arch)["weights"]
        if tag is None and weights:  # a card whose weights need other settings than its defaults (width)
            raise UnknownModelError(f"model {arch!r} has no default weights; name one of its tags: "
                                    f"{', '.join(f'{arch}.{t}' for t in sorted(weights))}")
        if tag is None:
            raise UnknownModelError(f"model {arch!r} has no weights entries; pretrained=True cannot be honoured")
        if tag in weights:
            load_pretrained(model, arch, tag, weights[tag])
        else:  # build_model accepted the tag: the user's own weights
            state_dict, path = cached_user_weights(arch, tag)
            load_state_dict_strict(model, state_dict, str(path))
    return model


def load_pretrained(model: nn.Module, arch: str, tag: str, entry: dict[str, Any]) -> nn.Module:
    """Load the weights ``arch.tag`` described by the card ``entry`` into ``model``, strictly.

    Order: the verified cache (imported or previously fetched weights); else the source: a safetensors file
    is verified and loaded as is; an authors' pickle is verified, converted by :mod:`snn_det_zoo.port`,
    cached as safetensors and loaded. A corrupt cache entry is removed and the weights fetched again.
    """
    removed = ""
    try:
        cached = cached_weights(arch, tag, entry)
    except CorruptCacheEntry as exc:
        cached, removed = None, str(exc)
    if cached is not None:
        state_dict, path = cached
    else:
        try:
            source = fetch_source(arch, tag, entry)
        except (WeightsNotFoundError, OfflineError, DownloadError, MissingDependencyError) as exc:
            if not removed:
                raise
            # Those two already say how to get the weights; the others only what failed.
            how = "" if isinstance(exc, WeightsNotFoundError | OfflineError) else (
                f"; fetch them again once the source is reachable, or import a file by hand: snn-det-zoo "
                f"import-weights {arch}.{tag} PATH")
            raise WeightsNotFoundError(f"{removed}, and they cannot be fetched again: {exc}{how}") from exc
        if entry.get("format") == "safetensors":
            path, state_dict = source, load_state_dict_file(source)
        else:
            state_dict, record = convert_file(arch, tag, source, entry)
            path = save_weights(arch, tag, state_dict, record)
    load_state_dict_strict(model, state_dict, str(path))
    return model
