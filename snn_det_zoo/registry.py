"""Model registry: ``register_model``, ``list_models``, ``model_info``; no torch needed.

Shaped after timm's ``_registry.py``: a family module (``archs/<family>.py``) registers one builder per
variant at import with :func:`register_model`; names are ``arch`` or ``arch.tag`` (a tag picks a weights
entry of the variant's card); listing takes fnmatch patterns and sorts naturally. Names, families, defaults,
weights and metrics come from the YAML catalog (``models/*.yaml``) alone, so listing and describing models
imports neither torch nor the families. :func:`build_model` calls a registered builder with the card's
defaults under the user's overrides; ``snn_det_zoo.factory.create_model`` adds the weights.

Besides the cards' tags, a model has the tags of the user's own weights: entries of the weights cache
(``$SNN_DET_ZOO_HOME/weights/<arch>/<tag>/card.json`` with ``"kind": "user"``) that ``snn-det-zoo
import-weights arch.mytag FILE`` wrote for a tag the card does not have. They are listed, described and built
like the cards' tags (a card's tag always wins: a user tag never shadows one). The cache's root and folders are
defined here, not in :mod:`snn_det_zoo.hub`, so that listing them needs no torch; hub re-exports both.

The registry sits below the families (they import its decorator), as timm's does.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ._cards import variant_cards
from .errors import CheckpointFormatError, InvalidArgumentError, UnexpectedArgumentError, UnknownModelError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "LEGACY_WEIGHTS_FILE",
    "USER_KIND",
    "WEIGHTS_FILE",
    "UnknownModelError",
    "build_model",
    "cache_card_file",
    "check_user_tag",
    "family_of",
    "is_model",
    "list_models",
    "model_info",
    "read_cache_record",
    "register_model",
    "split_model_name",
    "user_weights",
    "user_weights_card",
    "weights_dir",
    "weights_status",
    "zoo_home",
]

_ENTRYPOINTS: dict[str, Callable[..., Any]] = {}

F = TypeVar("F", bound=Callable[..., Any])

LEGACY_WEIGHTS_FILE = "model.safetensors"  # what a cache card without "file" (older versions) vouches for
WEIGHTS_FILE = re.compile(r"model(-[0-9a-f]{16})?\.safetensors")  # the names the cache gives weights files
USER_KIND = "user"  # card.json "kind" of weights the user imported under a tag of their own
# Tags of the user's own weights: a folder name on every OS and one part of "arch.tag".
_USER_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


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


# ----------------------------------------------------------------------------------------------------------
# The user's own weights (in the weights cache)


def zoo_home() -> Path:
    """The cache root: ``$SNN_DET_ZOO_HOME``, else ``~/.cache/snn_det_zoo``."""
    return Path(os.environ.get("SNN_DET_ZOO_HOME") or Path.home() / ".cache" / "snn_det_zoo").expanduser()


def weights_dir(arch: str, tag: str) -> Path:
    """Where the weights ``arch.tag`` live once imported or downloaded."""
    for part, what in ((arch, "arch"), (tag, "tag")):
        if not part or "/" in part or "\\" in part or part in (".", ".."):
            raise InvalidArgumentError(f"invalid {what} {part!r} for a weights cache path")
    return zoo_home() / "weights" / arch / tag


def check_user_tag(tag: str) -> None:
    """InvalidArgumentError unless ``tag`` is a valid tag for the user's own weights."""
    if not isinstance(tag, str) or not _USER_TAG.fullmatch(tag):
        raise InvalidArgumentError(f"invalid tag {tag!r} for your own weights: use 1 to 64 letters, digits, '_' "
                                   "and '-', starting with a letter or digit (e.g. mytag, run-2)")


