"""SpikeYOLO, what is specific to the family: the authors' state_dict layout and settings, the static-input
repetition, re-parameterisation, fusion and spike-driven inference equal to integer inference. (The contract
every detector follows, parameter counts from the card among it, is tests/test_detector_contract.py.)"""

import copy

import pytest
import torch
from torch import nn

import snn_det_zoo as zoo
import snn_det_zoo.archs.spikeyolo
from snn_det_zoo.archs.spikeyolo import BNAndPadLayer, RepConv, SeparableRepConv, SepRepConv, SpikeYOLO
from snn_det_zoo.errors import InvalidArgumentError
from snn_det_zoo.neurons import ILIFNode
from snn_det_zoo.nn.spike_conv import SpikeInputConv2d

NAMES = zoo.list_models("spikeyolo*")
SIZE = 64
SMALL = 32  # the equality tests run in float64 at the smallest size the strides allow

def _lively(model: SpikeYOLO, x: torch.Tensor, seed: int = 0) -> SpikeYOLO:
    """Random BN affine parameters and running statistics taken from ``x``, so that neurons fire 0..D.

    At PyTorch's default init almost every I-LIF stays silent, which would make equality tests vacuous.
    """
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 1.0)
            bn.bias.copy_(torch.rand(bn.num_features, generator=g))
            bn.momentum = 1.0
        model.train()
        model(x)
    for bn in bns:
        bn.momentum = 0.03
    return model.eval()


def _record_neuron_inputs(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], list]:
    """The pre-neuron (membrane input) values of every I-LIF, and the head outputs."""
    inputs: dict[str, torch.Tensor] = {}

    def keep(name: str):
        return lambda module, args, out: inputs.__setitem__(name, args[0].detach())

    neurons = [(name, m) for name, m in model.named_modules() if isinstance(m, ILIFNode)]
    hooks = [m.register_forward_hook(keep(name)) for name, m in neurons]
    try:
        out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return inputs, out


def _spikes(pre: torch.Tensor, levels: int = 4) -> torch.Tensor:
    return pre.clamp(0, levels).round()


def test_state_dict_layout_matches_the_authors_keys():
    with torch.device("meta"):
        sd = zoo.create_model("spikeyolo_s").state_dict()
        sd_m = zoo.create_model("spikeyolo_m").state_dict()
    assert len(sd) == 755 and sum(k.endswith("num_batches_tracked") for k in sd) == 123
    expected_shapes = {
        "model.1.encode_conv.weight": (64, 3, 7, 7),
        "model.1.encode_conv.bias": (64,),
        "model.2.Conv.pwconv1.weight": (128, 64, 1, 1),
        "model.2.Conv.dwconv2.weight": (128, 1, 7, 7),
        "model.2.Conv.pwconv3.body.0.bn.running_var": (128,),
        "model.2.Conv.pwconv3.body.1.0.weight": (64, 128, 1, 1),
        "model.2.Conv.pwconv3.body.1.1.weight": (64, 1, 3, 3),
        "model.2.conv1.conv.weight": (256, 64, 3, 3),
        "model.6.0.conv1.body.0.weight": (256, 256, 1, 1),
        "model.6.0.conv1.body.1.bn.weight": (256,),
        "model.6.0.conv1.body.2.0.weight": (256, 1, 3, 3),
        "model.6.0.conv1.body.2.1.weight": (768, 256, 1, 1),
        "model.6.0.conv1.body.2.2.running_mean": (768,),
        "model.6.2.bn2.weight": (256,),
        "model.9.cv1.conv.weight": (256, 512, 1, 1),
        "model.9.cv2.conv.weight": (512, 1024, 1, 1),
        "model.10.conv.weight": (256, 512, 1, 1),
        "model.25.conv1.body.2.1.weight": (512, 512, 1, 1),  # MLP ratio 1 at s
        "model.26.cv2.0.0.conv.weight": (64, 128, 3, 3),
        "model.26.cv2.2.2.conv.bias": (64,),
        "model.26.cv3.0.2.conv.weight": (80, 128, 1, 1),
        "model.26.dfl.conv.weight": (1, 16, 1, 1),
    }
    for key, shape in expected_shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert "model.8.Conv.lif1" not in str(list(sd))  # neurons carry no keys
    assert "model.2.1.Conv.pwconv1.weight" in sd_m and "model.8.1.bn2.weight" in sd_m
    assert tuple(sd_m["model.25.conv1.body.2.1.weight"].shape) == (1280, 640, 1, 1)  # ratio 2 at m


