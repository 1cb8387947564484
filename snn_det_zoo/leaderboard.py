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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ._atomic import check_writable_folder, write_files_atomic
from ._cards import variant_cards
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
    "AP is COCO mAP@[.5:.95] and AP50 mAP@.5, in percent; Δ is measured minus paper, given only where both "
    "are of one model, its authors' weights and one protocol. Energy is compute energy per sample in mJ "
    "from synaptic operations (memory access not modelled), with the 45 nm constants unless a row says "
    "otherwise; a value marked (paper) is paper-reported. Samples and Input are what the measurement ran on; "
    "sha256 begins the measured weights' hash."
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
# "@", the ":" of "://" and the "." of "www." are escaped too, so that GitHub's autolinks never turn a URL or an
# address in a cited text into a link; "~" would start strikethrough.
_MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*[]|#@~"} | {"<": "&lt;", ">": "&gt;", "&": "&amp;"})
_AUTOLINK = re.compile(r"(?i)(?<=\bwww)\.|:(?=//)")
_EDGE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def markdown_text(text: str) -> str:
    """``text`` as literal Markdown: markup characters escaped, line breaks folded into spaces."""
    folded = " ".join(str(text).split()).translate(_MARKDOWN_SPECIAL)
    return _AUTOLINK.sub(lambda m: "\\" + m.group(0), _EDGE_UNDERSCORE.sub(r"\\_", folded))


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
    return value if math.isfinite(value) else None  # a hand-edited "inf" is no number to rank or plot


_CONFIDENCE_ORDER = {"V": 0, "S": 1, "M": 2}  # a verified citation gives a setting's paper values first


@dataclass
class _Entry:
    """One model, weights and setting of a table: its cited paper rows and its latest measured row."""

    model: str
    tag: str
    T: str
    D: str
    papers: dict[str, dict[str, str]] = field(default_factory=dict)  # citation -> its latest row
    measured: dict[str, str] | None = None
    runs: list[dict[str, str]] = field(default_factory=list)  # every measured row, in file order

    def citations(self) -> list[dict[str, str]]:
        """The cited rows, verified ones first."""
        return sorted(self.papers.values(), key=lambda r: (_CONFIDENCE_ORDER.get(r["confidence"], 3), r["citation"]))

    @property
    def paper(self) -> dict[str, str] | None:
        """The paper values of this setting over all its cited rows (the most confident citation that gives
        each value)."""
        rows = self.citations()
        if not rows:
            return None
        merged = dict(rows[0])
        for row in rows[1:]:
            for column, value in row.items():
                if value and not merged.get(column):
                    merged[column] = value
        return merged

    @property
    def label(self) -> str:
        return self.model + (f".{self.tag}" if self.tag else "")


def _difference(measured: dict[str, str] | None, paper: dict[str, str] | None, column: str) -> str:
    a, b = (_number(row[column]) if row else None for row in (measured, paper))
    return "" if a is None or b is None else f"{a - b:+.1f}"


def _either(measured: dict[str, str] | None, paper: dict[str, str] | None, column: str) -> str:
    """The measured value, else the paper's marked as such."""
    if _cell(measured, column):
        return _cell(measured, column)
    value = _cell(paper, column)
    return f"{value} (paper)" if value else ""


# A piece of text and the address it links to (None: plain text); both renderers escape the text.
_Span = tuple[str, str | None]
_LINKS = (
    (re.compile(r"arXiv:(\d{4}\.\d{4,5})(v\d+)?"), "https://arxiv.org/abs/{0}"),
    (re.compile(r"\b([A-Za-z0-9-]+/[A-Za-z0-9_.-]+) (?:issue|PR) #(\d+)"), "https://github.com/{0}/issues/{1}"),
    (re.compile(r"\b([A-Za-z0-9-]+/[A-Za-z0-9_.-]+)@([0-9a-f]{7,40})\b"), "https://github.com/{0}/tree/{1}"),
)


