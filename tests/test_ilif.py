"""I-LIF: semantics against an independent per-step reference, SpikingJelly 2.0 and its state contract."""

import pytest
import torch
from spikingjelly.activation_based import functional, neuron

from snn_det_zoo.neurons import (
    ILIFNode,
    backend_report,
    expand_to_binary,
    spike_driven_conv2d,
    sum_virtual_steps,
)
from snn_det_zoo.neurons._ilif_params import ILIFParams


def per_step_reference(x_seq, max_level, tau, decay_input, v_th, detach_reset, v0=None):
    """The equations of the issue, one step at a time, with autograd (independent of the package)."""

    class Quantise(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u):
            ctx.save_for_backward(u)
            return torch.round(torch.clamp(u, 0, max_level))

        @staticmethod
        def backward(ctx, g):
            (u,) = ctx.saved_tensors
            return g * ((u >= 0) & (u <= max_level)).to(g.dtype)

    v = torch.zeros_like(x_seq[0]) if v0 is None else v0
    spikes, vs = [], []
    for x in x_seq:
        h = v + (x - v) / tau if decay_input else (1 - 1 / tau) * v + x
        s = Quantise.apply(h / v_th)
        v = h - (s.detach() if detach_reset else s) * v_th
        spikes.append(s)
        vs.append(v)
    return torch.stack(spikes), torch.stack(vs)


FORMS = [pytest.param(4 / 3, False, id="coco"), pytest.param(2.0, True, id="gen1")]


@pytest.mark.parametrize("tau,decay_input", FORMS)
@pytest.mark.parametrize("steps", [1, 2, 4])
@pytest.mark.parametrize("max_level", [1, 2, 4])
@pytest.mark.parametrize("detach_reset", [True, False])
def test_torch_path_matches_reference_float64(tau, decay_input, steps, max_level, detach_reset):
    gen = torch.Generator().manual_seed(steps * 10 + max_level)
    x = (torch.randn(steps, 2, 3, 5, 5, generator=gen, dtype=torch.float64) * 2 + 0.5).requires_grad_()
    grad = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    node = ILIFNode(max_level=max_level, tau=tau, decay_input=decay_input, detach_reset=detach_reset,
                    store_v_seq=True)
    spikes = node(x)
    (spikes * grad).sum().backward()
    grad_ours = x.grad.clone()
    x.grad = None
    ref_spikes, ref_v = per_step_reference(x, max_level, tau, decay_input, 1.0, detach_reset)
    (ref_spikes * grad).sum().backward()
    assert torch.equal(spikes, ref_spikes)
    assert torch.allclose(node.v_seq, ref_v, rtol=0, atol=1e-12)
    assert torch.allclose(grad_ours, x.grad, rtol=0, atol=1e-12)
    assert node.last_implementation == "torch"


@pytest.mark.parametrize("tau,decay_input", FORMS)
def test_threshold_and_gradients_through_state(tau, decay_input):
    """v_threshold != 1 and losses on v_seq and the final v: every gradient path of the recurrence."""
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(3, 4, 6, generator=gen, dtype=torch.float64) * 2).requires_grad_()
    v0 = torch.randn(4, 6, generator=gen, dtype=torch.float64).requires_grad_()
    from snn_det_zoo.neurons._ilif_function import ilif_multi_step

    p = ILIFParams(4, tau, decay_input, 0.7, False)
    spikes, v_last, v_seq, _ = ilif_multi_step(x, v0, p, store_v_seq=True)
    weights = [torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in (spikes, v_last, v_seq)]
    loss = sum((t * w).sum() for t, w in zip((spikes, v_last, v_seq), weights, strict=True))
    gx, gv0 = torch.autograd.grad(loss, (x, v0))
    ref_spikes, ref_v = per_step_reference(x, 4, tau, decay_input, 0.7, False, v0=v0)
    ref_loss = sum((t * w).sum() for t, w in zip((ref_spikes, ref_v[-1], ref_v), weights, strict=True))
    rx, rv0 = torch.autograd.grad(ref_loss, (x, v0))
    assert torch.equal(spikes, ref_spikes)
    assert torch.allclose(gx, rx, atol=1e-12) and torch.allclose(gv0, rv0, atol=1e-12)


def test_rounding_is_half_to_even_and_clamped():
    node = ILIFNode(step_mode="s")
    x = torch.tensor([[0.5, 1.5, 2.5, 3.5, 4.5, -0.5, 0.49999997, 2.5000002, 100.0]])
    assert node(x).tolist() == [[0, 2, 2, 4, 4, 0, 0, 3, 4]]


