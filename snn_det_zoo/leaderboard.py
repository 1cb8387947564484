"""The leaderboard: result rows -> ``LEADERBOARD.md``, a static HTML page and a mAP-against-energy plot.

Rendered from the rows, never typed by hand: measured rows from ``benchmarks/results/*.csv`` and
paper-reported rows from the model cards (plus any ``source=paper`` rows in the CSVs). There is one table per
dataset and protocol, because numbers under different protocols are not comparable. Paper-reported and
measured numbers sit side by side in separate, labelled columns and are never merged into one column.
matplotlib is imported only to draw the plot.
"""

from __future__ import annotations

import html
import io
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._atomic import write_files_atomic
from .bench.rows import default_results_dir, paper_rows, read_rows
from .errors import InvalidArgumentError, MissingDependencyError

__all__ = ["Leaderboard", "build", "load_rows", "markdown_text", "pareto_front", "plot_text"]

_NOTE = (
    "How each number was obtained: paper columns are copied from the model cards (models/*.yaml), which "
    "cite the publication, log or issue each comes from (confidence: V verified in the paper or the "
    "authors' code, S secondary source, M recalled, to be checked); measured columns were produced by "
    "`snn-det-zoo bench` with this code on the device and date given. Every table is one dataset under "
    "one protocol: `ultralytics-internal` and `yolov5-internal` are the authors' training-framework AP, "
    "`coco` is pycocotools, Gen1 `frames` is the papers' per-slice evaluation and `psee` the corrected "
    "Prophesee protocol; numbers under different protocols are not comparable. "
    "AP is COCO mAP@[.5:.95] and AP50 mAP@.5, in percent. Energy is compute energy per sample from synaptic "
    "operations (memory access not modelled), with the constants given per row. Speed on a GPU is not "
    "neuromorphic latency."
)


def load_rows(
    results_dir: str | os.PathLike[str] | None = None, include_cards: bool = True
) -> list[dict[str, str]]:
    """Every result row: ``results-*.csv`` under ``results_dir`` (default: the user's results folder) and,
    optionally, the cards' paper rows. Measured rows of randomly initialised networks are left out."""
    root = Path(default_results_dir() if results_dir is None else results_dir)
    rows = []
    if root.is_dir():
        # Only result-row files: the kernel and speed benchmarks keep their own CSVs in the same folder.
        for path in sorted(root.glob("results-*.csv")):
            # A randomly initialised network (no weights hash) is never a leaderboard result.
            rows.extend(r for r in read_rows(path) if r["source"] != "measured" or r["weights_sha256"])
    elif root.exists():
        raise InvalidArgumentError(f"{root} is not a directory of results CSVs")
    if include_cards:
        seen = {_paper_key(r) for r in rows if r["source"] == "paper"}
        rows.extend(r for r in paper_rows() if _paper_key(r) not in seen)
    return rows


def _paper_key(row: dict[str, str]) -> tuple[str, ...]:
    return (row["model"], row["dataset"], row["protocol"], row["T"], row["D"], row["citation"])


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points that no other point beats (no lower cost with a score at least as high).

    ``points`` are ``(cost, score)``; the result is sorted by cost.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


# Characters that Markdown would read as markup in a table cell: HTML, links, emphasis, code, the cell border.
# An underscore inside a word (spikeyolo_n) is no emphasis in CommonMark, so only the others are escaped.
_MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*[]|#"} | {"<": "&lt;", ">": "&gt;", "&": "&amp;"})
_EDGE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def markdown_text(text: str) -> str:
    """``text`` as literal Markdown: markup characters escaped, line breaks folded into spaces."""
    folded = " ".join(str(text).split()).translate(_MARKDOWN_SPECIAL)
    return _EDGE_UNDERSCORE.sub(r"\\_", folded)


def markdown_code(text: str) -> str:
    """``text`` as inline code where it can be (no backtick in it), else as escaped text."""
    text = " ".join(str(text).split())
    return f"`{text}`" if "`" not in text else markdown_text(text)


def plot_text(text: str) -> str:
    """``text`` as a literal matplotlib label (``$`` would start mathtext)."""
    return str(text).replace("$", r"\$")


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


@dataclass
class _Entry:
    """One model and setting of a table, with its latest paper and measured rows."""

    model: str
    tag: str
    T: str
    D: str
    papers: dict[str, dict[str, str]] = field(default_factory=dict)  # citation -> its latest row
    measured: dict[str, str] | None = None

    @property
    def paper(self) -> dict[str, str] | None:
        """The paper values of this setting over all its cited rows (the first citation that gives each)."""
        if not self.papers:
            return None
        merged = dict(next(iter(self.papers.values())))
        for row in self.papers.values():
            for column, value in row.items():
                if value and not merged.get(column):
                    merged[column] = value
        return merged


