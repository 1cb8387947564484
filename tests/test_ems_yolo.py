"""EMS-YOLO, what is specific to the family: the neuron against a per-step reference, tdBN, the blocks, the
authors' state_dict layout, golden outputs of the authors' code, static and event input, YOLOv5 decoding and
the authors' evaluation settings. (The contract every detector follows is tests/test_detector_contract.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, safe_open
from spikingjelly.activation_based import functional
from torch import nn

import snn_det_zoo as zoo
import snn_det_zoo.archs.ems_yolo as ems  # registers the family
from snn_det_zoo.errors import InvalidArgumentError
from snn_det_zoo.neurons import EMSLIFNode, EMSSiLUIntegrator
from snn_det_zoo.neurons.ems_lif import ems_lif_multi_step
from snn_det_zoo.nn.anchors import anchors_in_grid_units, decode_yolov5, yolov5_detections

DATA = Path(__file__).parent / "data"
TINY = {"T": 2, "width_multiple": 0.25, "img_size": 64}


# ------------------------------------------------------------------------------------ the neuron


class _StrictSpike(torch.autograd.Function):
    """Heaviside(h > th) with the rectangular surrogate 1[|h - th| < w] / (2 w), written independently."""

    @staticmethod
    def forward(ctx, h, threshold, half_width):
        ctx.save_for_backward(h)
        ctx.threshold, ctx.half_width = threshold, half_width
        return (h > threshold).to(h.dtype)

    @staticmethod
    def backward(ctx, grad):
        (h,) = ctx.saved_tensors
        window = ((h - ctx.threshold).abs() < ctx.half_width).to(grad.dtype) / (2 * ctx.half_width)
        return grad * window, None, None


def reference_ems_lif(x_seq, v0, decay=0.25, threshold=0.5, half_width=0.5):
    """The paper's rule, step by step with autograd: V[t] = decay V[t-1] (1 - S[t-1]) + X[t]."""
    mem, spike = None, None
    spikes, post_reset = [], []
    for t, x in enumerate(x_seq):
        if t == 0:
            mem = decay * v0 + x
        else:
            mem = mem * decay * (1 - spike.detach()) + x
        spike = _StrictSpike.apply(mem, threshold, half_width)
        spikes.append(spike)
        post_reset.append(mem * (1 - spike.detach()))
    return torch.stack(spikes), torch.stack(post_reset)


def _random_input(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64) * 1.6 - 0.3
    x.view(-1)[::7] = 0.5  # exactly at the threshold: EMS-YOLO does not fire (strict >)
    x.view(-1)[3::11] = 0.0  # exactly at the surrogate window's edges (0, 1)
    x.view(-1)[5::13] = 1.0
    return x


