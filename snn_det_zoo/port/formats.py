"""The authors' checkpoint formats, each registered beside its family's importer.

A card's weights entry names its ``format``; ``@register_format("ultralytics-pickle", family="spikeyolo")``
on an importer ``path -> (state dict, facts)`` makes that format readable. A new family's port module
registers its own format here; nothing central is edited.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InvalidArgumentError

__all__ = ["Importer", "WeightsFormat", "register_format", "weights_format"]

Importer = Callable[[str | os.PathLike[str]], tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]]


@dataclass(frozen=True)
class WeightsFormat:
    """A checkpoint format: its name in the cards, the family whose models it holds, its importer."""

    name: str
    family: str
    importer: Importer


_FORMATS: dict[str, WeightsFormat] = {}


def register_format(name: str, family: str) -> Callable[[Importer], Importer]:
    """Register ``importer`` as the reader of the card format ``name`` for models of ``family``."""
    def decorate(importer: Importer) -> Importer:
        if name in _FORMATS:
            raise InvalidArgumentError(f"weights format {name!r} is already registered")
        _FORMATS[name] = WeightsFormat(name, family, importer)
        return importer

    return decorate


def weights_format(name: str, family: str) -> WeightsFormat:
    """The registered format ``name``, checked to hold models of ``family``."""
    found = _FORMATS.get(name)
    if found is None or found.family != family:
        readable = sorted(f"{f.name} ({f.family})" for f in _FORMATS.values())
        raise InvalidArgumentError(f"no importer reads format {name!r} for the {family!r} family; registered: "
                                   f"{', '.join(readable)}")
    return found
