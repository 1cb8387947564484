"""snn_det_zoo.port: safe reading of the authors' pickled checkpoints, variant detection, key maps, import.

The tests write checkpoints in the authors' exact formats themselves: our real models, with every class
disguised under the authors' module paths (``ultralytics.nn.tasks.DetectionModel``,
``models.yolo.Model``...) through fake modules that exist in ``sys.modules`` only while ``torch.save`` runs.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import types
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from torch import nn

import snn_det_zoo.archs.ems_yolo
import snn_det_zoo.archs.spikeyolo  # noqa: F401  (registers the family)
from snn_det_zoo import create_model
from snn_det_zoo.cli import main
from snn_det_zoo.hub import HashMismatchError, sha256_file
from snn_det_zoo.port import (
    CheckpointFormatError,
    KeyMapError,
    UnsafeCheckpointError,
    convert_file,
    load_checkpoint,
    map_state_dict,
)
from snn_det_zoo.port.ems_yolo import import_ems_yolo
from snn_det_zoo.port.spikeyolo import import_spikeyolo
from snn_det_zoo.port.unpickler import read_torch_pickle

# ---------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def fake_modules(classes: dict[str, type]) -> Iterator[None]:
    """Register ``{'pkg.mod.Name': cls}`` as importable globals for pickling; remove them afterwards."""
    added = []
    for qualified, cls in classes.items():
        modname, name = qualified.rsplit(".", 1)
        parts = modname.split(".")
        for i in range(1, len(parts) + 1):
            sub = ".".join(parts[:i])
            if sub not in sys.modules:
                sys.modules[sub] = types.ModuleType(sub)
                added.append(sub)
        setattr(sys.modules[modname], name, cls)
    try:
        yield
    finally:
        for sub in added:
            del sys.modules[sub]


def disguise(root: nn.Module, path_for: Callable[[type], str | None], neuron_path: str | None = None,
             made: dict[str, type] | None = None) -> dict[str, type]:
    """Re-class every submodule whose class ``path_for`` names as a subclass living at that path.

    With ``neuron_path``, our neuron modules are replaced by key-less stand-ins of the authors' neuron
    class (their neurons hold no tensors; ours carry objects of our own that the authors' files never do).
    """
    made = {} if made is None else made

    def fake_class(target: str, base: type) -> type:
        if target not in made:
            modname, name = target.rsplit(".", 1)
            made[target] = type(name, (base,), {"__module__": modname, "__qualname__": name})
        return made[target]

    for module in list(root.modules()):
        for name, child in list(module._modules.items()):
            if neuron_path and child is not None and type(child).__name__ in NEURON_CLASSES:
                stand_in = fake_class(neuron_path, nn.Module)()
                stand_in.tau, stand_in.v_threshold = 2.0, 1.0  # plain attributes, as the authors' have
                module._modules[name] = stand_in
    for module in root.modules():
        target = path_for(type(module))
        if target is not None and type(module).__module__.startswith("snn_det_zoo."):
            module.__class__ = fake_class(target, type(module))
    return made


NEURON_CLASSES = {"ILIFNode", "EMSLIFNode", "EMSSiLUIntegrator"}


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine terms, so a mapping error cannot hide behind defaults."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
                module.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
    return model


def fp16_rounded(model: nn.Module) -> nn.Module:
    """The model as the authors' FP16 checkpoint stores it, back in FP32."""
    return model.half().float()


# SpikeYOLO's snn_yolov8.yaml as Ultralytics stores it in model.yaml: [from, repeats, module, args] rows.
def spikeyolo_yaml(scale: str, nc: int, layer25: list[int], gen1_scales: bool = False) -> dict:
    rows = [[-1, 1, "MS_GetT", [3, 1]], [-1, 1, "MS_DownSampling", [128, 7, 4, 2, True]],
            [-1, 3, "MS_AllConvBlock", [4, 7]], [-1, 1, "MS_DownSampling", [256, 3, 2, 1, False]],
            [-1, 6, "MS_AllConvBlock", [4, 7]], [-1, 1, "MS_DownSampling", [512, 3, 2, 1, False]],
            [-1, 9, "MS_ConvBlock", [3, 7]], [-1, 1, "MS_DownSampling", [1024, 3, 2, 1, False]],
            [-1, 3, "MS_ConvBlock", [2, 7]], [-1, 1, "SpikeSPPF", [1024, 5]],
            [-1, 1, "MS_StandardConv", [512, 1, 1]], [-1, 1, "nn.Upsample", [None, "(1,2,2)", "nearest"]],
            [-1, 1, "MS_ConvBlock", [3, 7]], [[-1, 6], 1, "Concat", [2]],
            [-1, 1, "MS_StandardConv", [256, 1, 1]], [-1, 1, "nn.Upsample", [None, "(1,2,2)", "nearest"]],
            [-1, 1, "MS_AllConvBlock", [4, 7]], [[-1, 4], 1, "Concat", [2]],
            [-1, 1, "MS_StandardConv", [256, 1, 1]], [-1, 1, "MS_AllConvBlock", [4, 7]],
            [-1, 1, "MS_StandardConv", [256, 3, 2]], [[-1, 14], 1, "Concat", [2]],
            [-1, 1, "MS_ConvBlock", [3, 7]], [-1, 1, "MS_StandardConv", [512, 3, 2]],
            [[-1, 10], 1, "Concat", [2]], [-1, 1, "MS_ConvBlock", layer25],
            [[19, 22, 25], 1, "SpikeDetect", ["nc"]]]
    stock = {"n": [0.33, 0.25, 1024], "s": [0.33, 0.50, 1024], "m": [0.67, 0.75, 768]}
    coco = {"n": [0.33, 0.375, 1024], "s": [0.33, 0.5, 1024], "m": [0.5, 0.625, 7024], "l": [0.5, 0.75, 1024]}
    scales = stock if gen1_scales else coco
    return {"nc": nc, "scales": scales, "backbone": rows[:10], "head": rows[10:], "scale": scale,
            "yaml_file": f"snn_yolov8{scale}.yaml", "ch": 3}


def _spikeyolo_path(cls: type) -> str | None:
    if cls.__module__.startswith("snn_det_zoo."):
        return f"ultralytics.nn.modules.yolo_spikformer.{cls.__name__}"
    return None  # torch.nn and spikingjelly classes keep their real paths


def save_ultralytics_checkpoint(path, model: nn.Module, yaml_cfg: dict, neuron_path: str,
                                ema: nn.Module | None = None) -> None:
    """An Ultralytics 8.0.197 ``save_model`` dict: a pickled FP16 DetectionModel (and optionally an EMA)."""
    made = {"ultralytics.nn.tasks.DetectionModel": type("DetectionModel", (nn.Module,),
                                                        {"__module__": "ultralytics.nn.tasks"})}

    def detection_model(src: nn.Module) -> nn.Module:
        wrapper = nn.Module()
        wrapper.model = nn.Sequential(*copy.deepcopy(src).model)  # the authors' nn.Sequential of layers
        wrapper.yaml, wrapper.names = yaml_cfg, {i: f"class{i}" for i in range(yaml_cfg["nc"])}
        wrapper.stride = torch.tensor([8.0, 16.0, 32.0])
        disguise(wrapper.model, _spikeyolo_path, neuron_path, made)
        wrapper.__class__ = made["ultralytics.nn.tasks.DetectionModel"]
        return wrapper.half()

    net = detection_model(model)
    ckpt = {"epoch": 41, "best_fitness": np.float64(0.61), "model": net, "ema": None, "updates": 1234,
            "optimizer": None, "train_args": {"model": yaml_cfg["yaml_file"], "imgsz": 640, "batch": 16},
            "date": "2024-03-01T12:00:00", "version": "8.0.197"}
    if ema is not None:
        ckpt["ema"] = detection_model(ema)
    with fake_modules(made):
        torch.save(ckpt, path)


def assert_same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    a.eval(), b.eval()
    with torch.no_grad():
        for ya, yb in zip(a(x), b(x), strict=True):
            assert torch.equal(ya, yb)


# ------------------------------------------------------------------------------------ SpikeYOLO import


def test_spikeyolo_checkpoint_imports_and_reproduces_outputs(tmp_path):
    torch.manual_seed(0)
    spikeyolo_n = randomize_(create_model("spikeyolo_n", num_classes=3)).eval()
    path = tmp_path / "best.pt"
    save_ultralytics_checkpoint(path, spikeyolo_n, spikeyolo_yaml("n", 3, [1, 7]),
                                "ultralytics.nn.modules.yolo_spikformer.mem_update")
    assert "ultralytics" not in sys.modules  # nothing of the fake package survives the save
    state_dict, card = import_spikeyolo(path)
    assert card["variant"] == "spikeyolo_n" and card["nc"] == 3 and card["epoch"] == 41
    assert card["weights_entry"] == "model" and card["source_dtypes"] == ["torch.float16"]
    assert card["model_class"] == "ultralytics.nn.tasks.DetectionModel"
    reference = fp16_rounded(spikeyolo_n)  # in place: the checkpoint is written already
    assert list(state_dict) == list(reference.state_dict())
    for key, value in reference.state_dict().items():
        assert state_dict[key].dtype == value.dtype and torch.equal(state_dict[key], value), key
    loaded = create_model("spikeyolo_n", num_classes=3)
    loaded.load_state_dict(state_dict, strict=True)
    assert_same_outputs(loaded, reference, torch.rand(1, 3, 64, 64))


def tiny_spiking_net(seed: int = 0) -> nn.Module:
    """A few layers with a neuron: enough for the tests that never reach the key map."""
    from snn_det_zoo.neurons import ILIFNode

    torch.manual_seed(seed)
    net = nn.Module()
    net.model = nn.ModuleList([nn.Conv2d(3, 4, 3), nn.Sequential(ILIFNode(), nn.BatchNorm2d(4))])
    return randomize_(net, seed)


def test_ema_is_preferred_over_model(tmp_path):
    other = tiny_spiking_net(seed=1)
    path = tmp_path / "last.pt"
    save_ultralytics_checkpoint(path, tiny_spiking_net(), spikeyolo_yaml("n", 3, [1, 7]),
                                "ultralytics.nn.modules.yolo_spikformer.mem_update", ema=other)
    ckpt = load_checkpoint(path)
    assert ckpt.which == "ema"
    expected = fp16_rounded(copy.deepcopy(other)).state_dict()
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in expected.items())


