"""`snn-det-zoo reproduce`: paper rows from the cards beside parameters counted here and benchmark results."""

from __future__ import annotations

import csv
import json

import pytest

from snn_det_zoo import _cards
from snn_det_zoo.bench.reproduce import count_parameters, paper_table, papers, to_markdown
from snn_det_zoo.cli import main
from snn_det_zoo.hub import weights_dir


@pytest.mark.parametrize("paper", papers())
def test_params_rows_match_every_card_variant(paper):
    rows = paper_table(paper)
    variants = {n: c for n, c in _cards.variant_cards().items() if c.family == paper}
    params = {r.model: r for r in rows if r.quantity == "params"}
    assert set(params) == set(variants)
    for name, row in params.items():
        assert row.paper == variants[name].data["num_params"] == row.measured
        assert row.verdict == "match" and row.difference == 0


def test_parameters_are_counted_on_the_meta_device_with_overrides():
    assert count_parameters("ems_yolo_res10") == _cards.variant_cards()["ems_yolo_res10"].data["num_params"]
    assert count_parameters("spikeyolo_n", num_classes=3) < _cards.variant_cards()["spikeyolo_n"].data["num_params"]


def _stand_in_cards(monkeypatch, num_params):
    real = _cards.variant_cards()["spikeyolo_n"]
    card = _cards.VariantCard(name=real.name, family=real.family, card_path="stand-in.yaml",
                              data={**real.data, "num_params": num_params}, family_data=real.family_data)
    monkeypatch.setattr(_cards, "variant_cards", lambda: {"spikeyolo_n": card})
    monkeypatch.setattr("snn_det_zoo.registry.variant_cards", lambda: {"spikeyolo_n": card})
    monkeypatch.setattr("snn_det_zoo.bench.reproduce.variant_cards", lambda: {"spikeyolo_n": card})


def test_a_card_count_that_differs_from_the_built_model_is_differs(monkeypatch):
    real = _cards.variant_cards()["spikeyolo_n"].data["num_params"]
    _stand_in_cards(monkeypatch, real + 1)
    (row,) = [r for r in paper_table("spikeyolo") if r.quantity == "params"]
    assert (row.verdict, row.difference, row.tolerance) == ("differs", -1, "exact")
    text = to_markdown("spikeyolo", [row])
    assert f"| {real + 1:,} | {real:,} | -1 | exact | differs |" in text and "1 differs" in text


def _spikeyolo_s_coco(rows):
    return [r for r in rows if r.model == "spikeyolo_s" and r.dataset == "coco-val2017"]


def test_not_measured_names_the_missing_data_and_the_import_command(tmp_path):
    rows = _spikeyolo_s_coco(paper_table("spikeyolo"))
    assert {r.quantity for r in rows} == {"AP", "AP50", "energy_mj"}
    for row in rows:
        # The papers' COCO AP is their training framework's: no measurement here could give it a verdict,
        # and the row says so before anyone fetches COCO for it; the energy row waits for the data.
        expected = "not comparable" if row.quantity in ("AP", "AP50") else "not measured"
        assert row.verdict == expected and row.measured is None
        assert ("this project measures" in row.note) == (expected == "not comparable")
        assert row.note.startswith("not measured: needs COCO val2017")
        assert "--coco DIR" in row.note
        assert "snn-det-zoo import-weights spikeyolo_s.coco_official PATH" in row.note
    # With the data given, only the weights are missing.
    for row in _spikeyolo_s_coco(paper_table("spikeyolo", coco=tmp_path)):
        assert row.note.startswith("not measured: needs weights spikeyolo_s.coco_official "
                                   "(snn-det-zoo import-weights spikeyolo_s.coco_official PATH)")
    no_weights = [r for r in paper_table("spikeyolo") if r.model == "spikeyolo_n" and r.quantity == "AP"]
    assert no_weights[0].note.startswith("not measured: the model card lists no weights for spikeyolo_n")


def test_measured_rows_get_differences_and_verdicts(tmp_path):
    folder = weights_dir("spikeyolo_s", "coco_official")
    folder.mkdir(parents=True)
    (folder / "card.json").write_text(json.dumps({"sha256": "0" * 64}))  # the cache says: imported
    calls = []

    def measure(name, dataset, **kwargs):
        calls.append((name, dataset, kwargs))
        return {"AP": "45.7", "AP50": "61.0", "energy_mj": "40", "samples": "5000", "protocol": kwargs["protocol"]}

    rows = _spikeyolo_s_coco(paper_table("spikeyolo", coco=tmp_path, measure=measure, device="cpu"))
    (call,) = calls  # three card entries, one setting: measured once
    name, dataset, kwargs = call
    assert (name, dataset, kwargs["protocol"], kwargs["pretrained"]) == ("spikeyolo_s.coco_official", "coco",
                                                                         "coco", True)
    assert kwargs["coco_root"] == tmp_path / "val2017" and kwargs["device"] == "cpu"
    assert kwargs["coco_ann"] == tmp_path / "annotations" / "instances_val2017.json"
    by = {(r.quantity, r.citation[:8]): r for r in rows}
    # pycocotools' AP is not the authors' Ultralytics-internal AP: shown, but no difference and no verdict.
    ap = by[("AP", "arXiv:24")]
    assert (ap.paper, ap.measured, ap.difference, ap.verdict) == (pytest.approx(45.5), 45.7, None, "not comparable")
    assert by[("AP50", "arXiv:24")].verdict == "not comparable"
    assert ("not comparable: this project measures AP under protocol coco, the paper's is under "
            "ultralytics-internal") in ap.note
    energy = by[("energy_mj", "BICLab/S")]  # energy does not depend on the AP definition
    assert energy.verdict == "differs" and energy.tolerance == "±10%"  # 40 against 34.6: 16 % more
    assert "the paper's is ultralytics-internal" in ap.note and "5000 samples" in ap.note
    assert "| not comparable |" in to_markdown("spikeyolo", rows) and "not comparable" in to_markdown(
        "spikeyolo", rows).splitlines()[2]


def test_a_verdict_where_the_protocols_match(tmp_path):
    """Gen1 is measured under the paper's own frames protocol: there the AP gets its difference and verdict."""
    folder = weights_dir("spikeyolo_s_gen1", "gen1_official")
    folder.mkdir(parents=True)
    (folder / "card.json").write_text(json.dumps({"sha256": "0" * 64}))

    def measure(name, dataset, **kwargs):
        return {"AP": "40.0", "AP50": "66.9", "energy_mj": "", "samples": "100", "protocol": kwargs["protocol"]}

    rows = [r for r in paper_table("spikeyolo", gen1=tmp_path, measure=measure)
            if r.model == "spikeyolo_s_gen1" and r.quantity in ("AP", "AP50")]
    assert rows and all(r.protocol == "frames" for r in rows)
    by = {r.quantity: r for r in rows}
    assert by["AP50"].difference == pytest.approx(66.9 - 67.2) and by["AP50"].verdict == "match"
    assert by["AP"].difference == pytest.approx(40.0 - 40.4) and by["AP"].verdict == "match"


def test_cli_prints_the_table_and_writes_csv(tmp_path, capsys):
    out = tmp_path / "t.csv"
    assert main(["reproduce", "ems_yolo", "--csv", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# ems_yolo: paper tables against this code")
    assert "| ems_yolo_res34 | params |" in text
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(paper_table("ems_yolo"))
    assert {r["verdict"] for r in rows} == {"match", "not comparable", "not measured"}
    assert main(["reproduce", "ems_yolo", "--gen1", str(tmp_path / "missing")]) == 2