def read_cache_record(card_path: Path, remedy: str) -> dict[str, Any] | None:
    """A weights cache ``card.json`` as a dict; ``None`` when there is none.

    Raises:
        CheckpointFormatError: unreadable, not JSON or not a JSON object (names the file, then ``remedy``).
    """
    try:
        text = card_path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointFormatError(f"{card_path}: unreadable cache record ({exc}); {remedy}") from exc
    try:
        card = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointFormatError(f"{card_path}: corrupt cache record ({exc}); {remedy}") from exc
    if not isinstance(card, dict):
        raise CheckpointFormatError(f"{card_path}: corrupt cache record (a JSON {type(card).__name__}, not an "
                                    f"object); {remedy}")
    return card


def _read_user_card(arch: str, tag: str) -> dict[str, Any] | None:
    card_path = weights_dir(arch, tag) / "card.json"
    again = f"import the weights again: snn-det-zoo import-weights {arch}.{tag} PATH"
    card = read_cache_record(card_path, again)
    if card is not None and card.get("kind") == USER_KIND and not isinstance(card.get("model_args", {}), dict):
        raise CheckpointFormatError(f"{card_path}: corrupt cache record (model_args is not a mapping); {again}")
    return card


def _card_tags(arch: str) -> set[str]:
    card = variant_cards().get(arch)
    return set(card.data.get("weights") or {}) if card is not None else set()


def user_weights_card(arch: str, tag: str) -> dict[str, Any] | None:
    """The ``card.json`` of the weights the user imported as ``arch.tag``; ``None`` when there are none.

    ``None`` also for a card's tag (the card's weights win) and for a name that cannot be a user tag.

    Raises:
        CheckpointFormatError: the folder of such a tag holds an unreadable ``card.json`` (names the file and
            says to import again).
    """
    if not isinstance(tag, str) or not _USER_TAG.fullmatch(tag) or tag in _card_tags(arch):
        return None
    card = _read_user_card(arch, tag)
    return card if card is not None and card.get("kind") == USER_KIND else None


def user_weights(arch: str | None = None) -> dict[str, dict[str, Any]]:
    """``'arch.tag' -> card.json`` of every weights entry the user imported (of ``arch`` only, if given).

    Unreadable entries are left out here (loading one says what is wrong with it).
    """
    root = zoo_home() / "weights"
    known = set(variant_cards())  # weights are imported for models with a card (import_weights needs one)
    folders = [root / arch] if arch is not None else sorted(root.glob("*"))
    out: dict[str, dict[str, Any]] = {}
    for folder in folders:
        if folder.name not in known or not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            try:
                card = user_weights_card(folder.name, entry.name)
            except (CheckpointFormatError, InvalidArgumentError):
                continue
            if card is not None:
                out[f"{folder.name}.{entry.name}"] = card
    return out


def cache_card_file(card: dict[str, Any] | None) -> str | None:
    """The weights file a cache ``card.json`` vouches for, or ``None`` when its ``file`` is not one of the
    cache's own names (nothing else in or outside the folder is ever taken for weights)."""
    name = card.get("file", LEGACY_WEIGHTS_FILE) if card is not None else None
    return name if isinstance(name, str) and WEIGHTS_FILE.fullmatch(name) else None


def weights_status(arch: str, tag: str) -> str:
    """Where the weights ``arch.tag`` are: ``built-in`` (ship with the zoo), ``cached`` (in the weights cache,
    including the user's own), ``downloadable`` (the zoo fetches them on first use) or ``manual`` (the user
    must get the file and run ``snn-det-zoo import-weights``). Reads files only, no torch."""
    entry = (variant_cards()[arch].data.get("weights") or {}).get(tag) if arch in variant_cards() else None
    source = str((entry or {}).get("source") or "")
    if source.startswith("package:"):
        return "built-in"
    try:
        record = read_cache_record(weights_dir(arch, tag) / "card.json", "")
    except (CheckpointFormatError, InvalidArgumentError):
        record = None
    name = cache_card_file(record)
    if name is not None and (weights_dir(arch, tag) / name).is_file():
        return "cached"
    if source.startswith(("https://", "hf-hub:", "gdrive:", "gdrive-folder:")):
        return "downloadable"
    return "manual"


