"""SpikeYOLO against golden outputs of the authors' own code (BICLab/SpikeYOLO @ 309ef5e).

The fixtures are written by tests/data/make_spikeyolo_golden.py, which runs the authors' COCO model (their
``mem_update`` neuron, T=1) and Gen1 model (their modified SpikingJelly 0.0.0.0.12 ``MultiStepLIFNode``, T=2)
at a tiny width with randomised weights and BatchNorm statistics, so that neurons emit all levels 0..4.
Our re-implementation loads their state_dict key for key and replays the same forwards: a training-mode
forward (batch statistics, running statistics updated with momentum 0.03), then an eval-mode forward.

The op order is the authors' (unfused RepConv/SepRepConv, BN(0) padding, ``[T*B, ...]`` flattening, membrane
shortcuts, mean over T in the head) and the neurons are exact re-statements of theirs. On the machine that
wrote the fixtures (torch 2.14.1, CPU) the head maps and gradients are bitwise equal (``torch.equal``). The
tolerances below only absorb last-bit differences of float convolution kernels on other CPUs: any real
difference (one flipped integer spike, BN eps 1e-5 instead of 1e-3, momentum 0.1 instead of 0.03, a weight
off by 0.01) moves the maps by 0.5 to 3, four orders of magnitude above them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, safe_open

import snn_det_zoo.archs.spikeyolo as spikeyolo

DATA = Path(__file__).parent / "data"
VARIANTS = ("coco", "gen1")
MAP_TOL = {"rtol": 1e-5, "atol": 1e-4}  # float-kernel noise only; see the module docstring


def _load_fixture(variant: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    path = DATA / f"spikeyolo_golden_{variant}.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    return meta, load_file(str(path))


def _our_model(meta: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> spikeyolo.SpikeYOLO:
    """Ours at the fixture's tiny scale: the same channel rules as n/s/m/l, with the fixture's multiples."""
    scale = (float(meta["depth_multiple"]), float(meta["width_multiple"]), 1024, int(meta["layer25_mlp_ratio"]))
    monkeypatch.setitem(spikeyolo._SCALES, "golden", scale)
    return spikeyolo.SpikeYOLO("golden", num_classes=int(meta["num_classes"]), T=int(meta["T"]),
                               neuron=meta["variant"])


def _state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("state."):]: v.float() if v.is_floating_point() else v
            for k, v in tensors.items() if k.startswith("state.")}


def _our_input(meta: dict[str, str], tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    images = tensors["input"].float()
    # The authors' Gen1 MS_GetT takes [B, T, C, H, W] and transposes; ours takes [T, B, C, H, W].
    return images.transpose(0, 1).contiguous() if meta["input_layout"] == "BTCHW" else images


@pytest.mark.parametrize("variant", VARIANTS)
def test_fixture_is_the_variant_it_claims(variant, monkeypatch):
    """Keys and shapes match ours 1:1, the parameter count is the authors', every block type is present."""
    meta, tensors = _load_fixture(variant)
    model = _our_model(meta, monkeypatch)
    theirs = {k: tuple(v.shape) for k, v in _state(tensors).items()}
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(theirs) ^ set(ours)) == []
    assert theirs == ours
    assert sum(p.numel() for p in model.parameters()) == int(meta["num_params"])
    authors_modules = dict(item.split(":") for item in meta["modules"].split(","))
    for block in ("MS_DownSampling", "MS_AllConvBlock", "MS_ConvBlock", "SepConv", "RepConv", "SepRepConv",
                  "BNAndPadLayer", "MS_StandardConv", "SpikeSPPF", "SpikeConv", "SpikeConvWithoutBN",
                  "SpikeDetect", "Upsample", "Concat", "MS_GetT"):
        assert int(authors_modules.get(block, 0)) >= 1, f"the fixture model has no {block}"
    # Layers 4 and 6 repeat, so nn.Sequential indices are exercised; neurons: the authors' count less the
    # unused SpikeDFL.lif, which ours leaves out.
    assert any(k.startswith("model.4.1.") for k in theirs) and any(k.startswith("model.6.2.") for k in theirs)
    ours_neurons = sum(isinstance(m, spikeyolo.ILIFNode) for m in model.modules())
    assert ours_neurons == int(meta["num_neurons"]) - 1


@pytest.mark.parametrize("variant", VARIANTS)
def test_outputs_equal_the_authors_model(variant, monkeypatch):
    """Training-mode maps, first-layer gradients, then eval-mode maps and boxes equal the authors'."""
    meta, tensors = _load_fixture(variant)
    model = _our_model(meta, monkeypatch)
    model.load_state_dict(_state(tensors), strict=True)
    images = _our_input(meta, tensors)
    model.train()
    train_maps = model(images)
    sum(m.square().mean() for m in train_maps).backward()  # the loss the fixture script used
    model.eval()
    with torch.no_grad():
        eval_maps = model(images)
    for mode, maps in (("train", train_maps), ("eval", eval_maps)):
        assert len(maps) == 3
        for level, out in enumerate(maps):
            torch.testing.assert_close(out.detach(), tensors[f"{mode}.{level}"], **MAP_TOL,
                                       msg=lambda m, mode=mode, level=level: f"{variant} {mode} {level}: {m}")
    # The first layer's gradients cross every neuron's straight-through estimator and (Gen1, T=2) the
    # detached reset, so they check the whole backward pass.
    grads = {k[len("grad."):]: v for k, v in tensors.items() if k.startswith("grad.")}
    assert grads
    for name, golden in grads.items():
        torch.testing.assert_close(model.get_parameter(name).grad, golden, rtol=1e-5,
                                   atol=1e-5 * golden.abs().max().item())
    # The authors' eval output is (xywh boxes in pixels, class sigmoid) over all anchors; ours decodes the
    # same maps to xyxy. The box conversion is a different (but exact-in-real-arithmetic) float path.
    boxes, scores = model.decode(eval_maps)
    decoded = tensors["eval.decoded"]
    x1y1, x2y2 = boxes.chunk(2, -1)
    xywh = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), -1)
    torch.testing.assert_close(xywh.transpose(1, 2), decoded[:, :4], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(scores.transpose(1, 2), decoded[:, 4:], rtol=1e-6, atol=1e-6)


def test_golden_gen1_is_not_the_coco_neuron(monkeypatch):
    """The Gen1 fixture (T=2) discriminates the two neurons: with COCO dynamics the outputs change."""
    meta, tensors = _load_fixture("gen1")
    model = _our_model({**meta, "variant": "coco"}, monkeypatch)
    model.load_state_dict(_state(tensors), strict=True)
    out = model(_our_input(meta, tensors))
    assert (out[0].detach() - tensors["train.0"]).abs().max() > 100 * MAP_TOL["atol"]

