"""I-LIF's fused CPU loop (bit-identical to the torch loops) and the custom op torch.compile traces through."""

import time

import pytest
import torch
from spikingjelly.activation_based import functional

from snn_det_zoo import _native as native
from snn_det_zoo.neurons import ILIFNode
from snn_det_zoo.neurons import _ilif_cpu as cpu
from snn_det_zoo.neurons._ilif_function import ilif_multi_step
from snn_det_zoo.neurons._ilif_params import ILIFParams
from snn_det_zoo.neurons._ilif_torch import ilif_backward_torch, ilif_forward_torch, state_dtype_for

needs_kernel = pytest.mark.skipif(
    cpu.cpu_kernel_unavailable_reason() is not None,
    reason=f"fused CPU loop unavailable: {cpu.cpu_kernel_unavailable_reason()}",
)

PARAMS = [
    pytest.param(ILIFParams(4, 4 / 3, False, 1.0, True), id="coco"),
    pytest.param(ILIFParams(2, 2.0, True, 0.7, False), id="gen1-vth0.7"),
]


def _same_bits(a, b):
    """Bit-identical values, NaN where the other has NaN (torch's own NaN payloads differ by code path)."""
    if not a.is_floating_point():
        return torch.equal(a, b)
    nan = a.isnan()
    view = {8: torch.int64, 4: torch.int32, 2: torch.int16}[a.element_size()]
    return torch.equal(nan, b.isnan()) and torch.equal(a.view(view)[~nan], b.view(view)[~nan])


@needs_kernel
@pytest.mark.parametrize("p", PARAMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("with_v0", [False, True])
def test_fused_loop_is_bit_identical_to_torch_loops(p, dtype, with_v0):
    gen = torch.Generator().manual_seed(1)
    # 3 x 1100 neurons: one full block of 1024 and a ragged one; NaN and +-inf and exact levels included.
    x = torch.randn(3, 2, 1100, generator=gen, dtype=torch.float64) * 2.5
    x[0, 0, :6] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.5, 2.5, 4.0])
    x = x.to(dtype)
    state = state_dtype_for(dtype)
    v0 = torch.randn(2, 1100, generator=gen, dtype=state) if with_v0 else None
    assert cpu.fused_forward_supports(x, v0, p, state)
    ours = cpu.ilif_forward_cpu(x, v0, p, True, True, state)
    ref = ilif_forward_torch(x, v0, p, True, True)
    for a, b in zip(ours, ref, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert _same_bits(a, b)


@needs_kernel
@pytest.mark.parametrize("p", PARAMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("state_grads", [False, True])
def test_fused_backward_is_bit_identical_to_torch_loops(p, dtype, state_grads):
    gen = torch.Generator().manual_seed(2)
    state = state_dtype_for(dtype)
    x = (torch.randn(3, 2, 1100, generator=gen, dtype=torch.float64) * 2.5).to(dtype)
    mask = ilif_forward_torch(x, None, p, False, True)[3]
    grad = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(dtype)
    grad_v_last = torch.randn(x.shape[1:], generator=gen, dtype=state) if state_grads else None
    grad_v_seq = torch.randn(x.shape, generator=gen, dtype=state) if state_grads else None
    assert cpu.fused_backward_supports(grad, grad_v_last, grad_v_seq, mask, state)
    for need_grad_v0 in (True, False):
        ours = cpu.ilif_backward_cpu(grad, grad_v_last, grad_v_seq, mask, p, state, need_grad_v0)
        ref = ilif_backward_torch(grad, grad_v_last, grad_v_seq, mask, p, state, need_grad_v0)
        assert _same_bits(ours[0], ref[0]) and ours[0].dtype == ref[0].dtype
        assert (ours[1] is None) == (not need_grad_v0)
        if need_grad_v0:
            assert _same_bits(ours[1], ref[1])


@needs_kernel
def test_threads_split_the_neurons_without_changing_results():
    x = torch.randn(2, 3 * cpu._MIN_NEURONS_PER_THREAD + 77) * 2
    p = ILIFParams(4, 4 / 3, False, 1.0, True)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        split = cpu.ilif_forward_cpu(x, None, p, True, False, torch.float32)
    finally:
        torch.set_num_threads(threads)
    ref = ilif_forward_torch(x, None, p, True, False)
    assert all(torch.equal(a, b) for a, b in zip(split[:3], ref[:3], strict=True))


def test_without_a_compiler_the_torch_loops_run(monkeypatch):
    x = (torch.randn(2, 4, 6, dtype=torch.float64) * 2).requires_grad_()
    expected = ILIFNode()(x)
    monkeypatch.setattr(cpu, "_library", lambda: (None, "no C compiler found"))
    assert not cpu.fused_forward_supports(x, None, ILIFParams(4, 4 / 3, False, 1.0, True), torch.float64)
    assert torch.equal(ILIFNode()(x), expected)


@needs_kernel
def test_library_is_built_once_into_the_zoo_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SNN_DET_ZOO_HOME", str(tmp_path))
    def build():
        return native.build(cpu.CPU_SOURCE, native.compilers()[0], cpu.CPU_FLAGS)

    first = build()
    assert first.parent == tmp_path / "kernels" and first.is_file()
    mtime = first.stat().st_mtime_ns
    assert build() == first and first.stat().st_mtime_ns == mtime
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary left behind


@pytest.mark.parametrize("store_v_seq", [False, True])
def test_custom_op_passes_opcheck(store_v_seq):
    x = (torch.randn(2, 3, 5, dtype=torch.float64) * 2).requires_grad_()
    v0 = torch.randn(3, 5, dtype=torch.float64).requires_grad_()
    args = (x, v0, 4, 4 / 3, False, 1.0, False, store_v_seq, True, "torch")
    torch.library.opcheck(torch.ops.snn_det_zoo.ilif_forward.default, args)


def test_torch_compile_traces_through_the_neuron_without_graph_break():
    """fullgraph=True fails on any graph break; aot_eager checks the fake op and the autograd formula
    without a C++ toolchain (the same trace inductor lowers)."""
    torch._dynamo.reset()
    conv = torch.nn.Conv1d(3, 4, 3, padding=1).double()
    node = ILIFNode(step_mode="m")

    def net(x):
        functional.reset_net(node)
        return node(conv(x.flatten(0, 1)).unflatten(0, x.shape[:2])).sum(dim=(0, 2))

    x = torch.randn(2, 3, 3, 8, dtype=torch.float64) * 2
    start = time.perf_counter()
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    ours_x, ref_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = compiled(ours_x)
    out.sum().backward()
    ref = net(ref_x)
    ref.sum().backward()
    assert torch.equal(out, ref) and torch.equal(ours_x.grad, ref_x.grad)
    assert time.perf_counter() - start < 60
    for p_ours in conv.parameters():
        assert p_ours.grad is not None


def test_bad_input_of_the_multi_step_op_is_a_clear_error():
    with pytest.raises(ValueError, match="state shape"):
        ilif_multi_step(torch.zeros(2, 3), torch.zeros(4), ILIFParams(4, 4 / 3, False, 1.0, True))
