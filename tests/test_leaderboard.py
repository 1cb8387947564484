"""Result rows (schema, atomic CSV append, paper rows from cards) and the generated leaderboard."""

from __future__ import annotations

import csv
import multiprocessing
import os

import pytest

from snn_det_zoo import _atomic, _cards
from snn_det_zoo.bench.rows import (
    COLUMNS,
    append_rows,
    default_results_dir,
    make_row,
    paper_rows,
    read_rows,
    results_path,
)
from snn_det_zoo.cli import main
from snn_det_zoo.errors import ResultsFormatError
from snn_det_zoo.leaderboard import Leaderboard, build, load_rows, markdown_text, pareto_front, plot_text


def _measured(model: str = "spikeyolo_n", **values) -> dict[str, str]:
    base = dict(model=model, tag="synthetic", dataset="synthetic-shapes", protocol="coco", T=1, D=4,
                source="measured", AP=12.5, AP50=30.0, energy_mj=0.5, device="cpu", precision="fp32",
                weights_sha256="ab" * 32)
    return make_row(**{**base, **values})


def _paper(model: str = "spikeyolo_n", **values) -> dict[str, str]:
    base = dict(model=model, dataset="synthetic-shapes", protocol="coco", T=1, D=4, source="paper",
                citation="Doe 2024 Table 1", confidence="V", AP=20.0, energy_mj=1.0, date="")
    return make_row(**{**base, **values})


def test_make_row_fills_every_column_and_formats_numbers():
    row = _measured(AP=12.3456789, samples=16)
    assert tuple(row) == COLUMNS
    assert row["AP"] == "12.3457" and row["samples"] == "16" and row["ARl"] == ""
    assert row["date"].endswith("Z")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (dict(model="m", dataset="d", protocol="p", source="measured", top1=3), "unknown result columns"),
        (dict(model="m", dataset="d", source="measured"), "needs"),
        (dict(model="m", dataset="d", protocol="p", source="guess"), "source"),
        (dict(model="m", dataset="d", protocol="p", source="paper"), "citation"),
        (dict(model="m", dataset="d", protocol="p", source="measured", AP="high"), "needs a number"),
        (dict(model="m", dataset="d", protocol="p", source="measured", T=1.5), "integer"),
        (dict(model="m", dataset="d", protocol="p", source="measured", energy_mj=float("inf")), "finite"),
        (dict(model="m", dataset="d", protocol="p", source="measured", notes="a\nb"), "one line"),
    ],
)
def test_make_row_rejects_bad_rows(values, message):
    with pytest.raises(ValueError, match=message):
        make_row(**values)


def test_append_rows_accumulates_atomically_and_refuses_a_foreign_header(tmp_path):
    path = results_path("synthetic-shapes", "coco", root=tmp_path / "results")
    assert path.name == "results-synthetic-shapes-coco.csv"
    append_rows(path, [_measured()])
    append_rows(path, [_measured(model="ems_yolo_res10"), _paper()])
    rows = read_rows(path)
    assert [r["model"] for r in rows] == ["spikeyolo_n", "ems_yolo_res10", "spikeyolo_n"]
    assert not list(path.parent.glob("*.tmp"))
    foreign = tmp_path / "results" / "results-other-x.csv"
    foreign.write_text("model,top1\nresnet,80\n")
    with pytest.raises(ValueError, match="header"):
        append_rows(foreign, [_measured()])
    assert foreign.read_text() == "model,top1\nresnet,80\n"
    with pytest.raises(ValueError, match="make_row"):
        append_rows(path, [{"model": "x"}])
    with pytest.raises(ValueError, match="cannot name"):
        results_path("coco/../x", "p")


def _fake_cards(monkeypatch):
    family = {"title": "Fake", "paper": {"title": "t", "authors": "a", "venue": "v"},
              "origin": {"repo": "r", "commit": "c", "license": "MIT"}}
    data = {"description": "d", "num_params": 10, "defaults": {"T": 1, "D": 4}, "metrics": [
        {"dataset": "coco2017-val", "protocol": "ultralytics", "source": "paper",
         "citation": "Luo 2024, Table 2", "confidence": "S",
         "values": {"mAP50": 0.623, "mAP50-95": 0.455, "params": 23_153_024, "fps": 30}},
        {"dataset": "coco2017-val", "protocol": "coco", "source": "measured", "citation": "ours",
         "confidence": "V", "values": {"AP": 1.0}},
    ]}
    card = _cards.VariantCard(name="fake_s", family="fake", card_path="fake.yaml", data=data,
                              family_data=family)
    monkeypatch.setattr(_cards, "variant_cards", lambda: {"fake_s": card})