def _linked(text: str) -> list[_Span]:
    """``text`` with its arXiv ids, GitHub issues and commits as links."""
    spans: list[_Span] = []
    rest = text
    while rest:
        hits = [(m, url) for pattern, url in _LINKS if (m := pattern.search(rest))]
        if not hits:
            spans.append((rest, None))
            break
        match, url = min(hits, key=lambda hit: hit[0].start())
        if match.start():
            spans.append((rest[: match.start()], None))
        spans.append((match.group(0), url.format(*match.groups())))
        rest = rest[match.end():]
    return spans


def _sources(entry: _Entry) -> list[_Span]:
    spans: list[_Span] = []
    for row in entry.citations():
        if spans:
            spans.append(("; ", None))
        spans += [*_linked(row["citation"]), (f" [{row['confidence']}]" if row["confidence"] else "", None)]
    if entry.measured is not None:
        m = entry.measured
        if spans:
            spans.append(("; ", None))
        where = ", ".join(filter(None, [m["device"], m["precision"], m["date"][:10]]))
        spans.append((f"measured by snn-det-zoo bench ({where})", None))
    return spans


_HEADER = ("Model", "Weights", "T×D", "AP paper", "AP measured", "ΔAP", "AP50 paper", "AP50 measured", "ΔAP50",
           "Params (M)", "Energy (mJ)", "Firing rate", "Samples", "Input", "sha256", "Sources")


@dataclass
class _Table:
    dataset: str
    protocol: str
    card_tags: dict[str, set[str]] = field(default_factory=dict)  # model -> the tags of its card's weights
    entries: dict[tuple[str, str, str, str], _Entry] = field(default_factory=dict)

    def add(self, row: dict[str, str]) -> None:
        key = (row["model"], row["tag"], row["T"], row["D"])
        entry = self.entries.setdefault(key, _Entry(*key))
        if row["source"] == "paper":  # each cited source of a setting is kept, then folded into one line
            current = entry.papers.get(row["citation"])
            if current is None or row["date"] >= current["date"]:
                entry.papers[row["citation"]] = row
        else:
            entry.runs.append(row)
            if entry.measured is None or row["date"] >= entry.measured["date"]:  # the latest run wins
                entry.measured = row

    def lines(self) -> list[_Entry]:
        """The entries, a paper-only entry folded into the one measured entry of the same model and setting
        whose weights are its card's (the authors' release measured here): one line per model and weights."""
        entries = {key: replace(e, papers=dict(e.papers)) for key, e in self.entries.items()}  # the table stays
        for key, entry in list(entries.items()):
            model, tag, T, D = key
            if tag or entry.measured is not None:
                continue
            partners = [e for (m, t, t_, d), e in entries.items()
                        if (m, t_, d) == (model, T, D) and t in self.card_tags.get(model, ()) and e.measured
                        and not e.papers]
            if len(partners) == 1:
                partners[0].papers.update(entry.papers)
                del entries[key]
        # A model's settings (a converted model's T) stay together, ranked by the best of them, largest T first.
        best: dict[str, tuple[float, str]] = {}
        for entry in entries.values():
            best[entry.label] = min(best.get(entry.label, (math.inf, "")), _rank_key(entry)[:2])
        return sorted(entries.values(), key=lambda e: (*best[e.label], -(_number(e.T) or 0)))

    def header(self) -> list[str]:
        return list(_HEADER)

    def rich_body(self) -> list[list[list[_Span]]]:
        """Per line, per column, the cell as text spans (the Sources cell carries links)."""
        lines = []
        for entry in self.lines():
            paper, measured = entry.paper, entry.measured
            size = measured["input_size"] if measured else ""
            # D = 1 (binary spikes, e.g. EMS-YOLO's) reads as T alone, as the papers write it.
            cells = [entry.model, entry.tag, f"{entry.T}×{entry.D}" if entry.D not in ("", "1") else entry.T]
            for column in ("AP", "AP50"):
                cells += [_cell(paper, column), _cell(measured, column), _difference(measured, paper, column)]
            cells += [_either(measured, paper, "params_m"), _either(measured, paper, "energy_mj"),
                      _cell(measured, "firing_rate"), measured["samples"] if measured else "", size,
                      (measured["weights_sha256"] or "")[:8] if measured else ""]
            lines.append([[(c, None)] for c in cells] + [_sources(entry)])
        return lines

    def body(self) -> list[list[str]]:
        return [["".join(text for text, _ in cell) for cell in line] for line in self.rich_body()]


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
            return (-value, entry.label)
    return (math.inf, entry.label)


