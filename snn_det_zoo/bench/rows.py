"""Result rows: one run (model x weights x dataset x protocol) as one CSV row, measured or paper-reported.

Shaped after timm's ``results/*.csv``: one row per model and settings, the conditions as columns, files named
by what they hold (``results-<dataset>-<protocol>.csv``), by default in the user's results folder
(:func:`default_results_dir`), never in the installed package or a repository. Rows are appended under an
exclusive lock on a sibling ``.lock`` file (several processes appending at once keep every row) and atomically
(the file is rewritten to a temporary file and renamed). A file written with other columns, or whose last row
was cut off, is refused rather than mangled or completed into a plausible row.

Units: accuracy columns are COCO statistics in **percent** (pycocotools' 0-1 values x 100, as papers print
them; ``AP`` is mAP@[.5:.95], ``AP50`` is mAP@.5); ``params_m`` in millions; ``gmacs`` the dense
multiply-accumulates per sample in G (what SNN papers call "FLOPs"); ``gsops`` the synaptic (AC) operations
per sample in G; ``energy_mj`` per sample with the constants named in ``energy_constants``; ``latency_ms`` per
batch of ``batch`` samples, the median of repeated runs, and ``latency_iqr_ms`` their interquartile range;
``seed`` the seed of the model and of the (synthetic) data.

``source`` is ``measured`` (this code produced the numbers) or ``paper`` (copied from ``citation``, with the
model card's ``confidence``: V verified in the paper, S secondary source, M recalled, to be checked).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not on Windows: appends there are atomic but not locked against each other
    fcntl = None

from .._atomic import writable_folder, write_csv_atomic
from ..constants import COCO_STAT_KEYS
from ..errors import InvalidArgumentError, ResultsFormatError
from ..hub import zoo_home

__all__ = [
    "COLUMNS",
    "append_rows",
    "check_results_file",
    "default_results_dir",
    "make_row",
    "paper_rows",
    "read_rows",
    "results_path",
]



def default_results_dir() -> Path:
    """The user's results folder: ``$SNN_DET_ZOO_RESULTS``, else ``results/`` in the zoo's home folder."""
    folder = os.environ.get("SNN_DET_ZOO_RESULTS")
    return Path(folder).expanduser() if folder else zoo_home() / "results"


_IDENTITY = ("model", "tag", "family", "weights_sha256")
_SETUP = ("dataset", "split", "protocol", "T", "D", "input_size", "samples", "seed")
_ACCURACY = COCO_STAT_KEYS
_COST = ("params_m", "gmacs", "gsops", "energy_mj", "energy_constants", "firing_rate")
_SPEED = ("images_per_s", "latency_ms", "latency_iqr_ms", "batch", "precision", "device", "torch")
_PROVENANCE = ("zoo_version", "date", "source", "citation", "confidence", "notes")
COLUMNS: tuple[str, ...] = _IDENTITY + _SETUP + _ACCURACY + _COST + _SPEED + _PROVENANCE

_INT_COLUMNS = frozenset({"T", "D", "samples", "batch", "seed"})
_FLOAT_COLUMNS = frozenset(_ACCURACY) | {"params_m", "gmacs", "gsops", "energy_mj", "firing_rate",
                                          "images_per_s", "latency_ms", "latency_iqr_ms"}
_REQUIRED = ("model", "dataset", "protocol", "source")
SOURCES = ("paper", "measured")

# Names model cards may use for paper metrics -> our columns (lower-cased; '@', ':', '-', '_', ' ' dropped).
_ALIASES = {
    "map": "AP", "map5095": "AP", "ap5095": "AP", "ap": "AP",
    "map50": "AP50", "ap50": "AP50", "map75": "AP75", "ap75": "AP75",
    "maps": "APs", "mapm": "APm", "mapl": "APl",
    "energy": "energy_mj", "energymj": "energy_mj", "params": "params_m", "paramsm": "params_m",
    "firingrate": "firing_rate", "gsops": "gsops", "gmacs": "gmacs", "gflops": "gmacs",
}


def _normalise_key(key: str) -> str:
    return "".join(ch for ch in key.lower() if ch not in "@:- _.")


def _canonical_metric(key: str) -> str | None:
    if key in COLUMNS:
        return key
    return _ALIASES.get(_normalise_key(key))


def _format(column: str, value: Any) -> str:
    """A cell as text; numbers are checked so a typo in a caller cannot land in the CSV."""
    if value is None or value == "":
        return ""
    if column in _INT_COLUMNS:
        text = str(value)
        if isinstance(value, bool) or not isinstance(value, int | str) or not text.lstrip("-").isdigit():
            raise InvalidArgumentError(f"result column {column!r} needs an integer, got {value!r}")
        return str(int(value))
    if column in _FLOAT_COLUMNS:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"result column {column!r} needs a number, got {value!r}") from None
        if isinstance(value, bool) or math.isinf(number):
            raise InvalidArgumentError(f"result column {column!r} needs a finite number, got {value!r}")
        if math.isnan(number):
            return ""
        # Parameter counts in millions keep every digit (an integer count has at most 6 decimals).
        return f"{number:.6f}".rstrip("0").rstrip(".") if column == "params_m" else f"{number:.6g}"
    text = str(value)
    if "\n" in text or "\r" in text:
        raise InvalidArgumentError(f"result column {column!r} must be one line, got {text!r}")
    return text


def make_row(**values: Any) -> dict[str, str]:
    """A checked result row with every column (missing ones empty); ``date`` defaults to now (UTC)."""
    unknown = sorted(set(values) - set(COLUMNS))
    if unknown:
        raise InvalidArgumentError(f"unknown result columns {unknown}; the columns are {list(COLUMNS)}")
    missing = [c for c in _REQUIRED if not values.get(c)]
    if missing:
        raise InvalidArgumentError(f"a result row needs {missing}")
    if values["source"] not in SOURCES:
        raise InvalidArgumentError(f"result source must be one of {SOURCES}, got {values['source']!r}")
    if values["source"] == "paper" and not (values.get("citation") and values.get("confidence")):
        raise InvalidArgumentError("a paper-reported row needs its citation and confidence (V, S or M)")
    values.setdefault("date", _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return {column: _format(column, values.get(column)) for column in COLUMNS}


def results_path(dataset: str, protocol: str, root: str | os.PathLike[str] | None = None) -> Path:
    """``<root>/results-<dataset>-<protocol>.csv``; ``root`` defaults to :func:`default_results_dir`."""
    for name, value in (("dataset", dataset), ("protocol", protocol)):
        if not value or any(ch in value for ch in "/\\ ") or value in (".", ".."):
            raise InvalidArgumentError(f"{name} {value!r} cannot name a results file")
    return Path(default_results_dir() if root is None else root) / f"results-{dataset}-{protocol}.csv"


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of one results CSV.

    Raises:
        ResultsFormatError: the header is not this version's columns (both are named), a row has more or fewer
            cells than the header (a cut-off or hand-edited line, named by its number), or the file does not
            end with a line break (its last row was cut off while being written).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        raise ResultsFormatError(f"{path}: the last row is cut off (no line break at the end of the file); "
                                 "remove that row or restore the file")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = tuple(next(reader, ()))
        if header != COLUMNS:
            raise ResultsFormatError(f"{path}: its header is not this version's result columns; expected "
                                     f"{list(COLUMNS)}, found {list(header)}")
        rows = []
        for cells in reader:
            if len(cells) != len(COLUMNS):
                raise ResultsFormatError(f"{path}, line {reader.line_num}: {len(cells)} cells where the header has "
                                         f"{len(COLUMNS)} (a cut-off or hand-edited row)")
            rows.append(dict(zip(COLUMNS, cells, strict=True)))
    except csv.Error as exc:
        raise ResultsFormatError(f"{path}, line {reader.line_num}: not a readable CSV row ({exc})") from exc
    return rows


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``<path>.lock`` (the CSV itself is replaced by a rename, so it cannot hold one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as lock:
        if fcntl is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def check_results_file(path: str | os.PathLike[str]) -> Path:
    """Fail now, not after an evaluation, if rows could not be appended to ``path``.

    The folder must be creatable and writable, and an existing file readable with this version's columns.
    """
    path = Path(path)
    writable_folder(path.parent)
    if path.exists():
        read_rows(path)
    return path


def append_rows(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Append rows (from :func:`make_row`) to a results CSV, creating it; locked, then atomic (temp + rename)."""
    path = Path(path)
    new = [dict(row) for row in rows]
    for row in new:
        if tuple(row) != COLUMNS:
            raise InvalidArgumentError("append_rows takes rows built by make_row (all columns, in order)")
    with _locked(path):
        old = read_rows(path) if path.exists() else []
        write_csv_atomic(path, COLUMNS, old + new)
    return path