def test_spikeyolo_gen1_code_is_recognised_by_its_spikingjelly_neuron(tmp_path):
    path = tmp_path / "gen1.pt"
    save_ultralytics_checkpoint(path, tiny_spiking_net(), spikeyolo_yaml("n", 3, [1, 7]),
                                "spikingjelly.clock_driven.neuron.MultiStepLIFNode")
    with pytest.raises(ValueError, match=r"no registered SpikeYOLO variant.*Gen1"):
        import_spikeyolo(path)  # Gen1 code exists only at scale s


def test_spikeyolo_layer25_mismatch_is_refused(tmp_path):
    path = tmp_path / "best.pt"
    save_ultralytics_checkpoint(path, tiny_spiking_net(), spikeyolo_yaml("n", 3, [2, 7]),
                                "ultralytics.nn.modules.yolo_spikformer.mem_update")
    with pytest.raises(ValueError, match=r"layer 25 \[2, 7\]"):
        import_spikeyolo(path)


def test_spikeyolo_variant_table_reads_scale_and_layer25():
    from snn_det_zoo.port.checkpoint import AuthorCheckpoint
    from snn_det_zoo.port.spikeyolo import spikeyolo_variant

    def variant(cfg, classes=()):
        ckpt = AuthorCheckpoint(path="x.pt", state_dict={}, source_dtypes=set(), which="model",
                                model_class="", yaml=cfg, classes=set(classes))
        return spikeyolo_variant(ckpt)[0]

    assert variant(spikeyolo_yaml("s", 80, [1, 7])) == "spikeyolo_s"
    assert variant(spikeyolo_yaml("m", 80, [2, 7])) == "spikeyolo_m"
    assert variant(spikeyolo_yaml("l", 80, [2, 7])) == "spikeyolo_l"
    assert variant(spikeyolo_yaml("s", 2, [1, 7], gen1_scales=True)) == "spikeyolo_s_gen1"
    assert variant(spikeyolo_yaml("s", 2, [1, 7]), ["spikingjelly.clock_driven.neuron.MultiStepLIFNode"]) \
        == "spikeyolo_s_gen1"
    with pytest.raises(ValueError, match="no registered SpikeYOLO variant"):
        variant(spikeyolo_yaml("l", 80, [1, 7]))  # the unedited yaml with 69M weights (issue #76)