def _markdown_spans(spans: Sequence[_Span]) -> str:
    def piece(text: str) -> str:  # markdown_text folds the edges' spaces, which join two spans here
        return (" " if text[:1].isspace() else "") + markdown_text(text) + (" " if text[-1:].isspace() else "")

    return "".join(f"[{markdown_text(t)}]({url})" if url else piece(t) for t, url in spans).strip()


def _html_spans(spans: Sequence[_Span]) -> str:
    return "".join(f'<a href="{html.escape(url)}">{html.escape(t)}</a>' if url else html.escape(t)
                   for t, url in spans)


def _html_inline(text: str) -> str:
    """Text with Markdown's inline code (```x```) as HTML ``<code>``, everything else escaped."""
    parts = str(text).split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


# The page's sorting and filtering: plain JavaScript, no library, works from a file with no network.
_SCRIPT = """
function cellValue(row, i) {
  const text = row.cells[i].textContent.trim();
  const number = parseFloat(text.replace(/[^0-9eE+.-]/g, ""));
  return text === "" ? null : (/^[+-]?[0-9.]/.test(text) && !isNaN(number) ? number : text.toLowerCase());
}
document.querySelectorAll("table.board").forEach(table => {
  table.querySelectorAll("th").forEach((th, i) => {
    th.title = "sort by " + th.textContent;
    th.addEventListener("click", () => {
      const body = table.tBodies[0], up = th.dataset.order !== "up";
      table.querySelectorAll("th").forEach(h => delete h.dataset.order);
      th.dataset.order = up ? "up" : "down";
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = cellValue(a, i), y = cellValue(b, i);
        if (x === null || y === null) return (x === null) - (y === null);  // empty cells last
        const order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
        return up ? order : -order;
      });
      rows.forEach(r => body.appendChild(r));
    });
  });
});
document.getElementById("filter").addEventListener("input", event => {
  const words = event.target.value.toLowerCase().split(/\\s+/).filter(Boolean);
  document.querySelectorAll("table.board tbody tr").forEach(row => {
    const text = row.textContent.toLowerCase();
    row.hidden = !words.every(w => text.includes(w));
  });
});
"""

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1600px;padding:0 1em;color:#222}"
    "p.note{max-width:75em;font-size:90%;line-height:1.4}"
    "table{border-collapse:collapse;margin-bottom:2em;font-size:13px;width:100%}"
    "td,th{border:1px solid #ccc;padding:.2em .35em;text-align:right;white-space:nowrap}"
    "th{background:#f3f3f3;cursor:pointer;position:sticky;top:0;white-space:normal;vertical-align:bottom}"
    "th[data-order=up]::after{content:' \\25b2'}th[data-order=down]::after{content:' \\25bc'}"
    "td:nth-child(-n+2),th:nth-child(-n+2),th:last-child{text-align:left}"
    "td:last-child{text-align:left;white-space:normal;min-width:16em;font-size:12px}"
    "tbody tr:nth-child(even){background:#fafafa}code{background:#f0f0f0;padding:0 .2em}"
    "#filter{font-size:100%;padding:.3em .5em;width:24em;margin:.5em 0 1em}img{max-width:100%}"
)


