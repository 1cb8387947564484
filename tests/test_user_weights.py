"""The user's own weights under tags of their own: import-weights arch.mytag FILE (safetensors or a plain state
dict), checked strictly, cached with a card.json marking them as the user's, listed and loaded by name.

Every test has its own weights cache (conftest's autouse fixture points SNN_DET_ZOO_HOME into tmp_path).
"""

from __future__ import annotations

import json
import shlex

import pytest
import torch
from safetensors.torch import save_file

import snn_det_zoo as zoo
from snn_det_zoo import hub
from snn_det_zoo.cli import main
from snn_det_zoo.errors import (
    CheckpointFormatError,
    HashMismatchError,
    InvalidArgumentError,
    KeyMapError,
    UnknownModelError,
    WeightsNotFoundError,
)
from snn_det_zoo.port import import_weights
from snn_det_zoo.registry import user_weights

TINY = "spikeyolo_tiny"


def trained(name: str = TINY, seed: int = 0, **overrides) -> torch.nn.Module:
    """The model as its card builds it, with weights no fresh build has."""
    torch.manual_seed(seed)
    model = zoo.create_model(name, **overrides)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor))
    return model


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def mytag(tmp_path):
    """spikeyolo_tiny.mytag imported from a safetensors file; returns (the source model, the file)."""
    source = trained()
    path = tmp_path / "my run" / "best.safetensors"  # a space: the "import again" command quotes it
    path.parent.mkdir()
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    import_weights(f"{TINY}.mytag", path)
    return source, path


def test_import_then_list_and_load_by_name(tmp_path, monkeypatch, capsys):
    source = trained()
    path = tmp_path / "best.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    assert main(["import-weights", f"{TINY}.mytag", str(path)]) == 0
    assert f"imported {TINY}.mytag" in capsys.readouterr().out

    card = hub.read_cached_card(TINY, "mytag")
    assert (card["kind"], card["source"], card["source_sha256"]) == ("user", str(path.resolve()),
                                                                     hub.sha256_file(path))
    assert card["date"] and card["name"] == f"{TINY}.mytag" and card["model_args"] == {}
    assert f"{TINY}.mytag" in zoo.list_models(pretrained=True)
    assert f"{TINY}.mytag" not in zoo.list_models()  # architectures only
    assert zoo.list_models("spikeyolo_tiny.my*", pretrained=True) == [f"{TINY}.mytag"]
    assert main(["list", "--pretrained"]) == 0
    listed = capsys.readouterr().out.split()
    assert f"{TINY}.mytag" in listed and "spikeyolo_s.coco_official" in listed
    assert zoo.model_info(f"{TINY}.mytag")["user_weights"]["source_sha256"] == card["source_sha256"]

    monkeypatch.setenv("SNN_DET_ZOO_OFFLINE", "1")  # from the cache alone
    loaded = zoo.create_model(f"{TINY}.mytag", pretrained=True)
    assert same_weights(loaded, source) and loaded.weights_tag == "mytag" and loaded.num_classes == 5


def test_a_plain_state_dict_file_is_accepted(tmp_path):
    source = trained("ems_yolo_res10_tiny")
    path = tmp_path / "last.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)  # DDP-wrapped
    import_weights("ems_yolo_res10_tiny.run-2", path)
    assert same_weights(zoo.create_model("ems_yolo_res10_tiny.run-2", pretrained=True), source)


def test_shapes_are_checked_strictly_against_the_architecture(tmp_path):
    path = tmp_path / "three.safetensors"
    source = trained(num_classes=3)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    with pytest.raises(KeyMapError, match=r"shape mismatches .*in the weights file") as info:
        import_weights(f"{TINY}.three", path)
    assert f"(for {TINY}.three: the model {TINY} builds)" in str(info.value)
    assert hub.read_cached_card(TINY, "three") is None and f"{TINY}.three" not in zoo.list_models(pretrained=True)

    # Trained with other builder arguments: they are stored with the weights and build the model again.
    import_weights(f"{TINY}.three", path, model_args={"num_classes": 3})
    loaded = zoo.create_model(f"{TINY}.three", pretrained=True)
    assert loaded.num_classes == 3 and same_weights(loaded, source)
    assert main(["import-weights", f"{TINY}.three-cli", str(path), "--model-arg", "num_classes=3"]) == 0
    assert hub.read_cached_card(TINY, "three-cli")["model_args"] == {"num_classes": 3}
    assert same_weights(zoo.create_model(f"{TINY}.three-cli", pretrained=True), source)

    extra = {**trained().state_dict(), "head.extra": torch.zeros(1)}
    save_file({k: v.contiguous() for k, v in extra.items()}, str(tmp_path / "extra.safetensors"))
    with pytest.raises(KeyMapError, match=r"unexpected keys \(not in the model\) \(1\): head.extra"):
        import_weights(f"{TINY}.extra", tmp_path / "extra.safetensors")


def test_only_safetensors_or_a_plain_state_dict_under_a_tag_of_ones_own(tmp_path):
    torch.save(trained(), tmp_path / "model.pt")  # a pickled module, like the authors' checkpoints
    with pytest.raises(CheckpointFormatError, match="must be a safetensors file or a plain state dict.*"
                       r"spikeyolo_s\.coco_official") as info:
        import_weights("spikeyolo_s.mine", tmp_path / "model.pt")
    assert "torch.load(weights_only=True)" in str(info.value)
    with pytest.raises(WeightsNotFoundError, match="weights file not found"):
        import_weights(f"{TINY}.mine", tmp_path / "nothing.safetensors")