# ------------------------------------------------------------------------------------- EMS-YOLO import


def _ems_yaml(config: str, nc: int, anchors: tuple) -> dict:
    from snn_det_zoo.archs.ems_yolo import CONFIGS

    authors_args = {"Sample": [None, 2, "nearest"], "Concat": [2], "Detect": ["nc", "anchors"]}
    rows = [[list(f) if isinstance(f, tuple) else f, n, m, authors_args.get(m, list(a))]
            for f, n, m, a in CONFIGS[config]]
    split = next(i for i, row in enumerate(rows) if row[2] == "Sample") - 3
    return {"nc": nc, "depth_multiple": 1.0, "width_multiple": 1.0, "anchors": [list(a) for a in anchors],
            "backbone": rows[:split], "head": rows[split:]}


def save_yolov5_checkpoint(path, model: nn.Module, yaml_cfg: dict) -> None:
    """YOLOv5 ``strip_optimizer`` output: ``model`` is the pickled FP16 EMA ``models.yolo.Model``."""
    net = nn.Module()
    net.model = nn.Sequential(*copy.deepcopy(model).model)
    net.yaml, net.names, net.hyp = yaml_cfg, [f"c{i}" for i in range(yaml_cfg["nc"])], {"lr0": 0.01}
    net.stride = torch.tensor([16.0, 32.0])

    def path_for(cls: type) -> str | None:
        if cls.__module__.startswith("snn_det_zoo."):
            return f"models.{'yolo' if 'Detect' in cls.__name__ else 'common'}.{cls.__name__}"
        return None

    made = disguise(net.model, path_for, "models.common.mem_update")
    net.__class__ = type("Model", (nn.Module,), {"__module__": "models.yolo"})
    made["models.yolo.Model"] = type(net)
    ckpt = {"epoch": -1, "best_fitness": np.array([0.3]), "training_results": None, "model": net.half(),
            "ema": None, "updates": None, "optimizer": None, "wandb_id": None, "date": "2023-05-01"}
    with fake_modules(made):
        torch.save(ckpt, path)