@dataclass
class Leaderboard:
    """Rows grouped into one table per (dataset, protocol)."""

    tables: list[_Table]

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, str]]) -> Leaderboard:
        card_tags = {name: set(card.data.get("weights") or {}) for name, card in variant_cards().items()}
        tables: dict[tuple[str, str], _Table] = {}
        for row in rows:
            key = (row["dataset"], row["protocol"])
            tables.setdefault(key, _Table(*key, card_tags=card_tags)).add(row)
        # Tables with measured rows first (what this code produced), then the paper-only ones.
        def order(key: tuple[str, str]) -> tuple[bool, str, str]:
            return (not any(e.measured for e in tables[key].entries.values()), *key)

        return cls([tables[key] for key in sorted(tables, key=order)])

    def markdown(self, plot_names: Sequence[str] = ()) -> str:
        lines = [
            "# Leaderboard",
            "",
            "Generated by `snn-det-zoo leaderboard` from the result rows (`results-*.csv`) and "
            "the model cards; do not edit by hand.",
            "",
            _NOTE,
            "",
        ]
        for name in plot_names:
            lines += [f"![{_PLOT_TITLES.get(name, name)}]({name})", ""]
        if not self.tables:
            lines.append("No result rows yet.")
        for table in self.tables:
            lines += [f"## {markdown_text(table.dataset)}, protocol {markdown_code(table.protocol)}", ""]
            header = table.header()
            lines.append("| " + " | ".join(markdown_text(h) for h in header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            for cells in table.rich_body():
                lines.append("| " + " | ".join(_markdown_spans(c) for c in cells) + " |")
            lines.append("")
        return "\n".join(lines)

    def html(self, plot_names: Sequence[str] = ()) -> str:
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
            f"<title>snn-det-zoo leaderboard</title><style>{_STYLE}</style></head><body>",
            "<h1>snn-det-zoo leaderboard</h1>",
            f'<p class="note">{_html_inline(_NOTE)}</p>',
        ]
        for name in plot_names:
            parts.append(f'<img src="{html.escape(name)}" alt="{html.escape(_PLOT_TITLES.get(name, name))}">')
        if not self.tables:
            parts.append("<p>No result rows yet.</p>")
        else:
            parts.append('<input id="filter" type="search" placeholder="filter rows: model, weights, source, '
                         'device..." aria-label="filter rows"> <small>click a column heading to sort</small>')
        for table in self.tables:
            parts.append(
                f"<h2>{html.escape(table.dataset)}, protocol <code>{html.escape(table.protocol)}</code></h2>"
            )
            parts.append('<table class="board"><thead><tr>'
                         + "".join(f"<th>{html.escape(h)}</th>" for h in table.header()) + "</tr></thead><tbody>")
            for cells in table.rich_body():
                parts.append("<tr>" + "".join(f"<td>{_html_spans(c)}</td>" for c in cells) + "</tr>")
            parts.append("</tbody></table>")
        if self.tables:
            parts.append(f"<script>{_SCRIPT}</script>")
        parts.append("</body></html>")
        return "\n".join(parts)

    def plot_points(self) -> dict[tuple[str, str], dict[str, list[tuple[float, float, str, str]]]]:
        """Per table and source, the ``(energy_mj, AP, label, T)`` of the entries that have both in one row: a
        paper point is one citation's AP and energy, never two sources' put together."""
        points: dict[tuple[str, str], dict[str, list[tuple[float, float, str, str]]]] = {}
        for table in self.tables:
            for entry in table.lines():
                pairs = [("measured", entry.measured)] + [("paper", row) for row in entry.citations()]
                for source, row in pairs:
                    energy, ap = (_number(row["energy_mj"]), _number(row["AP"])) if row else (None, None)
                    if energy is None or ap is None or energy <= 0:
                        continue
                    by_source = points.setdefault((table.dataset, table.protocol), {}).setdefault(source, [])
                    if source == "paper" and any(p[2:] == (entry.label, entry.T) for p in by_source):
                        continue  # one paper point per model and setting: the most confident citation's
                    by_source.append((energy, ap, entry.label, entry.T))
        return points

    def curves(self) -> dict[tuple[str, str], dict[str, list[tuple[int, float, str]]]]:
        """Per table, AP against T for each model and weights measured at two or more T (the converted family's
        accuracy-against-T curves): ``label -> [(T, AP, source)]`` sorted by T."""
        out: dict[tuple[str, str], dict[str, list[tuple[int, float, str]]]] = {}
        for table in self.tables:
            by_label: dict[str, list[tuple[int, float, str]]] = {}
            for entry in table.lines():
                for source, row in (("measured", entry.measured), ("paper", entry.paper)):
                    T, ap = (_number(entry.T), _number(row["AP"])) if row else (None, None)
                    if T is not None and ap is not None:
                        by_label.setdefault(entry.label, []).append((int(T), ap, source))
            curves = {label: sorted(pts) for label, pts in by_label.items()
                      if len({T for T, _, s in pts if s == "measured"}) >= 2}
            if curves:
                out[(table.dataset, table.protocol)] = curves
        return out

    def ann_ap(self, dataset: str, protocol: str, label: str) -> tuple[str, float] | None:
        """``(name, measured AP)`` of the ANN twin that the card of the converted model ``label`` names
        (``ann``), measured with the same weights tag in the same table on the same images (samples and seed of
        the curve's latest rows); None where there is none."""
        model, _, tag = label.partition(".")
        card = variant_cards().get(model)
        ann = card.data.get("ann") if card is not None else None
        table = next((t for t in self.tables if (t.dataset, t.protocol) == (dataset, protocol)), None)
        if not ann or table is None:
            return None
        drawn = {(e.measured["samples"], e.measured["seed"]) for e in table.entries.values()
                 if e.label == label and e.measured is not None}
        runs = sorted((r for e in table.entries.values() if e.model == ann and e.tag == tag for r in e.runs
                       if (r["samples"], r["seed"]) in drawn and _number(r["AP"]) is not None),
                      key=lambda r: r["date"])
        return (f"{ann}.{tag}" if tag else ann, _number(runs[-1]["AP"])) if runs else None

    def plot(self) -> bytes | None:
        """AP against energy (log scale), one panel per table, as PNG bytes; None if no points.

        One marker per model: filled for measured, hollow for paper-reported; a source's Pareto front is drawn
        only where it joins at least two points.
        """
        points = self.plot_points()
        if not points:
            return None
        plt = _pyplot()
        fig, axes = _panels(plt, len(points))
        for ax, ((dataset, protocol), by_source) in zip(axes, sorted(points.items()), strict=True):
            labels = sorted({p[2] for pts in by_source.values() for p in pts})
            colours = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
            for source, pts in sorted(by_source.items()):
                filled = source == "measured"
                for label in sorted({p[2] for p in pts}):
                    mine = sorted((p for p in pts if p[2] == label), key=lambda p: p[0])
                    ax.scatter([p[0] for p in mine], [p[1] for p in mine], s=46, marker="o" if filled else "s",
                               linewidths=1.5, facecolors=colours[label] if filled else "none",
                               edgecolors=colours[label])
                    if len(mine) > 1:  # one model at several T: a line through its points, each named by its T
                        ax.plot([p[0] for p in mine], [p[1] for p in mine], color=colours[label], linewidth=0.8)
                        for energy, ap, _, T in mine:
                            ax.annotate(f"T={T}", (energy, ap), fontsize=6, xytext=(4, -9),
                                        textcoords="offset points", color=colours[label])
                    energy, ap = max(mine, key=lambda p: p[1])[:2]
                    ax.annotate(plot_text(label), (energy, ap), fontsize=7, xytext=(4, 4),
                                textcoords="offset points")
                front = [pts[i] for i in pareto_front([(p[0], p[1]) for p in pts])]
                if len(front) >= 2:
                    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="0.4",
                            linestyle="-" if filled else "--", linewidth=1, label=f"{source} Pareto front")
            for source, label, marker, face in (("measured", "measured here", "o", "0.3"),
                                                ("paper", "paper-reported", "s", "none")):
                if by_source.get(source):  # the legend names only what is drawn
                    ax.scatter([], [], marker=marker, facecolors=face, edgecolors="0.3", label=label)
            ax.set_xscale("log")
            _plain_log_ticks(ax.xaxis)
            ax.margins(x=0.3, y=0.12)  # room for the labels of the outermost points
            _label_panel(ax, "energy per sample (mJ, log scale)", f"{dataset}, protocol {protocol}", "best")
        return _png(fig, plt)

    def plot_curves(self) -> bytes | None:
        """AP against T (log2 scale), one line per model and weights measured at several T; None if none."""
        curves = self.curves()
        if not curves:
            return None
        plt = _pyplot()
        fig, axes = _panels(plt, len(curves))
        for ax, ((dataset, protocol), by_label) in zip(axes, sorted(curves.items()), strict=True):
            for i, (label, pts) in enumerate(sorted(by_label.items())):
                colour = plt.get_cmap("tab10")(i % 10)
                measured = [(T, ap) for T, ap, s in pts if s == "measured"]
                ax.plot([p[0] for p in measured], [p[1] for p in measured], "o-", color=colour,
                        label=plot_text(label))
                paper = [(T, ap) for T, ap, s in pts if s == "paper"]
                if paper:
                    ax.scatter([p[0] for p in paper], [p[1] for p in paper], marker="s", facecolors="none",
                               edgecolors=colour, label=plot_text(f"{label} (paper)"))
                ann = self.ann_ap(dataset, protocol, label)
                if ann is not None:  # a converted model's ANN twin, measured on the same set: the ceiling
                    ax.axhline(ann[1], color=colour, linestyle=":", linewidth=1,
                               label=plot_text(f"{ann[0]} (ANN twin, same images)"))
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({T for pts in by_label.values() for T, _, _ in pts}))
            ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f"{value:g}"))
            _label_panel(ax, "time steps T (log scale)", f"{dataset}, protocol {protocol}: accuracy against T",
                         "lower right")
        return _png(fig, plt)