def test_batchnorm_neurons_and_head_follow_the_authors_settings():
    model = zoo.create_model("spikeyolo_s", img_size=SIZE)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 123 and all(bn.eps == 1e-3 and bn.momentum == 0.03 for bn in bns)
    neurons = [m for m in model.modules() if isinstance(m, ILIFNode)]
    assert len(neurons) == 88  # the authors' 89 less the never-called SpikeDFL.lif
    assert all(n.max_level == 4 and n.tau == pytest.approx(4 / 3) and not n.decay_input for n in neurons)
    assert all(n.params.detach_reset for n in neurons)
    head = model.model[26]
    # box bias 1; class bias log(5 / 80 / (640 / s)^2): -11.54 at stride 8, -8.76 at 32 (reference §2.3)
    for box, cls, class_bias in zip(head.cv2, head.cv3, (-11.5366, -10.1503, -8.7640), strict=True):
        assert torch.all(box[-1].conv.bias == 1.0)
        assert torch.allclose(cls[-1].conv.bias, torch.tensor(class_bias), atol=1e-4)
    assert torch.equal(head.dfl.conv.weight.flatten(), torch.arange(16.0))
    assert not head.dfl.conv.weight.requires_grad
    gen1 = zoo.create_model("spikeyolo_s_gen1", img_size=SIZE, D=2)
    g1 = [m for m in gen1.modules() if isinstance(m, ILIFNode)]
    assert all(n.tau == 2.0 and n.decay_input and n.max_level == 2 for n in g1)


def test_card_defaults_and_overrides_reach_the_model():
    model = zoo.create_model("spikeyolo_s_gen1", img_size=SIZE)
    assert (model.T, model.D, model.num_classes) == (2, 4, 2)
    model = zoo.create_model("spikeyolo_n", num_classes=5, T=2, D=3, img_size=SIZE)
    assert (model.T, model.D, model.num_classes) == (2, 3, 5)
    assert model.model[26].cv3[0][-1].conv.out_channels == 5
    # The variant's neuron is a default (the shipped event-trained spikeyolo_tiny takes the Gen1 neuron).
    assert zoo.create_model("spikeyolo_tiny", neuron="gen1", img_size=SIZE).neuron_kind == "gen1"
    assert zoo.create_model("spikeyolo_tiny", img_size=SIZE).neuron_kind == "coco"
    with pytest.raises(InvalidArgumentError, match="neuron"):
        zoo.create_model("spikeyolo_tiny", neuron="lif", img_size=SIZE)