def test_ems_yolo_checkpoint_imports_and_reproduces_outputs(tmp_path):
    from snn_det_zoo.archs.ems_yolo import GEN1_ANCHORS

    torch.manual_seed(0)
    source = randomize_(create_model("ems_yolo_res10", T=2)).eval()
    path = tmp_path / "best.pt"
    save_yolov5_checkpoint(path, source, _ems_yaml("res10-ee", 2, GEN1_ANCHORS))
    state_dict, card = import_ems_yolo(path)
    assert (card["variant"], card["config"], card["anchors"], card["nc"]) == ("ems_yolo_res10", "res10-ee",
                                                                            "gen1", 2)
    loaded = create_model("ems_yolo_res10", T=2)
    loaded.load_state_dict(state_dict, strict=True)
    assert_same_outputs(loaded, fp16_rounded(source), torch.rand(2, 1, 3, 64, 64))  # Gen1: event frames


def test_cli_import_weights_then_pretrained_offline(tmp_path, monkeypatch, capsys):
    """The user's flow: the released resnet34-cat pickle -> import-weights -> create_model(pretrained)."""
    from snn_det_zoo.archs.ems_yolo import COCO_ANCHORS

    torch.manual_seed(0)
    source = randomize_(create_model("ems_yolo_cfg_resnet34_cat", T=1)).eval()
    path = tmp_path / "best.pt"
    save_yolov5_checkpoint(path, source, _ems_yaml("resnet34-cat", 80, COCO_ANCHORS))
    assert main(["import-weights", "ems_yolo_cfg_resnet34_cat.coco_official", str(path)]) == 0
    assert "imported ems_yolo_cfg_resnet34_cat.coco_official" in capsys.readouterr().out
    monkeypatch.setenv("SNN_DET_ZOO_OFFLINE", "1")
    loaded = create_model("ems_yolo_cfg_resnet34_cat.coco_official", pretrained=True, T=1)
    assert_same_outputs(loaded, fp16_rounded(source), torch.rand(1, 3, 64, 64))
    from snn_det_zoo.hub import read_cached_card

    card = read_cached_card("ems_yolo_cfg_resnet34_cat", "coco_official")
    assert card["source_sha256"] == sha256_file(path) and card["variant"] == "ems_yolo_cfg_resnet34_cat"
    assert card["checkpoint"]["config"] == "resnet34-cat"


