"""Paper tables against this code: ``snn-det-zoo reproduce PAPER``.

For each row of a paper's tables as its model card records it (parameters, T, D, mAP, energy, with the
card's citation and confidence), put what this project measures beside it, the difference and a verdict:

- parameters are always measured: the model is built with its parameters on the meta device (no memory, no
  initialisation) and counted;
- mAP and energy are measured with the benchmark (:func:`snn_det_zoo.bench.run`) only when the data
  set is given (``--coco DIR``, ``--gen1 DIR``) and the variant's weights are in the local cache; otherwise
  the row says which data, where, and which weights (with the import command) it needs.

Verdicts: ``match`` (within the stated tolerance), ``differs``, ``not comparable`` (measured, but under
another protocol than the paper's: no difference is given), ``not measured``. COCO is measured with
pycocotools (protocol ``coco``); the papers' COCO numbers are Ultralytics/YOLOv5-internal AP, so those AP
rows are measured and shown but not comparable, and their note says why. Gen1 rows are measured under the
paper's own ``frames`` protocol.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_open
from .._cards import variant_cards
from ..errors import InvalidArgumentError

__all__ = ["TOLERANCES", "PaperRow", "count_parameters", "paper_table", "papers", "to_markdown", "write_csv"]


def papers() -> list[str]:
    """The papers whose tables the catalog records: one per family card (``models/<family>.yaml``)."""
    return sorted({card.family for card in variant_cards().values()})


# (kind, amount): "abs" in the quantity's unit, "rel" a fraction of the paper's value. Parameter counts are
# integers and must be equal; mAP within half a point (papers print one decimal); energy within 10 % (it
# depends on firing rates over the whole set and on which layers are counted).
TOLERANCES: dict[str, tuple[str, float]] = {
    "params": ("abs", 0.0), "params_m": ("abs", 0.05), "AP": ("abs", 0.5), "AP50": ("abs", 0.5),
    "energy_mj": ("rel", 0.10),
}
_UNITS = {"params": "", "params_m": "M", "AP": "%", "AP50": "%", "energy_mj": "mJ"}
_PAPER_COLUMNS = ("params_m", "AP50", "AP", "energy_mj")  # result-row columns a paper row may fill
_ACCURACY_COLUMNS = ("AP50", "AP")  # depend on the protocol's AP definition
# The card's dataset name -> (CLI option, what it must hold, the harness dataset).
_DATA = {
    "coco-val2017": ("--coco DIR", "COCO val2017 (DIR/val2017/ and DIR/annotations/instances_val2017.json)",
                     "coco"),
    "gen1": ("--gen1 DIR", "Prophesee Gen1 (DIR/test/ with *_td.dat and *_bbox.npy)", "gen1"),
}


@dataclass
class PaperRow:
    """One number of a paper's table beside this project's measurement."""

    model: str
    quantity: str  # params (exact count), params_m, AP50, AP (percent), energy_mj
    dataset: str
    protocol: str
    T: str
    D: str
    paper: float
    measured: float | None
    verdict: str  # match, differs, not comparable, not measured
    tolerance: str
    citation: str
    confidence: str
    note: str = ""

    @property
    def difference(self) -> float | None:
        """Measured minus paper; ``None`` when not measured or measured under another definition."""
        if self.measured is None or self.verdict == "not comparable":
            return None
        return self.measured - self.paper


def _verdict(quantity: str, paper: float, measured: float | None) -> str:
    if measured is None:
        return "not measured"
    kind, amount = TOLERANCES[quantity]
    allowed = amount * abs(paper) if kind == "rel" else amount
    return "match" if abs(measured - paper) <= allowed + 1e-9 * max(1.0, abs(paper)) else "differs"


def _describe_tolerance(quantity: str) -> str:
    kind, amount = TOLERANCES[quantity]
    if kind == "rel":
        return f"±{amount:.0%}"
    if amount == 0:
        return "exact"
    return f"±{amount:g} points" if _UNITS[quantity] == "%" else f"±{amount:g} {_UNITS[quantity]}"


def count_parameters(name: str, **overrides: Any) -> int:
    """Parameters of the registered model ``name`` (card defaults plus ``overrides``), built on the meta
    device: shapes only, no memory and no initialisation."""
    from ..factory import create_model

    with torch.device("meta"):
        model = create_model(name, **overrides)
    return sum(p.numel() for p in model.parameters())


Measure = Callable[..., dict[str, str] | None]


class _Measurements:
    """Runs the harness once per (model, dataset, protocol, T, D) and explains what is missing otherwise."""

    def __init__(self, coco: str | os.PathLike[str] | None, gen1: str | os.PathLike[str] | None,
                 measure: Measure | None, run_kwargs: dict[str, Any]) -> None:
        self.roots = {"coco-val2017": coco, "gen1": gen1}
        self.measure = measure
        self.run_kwargs = run_kwargs
        self._done: dict[tuple[str, ...], tuple[dict[str, str] | None, str]] = {}

    def get(self, model: str, dataset: str, protocol: str, T: str, D: str) -> tuple[dict[str, str] | None, str]:
        """(the measured result row or None, a note: how it was measured or what is missing)."""
        key = (model, dataset, protocol, T, D)
        if key not in self._done:
            self._done[key] = self._measure(*key)
        return self._done[key]

    def _measure(self, model: str, dataset: str, protocol: str, T: str, D: str) -> tuple[dict[str, str] | None, str]:
        from ..hub import read_cached_card
        from ..registry import model_info

        if dataset not in _DATA:
            return None, f"not measured: this project has no loader for dataset {dataset!r}"
        option, what, harness_dataset = _DATA[dataset]
        info = model_info(model)
        tag = info.get("default_tag")
        if tag is None:
            return None, f"not measured: the model card lists no weights for {model}"
        root = self.roots[dataset]
        needs = []
        if root is None:
            needs.append(f"{what} at {option}")
        if read_cached_card(model, tag) is None:
            needs.append(f"weights {model}.{tag} (snn-det-zoo import-weights {model}.{tag} PATH)")
        if needs:
            return None, "not measured: needs " + " and ".join(needs)
        measured_protocol = _measured_protocol(dataset, protocol)
        defaults = info["defaults"]
        model_args = {k: int(v) for k, v in (("T", T), ("D", D)) if v and str(defaults.get(k)) != v}
        data_args: dict[str, Any] = {"gen1_root": root} if harness_dataset == "gen1" else {
            "coco_root": Path(root) / "val2017", "coco_ann": Path(root) / "annotations" / "instances_val2017.json"}
        measure = self.measure or _bench_run
        row = measure(f"{model}.{tag}", harness_dataset, pretrained=True, protocol=measured_protocol,
                      model_args=model_args, **data_args, **self.run_kwargs)
        note = f"measured: protocol {measured_protocol}"
        if measured_protocol != protocol:
            note += f" (pycocotools), the paper's is {protocol}: not the same AP definition"
        if row is not None:
            note += f", {row.get('samples', '?')} samples"
        return row, note


def _measured_protocol(dataset: str, protocol: str) -> str | None:
    """The protocol this project measures a paper row of ``dataset`` under: Gen1 under the paper's own
    (``psee`` or ``frames``, else ``frames``), COCO under pycocotools (``coco``); None without a loader."""
    if dataset not in _DATA:
        return None
    if _DATA[dataset][2] == "gen1":
        return protocol if protocol in ("psee", "frames") else "frames"
    return "coco"


def _bench_run(*args: Any, **kwargs: Any) -> dict[str, str] | None:
    from .runner import run

    return run(*args, **kwargs)


def paper_table(
    paper: str,
    coco: str | os.PathLike[str] | None = None,
    gen1: str | os.PathLike[str] | None = None,
    *,
    measure: Measure | None = None,
    **run_kwargs: Any,
) -> list[PaperRow]:
    """Every number the model cards record for ``paper`` (see :func:`papers`) beside this code's.

    :param coco: COCO root with ``val2017/`` and ``annotations/instances_val2017.json``.
    :param gen1: Gen1 root with ``test/``.
    :param measure: the measuring function (default :func:`snn_det_zoo.bench.run`); tests pass a stand-in.
    :param run_kwargs: passed to it (``device``, ``batch_size``, ``limit``, ``results_dir``, ``progress``...).
    """
    from .rows import paper_rows

    if paper not in papers():
        raise InvalidArgumentError(f"unknown paper {paper!r}; choose from {', '.join(papers())}")
    family = paper
    run_kwargs.setdefault("results_dir", None)
    measurements = _Measurements(coco, gen1, measure, run_kwargs)
    cards = {name: card for name, card in variant_cards().items() if card.family == family}
    rows = []
    for name, card in sorted(cards.items()):
        origin = card.family_data["origin"]
        counted = count_parameters(name)
        paper_count = card.data["num_params"]
        defaults = card.data["defaults"]
        rows.append(PaperRow(
            model=name, quantity="params", dataset="", protocol="", T=str(defaults.get("T", "")),
            D=str(defaults.get("D", "")), paper=float(paper_count), measured=float(counted),
            verdict=_verdict("params", paper_count, counted), tolerance=_describe_tolerance("params"),
            citation=f"model card num_params (the authors' code, {origin['repo']}@{origin['commit']})",
            confidence="", note="measured: parameters of the model built here with the card's defaults",
        ))
    for entry in paper_rows():
        if entry["model"] not in cards:
            continue
        measured_row, note = measurements.get(entry["model"], entry["dataset"], entry["protocol"], entry["T"],
                                              entry["D"])
        for column in _PAPER_COLUMNS:
            if not entry[column]:
                continue
            paper_value = float(entry[column])
            measured = None
            row_note = note
            if column == "params_m":
                measured = count_parameters(entry["model"]) / 1e6
                row_note = "measured: parameters of the model built here"
            elif measured_row is not None and measured_row.get(column):
                measured = float(measured_row[column])
            verdict = _verdict(column, paper_value, measured)
            # An AP is only compared with an AP of the same definition: a paper's training-framework AP
            # (ultralytics-internal, yolov5-internal) is not pycocotools' AP, nor Gen1 frames the psee protocol.
            # Said up front, so that nobody fetches data for a verdict that cannot come.
            ours = measured_row["protocol"] if measured_row is not None else _measured_protocol(
                entry["dataset"], entry["protocol"])
            if column in _ACCURACY_COLUMNS and ours is not None and ours != entry["protocol"]:
                verdict = "not comparable"
                row_note += (f"; not comparable: this project measures {column} under protocol {ours}, the "
                             f"paper's is under {entry['protocol']}")
            rows.append(PaperRow(
                model=entry["model"], quantity=column, dataset=entry["dataset"], protocol=entry["protocol"],
                T=entry["T"], D=entry["D"], paper=paper_value, measured=measured,
                verdict=verdict, tolerance=_describe_tolerance(column),
                citation=entry["citation"], confidence=entry["confidence"], note=row_note,
            ))
    return rows


def _number(quantity: str, value: float | None, signed: bool = False) -> str:
    if value is None:
        return ""
    sign = "+" if signed else ""
    if quantity == "params":
        return f"{value:{sign},.0f}"
    return f"{value:{sign}.2f}" if quantity != "params_m" else f"{value:{sign}.3f}"


_HEADER = ("Model", "Quantity", "Dataset", "Protocol", "T", "D", "Paper", "Measured", "Difference", "Tolerance",
           "Verdict", "Paper source [confidence]", "Note")


def _cells(row: PaperRow) -> list[str]:
    unit = _UNITS[row.quantity]
    label = row.quantity if not unit else f"{row.quantity} ({unit})"
    source = f"{row.citation} [{row.confidence}]" if row.confidence else row.citation
    return [row.model, label, row.dataset, row.protocol, row.T, row.D, _number(row.quantity, row.paper),
            _number(row.quantity, row.measured), _number(row.quantity, row.difference, signed=True),
            row.tolerance, row.verdict, source, row.note]


def to_markdown(paper: str, rows: list[PaperRow]) -> str:
    """The rows as a Markdown table with a heading and the verdict counts."""
    counts = {v: sum(r.verdict == v for r in rows) for v in ("match", "differs", "not comparable", "not measured")}
    lines = [f"# {paper}: paper tables against this code", "",
             "Paper values as the model cards record them (confidence: V verified, S secondary source, M "
             "recalled); mAP in percent; energy per sample with E_AC = 0.9 pJ, E_MAC = 4.6 pJ. "
             + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".", "",
             "| " + " | ".join(_HEADER) + " |", "|" + "|".join("---" for _ in _HEADER) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: str | os.PathLike[str], rows: list[PaperRow]) -> Path:
    """Write the rows (full precision, one column per field plus the difference) atomically."""
    path = Path(path)
    columns = [f.name for f in fields(PaperRow)] + ["difference"]
    with atomic_open(path) as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            difference = row.difference
            writer.writerow({**asdict(row), "measured": "" if row.measured is None else row.measured,
                             "difference": "" if difference is None or math.isnan(difference) else difference})
    return path