@pytest.mark.parametrize("steps", [1, 2, 4])
@pytest.mark.parametrize("detach_reset", [True, False])
def test_equals_spikingjelly_ilif_float32(steps, detach_reset):
    gen = torch.Generator().manual_seed(steps)
    x = torch.randn(steps, 4, 8, 16, 16, generator=gen) * 2
    grad = torch.randn(x.shape, generator=gen)
    ours_x, sj_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = ILIFNode(detach_reset=detach_reset)(ours_x)
    sj = neuron.ILIFNode(detach_reset=detach_reset, step_mode="m")(sj_x)
    ours.backward(grad)
    sj.backward(grad)
    assert torch.equal(ours, sj)
    assert torch.allclose(ours_x.grad, sj_x.grad, rtol=0, atol=1e-6)


def test_half_inputs_keep_a_float32_state():
    x = torch.randn(2, 3, 8) * 2
    node = ILIFNode()
    spikes = node(x.to(torch.bfloat16))
    assert spikes.dtype == torch.bfloat16 and node.v.dtype == torch.float32
    functional.reset_net(node)
    assert torch.equal(spikes.float(), node(x.to(torch.bfloat16).float()))


def test_state_persists_until_reset_net():
    x = torch.rand(2, 3, 4) * 2
    node = ILIFNode()
    first = node(x)
    second = node(x)  # continues from the state the first call left
    assert not torch.equal(node.v, torch.zeros_like(node.v))
    whole = ILIFNode()(torch.cat([x, x]))
    assert torch.equal(torch.cat([first, second]), whole)
    functional.reset_net(node)
    assert torch.equal(node(x), first)


def test_single_step_mode_equals_multi_step():
    x = torch.randn(4, 2, 5) * 2
    multi = ILIFNode()(x)
    single_node = ILIFNode(step_mode="s", store_v_seq=True)
    single = torch.stack([single_node(xt) for xt in x])
    assert torch.equal(multi, single)
    assert single_node.v_seq.shape == (4, 2, 5)
    functional.set_step_mode(single_node, "m")
    functional.reset_net(single_node)
    assert torch.equal(single_node(x), multi)


def test_repr_lists_every_parameter():
    text = repr(ILIFNode(max_level=2, tau=2.0, decay_input=True))
    for part in ("max_level=2", "tau=2", "decay_input=True", "v_threshold=1.0", "detach_reset=True",
                 "step_mode=m", "backend=torch"):
        assert part in text


@pytest.mark.parametrize("kwargs,match", [
    ({"max_level": 0}, "max_level"),
    ({"max_level": 2.5}, "max_level"),
    ({"tau": 0.5}, "tau"),
    ({"v_threshold": 0.0}, "v_threshold"),
    ({"backend": "triton"}, "backend"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ILIFNode(**kwargs)


def test_shape_change_without_reset_is_an_error():
    node = ILIFNode()
    node(torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="reset_net"):
        node(torch.rand(2, 5, 4))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is missing")
def test_cupy_backend_without_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="cupy"):
        ILIFNode(backend="cupy")
    report = backend_report("auto", "cpu")
    assert report["implementation"] == "torch" and "cupy" in report["unavailable"]


def test_environment_override(monkeypatch):
    monkeypatch.setenv("SNN_DET_ZOO_ILIF_BACKEND", "torch")
    assert backend_report("cupy", "cpu")["implementation"] == "torch"
    monkeypatch.setenv("SNN_DET_ZOO_ILIF_BACKEND", "fast")
    with pytest.raises(ValueError, match="SNN_DET_ZOO_ILIF_BACKEND"):
        ILIFNode()


# Spike-driven inference: integer counts as D binary virtual steps.

def test_thermometer_expansion_layout():
    counts = torch.tensor([[0.0, 3.0], [4.0, 1.0]])  # [T=2, N=2], D=4
    binary = expand_to_binary(counts, 4)
    assert binary.shape == (8, 2)
    assert binary[:, 0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]  # t major: step 0's four slots, then step 1's
    assert binary[:, 1].tolist() == [1, 1, 1, 0, 1, 0, 0, 0]
    assert torch.equal(sum_virtual_steps(binary, 4), counts)


@pytest.mark.parametrize("bad", [torch.tensor([[5.0]]), torch.tensor([[-1.0]]), torch.tensor([[1.5]])])
def test_expansion_rejects_non_counts(bad):
    with pytest.raises(ValueError, match="integer counts"):
        expand_to_binary(bad, 4)


@pytest.mark.parametrize("max_level", [1, 4])
def test_spike_driven_conv_equals_integer_conv(max_level):
    gen = torch.Generator().manual_seed(max_level)
    node = ILIFNode(max_level=max_level)
    counts = node(torch.randn(2, 3, 4, 9, 9, generator=gen, dtype=torch.float64) * 3)
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, bias=True).double()
    integer = conv(counts.flatten(0, 1)).unflatten(0, (2, 3))
    driven = spike_driven_conv2d(counts, conv, max_level)
    assert torch.allclose(driven, integer, atol=1e-12)