def test_import_of_the_wrong_variant_names_the_right_one(tmp_path):
    from snn_det_zoo.archs.ems_yolo import COCO_ANCHORS

    path = tmp_path / "best.pt"
    save_yolov5_checkpoint(path, create_model("ems_yolo_res10", num_classes=80),
                           _ems_yaml("res10-ee", 80, COCO_ANCHORS))
    entry = {"source": "gdrive:x", "sha256": None, "format": "yolov5-pickle"}
    with pytest.raises(ValueError, match="holds a ems_yolo_res10 checkpoint, not ems_yolo_cfg_resnet34_cat"):
        convert_file("ems_yolo_cfg_resnet34_cat", "coco_official", path, entry)
    with pytest.raises(HashMismatchError, match=f"expected {'0' * 64}, got {sha256_file(path)}"):
        convert_file("ems_yolo_cfg_resnet34_cat", "coco_official", path, {**entry, "sha256": "0" * 64})


# ------------------------------------------------------------------------------ restricted unpickling


class _CallsGlobal:
    def __init__(self, func: Callable, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("func, name", [(os.system, f"{os.system.__module__}.system"),
                                        (eval, "builtins.eval"),
                                        (__import__("subprocess").Popen, "subprocess.Popen")])
def test_malicious_pickle_is_refused_naming_the_global(tmp_path, func, name):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": _CallsGlobal(func, f"touch {marker}"), "epoch": 1}, path)
    with pytest.raises(UnsafeCheckpointError, match=name.replace(".", r"\.")):
        load_checkpoint(path)
    assert not marker.exists()


def test_legacy_format_is_read(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).half()
    path = tmp_path / "legacy.pt"
    torch.save({"model": model, "epoch": 3, "view": torch.arange(10.0)[2:7]}, path,
               _use_new_zipfile_serialization=False)
    ckpt = load_checkpoint(path)
    assert ckpt.epoch == 3 and ckpt.extra["view"] == [2.0, 3.0, 4.0, 5.0, 6.0]
    for key, value in model.float().state_dict().items():
        assert torch.equal(ckpt.state_dict[key], value), key


def test_non_persistent_buffers_and_none_entries_are_skipped(tmp_path):
    model = nn.Sequential(nn.Linear(2, 2, bias=False))
    model[0].register_buffer("scratch", torch.ones(1), persistent=False)
    path = tmp_path / "m.pt"
    torch.save({"model": model}, path)
    assert list(load_checkpoint(path).state_dict) == list(model.state_dict()) == ["0.weight"]


def test_truncated_and_garbage_files_raise_clear_errors(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"model": nn.Linear(4, 4)}, good)
    data = good.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointFormatError, match=r"cut\.pt.*truncated or corrupt"):
        load_checkpoint(cut)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 not a checkpoint" * 10)
    with pytest.raises(CheckpointFormatError, match=r"garbage\.pt"):
        load_checkpoint(garbage)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointFormatError, match="empty file"):
        read_torch_pickle(empty)
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_plain_state_dict_is_not_taken_for_a_model(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save({"model": nn.Linear(2, 2).state_dict()}, path)
    with pytest.raises(CheckpointFormatError, match="not a pickled model"):
        load_checkpoint(path)


def test_key_map_lists_both_sides_and_shapes():
    source = {"a.weight": torch.zeros(2), "b.weight": torch.zeros(3), "old.c": torch.zeros(1)}
    target = {"a.weight": torch.Size([2]), "b.weight": torch.Size([4]), "new.c": torch.Size([1]),
              "d.bias": torch.Size([5])}
    with pytest.raises(KeyMapError) as info:
        map_state_dict(source, target)
    message = str(info.value)
    assert "old.c" in message and "d.bias" in message and "new.c" in message
    assert "b.weight: (3,) in the checkpoint, (4,) in the model" in message
    renamed = map_state_dict({**source, "b.weight": torch.zeros(4), "d.bias": torch.ones(5)}, target,
                             renames=[(r"^old\.", "new.")])
    assert list(renamed) == list(target)
