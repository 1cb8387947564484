"""Registry and model cards: names, tags, listing, errors, the catalog against the builders, packaging."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

import snn_det_zoo as zoo
from snn_det_zoo import _cards, registry
from snn_det_zoo.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent


def test_every_card_variant_has_a_builder_and_every_builder_a_card():
    cards = set(_cards.variant_cards())
    builders = set(zoo.list_models())
    assert cards == builders, {"cards without builder": cards - builders, "builders without card": builders - cards}
    for name in builders:
        assert registry.family_of(name) == _cards.variant_cards()[name].family


def test_list_models_patterns_natural_order_and_pretrained():
    assert zoo.list_models("spikeyolo_*") == ["spikeyolo_l", "spikeyolo_m", "spikeyolo_n", "spikeyolo_s",
                                              "spikeyolo_s_gen1", "spikeyolo_tiny"]
    ems = zoo.list_models("ems_yolo_*res*", exclude=["*resnet*", "*tiny"])
    assert ems == ["ems_yolo_cfg_res18_sew", "ems_yolo_res10", "ems_yolo_res18", "ems_yolo_res34"]  # 10 before 18
    tagged = zoo.list_models(pretrained=True)
    assert "spikeyolo_s.coco_official" in tagged and all("." in n for n in tagged)
    assert zoo.list_models(["spikeyolo_n", "ems_yolo_res10"]) == ["ems_yolo_res10", "spikeyolo_n"]


def test_unknown_names_suggest_the_closest():
    with pytest.raises(ValueError, match="did you mean 'spikeyolo_s'"):
        zoo.create_model("spikeyolo_ss")
    with pytest.raises(ValueError, match=r"invalid weights tag 'imagenet'.*coco_official"):
        zoo.model_info("spikeyolo_s.imagenet")
    with pytest.raises(ValueError, match="looks like a path"):
        zoo.create_model("weights/best.pt")


def test_duplicate_registration_is_refused():
    def spikeyolo_n():  # same name as a registered builder
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="already registered"):
        zoo.register_model(spikeyolo_n)


def test_model_info_merges_family_and_variant():
    info = zoo.model_info("spikeyolo_s_gen1")
    assert info["family"] == "spikeyolo" and info["defaults"]["T"] == 2 and info["defaults"]["num_classes"] == 2
    assert info["paper"]["arxiv"] and info["origin"]["repo"].startswith("https://github.com/")
    assert info["num_params"] == _cards.variant_cards()["spikeyolo_s_gen1"].data["num_params"]


def test_create_model_overrides_the_card_defaults():
    model = zoo.create_model("spikeyolo_n", num_classes=5, img_size=64)
    assert model.num_classes == 5 and model.T == 1 and model.D == 4
    assert model.model_name == "spikeyolo_n" and model.weights_tag is None


def test_pretrained_without_cached_weights_says_how_to_import(monkeypatch):
    monkeypatch.setenv("SNN_DET_ZOO_OFFLINE", "1")
    with pytest.raises(Exception, match="import-weights"):
        zoo.create_model("spikeyolo_s.coco_official", pretrained=True)


def _card(tmp_path, **variant_fields):
    variant = {"description": "x", "num_params": 1, "defaults": {}, **variant_fields}
    return {"family": "f", "title": "t", "paper": {"title": "p", "authors": "a", "venue": "v"},
            "origin": {"repo": "r", "commit": "c", "license": "l"}, "variants": {"m": variant}}


@pytest.mark.parametrize("fields,match", [
    ({"num_param": 3}, "unknown keys"),
    ({"weights": {"w": {"source": "ftp://x", "sha256": None, "format": "yolov5-pickle", "license": "l",
                        "origin": "o", "categories": "c"}}}, "source"),
    ({"weights": {"w": {"source": "https://x", "sha256": "abc", "format": "safetensors", "license": "l",
                        "origin": "o", "categories": "c"}}}, "sha256"),
    ({"metrics": [{"dataset": "d", "protocol": "p", "source": "blog", "citation": "c", "confidence": "V",
                   "values": {"AP": 1.0}}]}, "source"),
    ({"default_tag": "missing"}, "default_tag"),
])
def test_card_schema_rejects_bad_entries(tmp_path, fields, match):
    with pytest.raises(_cards.CardError, match=match):
        _cards.validate_card("card.yaml", _card(tmp_path, **fields))


def test_shipped_cards_are_valid_yaml_and_closed_schema():
    for path in sorted((ROOT / "models").glob("*.yaml")):
        _cards.validate_card(str(path), yaml.safe_load(path.read_text()))


def test_cli_list_and_info(capsys):
    assert cli_main(["list", "spikeyolo_s*", "--names"]) == 0
    assert capsys.readouterr().out.split() == ["spikeyolo_s", "spikeyolo_s_gen1"]
    assert cli_main(["info", "ems_yolo_cfg_resnet34_cat"]) == 0
    assert '"num_params": 25449022' in capsys.readouterr().out
    assert cli_main(["info", "nope"]) == 2


@pytest.mark.slow
def test_wheel_carries_the_catalog_and_the_kernel_source(tmp_path):
    """The installed package (not only a checkout) finds the cards and the CUDA source."""
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for card in (ROOT / "models").glob("*.yaml"):
        assert f"snn_det_zoo/model_cards/{card.name}" in names
    assert "snn_det_zoo/neurons/_ilif_kernel.cu" in names
    for weights in (ROOT / "models" / "weights").glob("*.safetensors"):  # the shipped weights too
        assert f"snn_det_zoo/model_cards/weights/{weights.name}" in names
    for module in (ROOT / "snn_det_zoo").rglob("*.py"):  # every module of the checkout ships
        assert module.relative_to(ROOT).as_posix() in names, module
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                           str(wheel)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    probe = ("import hashlib, snn_det_zoo, snn_det_zoo._cards as c; "
             "print(snn_det_zoo.__file__); print(len(c.variant_cards()), len(snn_det_zoo.list_models())); "
             "print(sorted(hashlib.sha256(c.catalog_file(e['source'][8:]).read_bytes()).hexdigest() "
             "for v in c.variant_cards().values() for e in v.data.get('weights', {}).values() "
             "if e['source'].startswith('package:')))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": ""},
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    location, counts, shipped = proc.stdout.split("\n")[:3]
    assert location.startswith(str(site))  # the installed copy, not the checkout
    cards, models = map(int, counts.split())
    assert cards == models == len(zoo.list_models())
    cards_say = sorted(e["sha256"] for n in zoo.list_models() for e in zoo.model_info(n)["weights"].values()
                       if e["source"].startswith("package:"))
    assert cards_say and shipped == str(cards_say)  # the installed files are the ones the cards name


def test_model_info_is_a_copy():
    info = zoo.model_info("spikeyolo_n")
    info["defaults"]["num_classes"] = 7
    info["weights"]["mine"] = {}
    assert zoo.model_info("spikeyolo_n")["defaults"]["num_classes"] == 80
    assert "mine" not in zoo.model_info("spikeyolo_n")["weights"]
    with torch.device("meta"):
        assert zoo.create_model("spikeyolo_n").num_classes == 80


def test_importing_the_package_and_listing_models_needs_no_torch():
    code = ("import sys, snn_det_zoo as zoo; names = zoo.list_models(); info = zoo.model_info('spikeyolo_s'); "
            "assert names and info['num_params']; assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1000:]
