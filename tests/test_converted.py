"""The converted family: BN folding, conversion, converted state in the weights, outputs against T, harness."""

import copy
import sys

import pytest
import torch

import snn_det_zoo as zoo
from snn_det_zoo.archs._conversion import fold_batchnorm, percentile, search_p
from snn_det_zoo.bench.conversion import CalibrationList, calibration_list, convert
from snn_det_zoo.bench.curve import accuracy_vs_T, steps_to_reach
from snn_det_zoo.bench.tracks import make_track
from snn_det_zoo.errors import InvalidArgumentError, MissingDependencyError

TINY = {"num_classes": 5, "class_names": "shapes", "img_size": 64, "width_multiple": 0.25}


def _trained_like_ann(arch: str = "yolov3_tiny_relu"):
    """A tiny ANN whose BatchNorms hold the statistics of real images (so that its activations are ANN-like)."""
    torch.manual_seed(0)
    ann = zoo.create_model(arch, **TINY)
    for m in ann.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0
    calib = calibration_list(ann, 8, image_size=64)
    with torch.no_grad():
        ann.train()(calib.images)
    return ann.eval(), calib


def test_the_card_names_the_ann_twin():
    assert zoo.model_info("spicalib_yolov3_tiny")["ann"] == "yolov3_tiny_relu"
    assert zoo.model_info("spicalib_resnet18_yolov3")["ann"] == "resnet18_yolov3_relu"


@pytest.mark.parametrize("arch", ["yolov3_tiny_relu", "resnet18_yolov3_relu"])
def test_folding_batchnorm_leaves_the_outputs_unchanged(arch):
    ann, calib = _trained_like_ann(arch)
    folded = fold_batchnorm(copy.deepcopy(ann.core))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        for a, b in zip(ann.core(calib.images), folded(calib.images), strict=True):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["yolov3_tiny_relu", "resnet18_yolov3_relu"])
def test_snn_outputs_approach_the_anns_as_T_grows(arch):
    ann, calib = _trained_like_ann(arch)
    snn, _ = convert(ann, calib, p=0.9999, T_design=64)
    with torch.no_grad():
        reference = ann(calib.images[:2])
        by_T = snn.simulate(calib.images[:2], (4, 16, 64))
    errors = [sum(float(((s - a) ** 2).mean()) for s, a in zip(by_T[t], reference, strict=True)) for t in (4, 16, 64)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.85 * errors[0]


def test_batches_back_to_back_equal_each_alone_and_the_converted_state_travels_with_the_weights(tmp_path):
    ann, calib = _trained_like_ann()
    snn, result = convert(ann, calib, p=0.999, T_design=16)
    snn.T = 16
    x1, x2 = calib.images[:2], calib.images[2:5]
    with torch.no_grad():
        alone = [snn(x1), snn(x2)]
        together = snn(torch.cat((x1, x2)))
        fresh = zoo.create_model("spicalib_yolov3_tiny", **TINY, T=16).eval()
        fresh.load_state_dict(snn.state_dict())
        reloaded = fresh(x2)
    for a, b in zip(alone[1], reloaded, strict=True):
        assert torch.equal(a, b)
    for a1, a2, both in zip(*alone, together, strict=True):
        assert torch.allclose(torch.cat((a1, a2)), both, atol=1e-5)
    record = fresh.conversion.as_dict()
    assert record["p"] == pytest.approx(0.999) and record["allowance"] == 8 and fresh.allowance == 8
    assert result.calibration["sha256"] == calib.sha256 and result.p_search == "given"
    with pytest.raises(InvalidArgumentError, match="gamma=5"):
        zoo.create_model("spicalib_yolov3_tiny", **TINY, gamma=3).load_state_dict(snn.state_dict())


def test_the_shipped_snn_loads_with_its_converted_state():
    snn = zoo.create_model("spicalib_yolov3_tiny.shapes", pretrained=True)
    record = snn.conversion.as_dict()
    assert (snn.T, snn.D, snn.allowance) == (256, 5, 128) and record["p"] == pytest.approx(0.999)
    scales = [float(m.scale) for m in snn.modules() if hasattr(m, "scale") and m.scale.dim() == 0]
    assert len(scales) == 11 and all(s > 0 for s in scales) and len(set(scales)) > 1


def test_accuracy_vs_T_gives_one_row_per_T_and_energy_grows_with_T():
    ann, _ = _trained_like_ann()
    snn, _ = convert(ann, calibration_list(ann, 4, image_size=64), p=0.999, T_design=8)
    track = make_track("synthetic-shapes", snn, num_samples=3, image_size=64)
    result = accuracy_vs_T(snn, track, steps=(2, 4, 8), batch_size=2, ann_map50=0.5)
    curve = result["curve"]
    assert [row["T"] for row in curve] == [2, 4, 8] and result["samples"] == 3
    assert all(0 <= row["map50"] <= 1 for row in curve)
    assert curve[0]["energy_mj"] < curve[1]["energy_mj"] < curve[2]["energy_mj"]
    assert curve[2]["macs"] == pytest.approx(4 * curve[0]["macs"]) and curve[0]["acs"] > 0
    assert steps_to_reach([{"T": 8, "map50": 0.6}, {"T": 16, "map50": 0.9}], 0.85) == 16
    assert steps_to_reach([{"T": 8, "map50": 0.6}], 0.85) is None


def test_percentile_is_braincogs_sorted_index_definition():
    values = torch.arange(1000.0).flip(0)
    assert percentile(values, 0.99) == 989.0 and percentile(values, 1.0) == 999.0
    with pytest.raises(InvalidArgumentError):
        percentile(values, 0.0)


def test_p_is_found_by_bayesian_optimisation_or_a_clear_error(monkeypatch):
    pytest.importorskip("bayes_opt")
    best, trace = search_p(lambda p: (p - 0.985) ** 2, init_points=3, n_iter=8)
    assert len(trace) == 11 and abs(best - 0.985) < 0.01 and 0.95 <= best <= 1.0
    monkeypatch.setitem(sys.modules, "bayes_opt", None)
    with pytest.raises(MissingDependencyError, match="snn-det-zoo\\[spicalib\\]"):
        search_p(lambda p: p)


def test_bad_conversion_settings_are_refused():
    ann = zoo.create_model("yolov3_tiny_relu", **TINY)
    with pytest.raises(InvalidArgumentError):
        calibration_list(ann, 0)
    with pytest.raises(InvalidArgumentError):
        convert(ann, CalibrationList(torch.rand(1, 3, 64, 64), "x", "train", 0, (0,), ""), p=1.5)
    with pytest.raises(InvalidArgumentError):
        zoo.create_model("spicalib_yolov3_tiny", **TINY, pool="average")
    with pytest.raises(InvalidArgumentError):
        zoo.create_model("spicalib_yolov3_tiny", **TINY).load_ann(
            zoo.create_model("yolov3_tiny_relu", **{**TINY, "num_classes": 3}))


def test_yolov3_tiny_relu_has_the_darknet_layouts_parameter_count():
    # Counted by hand from yolov3-tiny.cfg: 11 conv + BN layers (weights and two affine numbers per channel)
    # and the two 1x1 heads with biases: 8,852,366 with 80 classes, 8,713,766 with VOC's 20.
    with torch.device("meta"):
        for classes, expected in ((80, 8_852_366), (20, 8_713_766)):
            model = zoo.create_model("yolov3_tiny_relu", num_classes=classes, class_names=None)
            assert sum(p.numel() for p in model.parameters()) == expected
        snn = zoo.create_model("spicalib_yolov3_tiny", num_classes=80, class_names="coco80")
    assert sum(p.numel() for p in snn.parameters()) == 8_852_366 - (16 + 32 + 64 + 128 + 256 + 512 + 1024 + 256 + 512
                                                                    + 128 + 256)  # one number less per BN channel
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()) == 6