# ----------------------------------------------------------------------------------------------------------
# Listing, describing, building


def list_models(
    pattern: str | Iterable[str] = "*",
    pretrained: bool = False,
    exclude: str | Iterable[str] = (),
) -> list[str]:
    """Models matching ``pattern`` (fnmatch, one or several), in natural order.

    With ``pretrained=True`` the result holds one ``arch.tag`` per weights entry of the cards instead, and
    one per weights the user imported under a tag of their own.
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    excludes = [exclude] if isinstance(exclude, str) else list(exclude)
    if pretrained:
        cards = variant_cards()
        names = [f"{arch}.{tag}" for arch, card in cards.items() for tag in (card.data.get("weights") or {})]
        names += list(user_weights())
    else:
        names = _known()
    selected = {n for n in names for p in patterns if fnmatch.fnmatchcase(n, p)}
    selected = {n for n in selected if not any(fnmatch.fnmatchcase(n, p) for p in excludes)}
    return sorted(selected, key=_natural_key)


def model_info(name: str) -> dict[str, Any]:
    """The model card of ``name``: params, defaults (T, D, classes), weights, paper metrics and citation.

    A copy: changing it changes nothing that a later :func:`model_info` or ``create_model`` sees. For a tag
    of the user's own weights, ``user_weights`` holds their cache record (source file, sha256, date).
    """
    arch, tag = split_model_name(name)
    _check_arch(arch)
    cards = variant_cards()
    if arch not in cards:
        raise UnknownModelError(f"model {arch!r} is registered but has no model card in models/")
    info = copy.deepcopy(cards[arch].info())
    if tag is not None:
        user = _check_tag(arch, tag, info)
        info["tag"] = tag
        if user is not None:
            info["user_weights"] = user
    return info


def _check_tag(arch: str, tag: str, info: dict[str, Any]) -> dict[str, Any] | None:
    """Refuse a tag that is neither the card's nor the user's; returns the user's card.json (None: the card's)."""
    if tag in info["weights"]:
        return None
    user = user_weights_card(arch, tag)
    if user is not None:
        return user
    valid = sorted(info["weights"]) or ["(none: this model has no weights entries)"]
    yours = sorted(name.partition(".")[2] for name in user_weights(arch))
    mine = f"; your own: {', '.join(yours)}" if yours else ""
    raise UnknownModelError(f"invalid weights tag {tag!r} for {arch!r}; valid tags: {', '.join(valid)}{mine}"
                            f"{_suggest(tag, [*info['weights'], *yours])}")


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
    user = None
    if tag is not None and arch in cards:
        user = _check_tag(arch, tag, cards[arch].info())
    resolved = tag or (cards[arch].data.get("default_tag") if arch in cards else None)
    if resolved is not None and arch in cards:  # what the weights need (e.g. the event modality)
        weights = cards[arch].data.get("weights") or {}
        # The user's weights fit the model create_model(arch, **model_args) builds, as import-weights checked.
        entry = weights.get(cards[arch].data.get("default_tag")) if user is not None else weights.get(resolved)
        defaults.update(copy.deepcopy((entry or {}).get("model_args") or {}))
        if user is not None:
            defaults.update(copy.deepcopy(user.get("model_args") or {}))
    try:
        model = _ENTRYPOINTS[arch](**{**defaults, **overrides})
    except TypeError as exc:  # a misspelt argument (--model-arg num_class=3) is the user's error, not a bug
        if "unexpected keyword argument" not in str(exc):
            raise
        raise UnexpectedArgumentError(f"{arch}: {exc}; the card's arguments are {sorted(defaults)} (snn-det-zoo "
                                      f"info {arch})") from exc
    model.model_name = arch
    model.weights_tag = resolved
    return model