def paper_rows() -> list[dict[str, str]]:
    """One ``source=paper`` row per paper-reported metric entry of the model cards."""
    from .._cards import variant_cards

    rows = []
    for name, card in sorted(variant_cards().items()):
        defaults = card.data.get("defaults") or {}
        for entry in card.data.get("metrics") or []:
            if entry["source"] != "paper":
                continue
            values: dict[str, Any] = {}
            extra = []
            for key, number in entry["values"].items():
                column = _canonical_metric(key)
                if column is None or column in values:
                    extra.append(f"{key}={number}")
                    continue
                if column in _ACCURACY:
                    number = number * 100  # cards hold COCOeval fractions (validated in [0, 1]); rows hold percent
                elif column == "params_m" and number > 1e4:
                    number = number / 1e6  # a raw parameter count (23153024) is stored in millions like every row
                values[column] = number
            notes = "; ".join(filter(None, [entry.get("notes", "").strip().replace("\n", " "),
                                            "also: " + ", ".join(extra) if extra else ""]))
            rows.append(make_row(
                model=name, family=card.family, dataset=entry["dataset"], protocol=entry["protocol"],
                T=entry.get("T", defaults.get("T")), D=entry.get("D", defaults.get("D")),
                source="paper", citation=entry["citation"], confidence=entry["confidence"], notes=notes,
                date="", **values,
            ))
    return rows
