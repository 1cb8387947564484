"""The benchmark on built-in synthetic data and tiny real-format files: tracks, the loop, metrics, energy, rows,
the CLI, a 2-process DDP run."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from snn_det_zoo import _cards
from snn_det_zoo.archs.spikeyolo import SpikeYOLO
from snn_det_zoo.bench import evaluate
from snn_det_zoo.bench.rows import read_rows, results_path
from snn_det_zoo.bench.tracks import CocoTrack, Gen1Track, SyntheticTrack, make_track
from snn_det_zoo.cli import main
from snn_det_zoo.constants import SHAPE_CLASSES
from snn_det_zoo.errors import InvalidArgumentError


class _Oracle(nn.Module):
    """Predicts each image's ground truth (looked up by the image's pixels), through one real conv."""

    T, D = 1, None

    def __init__(self, track: SyntheticTrack) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        self.truth = {track[i][0].sum().item(): track.data.target(i) for i in range(len(track))}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images)

    def predict(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        self(torch.stack(images))
        out = []
        for image in images:
            target = self.truth[image.sum().item()]
            out.append({"boxes": target["boxes"], "labels": target["labels"],
                        "scores": torch.ones(len(target["labels"]))})
        return out


def test_oracle_scores_ap_100_and_its_stem_is_counted_as_macs():
    data = SyntheticTrack("synthetic-shapes", 6, image_size=32, seed=5)
    out = evaluate(_Oracle(data), data, batch_size=4, progress=False, timing_s=0.05)
    assert out["stats"]["AP"] == pytest.approx(1.0) and out["samples"] == 6
    (layer,) = out["energy"].layers
    assert layer.input_kind == "real" and layer.mac_ops == 32 * 32 * 3  # 1x1 conv 3->1 per image
    assert out["images_per_s"] > 0 and out["latency_ms"] > 0 and out["batch"] == 4


def test_limit_evaluates_only_the_first_samples():
    data = SyntheticTrack("synthetic-shapes", 6, image_size=32, seed=5)
    out = evaluate(_Oracle(data), data, batch_size=4, limit=3, progress=False, timing_s=0.05)
    assert out["samples"] == 3 and out["energy"].samples == 3
    assert out["stats"]["AP"] == pytest.approx(1.0)  # the ground truth is cut to the same 3 images


def test_spikeyolo_unfused_counts_the_authors_layers_spike_inputs_everywhere_but_the_stem():
    torch.manual_seed(0)
    model = SpikeYOLO("n", num_classes=3, img_size=32)
    data = make_track("synthetic-shapes", model, num_samples=2, image_size=32)
    out = evaluate(model, data, batch_size=2, progress=False, timing_s=0.05)
    kinds = {layer.name: layer.input_kind for layer in out["energy"].layers}
    # 88 spike-input convs (the rows of the authors' power_cal.xlsx), the real-valued stem, and the DFL
    # integral of the box decoder (a fixed conv on softmax outputs).
    assert sum(k == "spike" for k in kinds.values()) == 88
    assert {n for n, k in kinds.items() if k != "spike"} == {"model.1.encode_conv", "model.26.dfl.conv"}
    assert (out["T"], out["D"]) == (1, 4)
    assert set(out["stats"]) >= {"AP", "AP50", "ARl"}


def test_event_frames_run_with_time_first_batches():
    torch.manual_seed(0)
    model = SpikeYOLO("n", num_classes=3, img_size=32, T=2, neuron="gen1", modality="events")
    data = make_track("synthetic-events", model, num_samples=3, image_size=32)
    out = evaluate(model, data, batch_size=2, progress=False, timing_s=0.05, fuse=False)
    assert out["energy"].samples == 3 and out["T"] == 2
    stem = out["energy"].layers[0]
    assert stem.input_kind == "real"  # grey 0.5 frames are not spike counts


def test_bad_evaluate_arguments():
    data = SyntheticTrack("synthetic-shapes", 2, image_size=32)
    with pytest.raises(InvalidArgumentError, match="precision"):
        evaluate(_Oracle(data), data, precision="int4")
    with pytest.raises(InvalidArgumentError, match="limit"):
        evaluate(_Oracle(data), data, limit=0)
    with pytest.raises(InvalidArgumentError, match="score"):
        evaluate(_Oracle(data), [(torch.zeros(3, 8, 8), {})])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="unknown synthetic set"):
        SyntheticTrack("coco")
    with pytest.raises(InvalidArgumentError, match="--coco-root"):
        make_track("coco", _Oracle(data))


def test_cli_bench_appends_a_measured_row_and_a_per_layer_energy_csv(tmp_path, monkeypatch, capsys):
    family = {"title": "t", "paper": {"title": "t", "authors": "a", "venue": "v"},
              "origin": {"repo": "r", "commit": "c", "license": "MIT"}}
    card = _cards.VariantCard(name="spikeyolo_n", family="spikeyolo", card_path="x.yaml",
                              data={"description": "d", "num_params": 1, "defaults": {"T": 1, "D": 4}},
                              family_data=family)
    monkeypatch.setattr(_cards, "variant_cards", lambda: {"spikeyolo_n": card})
    monkeypatch.setattr("snn_det_zoo.registry.variant_cards", lambda: {"spikeyolo_n": card})
    args = ["bench", "spikeyolo_n", "--num-samples", "2", "--batch-size", "2", "--image-size", "32",
            "--results", str(tmp_path), "--quiet", "--device", "cpu", "--fuse"]
    assert main(args) == 0
    (row,) = read_rows(results_path("synthetic-shapes", "coco", tmp_path))
    assert (row["model"], row["family"], row["source"], row["T"], row["D"]) == ("spikeyolo_n", "spikeyolo",
                                                                               "measured", "1", "4")
    params = sum(p.numel() for p in SpikeYOLO("n", len(SHAPE_CLASSES)).parameters())
    assert float(row["params_m"]) == pytest.approx(params / 1e6, rel=1e-5)
    assert float(row["energy_mj"]) > 0 and row["energy_constants"] == "E_AC=0.9pJ E_MAC=4.6pJ (45nm)"
    assert "fused" in row["notes"] and "randomly initialised" in row["notes"] and row["torch"] == torch.__version__
    assert (tmp_path / "energy" / "spikeyolo_n-synthetic-shapes-coco.csv").exists()
    out = capsys.readouterr().out
    assert "mAP50-95 %" in out and "spikeyolo_n" in out.splitlines()[1]  # a table with units


def _ddp_worker(rank: int, world: int, port: int, queue) -> None:  # pragma: no cover (runs in a child)
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        data = SyntheticTrack("synthetic-shapes", 5, image_size=32, seed=9)
        out = evaluate(_Oracle(data), data, batch_size=2, progress=False, timing_s=0.05)
        queue.put((rank, out["stats"], out["energy"].samples if out["energy"] else None))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_ranks_gather_on_rank_0():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.start_processes(_ddp_worker, args=(2, port, queue), nprocs=2, start_method="spawn")
    reports = [queue.get(timeout=60) for _ in range(2)]
    results = {rank: (stats, samples) for rank, stats, samples in reports}
    stats, samples = results[0]
    assert stats["AP"] == pytest.approx(1.0) and samples == 5  # 3 + 2 images from the two shards
    assert results[1] == (None, None)


# ---------------------------------------------------------------- real-format datasets (tiny files)

def _coco_files(tmp_path, coco_case):
    annotations = [
        {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 5, 20, 30], "area": 600, "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 90, "bbox": [40, 10, 30, 25], "area": 750, "iscrowd": 0},
        {"id": 3, "image_id": 9, "category_id": 13, "bbox": [2, 4, 12, 20], "area": 240, "iscrowd": 0},
    ]
    return coco_case(tmp_path, annotations=annotations)


def test_coco_track_scores_ground_truth_in_original_pixels_at_ap_1(tmp_path, coco_case):
    images_dir, ann_file = _coco_files(tmp_path, coco_case)
    data = CocoTrack(images_dir, ann_file)
    assert (data.name, data.split, len(data)) == ("coco-val2017", "val2017", 2)
    predictions, targets = [], []
    for i in range(len(data)):
        image, target = data[i]
        assert image.dtype == torch.uint8 and tuple(image.shape[-2:]) == target["orig_size"]
        predictions.append({"boxes": target["boxes"], "labels": target["labels"],
                            "scores": torch.ones(len(target["labels"]))})
        targets.append(target)
    assert data.score(predictions, targets)["AP"] == pytest.approx(1.0)
    predictions[0]["boxes"] = predictions[0]["boxes"] + 6  # off by 6 pixels: no longer perfect
    assert data.score(predictions, targets)["AP"] < 1.0


def test_cli_bench_on_coco_files_names_dataset_split_and_protocol(tmp_path, capsys, coco_case):
    images_dir, ann_file = _coco_files(tmp_path, coco_case)
    args = ["bench", "spikeyolo_n", "--dataset", "coco", "--coco-root", str(images_dir), "--coco-ann",
            str(ann_file), "--model-arg", "img_size=64", "--batch-size", "2", "--results", str(tmp_path / "r"),
            "--quiet", "--device", "cpu"]
    assert main(args) == 0
    (row,) = read_rows(results_path("coco-val2017", "coco", tmp_path / "r"))
    assert (row["dataset"], row["split"], row["protocol"], row["samples"]) == (
        "coco-val2017", "val2017", "coco", "2")
    assert float(row["energy_mj"]) > 0 and "fused" not in row["notes"]  # unfused by default
    assert main(["bench", "spikeyolo_n", "--dataset", "coco", "--quiet"]) == 2  # no files given
    assert "--coco-root" in capsys.readouterr().err


def test_gen1_track_protocols_differ_on_the_same_predictions(tmp_path, gen1_split):
    gen1_split(tmp_path)
    scores = {}
    for protocol in ("frames", "psee"):
        data = Gen1Track(tmp_path, protocol, representation="spikeyolo", T=2)
        predictions, targets = [], []
        for i in range(len(data)):
            frames, target = data[i]
            assert frames.shape == (2, 3, 240, 304)  # sensor pixels: the model's transform does the rest
            predictions.append({"boxes": target["boxes"], "labels": target["labels"],
                                "scores": torch.ones(len(target["labels"]))})
            targets.append(target)
        scores[protocol] = data.score(predictions, targets)["AP"]
    # The authors' targets are the frames protocol's ground truth; psee keeps the duplicate raw box of track 1.
    assert scores["frames"] == pytest.approx(1.0) and scores["psee"] < 1.0
    with pytest.raises(InvalidArgumentError, match="psee or frames"):
        Gen1Track(tmp_path, "coco")


def test_cli_bench_on_gen1_files_under_each_protocol(tmp_path, gen1_split):
    gen1_split(tmp_path / "gen1")
    for protocol in ("frames", "psee"):
        args = ["bench", "spikeyolo_s_gen1", "--dataset", "gen1", "--gen1-root", str(tmp_path / "gen1"),
                "--protocol", protocol, "--model-arg", "img_size=64", "--limit", "2", "--batch-size", "2",
                "--results", str(tmp_path / "r"), "--quiet", "--device", "cpu"]
        assert main(args) == 0
        (row,) = read_rows(results_path("gen1", protocol, tmp_path / "r"))
        assert (row["dataset"], row["split"], row["protocol"], row["T"], row["samples"], row["input_size"]) == (
            "gen1", "test", protocol, "2", "2", "240x304")
    assert main(["bench", "spikeyolo_n", "--dataset", "synthetic-shapes", "--protocol", "psee",
                 "--no-save", "--quiet"]) == 2


def _without_shipped(card):
    """``card`` without its weights entries that ship in the package (and its default tag if that was one)."""
    import json

    data = json.loads(json.dumps(card.data))
    weights = {tag: e for tag, e in data.get("weights", {}).items() if not str(e["source"]).startswith("package:")}
    if weights == data.get("weights", {}):
        return card
    data["weights"] = weights
    if data.get("default_tag") not in weights:
        data.pop("default_tag", None)
    return _cards.VariantCard(name=card.name, family=card.family, card_path=card.card_path, data=data,
                              family_data=card.family_data)


def _shipped_card(monkeypatch, tmp_path) -> str:
    """A card whose ems_yolo_res10_tiny ships weights (a random model's, saved in a temporary catalog)."""
    import hashlib
    import json

    from safetensors.torch import save

    import snn_det_zoo as zoo

    real = _cards.variant_cards()["ems_yolo_res10_tiny"]
    torch.manual_seed(0)
    model = zoo.create_model("ems_yolo_res10_tiny", img_size=64)
    data = save({k: v.contiguous() for k, v in model.state_dict().items()})
    (tmp_path / "catalog" / "weights").mkdir(parents=True)
    (tmp_path / "catalog" / "weights" / "tiny.safetensors").write_bytes(data)
    entry = {"source": "package:weights/tiny.safetensors", "sha256": hashlib.sha256(data).hexdigest(),
             "format": "safetensors", "license": "MIT", "origin": "a test", "categories": "shapes",
             "dataset": "synthetic-shapes", "model_args": {"img_size": 64}}
    data_dict = json.loads(json.dumps(real.data))
    data_dict.update(weights={"shapes": entry}, default_tag="shapes")
    card = _cards.VariantCard(name=real.name, family=real.family, card_path=real.card_path, data=data_dict,
                              family_data=real.family_data)
    # Only this entry ships in the test's catalog: the real shipped entries are dropped from the other cards.
    cards = {name: _without_shipped(other) for name, other in _cards.variant_cards().items()}
    cards[real.name] = card
    monkeypatch.setattr(_cards, "variant_cards", lambda: cards)
    monkeypatch.setattr("snn_det_zoo.registry.variant_cards", lambda: cards)
    monkeypatch.setattr("snn_det_zoo.hub.catalog_file", lambda rel: tmp_path / "catalog" / rel)
    return entry["sha256"]


def test_the_main_command_measures_every_shipped_weights_entry_as_json_rows(tmp_path, monkeypatch, capsys):
    import json

    sha = _shipped_card(monkeypatch, tmp_path)
    results = tmp_path / "results"
    argv = ["bench", "--json", "--num-samples", "4", "--batch-size", "4", "--device", "cpu", "--results",
            str(results), "--seed", "3"]
    assert main(argv) == 0
    out = capsys.readouterr()
    (record,) = [json.loads(line) for line in out.out.splitlines()]
    assert list(record) == ["model", "weights", "dataset", "protocol", "T", "D", "map50", "map50_95", "energy_mj",
                            "firing_rate", "params", "images_per_s", "latency_iqr_ms", "num_samples", "img_size",
                            "seed"]
    assert (record["model"], record["weights"], record["dataset"], record["seed"]) == \
        ("ems_yolo_res10_tiny", "shapes", "synthetic-shapes", 3)
    assert 0 <= record["map50_95"] <= record["map50"] <= 1 and record["num_samples"] == 4
    assert record["params"] == _cards.variant_cards()["ems_yolo_res10_tiny"].data["num_params"]
    assert record["img_size"] == 64 and record["images_per_s"] > 0
    (row,) = read_rows(results_path("synthetic-shapes", "coco", results))
    assert row["weights_sha256"] == sha and row["split"] == "val"
    assert record["map50"] == round(float(row["AP50"]) / 100, 10)  # the row's digits, as a fraction
    assert (results / "LEADERBOARD.md").is_file() and "ems_yolo_res10_tiny" in (results / "LEADERBOARD.md").read_text()
    assert "wrote" in out.err  # the page paths go to stderr, so stdout stays JSON


def test_a_shipped_file_that_does_not_match_its_card_is_refused(tmp_path, monkeypatch):
    from snn_det_zoo.errors import HashMismatchError

    _shipped_card(monkeypatch, tmp_path)
    (tmp_path / "catalog" / "weights" / "tiny.safetensors").write_bytes(b"tampered")
    import snn_det_zoo as zoo

    monkeypatch.setenv("SNN_DET_ZOO_HOME", str(tmp_path / "home"))
    with pytest.raises(HashMismatchError, match=r"tiny\.safetensors"):
        zoo.create_model("ems_yolo_res10_tiny.shapes", pretrained=True)


def test_the_main_command_refuses_options_that_choose_one_model(tmp_path, capsys):
    for extra in (["--dataset", "coco", "--coco-root", str(tmp_path)], ["--pretrained"], ["--model-arg", "T=2"]):
        assert main(["bench", "--no-save", "--quiet", *extra]) == 2
        assert "need a MODEL" in capsys.readouterr().err


def test_the_main_command_checks_every_results_file_before_it_evaluates(tmp_path, monkeypatch):
    _shipped_card(monkeypatch, tmp_path)
    from snn_det_zoo.bench import runner

    monkeypatch.setattr(runner, "builtin_weights", lambda: [("ems_yolo_res10_tiny.shapes", "synthetic-shapes"),
                                                            ("ems_yolo_res10_tiny.shapes", "synthetic-events")])
    results = tmp_path / "results"
    results.mkdir()
    results_path("synthetic-events", "coco", results).write_text("not,the,columns\n1,2,3\n")
    evaluated = []
    monkeypatch.setattr(runner, "run", lambda *a, **k: evaluated.append(a))
    with pytest.raises(Exception, match=r"results-synthetic-events-coco\.csv"):
        runner.run_builtin(num_samples=2, results_dir=results)
    assert evaluated == [] and not results_path("synthetic-shapes", "coco", results).exists()


@pytest.mark.parametrize("pair", ["num_classes=[3", "T={"])
def test_a_model_arg_that_is_not_yaml_is_a_clear_error(pair, capsys):
    assert main(["bench", "spikeyolo_tiny", "--model-arg", pair, "--no-save", "--quiet"]) == 2
    assert f"--model-arg {pair!r}: the value is not readable as YAML" in capsys.readouterr().err


def test_a_misspelt_builder_argument_is_a_clear_error(capsys):
    # A zoo error (one line in the CLI) that is still the TypeError Python raises for an unknown keyword.
    with pytest.raises(TypeError, match=r"spikeyolo_tiny: .*unexpected keyword argument 'num_class'") as info:
        import snn_det_zoo as zoo

        zoo.create_model("spikeyolo_tiny", num_class=3)
    assert isinstance(info.value, InvalidArgumentError)
    assert main(["bench", "spikeyolo_tiny", "--model-arg", "num_class=3", "--no-save", "--quiet"]) == 2
    assert "num_class" in capsys.readouterr().err


def test_every_shipped_weights_entry_loads_offline_and_detects(monkeypatch):
    import snn_det_zoo as zoo
    from snn_det_zoo.bench.runner import builtin_weights

    monkeypatch.setenv("SNN_DET_ZOO_OFFLINE", "1")
    found = dict(builtin_weights())
    assert set(found) >= {"spikeyolo_tiny.shapes", "spikeyolo_tiny.shapes_events", "ems_yolo_res10_tiny.shapes",
                          "ems_yolo_res10_tiny.shapes_events"}
    for name, dataset in found.items():
        model = zoo.create_model(name, pretrained=True)
        arch, tag = name.split(".")
        entry = zoo.model_info(arch)["weights"][tag]
        for key, value in (entry.get("model_args") or {}).items():  # what the card says the weights need
            assert getattr(model, {"neuron": "neuron_kind"}.get(key, key)) == value, (name, key)
        track = make_track(dataset, model, split="val", num_samples=4, seed=1)
        (dets,) = model.predict([track[0][0]], score_thresh=0.25)
        assert len(dets["scores"]) > 0 and torch.isfinite(dets["boxes"]).all(), name  # trained: it finds shapes


def test_compile_times_the_compiled_network_and_restores_the_model(monkeypatch):
    data = SyntheticTrack("synthetic-shapes", 4, image_size=32, seed=5)
    model, compiled = _Oracle(data), []

    def fake_compile(fn):
        def wrapped(*args):
            compiled.append(fn)
            return fn(*args)

        return wrapped

    monkeypatch.setattr(torch, "compile", fake_compile)
    out = evaluate(model, data, batch_size=2, progress=False, timing_s=0.05, compile=True)
    assert compiled and out["stats"]["AP"] == pytest.approx(1.0)
    assert "forward" not in vars(model)  # the eager method is back
    with pytest.raises(InvalidArgumentError, match="compile"):
        evaluate(model, data, compile="yes")
