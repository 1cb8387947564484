"""Model cards: the YAML catalog in ``models/`` (installed as ``snn_det_zoo.model_cards``).

One card per family. A card carries the paper and code provenance, and per variant the builder defaults
(``T``, ``D``, ``num_classes``...), the parameter count, the weights entries and the paper-reported metrics.
The schema is closed: unknown keys are errors, so a typo cannot silently drop a field.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .errors import CardError

__all__ = ["CardError", "card_files", "catalog_file", "load_cards", "variant_cards"]

_FAMILY_KEYS = {"family": True, "title": True, "paper": True, "origin": True, "notes": False, "variants": True}
_PAPER_KEYS = {"title": True, "authors": True, "venue": True, "arxiv": False, "url": False, "bibtex": False}
_ORIGIN_KEYS = {"repo": True, "commit": True, "license": True}
_VARIANT_KEYS = {
    "description": True,
    "num_params": True,
    "defaults": True,
    "default_tag": False,
    "weights": False,
    "metrics": False,
    "notes": False,
    "non_spiking": False,  # which parts of the network do not spike (flagged so no one takes it for an SNN)
    "ann": False,  # a converted SNN: the variant of the ANN twin whose weights it is converted from
}
_WEIGHTS_KEYS = {
    "source": True,
    "sha256": True,
    "format": True,
    "license": True,
    "origin": True,
    "categories": True,
    "notes": False,
    "how_to_get": False,
    "model_args": False,  # builder arguments these weights need (e.g. the event modality), over the defaults
    "dataset": False,  # the built-in set they were trained for: the main command evaluates them on it
    "command": False,  # the exact command that trained them
    "folder_file": False,  # for a gdrive-folder source: the file of the folder to take (its path in the folder)
}
_METRIC_KEYS = {
    "dataset": True,
    "protocol": True,
    "source": True,
    "citation": True,
    "confidence": True,
    "values": True,
    "T": False,
    "D": False,
    "notes": False,
}
WEIGHT_FORMATS = ("safetensors", "ultralytics-pickle", "yolov5-pickle")
METRIC_SOURCES = ("paper", "measured")
# [V] verified in the paper or code, [S] secondary source, [M] recalled, to be checked against the PDF.
CONFIDENCES = ("V", "S", "M")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Accuracy values (map50, map50_95, AP, AR100...) are COCOeval fractions in [0, 1], never percent.
_ACCURACY_KEY = re.compile(r"^(m?ap|ar)", re.IGNORECASE)
_SOURCE = re.compile(r"^(https://|hf-hub:|gdrive:|gdrive-folder:|file:|package:)")
# A weights file shipped inside the catalog (``package:weights/NAME.safetensors``).
_PACKAGE_FILE = re.compile(r"^package:weights/[A-Za-z0-9_.-]+\.safetensors$")
# A file inside a Google Drive folder: a relative path, "/" between its folders.
_FOLDER_FILE = re.compile(r"[^/\\\x00]+(/[^/\\\x00]+)*")


@dataclass(frozen=True)
class VariantCard:
    """One registered architecture as its family card describes it."""

    name: str
    family: str
    card_path: str
    data: dict[str, Any]
    family_data: dict[str, Any]

    def info(self) -> dict[str, Any]:
        """The card as a plain dict: family provenance merged with the variant's own entries."""
        info = {"name": self.name, "family": self.family, "card": self.card_path}
        for key in ("title", "paper", "origin"):
            info[key] = self.family_data[key]
        info.update(self.data)
        info.setdefault("weights", {})
        info.setdefault("metrics", [])
        info.setdefault("default_tag", None)
        return info


def card_files() -> list[Path]:
    """The card files of the catalog, sorted by name."""
    try:
        root = importlib.resources.files("snn_det_zoo.model_cards")
        files = sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".yaml"))
        if files:
            return files
    except (ModuleNotFoundError, TypeError, NotADirectoryError, FileNotFoundError):
        pass
    # Running from a checkout (or an editable install that does not map data-only packages).
    repo_models = Path(__file__).resolve().parent.parent / "models"
    return sorted(repo_models.glob("*.yaml"))


def catalog_file(relative: str) -> Path:
    """A file shipped with the catalog (``weights/NAME.safetensors``), installed or in a checkout."""
    return card_files()[0].parent.joinpath(*relative.split("/")) if card_files() else Path(relative)


def _check_keys(where: str, value: Any, schema: dict[str, bool]) -> None:
    if not isinstance(value, dict):
        raise CardError(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - set(schema))
    if unknown:
        raise CardError(f"{where}: unknown keys {unknown}; allowed: {sorted(schema)}")
    missing = sorted(k for k, required in schema.items() if required and k not in value)
    if missing:
        raise CardError(f"{where}: missing required keys {missing}")