def test_paper_rows_come_from_the_cards_paper_metrics_only(monkeypatch):
    _fake_cards(monkeypatch)
    (row,) = paper_rows()
    assert (row["model"], row["family"], row["source"], row["confidence"]) == ("fake_s", "fake", "paper", "S")
    assert (row["AP50"], row["AP"], row["params_m"]) == ("62.3", "45.5", "23.153024")  # every digit
    assert (row["T"], row["D"]) == ("1", "4")
    assert "fps=30" in row["notes"]


def test_pareto_front_by_hand():
    points = [(1.0, 10.0), (2.0, 30.0), (3.0, 20.0), (0.5, 5.0), (2.0, 25.0), (4.0, 40.0)]
    # (3, 20) is beaten by (2, 30); (2, 25) by (2, 30).
    assert pareto_front(points) == [3, 0, 1, 5]
    assert pareto_front([]) == []


def test_tables_split_by_dataset_and_protocol_with_paper_and_measured_side_by_side():
    rows = [_paper(), _measured(), _measured(protocol="frames"),
            _measured(model="ems_yolo_res10", AP=40.0, date="2026-01-01T00:00:00Z"),
            _measured(model="ems_yolo_res10", AP=41.0, date="2026-02-01T00:00:00Z")]
    board = Leaderboard.from_rows(rows)
    assert [(t.dataset, t.protocol) for t in board.tables] == [("synthetic-shapes", "coco"),
                                                               ("synthetic-shapes", "frames")]
    header = board.tables[0].header()
    assert header.index("AP measured") == header.index("AP paper") + 1
    body = board.tables[0].body()
    # Paper and measured rows of one model and setting share a line only when tag, T and D agree; the
    # paper row has no tag here, so spikeyolo_n appears on two lines, each filling only its own columns.
    by_model = {(cells[0], cells[1]): dict(zip(header, cells, strict=True)) for cells in body}
    assert by_model[("ems_yolo_res10", "synthetic")]["AP measured"] == "41.0"  # the latest run wins
    assert by_model[("spikeyolo_n", "")]["AP paper"] == "20.0"
    assert by_model[("spikeyolo_n", "")]["AP measured"] == ""
    assert by_model[("spikeyolo_n", "synthetic")]["AP paper"] == ""
    markdown = board.markdown()
    assert "## synthetic-shapes, protocol `coco`" in markdown
    assert markdown.count("| ems_yolo_res10 |") == 1


def test_same_setting_lines_up_paper_and_measured_on_one_line():
    board = Leaderboard.from_rows([_paper(tag="synthetic"), _measured()])
    (cells,) = board.tables[0].body()
    line = dict(zip(board.tables[0].header(), cells, strict=True))
    assert (line["AP paper"], line["AP measured"]) == ("20.0", "12.5")
    assert line["Sources"].startswith("Doe 2024 Table 1 [V]; measured by snn-det-zoo bench (cpu, fp32, ")


def test_small_energies_and_parameter_counts_keep_their_digits():
    board = Leaderboard.from_rows([_measured(energy_mj=0.0317917, params_m=0.394628),
                                   _measured("spikeyolo_s", energy_mj=34.49, params_m=23.153024)])
    lines = [dict(zip(board.tables[0].header(), cells, strict=True)) for cells in board.tables[0].body()]
    got = {line["Model"]: (line["Energy (mJ)"], line["Params (M)"]) for line in lines}
    assert got == {"spikeyolo_n": ("0.0318", "0.395"), "spikeyolo_s": ("34.5", "23.2")}