@pytest.mark.parametrize("tag", ["my.tag", "-x", "a b", "é", "x" * 65])
def test_tag_names_are_a_safe_pattern(mytag, tag):
    _, path = mytag
    with pytest.raises(InvalidArgumentError, match="letters, digits, '_' and '-'"):
        import_weights(f"{TINY}.{tag}", path)


def test_a_card_tag_is_never_the_users(tmp_path, mytag):
    _, path = mytag
    # import-weights of a card's tag takes the card's entry (an authors' pickle), never the user's route.
    with pytest.raises(CheckpointFormatError):
        import_weights("spikeyolo_s.coco_official", path)
    assert hub.read_cached_card("spikeyolo_s", "coco_official") is None
    with pytest.raises(InvalidArgumentError, match="model_args are for tags of your own"):
        import_weights("spikeyolo_s.coco_official", path, model_args={"num_classes": 3})

    # A user's entry where the card now has a tag of that name (imported before an upgrade): not listed as the
    # user's, never loaded for the card's weights.
    hub.save_weights("spikeyolo_s", "coco_official", {"w": torch.zeros(1)},
                     {"kind": "user", "source": str(path), "source_sha256": hub.sha256_file(path)})
    assert zoo.list_models(pretrained=True).count("spikeyolo_s.coco_official") == 1
    assert "spikeyolo_s.coco_official" not in user_weights() and f"{TINY}.mytag" in user_weights()
    entry = zoo.model_info("spikeyolo_s")["weights"]["coco_official"]
    with pytest.raises(WeightsNotFoundError, match=r"holds your own weights imported as spikeyolo_s\.coco_official"):
        hub.cached_weights("spikeyolo_s", "coco_official", entry)
    assert "user_weights" not in zoo.model_info("spikeyolo_s.coco_official")


def test_unknown_tags_keep_the_error_with_suggestions(mytag):
    with pytest.raises(UnknownModelError, match=rf"invalid weights tag 'mytga' for '{TINY}'; valid tags: .*your "
                       r"own: mytag; did you mean 'mytag'\?"):
        zoo.create_model(f"{TINY}.mytga", pretrained=True)
    with pytest.raises(UnknownModelError, match=r"invalid weights tag 'imagenet'.*coco_official"):
        zoo.model_info("spikeyolo_s.imagenet")
    with pytest.raises(UnknownModelError, match="invalid weights tag 'mytag' for 'spikeyolo_n'"):
        zoo.create_model("spikeyolo_n.mytag")  # the tag is spikeyolo_tiny's, not every model's


def test_a_corrupt_entry_says_to_import_again_and_stays_listed(mytag, monkeypatch):
    source, path = mytag
    monkeypatch.setenv("SNN_DET_ZOO_OFFLINE", "1")
    again = f"import them again: snn-det-zoo import-weights {TINY}.mytag {shlex.quote(str(path.resolve()))}"
    card = hub.read_cached_card(TINY, "mytag")
    cached = hub.weights_dir(TINY, "mytag") / card["file"]
    data = cached.read_bytes()

    cached.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(HashMismatchError, match="are corrupt") as info:
        zoo.create_model(f"{TINY}.mytag", pretrained=True)
    assert f"{cached} has sha256 " in str(info.value) and f"card.json says {card['sha256']}" in str(info.value)
    assert str(info.value).endswith(again)
    assert cached.exists() and f"{TINY}.mytag" in zoo.list_models(pretrained=True)  # nothing removed

    cached.unlink()
    with pytest.raises(WeightsNotFoundError, match="is missing") as info:
        zoo.create_model(f"{TINY}.mytag", pretrained=True)
    assert str(info.value).endswith(again)

    card_file = hub.weights_dir(TINY, "mytag") / "card.json"
    card_file.write_text("{not json")
    with pytest.raises(CheckpointFormatError, match="corrupt cache record.*import the weights again: snn-det-zoo "
                       rf"import-weights {TINY}\.mytag PATH"):
        zoo.create_model(f"{TINY}.mytag", pretrained=True)
    assert f"{TINY}.mytag" not in zoo.list_models(pretrained=True)  # listing goes on without it

    import_weights(f"{TINY}.mytag", path)  # importing again repairs the entry
    assert same_weights(zoo.create_model(f"{TINY}.mytag", pretrained=True), source)
    assert json.loads(card_file.read_text())["kind"] == "user"


def test_importing_again_replaces_the_weights(tmp_path, mytag):
    newer = trained(seed=1)
    path = tmp_path / "newer.pt"
    torch.save(newer.state_dict(), path)
    import_weights(f"{TINY}.mytag", path)
    assert same_weights(zoo.create_model(f"{TINY}.mytag", pretrained=True), newer)
    assert hub.read_cached_card(TINY, "mytag")["source"] == str(path.resolve())
    assert len(list(hub.weights_dir(TINY, "mytag").glob("*.safetensors"))) == 1