def _check_weights(where: str, weights: dict[str, Any]) -> None:
    if not isinstance(weights, dict):
        raise CardError(f"{where}: expected a mapping of tag -> weights entry")
    for tag, entry in weights.items():
        at = f"{where}.{tag}"
        _check_keys(at, entry, _WEIGHTS_KEYS)
        if not _SOURCE.match(str(entry["source"])):
            raise CardError(
                f"{at}.source: {entry['source']!r} is not https://, hf-hub:, gdrive:, gdrive-folder:, file: or "
                "package:"
            )
        if str(entry["source"]).startswith("package:") and not _PACKAGE_FILE.match(str(entry["source"])):
            raise CardError(f"{at}.source: a shipped file is package:weights/NAME.safetensors, got "
                            f"{entry['source']!r}")
        if "folder_file" in entry:
            name = entry["folder_file"]
            if not str(entry["source"]).startswith("gdrive-folder:"):
                raise CardError(f"{at}.folder_file: only a gdrive-folder: source has files to choose from")
            parts = set(name.split("/")) if isinstance(name, str) else set()
            if not isinstance(name, str) or not _FOLDER_FILE.fullmatch(name) or {".", ".."} & parts:
                raise CardError(f"{at}.folder_file: expected the file's path inside the folder (e.g. best.pt), got "
                                f"{name!r}")
        if not isinstance(entry.get("model_args", {}), dict):
            raise CardError(f"{at}.model_args: expected a mapping of builder arguments")
        sha = entry["sha256"]
        # null is allowed only for authors' releases whose bytes no maintainer has seen; the import
        # command records the hash of the file the user supplies.
        if sha is not None and not _SHA256.match(str(sha)):
            raise CardError(f"{at}.sha256: expected 64 lower-case hex digits or null, got {sha!r}")
        if sha is None and entry["format"] == "safetensors":
            raise CardError(f"{at}.sha256: a safetensors file published by the zoo must state its sha256")
        if entry["format"] not in WEIGHT_FORMATS:
            raise CardError(f"{at}.format: {entry['format']!r} is not one of {WEIGHT_FORMATS}")


def _check_metrics(where: str, metrics: list[Any]) -> None:
    if not isinstance(metrics, list):
        raise CardError(f"{where}: expected a list of metric entries")
    for i, entry in enumerate(metrics):
        at = f"{where}[{i}]"
        _check_keys(at, entry, _METRIC_KEYS)
        if entry["source"] not in METRIC_SOURCES:
            raise CardError(f"{at}.source: {entry['source']!r} is not one of {METRIC_SOURCES}")
        if entry["confidence"] not in CONFIDENCES:
            raise CardError(f"{at}.confidence: {entry['confidence']!r} is not one of {CONFIDENCES}")
        values = entry["values"]
        if not isinstance(values, dict) or not values:
            raise CardError(f"{at}.values: expected a non-empty mapping of metric -> number")
        for key, number in values.items():
            if not isinstance(number, int | float) or isinstance(number, bool):
                raise CardError(f"{at}.values.{key}: expected a number, got {number!r}")
            if _ACCURACY_KEY.match(key) and not 0 <= number <= 1:
                raise CardError(f"{at}.values.{key}: accuracy is a fraction in [0, 1] (0.662, not 66.2), "
                                f"got {number!r}")


def validate_card(path: str, card: Any) -> None:
    """Raise :class:`CardError` naming the file and field where ``card`` breaks the schema."""
    _check_keys(path, card, _FAMILY_KEYS)
    _check_keys(f"{path}: paper", card["paper"], _PAPER_KEYS)
    _check_keys(f"{path}: origin", card["origin"], _ORIGIN_KEYS)
    variants = card["variants"]
    if not isinstance(variants, dict) or not variants:
        raise CardError(f"{path}: variants must be a non-empty mapping")
    for name, variant in variants.items():
        at = f"{path}: variants.{name}"
        _check_keys(at, variant, _VARIANT_KEYS)
        if not isinstance(variant["num_params"], int) or variant["num_params"] <= 0:
            raise CardError(f"{at}.num_params: expected a positive integer")
        if not isinstance(variant["defaults"], dict):
            raise CardError(f"{at}.defaults: expected a mapping of builder arguments")
        weights = variant.get("weights") or {}
        _check_weights(f"{at}.weights", weights)
        default_tag = variant.get("default_tag")
        if default_tag is not None and default_tag not in weights:
            raise CardError(f"{at}.default_tag: {default_tag!r} is not one of its weights {sorted(weights)}")
        _check_metrics(f"{at}.metrics", variant.get("metrics") or [])
        if "ann" in variant and not (isinstance(variant["ann"], str) and variant["ann"] in variants):
            raise CardError(f"{at}.ann: expected the name of an ANN variant of the same card, got {variant['ann']!r}")


@cache
def load_cards() -> tuple[tuple[str, dict[str, Any]], ...]:
    """Every card of the catalog as ``(path, parsed card)``, validated."""
    cards = []
    for path in card_files():
        try:
            card = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise CardError(f"{path}: not valid YAML ({exc})") from exc
        validate_card(str(path), card)
        cards.append((str(path), card))
    return tuple(cards)


def _iter_variants() -> Iterator[VariantCard]:
    for path, card in load_cards():
        for name, data in card["variants"].items():
            yield VariantCard(name=name, family=card["family"], card_path=path, data=data, family_data=card)


@cache
def variant_cards() -> dict[str, VariantCard]:
    """Variant name -> its card; a name that two cards declare is an error."""
    out: dict[str, VariantCard] = {}
    for variant in _iter_variants():
        if variant.name in out:
            raise CardError(f"variant {variant.name!r} is declared by {out[variant.name].card_path} and "
                            f"{variant.card_path}")
        out[variant.name] = variant
    return out