def test_build_writes_markdown_html_and_png(tmp_path, monkeypatch):
    _fake_cards(monkeypatch)
    results = tmp_path / "results"
    append_rows(results_path("synthetic-shapes", "coco", results),
                [_measured(), _measured(model="ems_yolo_res10", AP=20.0, energy_mj=2.0,
                                        notes="<script>alert(1)</script>")])
    written = build(results, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == ["LEADERBOARD.md", "leaderboard.html", "leaderboard.png"]
    assert (tmp_path / "out" / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (tmp_path / "out" / "LEADERBOARD.md").read_text()
    assert "## coco2017-val, protocol `ultralytics`" in markdown  # from the fake card
    assert "Luo 2024, Table 2 \\[S\\]" in markdown  # brackets escaped: no accidental link
    page = (tmp_path / "out" / "leaderboard.html").read_text()
    assert '<table class="board">' in page and "leaderboard.png" in page
    assert len(load_rows(results, include_cards=False)) == 2


def test_cli_leaderboard_without_rows_or_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_cards, "variant_cards", dict)
    assert main(["leaderboard", "--results", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "--results" in capsys.readouterr().err and not (tmp_path / "o").exists()  # a typo, not "no rows"
    (tmp_path / "none").mkdir()
    assert main(["leaderboard", "--results", str(tmp_path / "none"), "--out", str(tmp_path / "o"),
                 "--no-plot"]) == 0
    assert "No result rows yet." in (tmp_path / "o" / "LEADERBOARD.md").read_text()
    assert not (tmp_path / "o" / "leaderboard.png").exists()
    assert "LEADERBOARD.md" in capsys.readouterr().out
    bad = tmp_path / "file.csv"
    bad.write_text("x")
    assert main(["leaderboard", "--results", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert main(["leaderboard", "--results", str(tmp_path / "none"), "--out", str(bad / "sub")]) == 2
    assert "cannot write into the folder" in capsys.readouterr().err


def test_results_csv_is_plain_csv(tmp_path):
    path = append_rows(tmp_path / "r.csv", [_measured(notes='comma, "quote"')])
    with path.open(newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["notes"] == 'comma, "quote"'


def _append_from_a_process(args: tuple[str, int]) -> None:
    path, worker = args
    for i in range(5):
        append_rows(path, [_measured(model=f"m{worker}_{i}")])


@pytest.mark.slow
def test_concurrent_appends_keep_every_row(tmp_path):
    path = str(tmp_path / "results-synthetic-shapes-coco.csv")
    with multiprocessing.get_context("fork").Pool(8) as pool:
        pool.map(_append_from_a_process, [(path, w) for w in range(8)])
    models = sorted(r["model"] for r in read_rows(path))
    assert models == sorted(f"m{w}_{i}" for w in range(8) for i in range(5))


def test_a_cut_off_last_row_is_detected_not_completed(tmp_path):
    path = append_rows(tmp_path / "r.csv", [_measured(), _measured(model="ems_yolo_res10")])
    text = path.read_text()
    cut = text[: text.rindex("ems_yolo_res10") + 20]  # the writer died in the middle of the last row
    path.write_text(cut)
    with pytest.raises(ResultsFormatError, match="cut off"):
        read_rows(path)
    with pytest.raises(ResultsFormatError, match="cut off"):  # and nothing is appended after it
        append_rows(path, [_measured(model="late")])
    assert path.read_text() == cut
    path.write_text(cut + "\n")  # a row with too few cells, even when the line ends
    with pytest.raises(ResultsFormatError, match="line 3"):
        read_rows(path)


def test_markdown_cells_and_plot_labels_are_escaped():
    assert markdown_text("a|b") == "a\\|b"
    assert markdown_text("<script>x</script>") == "&lt;script&gt;x&lt;/script&gt;"
    assert markdown_text("[click](http://evil)") == "\\[click\\](http\\://evil)"
    assert markdown_text("two\nlines") == "two lines"
    assert markdown_text("spikeyolo_n") == "spikeyolo_n" and markdown_text("_x_") == "\\_x\\_"
    assert plot_text("$x^2$ costs $5") == r"\$x^2\$ costs \$5"
    row = _measured(model="evil|model", tag="<b>t</b>", device="cpu | x")
    markdown = Leaderboard.from_rows([row]).markdown()
    table = [line for line in markdown.splitlines() if line.startswith("| evil")]
    assert len(table) == 1 and table[0].count(" | ") == len(Leaderboard.from_rows([row]).tables[0].header()) - 1
    assert "<b>" not in markdown


def test_plot_draws_dollar_signs_literally(tmp_path, monkeypatch):
    monkeypatch.setattr(_cards, "variant_cards", dict)
    board = Leaderboard.from_rows([_measured(model="cost$x^{2}$"), _measured(model="b$", energy_mj=1.0)])
    png = board.plot()  # an unescaped '$x^{2}$' would be mathtext, and a lone '$' a parse error
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_build_writes_all_pages_or_none(tmp_path, monkeypatch):
    monkeypatch.setattr(_cards, "variant_cards", dict)
    results, out = tmp_path / "results", tmp_path / "out"
    append_rows(results_path("synthetic-shapes", "coco", results), [_measured()])
    build(results, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    append_rows(results_path("synthetic-shapes", "coco", results), [_measured(model="ems_yolo_res10")])
    real_write = _atomic.Path.write_bytes
    calls = []

    def fail_on_the_second_page(self, data):
        calls.append(self)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(self, data)

    monkeypatch.setattr(_atomic.Path, "write_bytes", fail_on_the_second_page)
    with pytest.raises(OSError, match="disk full"):
        build(results, out)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # old pages intact, no temporaries


def test_by_default_rows_and_pages_go_to_the_users_results_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(_cards, "variant_cards", dict)
    monkeypatch.chdir(tmp_path / "..")
    cwd_before = sorted(os.listdir("."))
    assert default_results_dir() == tmp_path / "zoo_home" / "results"  # conftest's SNN_DET_ZOO_HOME
    append_rows(results_path("synthetic-shapes", "coco"), [_measured()])
    assert main(["leaderboard", "--no-plot"]) == 0
    assert sorted(os.listdir(".")) == cwd_before
    assert {"LEADERBOARD.md", "leaderboard.html"} <= set(os.listdir(default_results_dir()))
    monkeypatch.setenv("SNN_DET_ZOO_RESULTS", str(tmp_path / "mine"))
    assert default_results_dir() == tmp_path / "mine"


def test_randomly_initialised_networks_never_enter_the_leaderboard(tmp_path):
    results = tmp_path / "results"
    append_rows(results_path("synthetic-shapes", "coco", results),
                [_measured(), _measured(model="ems_yolo_res10", weights_sha256="", notes="randomly initialised")])
    models = {r["model"] for r in load_rows(results, include_cards=False)}
    assert models == {"spikeyolo_n"}


def _line(table, **match):
    header = table.header()
    lines = [dict(zip(header, cells, strict=True)) for cells in table.body()]
    return [line for line in lines if all(line[k] == v for k, v in match.items())]


def test_several_citations_of_one_setting_fold_into_one_line_verified_first():
    rows = [_paper("spikeyolo_s", citation="arXiv:2407.20708 (COCO table)", confidence="M", AP=45.5, energy_mj=""),
            _paper("spikeyolo_s", citation="BICLab/SpikeYOLO@309ef5e logs", confidence="V", AP=45.6, energy_mj=""),
            _paper("spikeyolo_s", citation="BICLab/SpikeYOLO issue #57", confidence="S", AP="", energy_mj=34.6)]
    board = Leaderboard.from_rows(rows)
    (line,) = _line(board.tables[0], Model="spikeyolo_s")
    assert line["AP paper"] == "45.6" and line["Energy (mJ)"] == "34.6 (paper)"  # V first; S fills the energy
    assert line["Sources"].index("[V]") < line["Sources"].index("[S]") < line["Sources"].index("[M]")
    markdown = board.markdown()
    assert "[arXiv:2407.20708](https://arxiv.org/abs/2407.20708)" in markdown
    assert "[BICLab/SpikeYOLO issue \\#57](https://github.com/BICLab/SpikeYOLO/issues/57)" in markdown
    assert "[BICLab/SpikeYOLO\\@309ef5e](https://github.com/BICLab/SpikeYOLO/tree/309ef5e)" in markdown
    assert '<a href="https://arxiv.org/abs/2407.20708">arXiv:2407.20708</a>' in board.html()
    # A paper point is one citation's AP and energy: here no citation gives both, so there is none.
    assert board.plot_points() == {}


def test_paper_numbers_line_up_with_the_measured_release_and_give_the_difference():
    paper = _paper("spikeyolo_s_gen1", dataset="gen1", protocol="frames", T=2, D=4, AP=40.4, AP50=67.2)
    release = _measured("spikeyolo_s_gen1", tag="gen1_official", dataset="gen1", protocol="frames", T=2, D=4,
                        AP=39.9, AP50=66.0, samples=1000, input_size="320x320", energy_mj=1.5)
    mine = _measured("spikeyolo_s_gen1", tag="mine", dataset="gen1", protocol="frames", T=2, D=4, AP=20.0)
    board = Leaderboard.from_rows([paper, release, mine])
    table = board.tables[0]
    (line,) = _line(table, Weights="gen1_official")
    assert (line["AP paper"], line["AP measured"], line["ΔAP"], line["ΔAP50"]) == ("40.4", "39.9", "-0.5", "-1.2")
    assert (line["T×D"], line["Samples"], line["Input"], line["sha256"]) == ("2×4", "1000", "320x320", "abababab")
    (own,) = _line(table, Weights="mine")  # the user's own weights are never compared with the paper's
    assert (own["AP paper"], own["ΔAP"]) == ("", "")
    assert len(table.body()) == 2


def test_the_html_page_sorts_and_filters_offline_and_renders_inline_code():
    page = Leaderboard.from_rows([_measured(), _measured("ems_yolo_res10", AP=3.0)]).html()
    script = page[page.index("<script>"):page.index("</script>")]
    assert "addEventListener" in script and 'id="filter"' in page and "http" not in script
    assert "<code>snn-det-zoo bench</code>" in page and "`" not in page  # Markdown code rendered, not shown
    assert "<script src" not in page and "<link" not in page  # nothing fetched: works from a file offline


def test_models_measured_at_several_T_get_an_accuracy_against_T_curve(tmp_path, monkeypatch):
    monkeypatch.setattr(_cards, "variant_cards", dict)
    rows = [_measured("spicalib_x", T=T, D="", AP=ap, energy_mj=0.1 * T) for T, ap in ((8, 5.0), (32, 20.0),
                                                                                         (128, 30.0))]
    rows.append(_measured("spikeyolo_n"))
    board = Leaderboard.from_rows(rows)
    ((key, curves),) = board.curves().items()
    assert key == ("synthetic-shapes", "coco") and list(curves) == ["spicalib_x.synthetic"]
    assert [(T, ap) for T, ap, _ in curves["spicalib_x.synthetic"]] == [(8, 5.0), (32, 20.0), (128, 30.0)]
    results = tmp_path / "results"
    append_rows(results_path("synthetic-shapes", "coco", results), rows)
    names = sorted(p.name for p in build(results, tmp_path / "out"))
    assert names == ["LEADERBOARD.md", "leaderboard.html", "leaderboard.png", "leaderboard_T.png"]
    assert "![AP against the number of time steps T](leaderboard_T.png)" in (tmp_path / "out" /
                                                                              "LEADERBOARD.md").read_text()


def test_cited_urls_and_addresses_stay_text_and_impossible_numbers_are_left_out():
    assert markdown_text("see https://evil.example/x, www.evil.com, a@b.com, ~~s~~") == (
        "see https\\://evil.example/x, www\\.evil.com, a\\@b.com, \\~\\~s\\~\\~")
    assert markdown_text("arXiv:2407.20708") == "arXiv:2407.20708"  # no URL: left as written
    rows = [make_row(model="m", tag="t", dataset="d", protocol="p", T=1, source="measured", AP=10.0,
                     energy_mj=1.0, weights_sha256="ab" * 32)]
    rows[0]["AP"] = "inf"  # as a hand-edited CSV could hold it
    board = Leaderboard.from_rows(rows)
    (cells,) = board.tables[0].body()
    assert cells[board.tables[0].header().index("AP measured")] == "" and board.plot_points() == {}


def test_the_ann_ceiling_is_the_ann_measured_on_the_curve_s_own_images():
    def ann(samples, ap, date):
        return _measured("yolov3_tiny_relu", tag="shapes", T=1, D=1, samples=samples, seed=0, AP=ap, date=date)

    curve = [_measured("spicalib_yolov3_tiny", tag="shapes", T=T, D=1, samples=64, seed=0, AP=ap,
                       date="2026-01-01T00:00:00Z") for T, ap in ((8, 20.0), (16, 40.0))]
    rows = [ann(64, 55.8, "2026-01-01T00:00:00Z"), ann(256, 54.7, "2026-01-02T00:00:00Z"), *curve]
    board = Leaderboard.from_rows(rows)
    assert board.ann_ap("synthetic-shapes", "coco", "spicalib_yolov3_tiny.shapes") == ("yolov3_tiny_relu.shapes", 55.8)
    (line,) = _line(board.tables[0], Model="yolov3_tiny_relu")
    assert line["AP measured"] == "54.7"  # the table keeps the latest run
    only_other = Leaderboard.from_rows([ann(256, 54.7, "2026-01-02T00:00:00Z"), *curve])
    assert only_other.ann_ap("synthetic-shapes", "coco", "spicalib_yolov3_tiny.shapes") is None  # no wrong ceiling
