"""Model registry: ``register_model``, ``list_models``, ``create_model``, ``model_info``.

Shaped after timm's ``_registry.py``/``_factory.py``: a family module registers one entrypoint per variant at
import; names are ``arch`` or ``arch.tag`` (a tag picks a weights entry of the variant's card); listing takes
fnmatch patterns and sorts naturally. The builder's defaults (``T``, ``D``, ``num_classes``...) come from the
model card, and the user's keyword arguments override them.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from torch import nn

from ._cards import variant_cards
from .errors import InvalidArgumentError, UnknownModelError

__all__ = [
    "UnknownModelError",
    "create_model",
    "family_of",
    "is_model",
    "list_models",
    "model_info",
    "register_model",
    "split_model_name",
]

_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}
_FAMILY: dict[str, str] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(fn: F) -> F:
    """Register ``fn`` under its function name; the family is the name of its module (``archs/<family>.py``)."""
    name = fn.__name__
    if name in _ENTRYPOINTS:
        raise InvalidArgumentError(f"a model named {name!r} is already registered (by {_ENTRYPOINTS[name].__module__})")
    _ENTRYPOINTS[name] = fn
    _FAMILY[name] = fn.__module__.rsplit(".", 1)[-1]
    return fn


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def split_model_name(name: str) -> tuple[str, str | None]:
    """``'arch.tag'`` -> ``('arch', 'tag')``; ``'arch'`` -> ``('arch', None)``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a model name must be a non-empty string, got {name!r}")
    if "/" in name or "\\" in name:
        raise InvalidArgumentError(
            f"{name!r} looks like a path; to use a weights file run `snn-det-zoo import-weights NAME PATH` "
            "and then create_model(NAME, pretrained=True)"
        )
    arch, _, tag = name.partition(".")
    return arch, tag or None


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _check_arch(arch: str) -> None:
    if arch not in _ENTRYPOINTS:
        raise UnknownModelError(
            f"unknown model {arch!r}{_suggest(arch, _ENTRYPOINTS)} "
            f"(snn_det_zoo.list_models() lists the {len(_ENTRYPOINTS)} registered models)"
        )


def is_model(name: str) -> bool:
    """Whether ``name`` (without a tag) is a registered architecture."""
    return split_model_name(name)[0] in _ENTRYPOINTS


def family_of(name: str) -> str:
    """The family (``spikeyolo``, ``ems_yolo``, ``converted``) of a registered model."""
    arch, _ = split_model_name(name)
    _check_arch(arch)
    return _FAMILY[arch]


def list_models(
    pattern: str | Iterable[str] = "*",
    pretrained: bool = False,
    exclude: str | Iterable[str] = (),
) -> list[str]:
    """Registered names matching ``pattern`` (fnmatch, one or several), in natural order.

    With ``pretrained=True`` the result holds one ``arch.tag`` per weights entry of the cards instead.
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    excludes = [exclude] if isinstance(exclude, str) else list(exclude)
    if pretrained:
        cards = variant_cards()
        names = [f"{a}.{tag}" for a in _ENTRYPOINTS if a in cards for tag in (cards[a].data.get("weights") or {})]
    else:
        names = list(_ENTRYPOINTS)
    selected = {n for n in names for p in patterns if fnmatch.fnmatchcase(n, p)}
    selected = {n for n in selected if not any(fnmatch.fnmatchcase(n, p) for p in excludes)}
    return sorted(selected, key=_natural_key)


def model_info(name: str) -> dict[str, Any]:
    """The model card of ``name``: params, defaults (T, D, classes), weights, paper metrics and citation."""
    arch, tag = split_model_name(name)
    _check_arch(arch)
    cards = variant_cards()
    if arch not in cards:
        raise UnknownModelError(f"model {arch!r} is registered but has no model card in models/")
    info = cards[arch].info()
    if tag is not None:
        _check_tag(arch, tag, info)
        info["tag"] = tag
    return info


def _check_tag(arch: str, tag: str, info: dict[str, Any]) -> None:
    if tag not in info["weights"]:
        valid = sorted(info["weights"]) or ["(none: this model has no weights entries)"]
        raise UnknownModelError(f"invalid weights tag {tag!r} for {arch!r}; valid tags: {', '.join(valid)}")


def create_model(name: str, pretrained: bool = False, **overrides: Any) -> nn.Module:
    """Build a registered model, optionally with its weights.

    Args:
        name: ``arch`` or ``arch.tag``; the tag picks a weights entry of the card (else its ``default_tag``).
        pretrained: load the weights of the tag (from the local cache, downloading when allowed).
        **overrides: builder arguments that override the card's defaults (``num_classes``, ``T``, ``D``...).
    """
    info = model_info(name)
    arch, tag = split_model_name(name)
    kwargs = {**info["defaults"], **overrides}
    model = _ENTRYPOINTS[arch](**kwargs)
    tag = tag or info.get("default_tag")
    model.model_name = arch  # type: ignore[assignment]
    model.weights_tag = tag  # type: ignore[assignment]
    if pretrained:
        if tag is None:
            raise UnknownModelError(f"model {arch!r} has no weights entries; pretrained=True cannot be honoured")
        from .hub import load_pretrained  # heavy optional imports stay off the import path

        load_pretrained(model, arch, tag, info["weights"][tag])
    return model