@pytest.mark.parametrize("with_state", [False, True])
def test_fused_neuron_equals_per_step_reference_forward_and_backward(with_state):
    x = _random_input((5, 3, 4, 6))
    v0 = torch.rand(x.shape[1:], dtype=torch.float64) * 0.4 if with_state else torch.zeros(x.shape[1:],
                                                                                           dtype=torch.float64)
    w_s, w_v = torch.randn_like(x), torch.randn_like(x)

    x_ref, v0_ref = x.clone().requires_grad_(), v0.clone().requires_grad_()
    s_ref, v_ref = reference_ems_lif(x_ref, v0_ref)
    ((s_ref * w_s).sum() + (v_ref * w_v).sum() + v_ref[-1].sum()).backward()

    x_f, v0_f = x.clone().requires_grad_(), v0.clone().requires_grad_()
    s_f, v_last, v_seq = ems_lif_multi_step(x_f, v0_f, store_v_seq=True)
    ((s_f * w_s).sum() + (v_seq * w_v).sum() + v_last.sum()).backward()

    assert torch.equal(s_f, s_ref.detach())
    assert torch.equal(v_seq, v_ref.detach())
    assert 0 < s_f.mean() < 1
    torch.testing.assert_close(x_f.grad, x_ref.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(v0_f.grad, v0_ref.grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("with_state", [False, True])
def test_inference_forward_without_the_backward_code_gives_the_same_outputs(with_state):
    x = _random_input((5, 3, 4, 6))
    v0 = torch.rand(x.shape[1:], dtype=torch.float64) * 0.4 if with_state else None
    s_ref, v_ref = reference_ems_lif(x, torch.zeros(x.shape[1:], dtype=torch.float64) if v0 is None else v0)
    with torch.no_grad():
        spikes, v_last, v_seq = ems_lif_multi_step(x.clone().requires_grad_(), v0, store_v_seq=True)
    assert spikes.grad_fn is None and torch.equal(spikes, s_ref) and torch.equal(v_seq, v_ref)
    assert torch.equal(v_last, v_ref[-1])
    assert torch.equal(ems_lif_multi_step(x, v0)[0], s_ref)  # grad enabled, nothing requires it


@pytest.mark.cuda
def test_neuron_on_cuda_equals_cpu():
    x = _random_input((4, 3, 64)).float()
    x_cpu, x_gpu = x.clone().requires_grad_(), x.cuda().requires_grad_()
    s_cpu, v_cpu, _ = ems_lif_multi_step(x_cpu)
    s_gpu, v_gpu, _ = ems_lif_multi_step(x_gpu)
    (s_cpu.sum() + v_cpu.sum()).backward()
    (s_gpu.sum() + v_gpu.sum()).backward()
    assert torch.equal(s_gpu.cpu(), s_cpu)
    torch.testing.assert_close(x_gpu.grad.cpu(), x_cpu.grad)
    model = zoo.create_model("ems_yolo_res10", **TINY).cuda()
    outputs = model(torch.rand(2, 3, 64, 64, device="cuda"))
    assert all(o.is_cuda and torch.isfinite(o).all() for o in outputs)


def test_threshold_is_strict_and_reset_is_hard():
    node = EMSLIFNode()
    # 0.5 -> no spike (SpikingJelly's >= would fire); 0.125 + 0.5 -> spike, reset to 0; and again.
    assert node(torch.full((4, 1), 0.5)).flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    assert node.v.item() == 0.0


def test_surrogate_gradient_is_one_on_the_open_interval_zero_one():
    h = torch.tensor([-0.1, 0.0, 1e-6, 0.5, 0.999, 1.0, 1.2], requires_grad=True)
    spikes, _, _ = ems_lif_multi_step(h.view(1, -1))
    spikes.sum().backward()
    assert h.grad.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_neuron_state_persists_until_reset_and_single_step_matches_multi_step():
    x = _random_input((4, 2, 5)).float()
    multi = EMSLIFNode(step_mode="m")
    whole = multi(x)
    single = EMSLIFNode(step_mode="s")
    steps = torch.stack([single(xt) for xt in x])
    assert torch.equal(whole, steps)
    assert torch.equal(multi.v, single.v)
    # Two halves with state carried over equal one call over all steps.
    split = EMSLIFNode()
    assert torch.equal(torch.cat([split(x[:2]), split(x[2:])]), whole)
    functional.reset_net(split)
    assert split.v == 0.0
    assert torch.equal(split(x), whole)


def test_neuron_rejects_bad_input_and_bad_parameters():
    with pytest.raises(TypeError, match="floating-point"):
        ems_lif_multi_step(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\[T, N"):
        ems_lif_multi_step(torch.ones(3))
    node = EMSLIFNode()
    node(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="reset_net"):
        node(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="decay"):
        EMSLIFNode(decay=1.5)
    with pytest.raises(ValueError, match="v_threshold"):
        EMSLIFNode(v_threshold=0)


def test_silu_integrator_follows_the_authors_in_place_semantics():
    x = torch.randn(4, 2, 3, 5, dtype=torch.float64)
    w = torch.randn_like(x)

    # The mechanics of the authors' module: an in-place SiLU overwrites the membrane it reads.
    x_ref = x.clone().requires_grad_()
    act, mem_old, out, outs = nn.SiLU(inplace=True), None, None, []
    for t in range(x.shape[0]):
        mem = x_ref[t].clone() if t == 0 else mem_old * 0.25 * (1 - out.detach()) + x_ref[t]
        out = act(mem)
        mem_old = mem.clone()
        outs.append(out)
    ref = torch.stack(outs)
    (ref * w).sum().backward()

    x_ours = x.clone().requires_grad_()
    ours = EMSSiLUIntegrator()(x_ours)
    (ours * w).sum().backward()
    torch.testing.assert_close(ours, ref.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=0, atol=1e-12)

    # Without the in-place quirk the recurrence would differ (the trained weights expect the quirk).
    u, plain = x[0], [F.silu(x[0])]
    for t in range(1, x.shape[0]):
        u = 0.25 * u * (1 - F.silu(u)) + x[t]
        plain.append(F.silu(u))
    assert not torch.allclose(torch.stack(plain), ours.detach())


# --------------------------------------------------------------------------------- tdBN and blocks


@pytest.mark.parametrize(("alpha", "gamma"), [(1.0, 0.5), (0.2, 0.1)])
def test_tdbn_equals_batchnorm3d_over_time_batch_space(alpha, gamma):
    bn = ems.TdBN(6, alpha)
    assert torch.allclose(bn.bn.weight, torch.full((6,), gamma))
    ref = nn.BatchNorm3d(6)
    with torch.no_grad():
        ref.weight.copy_(torch.rand(6))
        ref.bias.copy_(torch.randn(6))
        bn.bn.weight.copy_(ref.weight)
        bn.bn.bias.copy_(ref.bias)
    x = torch.randn(3, 2, 6, 4, 5)  # [T, B, C, H, W]
    expected = ref(x.permute(1, 2, 0, 3, 4)).permute(2, 0, 1, 3, 4)  # the authors' [B, C, T, H, W] layout
    torch.testing.assert_close(bn(x), expected)
    torch.testing.assert_close(bn.bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.bn.running_var, ref.running_var)


def test_concat_block_rejects_a_non_widening_configuration():
    with pytest.raises(ValueError, match="widen"):
        ems.MSConcatBlock(64, 64)


# ------------------------------------------------------------------------ sizes and state_dict keys

def test_state_dict_keys_follow_the_authors_layout():
    with torch.device("meta"):  # shapes only; the anchors stay real numbers
        sd = zoo.create_model("ems_yolo_cfg_resnet34_cat").state_dict()
        gen1 = zoo.create_model("ems_yolo_res10").state_dict()
    assert len(sd) == 275  # counted on the authors' own model built from resnet34-cat.yaml
    shapes = {
        "model.0.conv.weight": (64, 3, 7, 7),
        "model.0.bn.bn.running_var": (64,),
        "model.2.1.residual_function.4.weight": (64, 64, 3, 3),
        "model.2.1.residual_function.5.bn.weight": (64,),
        "model.3.shortcut.1.weight": (64, 64, 1, 1),
        "model.3.shortcut.2.bn.bias": (64,),
        "model.1.shortcut.2.weight": (64, 64, 1, 1),
        "model.10.conv.weight": (512, 256, 3, 3),
        "model.15.m.0.weight": (255, 256, 1, 1),
        "model.15.m.1.weight": (255, 512, 1, 1),
        "model.15.anchors": (2, 3, 2),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert tuple(gen1["model.1.residual_function.1.weight"].shape) == (32, 32, 3, 3)
    assert tuple(gen1["model.1.shortcut.1.weight"].shape) == (32, 32, 1, 1)
    assert tuple(gen1["model.11.m.0.weight"].shape) == (21, 256, 1, 1)
    # Anchors in grid units (pixels / stride); Gen1's largest anchor differs from COCO's.
    assert gen1["model.11.anchors"][1, 2].tolist() == [216 / 32, 269 / 32]
    assert sd["model.15.anchors"][0, 0].tolist() == [10 / 16, 14 / 16]


def test_head_bias_prior():
    detect = zoo.create_model("ems_yolo_res10").detect
    for conv, stride in zip(detect.m, (16, 32), strict=True):
        bias = conv.bias.detach().view(3, 7)
        # PyTorch's default bias init is uniform within +-1/sqrt(fan_in); the prior shifts obj and cls.
        bound = 1 / conv.weight.shape[1] ** 0.5
        obj = torch.log(torch.tensor(8 / (640 / stride) ** 2))
        assert ((bias[:, 4] - obj).abs() <= bound + 1e-6).all()
        assert ((bias[:, 5:] - torch.log(torch.tensor(0.6 / (2 - 0.999999)))).abs() <= bound + 1e-6).all()


# ---------------------------------------------------------------- golden outputs of the authors' code


@pytest.mark.parametrize("config", ["res18-ee", "resnet34-cat"])
def test_outputs_equal_the_authors_model(config):
    """Fixtures written by tests/data/make_ems_yolo_golden.py from BICLab/EMS-YOLO @ fbfc2ca."""
    path = DATA / f"ems_yolo_golden_{config}.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    model = ems.EMSYOLO(ems.CONFIGS[config], num_classes=int(meta["num_classes"]), T=int(meta["T"]),
                        width_multiple=float(meta["width_multiple"]),
                        depth_multiple=float(meta["depth_multiple"]))
    state = {k[len("state."):]: v.float() if v.is_floating_point() else v
             for k, v in tensors.items() if k.startswith("state.")}
    model.load_state_dict(state, strict=True)
    images = tensors["input"]
    model.train()
    for level, out in enumerate(model(images)):
        torch.testing.assert_close(out, tensors[f"train.{level}"], rtol=0, atol=1e-5)
    model.eval()
    with torch.no_grad():
        raw = model(images)
    for level, out in enumerate(raw):
        torch.testing.assert_close(out, tensors[f"eval.{level}"], rtol=0, atol=1e-5)
    decoded = decode_yolov5(raw, model.detect.anchors, model.strides)
    torch.testing.assert_close(decoded, tensors["eval.decoded"], rtol=1e-5, atol=1e-4)


# -------------------------------------------------------------------------- the model contract


def test_static_input_equals_repeated_frames_and_state_is_reset_per_forward():
    model = zoo.create_model("ems_yolo_res10", **TINY, modality="image").eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        static = model(images)
        frames = model(images.unsqueeze(0).repeat(2, 1, 1, 1, 1))
        other_batch = model(torch.rand(3, 3, 96, 64))  # a new shape needs no manual reset
        assert [tuple(o.shape[:4]) for o in other_batch] == [(3, 3, 6, 4), (3, 3, 3, 2)]
        again = model(images)
    for a, b, c in zip(static, frames, again, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_event_frames_use_every_time_step():
    model = zoo.create_model("ems_yolo_res10", **TINY).eval()
    frames = torch.rand(2, 1, 3, 64, 64)
    with torch.no_grad():
        a = model(frames)
        frames[1] = torch.rand(1, 3, 64, 64)
        b = model(frames)
    assert not torch.equal(a[0], b[0])


def test_family_settings_are_refused_when_unknown():
    with pytest.raises(InvalidArgumentError, match="anchors"):
        zoo.create_model("ems_yolo_res10", anchors="voc")
    with pytest.raises(InvalidArgumentError, match="width_multiple"):
        zoo.create_model("ems_yolo_res10", width_multiple=0)


# -------------------------------------------------------------------------- decoding and predict


def test_decode_yolov5_formulas():
    anchors = anchors_in_grid_units(ems.COCO_ANCHORS, (16, 32))
    raw = [torch.zeros(1, 3, 2, 3, 7), torch.zeros(1, 3, 1, 2, 7)]
    raw[0][0, 1, 1, 2, :4] = torch.tensor([20.0, -20.0, 0.0, 20.0])  # sigmoid ~ 1, ~ 0, 0.5, ~ 1
    decoded = decode_yolov5(raw, anchors, (16, 32))
    assert decoded.shape == (1, 3 * 6 + 3 * 2, 7)
    first = decoded[0, 0]  # level 0, anchor 0, cell (0, 0), logits 0 -> sigmoid 0.5
    torch.testing.assert_close(first[:4], torch.tensor([8.0, 8.0, 10.0, 14.0]))
    torch.testing.assert_close(first[4:], torch.full((3,), 0.5))
    cell = decoded[0, 6 + 1 * 3 + 2]  # anchor 1, row 1, column 2
    torch.testing.assert_close(cell[:4], torch.tensor([(1.5 + 2) * 16, (-0.5 + 1) * 16, 23.0, 4 * 27.0]))
    boxes, scores = yolov5_detections(decoded)
    torch.testing.assert_close(boxes[0, 0], torch.tensor([3.0, 1.0, 13.0, 15.0]))
    torch.testing.assert_close(scores[0, 0], torch.full((2,), 0.25))
    with pytest.raises(ValueError, match="grow with the strides"):
        anchors_in_grid_units(ems.COCO_ANCHORS[::-1], (16, 32))


def test_predict_defaults_are_the_authors_evaluation_settings():
    model = zoo.create_model("ems_yolo_cfg_resnet34_cat", width_multiple=0.25)
    settings = (model.score_thresh, model.iou_thresh, model.max_detections, model.multi_label)
    assert settings == (0.001, 0.6, 300, True)
    assert model.T == 4 and model.strides == (16, 32) and model.transform.img_size == (640, 640)
    assert zoo.model_info("ems_yolo_res10")["defaults"]["T"] == 5


def test_card_weights_entry_of_the_released_checkpoint():
    info = zoo.model_info("ems_yolo_cfg_resnet34_cat.coco_official")
    entry = info["weights"]["coco_official"]
    assert entry["source"] == "gdrive-folder:1mry8sdED6ncqxajmQROKBECpcrmXStpB"
    assert entry["format"] == "yolov5-pickle" and entry["sha256"] is None
    assert zoo.list_models("ems_yolo*", pretrained=True) == [
        "ems_yolo_cfg_resnet34_cat.coco_official", "ems_yolo_res10_tiny.shapes", "ems_yolo_res10_tiny.shapes_events"]
    for name in zoo.list_models("ems_yolo*"):
        for metric in zoo.model_info(name)["metrics"]:
            assert metric["confidence"] in ("V", "S", "M") and metric["T"]
            # The paper's numbers, except those of the zoo's own weights, measured by its own command.
            assert metric["source"] == ("measured" if name == "ems_yolo_res10_tiny" else "paper")
            if metric["source"] == "measured":
                assert metric["citation"].startswith("`snn-det-zoo bench")


# ------------------------------------------------------------------------------------------- fuse()


def _trained_like(model: ems.EMSYOLO) -> ems.EMSYOLO:
    """Random, non-trivial tdBN statistics and affine parameters, so that every fold changes the conv."""
    gen = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, ems.TdBN):
            bn, n = module.bn, module.bn.num_features
            for tensor, low, high in ((bn.running_mean, -0.3, 0.3), (bn.running_var, 0.2, 2.0),
                                      (bn.weight, 0.5, 2.0), (bn.bias, -0.3, 0.5)):
                tensor.data.copy_(torch.rand(n, generator=gen, dtype=tensor.dtype) * (high - low) + low)
    return model


def _run_recording_neurons(model: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor],
                                                                         list[torch.Tensor]]:
    """The raw head outputs, the spikes of every LIF and the outputs of every SiLU integrator, in order."""
    spikes: list[torch.Tensor] = []
    silu: list[torch.Tensor] = []

    def record(module: nn.Module, _args, out: torch.Tensor) -> None:
        (spikes if isinstance(module, EMSLIFNode) else silu).append(out.detach().clone())

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, EMSLIFNode | EMSSiLUIntegrator)]
    try:
        with torch.no_grad():
            raw = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return raw, spikes, silu


@pytest.mark.parametrize("config", sorted(ems.CONFIGS))
def test_fuse_folds_every_tdbn_with_the_same_outputs_and_spikes(config):
    import copy

    model = _trained_like(ems.EMSYOLO(ems.CONFIGS[config], num_classes=2, T=2, width_multiple=0.25,
                                      img_size=64).double().eval())
    n_bn = sum(isinstance(m, ems.TdBN) for m in model.modules())
    fused = copy.deepcopy(model).fuse()
    assert fused.fused and not model.fused
    assert not any(isinstance(m, ems.TdBN) for m in fused.modules())  # every conv -> tdBN pair was found
    biased = sum(isinstance(m, nn.Conv2d) and m.bias is not None for m in fused.modules())
    assert biased == n_bn + 2  # each fold gave its conv a bias; the head's two convs had one already
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    raw, spikes, silu = _run_recording_neurons(model, x)
    raw_fused, spikes_fused, silu_fused = _run_recording_neurons(fused, x)
    for a, b in zip(raw + silu, raw_fused + silu_fused, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-9)
    assert len(spikes) == len(spikes_fused)
    assert all(torch.equal(a, b) for a, b in zip(spikes, spikes_fused, strict=True))
    if config == "res18-sew":  # the SEW ablation has SiLU integrators only (the authors' code)
        assert not spikes and silu
    else:
        fired = torch.cat([s.flatten() for s in spikes])
        assert 0 < fired.count_nonzero() < fired.numel()  # the comparison saw real, non-trivial activity


def test_fuse_is_eval_only_idempotent_and_returns_the_model():
    model = ems.EMSYOLO(ems.CONFIGS["res10-ee"], num_classes=2, T=1, width_multiple=0.25, img_size=64)
    with pytest.raises(InvalidArgumentError, match=r"model\.eval\(\) first"):
        model.fuse()
    assert not model.fused and any(isinstance(m, ems.TdBN) for m in model.modules())
    model.eval()
    assert model.fuse() is model and model.fused
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert not any(".bn." in key for key in state)
    assert model.fuse() is model  # a second call folds nothing again
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert "fused=True" in model.extra_repr()


def test_fused_model_counts_the_same_synaptic_operations():
    import copy

    from snn_det_zoo.energy import EnergyMeter

    model = _trained_like(zoo.create_model("ems_yolo_res10_tiny", **TINY, num_classes=2).double().eval())
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def layers(net):
        meter = EnergyMeter(net, T=net.T, D=1)
        with meter, torch.no_grad():
            net(x)
        return meter.report().layers

    unfused, fused = layers(model), layers(copy.deepcopy(model).fuse())
    assert any(layer.input_kind == "spike" for layer in unfused) and sum(layer.ac_ops for layer in unfused) > 0
    assert fused == unfused  # same layers, names, input kinds, MACs, firing rates, ACs and energy