_PLOT_TITLES = {"leaderboard.png": "AP against energy per model: measured filled, paper-reported hollow",
                "leaderboard_T.png": "AP against the number of time steps T"}


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError(
            "the leaderboard plot needs matplotlib: pip install matplotlib (or pass --no-plot)"
        ) from exc
    return plt


def _panels(plt: Any, count: int) -> tuple[Any, list[Any]]:
    """A figure of ``count`` side-by-side panels, one per table."""
    fig, axes = plt.subplots(1, count, figsize=(6.4 * count, 4.8), squeeze=False)
    return fig, list(axes[0])


def _label_panel(ax: Any, xlabel: str, title: str, legend: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel("AP (mAP@[.5:.95], %)")
    ax.set_title(plot_text(title), fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc=legend)


def _plain_log_ticks(axis: Any) -> None:
    """Ticks of a log axis as plain numbers (0.02, 0.05, 0.1), minor ones at 2x and 5x only: readable when the
    points span less than a decade."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axis.set_major_formatter(plain)
    axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    axis.set_minor_formatter(plain)


def _png(fig: Any, plt: Any) -> bytes:
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
    """Write ``LEADERBOARD.md``, ``leaderboard.html`` and (when there are points) ``leaderboard.png`` and
    ``leaderboard_T.png`` (AP against T, where a model was measured at several T).

    ``results_dir`` and ``out_dir`` default to the user's results folder (:func:`default_results_dir`), never
    the installed package or a repository. Every page is rendered before any is written, and all are renamed
    into place together: a failure leaves the previous pages as they were.
    """
    out = check_writable_folder(default_results_dir() if out_dir is None else out_dir)
    board = Leaderboard.from_rows(load_rows(results_dir, include_cards))
    pictures = {"leaderboard.png": board.plot(), "leaderboard_T.png": board.plot_curves()} if plot else {}
    plot_names = [name for name, png in pictures.items() if png is not None]
    files = {out / "LEADERBOARD.md": (board.markdown(plot_names) + "\n").encode(),
             out / "leaderboard.html": (board.html(plot_names) + "\n").encode()}
    files.update({out / name: pictures[name] for name in plot_names})
    return write_files_atomic(files)