def test_static_input_is_repeated_over_time_and_state_is_reset():
    torch.manual_seed(0)
    model = zoo.create_model("spikeyolo_n", T=2, img_size=SIZE)
    x = torch.rand(1, 3, SIZE, SIZE)
    _lively(model, x)
    with torch.no_grad():
        static = model(x)
        events = model(x.unsqueeze(0).repeat(2, 1, 1, 1, 1))
        other = model(torch.rand(1, 3, SIZE, SIZE))  # a different input in between must not leak state
        again = model(x)
    assert all(torch.equal(a, b) for a, b in zip(static, events, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(static, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(static, other, strict=True))


def test_bn_and_pad_equals_zero_padding_before_bn():
    layer = BNAndPadLayer(1, 4)
    with torch.no_grad():
        layer.bn.running_mean.uniform_(-1, 1)
        layer.bn.running_var.uniform_(0.5, 2)
        layer.bn.weight.uniform_(0.5, 2)
        layer.bn.bias.uniform_(-1, 1)
    layer.eval()
    x = torch.randint(0, 5, (2, 4, 6, 6)).float()
    expected = layer.bn(nn.functional.pad(x, [1] * 4))
    assert torch.allclose(layer(x), expected, atol=1e-6)
    layer.train()  # the border still uses the running statistics (BN(0) of the running stats)
    border = layer(x)[:, :, 0, :]
    assert torch.allclose(border, layer.pad_value().view(1, -1, 1).expand_as(border))


@pytest.mark.parametrize("block", [RepConv, SepRepConv])
def test_reparameterised_conv_folds_into_one_conv(block):
    torch.manual_seed(0)
    module = block(8, 16)
    with torch.no_grad():
        for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 2)
            bn.bias.uniform_(-1, 1)
    module.eval()
    x = torch.randint(0, 5, (2, 8, 10, 10)).float()
    fused = module.as_conv()
    assert fused.kernel_size == (3, 3) and fused.padding == (1, 1)
    assert torch.allclose(module(x), fused(x), atol=1e-5)


def test_fused_model_equals_the_unfused_model():
    torch.manual_seed(0)
    model = zoo.create_model("spikeyolo_n", T=2, img_size=SMALL).double()
    x = torch.rand(2, 3, SMALL, SMALL, dtype=torch.float64)
    _lively(model, x)
    with pytest.raises(InvalidArgumentError, match="eval"):
        copy.deepcopy(model).train().fuse()
    fused = copy.deepcopy(model).fuse()
    assert not any(isinstance(m, nn.BatchNorm2d | RepConv | SepRepConv) for m in fused.modules())
    pre, out = _record_neuron_inputs(model, x)
    pre_fused, out_fused = _record_neuron_inputs(fused, x)
    spikes = torch.cat([_spikes(v).flatten() for v in pre.values()])
    assert 0.2 < (spikes > 0).float().mean() < 0.9 and (spikes == 4).any()  # neurons really fire
    mismatch = sum((_spikes(pre[k]) != _spikes(pre_fused[k])).sum().item() for k in pre) / spikes.numel()
    assert mismatch == 0.0
    assert all(torch.allclose(pre[k], pre_fused[k], atol=1e-9) for k in pre)
    assert all(torch.allclose(a, b, atol=1e-9) for a, b in zip(out, out_fused, strict=True))


def test_spike_driven_inference_gives_the_integer_models_detections():
    torch.manual_seed(1)
    model = zoo.create_model("spikeyolo_n", num_classes=4, img_size=SMALL, score_thresh=0.05).double()
    with torch.no_grad():  # class scores around 0.5 rather than the 1e-5 prior, so NMS has work to do
        for cls in model.model[26].cv3:
            cls[-1].conv.bias.zero_()
    x = torch.rand(2, 3, SMALL, SMALL, dtype=torch.float64)
    _lively(model, x, seed=1)
    driven = copy.deepcopy(model).to_spike_driven()
    slot_convs = [m for m in driven.modules() if isinstance(m, SpikeInputConv2d)]
    # every I-LIF output is read by exactly one convolution, and each runs on binary slots
    assert len(slot_convs) == sum(isinstance(m, ILIFNode) for m in driven.modules())
    assert all(m.spike_driven_levels == 4 for m in slot_convs)
    with torch.no_grad():
        out, out_driven = model(x), driven(x)
    assert all(torch.allclose(a, b, atol=1e-9) for a, b in zip(out, out_driven, strict=True))
    images = [x[0]]
    dets, dets_driven = model.predict(images), driven.predict(images)
    assert sum(len(d["scores"]) for d in dets) > 0
    for a, b in zip(dets, dets_driven, strict=True):
        assert torch.equal(a["labels"], b["labels"])
        assert torch.allclose(a["boxes"], b["boxes"], atol=1e-6)
        assert torch.allclose(a["scores"], b["scores"], atol=1e-9)
    back = driven.to_spike_driven(False)
    assert all(m.spike_driven_levels is None for m in back.modules() if isinstance(m, SpikeInputConv2d))


def test_family_settings_scale_neuron_and_names_are_refused_when_unknown():
    with pytest.raises(InvalidArgumentError, match="scale"):
        SpikeYOLO("x")
    with pytest.raises(InvalidArgumentError, match="neuron"):
        SpikeYOLO("n", neuron="lif")


def _conv_macs(model: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def count(conv, _inputs, out):
        nonlocal total
        total += out.numel() * conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


def test_fuse_keeps_reparameterised_convs_separable_and_never_adds_macs():
    torch.manual_seed(2)
    model = zoo.create_model("spikeyolo_n", T=1, img_size=SMALL).double()
    x = torch.rand(2, 3, SMALL, SMALL, dtype=torch.float64)
    _lively(model, x, seed=2).eval()
    blocks = [m for m in model.modules() if isinstance(m, RepConv | SepRepConv)]
    for block in blocks:  # the separable chain is the dense conv the authors fold into
        dense, chain = block.as_conv(), block.as_separable().as_conv()
        assert torch.allclose(dense.weight, chain.weight, atol=1e-12)
        assert torch.allclose(dense.bias, chain.bias, atol=1e-12)
    fused = copy.deepcopy(model).fuse()
    assert sum(isinstance(m, SeparableRepConv) for m in fused.modules()) == len(blocks)
    unfused_macs, fused_macs = _conv_macs(model, x), _conv_macs(fused, x)
    dense = copy.deepcopy(fused).to_spike_driven().to_spike_driven(False)
    assert not any(isinstance(m, SeparableRepConv) for m in dense.modules())
    assert fused_macs <= unfused_macs < _conv_macs(dense, x)