def test_weights_are_named_by_tag_when_the_card_has_no_default():
    from snn_det_zoo.errors import UnknownModelError

    with pytest.raises(UnknownModelError, match=r"yolov3_tiny_relu\.shapes"):
        zoo.create_model("yolov3_tiny_relu", pretrained=True)
    model = zoo.create_model("yolov3_tiny_relu.shapes", pretrained=True)
    assert model.width_multiple == 0.25 and model.num_classes == 5 and model.transform.img_size == (128, 128)


def test_cli_curve_rows_give_the_leaderboard_its_accuracy_against_T_under_the_ann(tmp_path, capsys):
    from snn_det_zoo.bench.rows import read_rows, results_path
    from snn_det_zoo.cli import main
    from snn_det_zoo.leaderboard import Leaderboard, load_rows

    results = tmp_path / "results"
    argv = ["curve", "spicalib_yolov3_tiny.shapes", "--num-samples", "2", "--steps", "2", "4", "--results",
            str(results), "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "yolov3_tiny_relu.shapes (ANN)" in out and "95% of the ANN's mAP50" in out
    rows = read_rows(results_path("synthetic-shapes", "coco", results))
    assert [(r["model"], r["T"]) for r in rows] == [("yolov3_tiny_relu", "1"), ("spicalib_yolov3_tiny", "2"),
                                                    ("spicalib_yolov3_tiny", "4")]
    assert all(r["samples"] == "2" and r["weights_sha256"] for r in rows)
    assert "one simulation to T=4, snapshot at T=2" in rows[1]["notes"]
    assert float(rows[2]["energy_mj"]) > float(rows[1]["energy_mj"]) > 0  # twice the steps, about twice the ACs
    board = Leaderboard.from_rows(load_rows(results, include_cards=False))
    (curves,) = board.curves().values()
    assert [T for T, _, _ in curves["spicalib_yolov3_tiny.shapes"]] == [2, 4]
    assert board.ann_ap("synthetic-shapes", "coco", "spicalib_yolov3_tiny.shapes") == (
        "yolov3_tiny_relu.shapes", float(rows[0]["AP"]))
    assert board.plot_curves()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["curve", "yolov3_tiny_relu.shapes", "--no-save"]) == 2  # an ANN has no curve
    assert "for a converted model with weights" in capsys.readouterr().err


def test_cli_ablation_prints_every_step_at_every_T(tmp_path, capsys):
    import csv

    from snn_det_zoo.bench.ablation import ABLATION_ROWS
    from snn_det_zoo.cli import main

    out = tmp_path / "ablation.csv"
    argv = ["ablation", "yolov3_tiny_relu.shapes", "--num-samples", "2", "--steps", "2", "--calibration-images", "2",
            "--p", "0.99", "--csv", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert all(f"\n{row} " in printed for row in ABLATION_ROWS)
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["row"] for r in rows] == list(ABLATION_ROWS) and {r["T"] for r in rows} == {"2"}
    assert float(rows[-1]["p"]) == pytest.approx(0.99) and float(rows[0]["p"]) == pytest.approx(0.999)