# (header, column, which source): the side-by-side pairs, then measured-only facts.
_PAIRED = (("AP", "AP"), ("AP50", "AP50"), ("Energy (mJ)", "energy_mj"), ("Params (M)", "params_m"))
_MEASURED_ONLY = (("Firing rate", "firing_rate"), ("GSOPs", "gsops"), ("Images/s", "images_per_s"))


@dataclass
class _Table:
    dataset: str
    protocol: str
    entries: dict[tuple[str, str, str, str], _Entry] = field(default_factory=dict)

    def add(self, row: dict[str, str]) -> None:
        key = (row["model"], row["tag"], row["T"], row["D"])
        entry = self.entries.setdefault(key, _Entry(*key))
        if row["source"] == "paper":  # each cited source of a setting keeps its own line
            current = entry.papers.get(row["citation"])
            if current is None or row["date"] >= current["date"]:
                entry.papers[row["citation"]] = row
        elif entry.measured is None or row["date"] >= entry.measured["date"]:  # the latest run wins
            entry.measured = row

    def header(self) -> list[str]:
        cells = ["Model", "Tag", "T", "D"]
        for title, _ in _PAIRED:
            cells += [f"{title} paper", f"{title} measured"]
        cells += [f"{title} measured" for title, _ in _MEASURED_ONLY]
        return [*cells, "Paper source", "Measured on"]

    def body(self) -> list[list[str]]:
        lines = []
        for entry in sorted(self.entries.values(), key=_rank_key):
            # One line per cited paper source; the measured values sit on the first line of the setting.
            for i, paper in enumerate(list(entry.papers.values()) or [None]):
                measured = entry.measured if i == 0 else None
                cells = [entry.model, entry.tag, entry.T, entry.D]
                for _, column in _PAIRED:
                    cells += [_cell(paper, column), _cell(measured, column)]
                cells += [_cell(measured, column) for _, column in _MEASURED_ONLY]
                cells.append(f"{paper['citation']} [{paper['confidence']}]" if paper else "")
                cells.append(
                    ", ".join(filter(None, [measured["device"], measured["precision"], measured["date"][:10]]))
                    if measured
                    else ""
                )
                lines.append(cells)
        return lines


def _cell(row: dict[str, str] | None, column: str) -> str:
    if row is None:
        return ""
    value = _number(row[column])
    if value is None:
        return ""
    if column in ("firing_rate", "gsops"):
        return f"{value:.4g}"
    if column in ("energy_mj", "params_m") and abs(value) < 10:  # a small model's 0.0318 mJ is not 0.0
        return f"{value:.3g}"
    return f"{value:.1f}"


def _rank_key(entry: _Entry) -> tuple[float, str]:
    """Best measured AP first, then best paper AP, then by name."""
    for row in (entry.measured, entry.paper):
        value = _number(row["AP"]) if row else None
        if value is not None:
            return (-value, entry.model)
    return (math.inf, entry.model)


