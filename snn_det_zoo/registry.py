"""Model registry: ``register_model``, ``list_models``, ``model_info``; no torch needed.

Shaped after timm's ``_registry.py``: a family module (``archs/<family>.py``) registers one builder per
variant at import with :func:`register_model`; names are ``arch`` or ``arch.tag`` (a tag picks a weights
entry of the variant's card); listing takes fnmatch patterns and sorts naturally. Names, families, defaults,
weights and metrics come from the YAML catalog (``models/*.yaml``) alone, so listing and describing models
imports neither torch nor the families. :func:`build_model` calls a registered builder with the card's
defaults under the user's overrides; ``snn_det_zoo.factory.create_model`` adds the weights.

The registry sits below the families (they import its decorator), as timm's does.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from ._cards import variant_cards
from .errors import InvalidArgumentError, UnknownModelError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "UnknownModelError",
    "build_model",
    "family_of",
    "is_model",
    "list_models",
    "model_info",
    "register_model",
    "split_model_name",
]

_ENTRYPOINTS: dict[str, Callable[..., Any]] = {}

F = TypeVar("F", bound=Callable[..., Any])


def register_model(fn: F) -> F:
    """Register the builder ``fn`` under its function name (its card: ``variants.<name>`` of a model card)."""
    name = fn.__name__
    if name in _ENTRYPOINTS:
        raise InvalidArgumentError(f"a model named {name!r} is already registered (by "
                                   f"{_ENTRYPOINTS[name].__module__})")
    _ENTRYPOINTS[name] = fn
    return fn


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def split_model_name(name: str) -> tuple[str, str | None]:
    """``'arch.tag'`` -> ``('arch', 'tag')``; ``'arch'`` -> ``('arch', None)``."""
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"a model name must be a non-empty string, got {name!r}")
    if "/" in name or "\\" in name:
        raise InvalidArgumentError(
            f"{name!r} looks like a path; pass a weights file as checkpoint_path=PATH (snn-det-zoo: --weights "
            "PATH), or import it once with `snn-det-zoo import-weights NAME PATH`"
        )
    arch, _, tag = name.partition(".")
    return arch, tag or None


def _known() -> list[str]:
    return sorted(set(variant_cards()) | set(_ENTRYPOINTS), key=_natural_key)


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _check_arch(arch: str) -> None:
    known = _known()
    if arch not in known:
        raise UnknownModelError(
            f"unknown model {arch!r}{_suggest(arch, known)} (`snn-det-zoo list` lists the {len(known)} models)"
        )


def is_model(name: str) -> bool:
    """Whether ``name`` (without a tag) is a model of the catalog or a registered builder."""
    return split_model_name(name)[0] in _known()


def family_of(name: str) -> str:
    """The family (``spikeyolo``, ``ems_yolo``, ``converted``) of a model: its card's, else its module's."""
    arch, _ = split_model_name(name)
    _check_arch(arch)
    cards = variant_cards()
    return cards[arch].family if arch in cards else _ENTRYPOINTS[arch].__module__.rsplit(".", 1)[-1]


def list_models(
    pattern: str | Iterable[str] = "*",
    pretrained: bool = False,
    exclude: str | Iterable[str] = (),
) -> list[str]:
    """Models matching ``pattern`` (fnmatch, one or several), in natural order.

    With ``pretrained=True`` the result holds one ``arch.tag`` per weights entry of the cards instead.
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    excludes = [exclude] if isinstance(exclude, str) else list(exclude)
    if pretrained:
        cards = variant_cards()
        names = [f"{arch}.{tag}" for arch, card in cards.items() for tag in (card.data.get("weights") or {})]
    else:
        names = _known()
    selected = {n for n in names for p in patterns if fnmatch.fnmatchcase(n, p)}
    selected = {n for n in selected if not any(fnmatch.fnmatchcase(n, p) for p in excludes)}
    return sorted(selected, key=_natural_key)


def model_info(name: str) -> dict[str, Any]:
    """The model card of ``name``: params, defaults (T, D, classes), weights, paper metrics and citation.

    A copy: changing it changes nothing that a later :func:`model_info` or ``create_model`` sees.
    """
    arch, tag = split_model_name(name)
    _check_arch(arch)
    cards = variant_cards()
    if arch not in cards:
        raise UnknownModelError(f"model {arch!r} is registered but has no model card in models/")
    info = copy.deepcopy(cards[arch].info())
    if tag is not None:
        _check_tag(arch, tag, info)
        info["tag"] = tag
    return info


def _check_tag(arch: str, tag: str, info: dict[str, Any]) -> None:
    if tag not in info["weights"]:
        valid = sorted(info["weights"]) or ["(none: this model has no weights entries)"]
        raise UnknownModelError(f"invalid weights tag {tag!r} for {arch!r}; valid tags: {', '.join(valid)}")


def build_model(name: str, **overrides: Any) -> nn.Module:
    """Call the registered builder of ``name`` with its card's defaults, overridden by ``overrides``.

    No weights are loaded (``snn_det_zoo.create_model`` does that). The families must be imported first
    (``import snn_det_zoo.archs``), as the factory does.
    """
    arch, tag = split_model_name(name)
    _check_arch(arch)
    if arch not in _ENTRYPOINTS:
        raise UnknownModelError(f"model {arch!r} has a card but no registered builder; its family module "
                                "(snn_det_zoo.archs.<family>) has not been imported")
    cards = variant_cards()
    defaults = copy.deepcopy(cards[arch].data.get("defaults") or {}) if arch in cards else {}
    if tag is not None and arch in cards:
        _check_tag(arch, tag, cards[arch].info())
    resolved = tag or (cards[arch].data.get("default_tag") if arch in cards else None)
    if resolved is not None and arch in cards:  # what the weights need (e.g. the event modality)
        entry = (cards[arch].data.get("weights") or {}).get(resolved) or {}
        defaults.update(copy.deepcopy(entry.get("model_args") or {}))
    model = _ENTRYPOINTS[arch](**{**defaults, **overrides})
    model.model_name = arch
    model.weights_tag = resolved
    return model