@dataclass
class Leaderboard:
    """Rows grouped into one table per (dataset, protocol)."""

    tables: list[_Table]

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, str]]) -> Leaderboard:
        tables: dict[tuple[str, str], _Table] = {}
        for row in rows:
            key = (row["dataset"], row["protocol"])
            tables.setdefault(key, _Table(*key)).add(row)
        return cls([tables[key] for key in sorted(tables)])

    def markdown(self, plot_name: str | None = None) -> str:
        lines = [
            "# Leaderboard",
            "",
            "Generated by `snn-det-zoo leaderboard` from the result rows (`results-*.csv`) and "
            "the model cards; do not edit by hand.",
            "",
            _NOTE,
            "",
        ]
        if plot_name:
            lines += [f"![AP against energy, Pareto fronts marked]({plot_name})", "",
                      "A paper point takes its AP and its energy from the setting's cited rows below, which may be "
                      "different sources.", ""]
        if not self.tables:
            lines.append("No result rows yet.")
        for table in self.tables:
            lines += [f"## {markdown_text(table.dataset)}, protocol {markdown_code(table.protocol)}", ""]
            header = table.header()
            lines.append("| " + " | ".join(markdown_text(h) for h in header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            for cells in table.body():
                lines.append("| " + " | ".join(markdown_text(c) for c in cells) + " |")
            lines.append("")
        return "\n".join(lines)

    def html(self, plot_name: str | None = None) -> str:
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8"><title>snn-det-zoo leaderboard'
            "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
            "margin-bottom:2em}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
            "td:first-child,th:first-child{text-align:left}</style></head><body>",
            "<h1>snn-det-zoo leaderboard</h1>",
            f"<p>{html.escape(_NOTE)}</p>",
        ]
        if plot_name:
            parts.append(
                f'<img src="{html.escape(plot_name)}" alt="AP against energy, Pareto fronts marked">'
            )
        if not self.tables:
            parts.append("<p>No result rows yet.</p>")
        for table in self.tables:
            parts.append(
                f"<h2>{html.escape(table.dataset)}, protocol <code>{html.escape(table.protocol)}</code></h2>"
            )
            parts.append(
                "<table><thead><tr>"
                + "".join(f"<th>{html.escape(h)}</th>" for h in table.header())
                + "</tr></thead><tbody>"
            )
            for cells in table.body():
                parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            parts.append("</tbody></table>")
        parts.append("</body></html>")
        return "\n".join(parts)

    def plot_points(self) -> dict[tuple[str, str], dict[str, list[tuple[float, float, str]]]]:
        """Per table and source, the ``(energy_mj, AP, label)`` of the entries that have both."""
        points: dict[tuple[str, str], dict[str, list[tuple[float, float, str]]]] = {}
        for table in self.tables:
            for entry in table.entries.values():
                for source, row in (("paper", entry.paper), ("measured", entry.measured)):
                    energy, ap = (_number(row["energy_mj"]), _number(row["AP"])) if row else (None, None)
                    if energy is not None and ap is not None and energy > 0:
                        label = entry.model + (f".{entry.tag}" if entry.tag else "")
                        points.setdefault((table.dataset, table.protocol), {}).setdefault(source, []).append(
                            (energy, ap, label)
                        )
        return points

    def plot(self) -> bytes | None:
        """AP against energy (log scale), one panel per table, fronts per source, as PNG bytes; None if no
        points."""
        points = self.plot_points()
        if not points:
            return None
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise MissingDependencyError(
                "the leaderboard plot needs matplotlib: pip install matplotlib (or pass --no-plot)"
            ) from exc
        fig, axes = plt.subplots(1, len(points), figsize=(6 * len(points), 4.5), squeeze=False)
        styles = {"paper": ("s", "tab:orange", "--"), "measured": ("o", "tab:blue", "-")}
        for ax, ((dataset, protocol), by_source) in zip(axes[0], sorted(points.items()), strict=True):
            for source, pts in sorted(by_source.items()):
                marker, color, line = styles[source]
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color, label=source)
                for energy, ap, label in pts:
                    ax.annotate(plot_text(label), (energy, ap), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")
                front = [pts[i] for i in pareto_front([(p[0], p[1]) for p in pts])]
                ax.step(
                    [p[0] for p in front],
                    [p[1] for p in front],
                    where="post",
                    linestyle=line,
                    color=color,
                    label=f"{source} Pareto front",
                )
            ax.set_xscale("log")
            ax.set_xlabel("energy per sample (mJ)")
            ax.set_ylabel("AP (mAP@[.5:.95], %)")
            ax.set_title(plot_text(f"{dataset}, protocol {protocol}"))
            ax.legend(fontsize=7)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120)
        plt.close(fig)
        return buffer.getvalue()


def build(
    results_dir: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    include_cards: bool = True,
    plot: bool = True,
) -> list[Path]:
    """Write ``LEADERBOARD.md``, ``leaderboard.html`` and (when there are points) ``leaderboard.png``.

    ``results_dir`` and ``out_dir`` default to the user's results folder (:func:`default_results_dir`), never
    the installed package or a repository. Every page is rendered before any is written, and all are renamed
    into place together: a failure leaves the previous pages as they were.
    """
    board = Leaderboard.from_rows(load_rows(results_dir, include_cards))
    out = Path(default_results_dir() if out_dir is None else out_dir)
    png = board.plot() if plot else None
    plot_name = "leaderboard.png" if png is not None else None
    files = {out / "LEADERBOARD.md": (board.markdown(plot_name) + "\n").encode(),
             out / "leaderboard.html": (board.html(plot_name) + "\n").encode()}
    if png is not None:
        files[out / "leaderboard.png"] = png
    return write_files_atomic(files)
