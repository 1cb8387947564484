"""The CuPy I-LIF kernels: compiled source, and equality with the torch path on a GPU (skipped without one)."""

import shutil
import subprocess

import pytest
import torch

from snn_det_zoo.neurons import ILIFNode
from snn_det_zoo.neurons._ilif_backend import cupy_unavailable_reason
from snn_det_zoo.neurons._ilif_cupy import KERNEL_SOURCE, NVRTC_OPTIONS
from snn_det_zoo.neurons._ilif_function import ilif_multi_step
from snn_det_zoo.neurons._ilif_params import ILIFParams

NO_CUPY = cupy_unavailable_reason()


def needs_cupy(test):
    """A CUDA device (the ``cuda`` marker) and CuPy's kernels."""
    return pytest.mark.cuda(pytest.mark.skipif(NO_CUPY is not None, reason=f"CuPy kernels cannot run here: "
                                                                           f"{NO_CUPY}")(test))


KERNELS = [f"ilif_{d}_{s}{w}" for s in ("f32", "f16", "bf16") for d in ("forward", "backward") for w in ("", "_v4")]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_kernel_source_compiles_with_nvcc(tmp_path):
    ptx = tmp_path / "ilif.ptx"
    flags = [o for o in NVRTC_OPTIONS if o.startswith("--fmad")] + ["-std=c++17"]
    proc = subprocess.run(["nvcc", "--ptx", *flags, "-o", str(ptx), str(KERNEL_SOURCE)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    text = ptx.read_text()
    for name in KERNELS:
        assert f".entry {name}(" in text


def _run(x, p, backend, store_v_seq=True, v0=None):
    x = x.detach().requires_grad_()
    v0 = None if v0 is None else v0.detach().requires_grad_()
    spikes, v_last, v_seq, impl = ilif_multi_step(x, v0, p, store_v_seq, backend)
    assert impl == backend
    gen = torch.Generator(device=x.device).manual_seed(7)
    weights = [torch.randn(t.shape, generator=gen, device=x.device, dtype=t.dtype)
               for t in (spikes, v_last, v_seq)]
    loss = sum((t.float() * w.float()).sum() for t, w in zip((spikes, v_last, v_seq), weights, strict=True))
    inputs = (x,) if v0 is None else (x, v0)
    grads = torch.autograd.grad(loss, inputs)
    return spikes, v_last, v_seq, grads


@needs_cupy
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("tau,decay_input", [(4 / 3, False), (2.0, True)], ids=["coco", "gen1"])
@pytest.mark.parametrize("steps", [1, 2, 4, 9])
@pytest.mark.parametrize("max_level", [1, 2, 4])
@pytest.mark.parametrize("detach_reset", [True, False])
@pytest.mark.parametrize("shape", [(3, 37, 11), (2, 16, 24)], ids=["scalar", "vector"])
def test_cupy_equals_torch_path_bitwise(dtype, tau, decay_input, steps, max_level, detach_reset, shape):
    gen = torch.Generator(device="cuda").manual_seed(steps * 31 + max_level)
    x = (torch.randn(steps, *shape, generator=gen, device="cuda") * 2 + 0.5).to(dtype)
    p = ILIFParams(max_level, tau, decay_input, 1.0, detach_reset)
    for v0 in (None, torch.randn(shape, generator=gen, device="cuda")):
        ours = _run(x, p, "cupy", v0=v0)
        ref = _run(x, p, "torch", v0=v0)
        for a, b in zip(ours[:3], ref[:3], strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b)
        for a, b in zip(ours[3], ref[3], strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b)


@needs_cupy
@pytest.mark.parametrize("v_threshold,tau,decay_input", [(0.7, 2.5, False), (1.3, 3.0, True)])
def test_cupy_general_constants_match_cpu_torch(v_threshold, tau, decay_input):
    """Division by non-powers of two: torch's CUDA scalar division multiplies by a reciprocal, so compare
    with the CPU path (IEEE division, as the kernel) within one rounding of float32."""
    gen = torch.Generator(device="cuda").manual_seed(11)
    x = torch.randn(4, 4096, generator=gen, device="cuda") * 3
    p = ILIFParams(4, tau, decay_input, v_threshold, False)
    ours = _run(x, p, "cupy")
    ref = _run(x.cpu(), p, "torch")
    same = (ours[0].cpu() == ref[0]).all(0)  # neurons whose spikes agree at every step
    assert same.float().mean().item() > 0.999
    assert torch.allclose(ours[2].cpu()[:, same], ref[2][:, same], atol=1e-4, rtol=1e-5)


@needs_cupy
def test_vector_and_scalar_kernels_agree_on_misaligned_views():
    from snn_det_zoo.neurons._ilif_cupy import vector_width

    base = torch.randn(4 * 1024 + 1, device="cuda") * 2
    aligned, shifted = base[:-1].view(4, 1024), base[1:].view(4, 1024)  # shifted: 4 bytes off alignment
    assert vector_width(torch.float32, 1024, (aligned,)) == 4
    assert vector_width(torch.float32, 1024, (shifted,)) == 1
    p = ILIFParams(4, 4 / 3, False, 1.0, True)
    for x in (aligned, shifted):
        assert torch.equal(_run(x, p, "cupy")[0], _run(x, p, "torch")[0])


@needs_cupy
def test_auto_backend_runs_the_kernel_on_cuda(monkeypatch):
    import snn_det_zoo.neurons._ilif_cupy as kernels

    launches = []
    real_launch = kernels._launch
    monkeypatch.setattr(kernels, "_launch", lambda *a: (launches.append(a[0]), real_launch(*a))[1])
    node = ILIFNode(backend="auto")
    x = torch.randn(2, 4, 8, device="cuda", requires_grad=True)
    node(x).sum().backward()
    assert node.last_implementation == "cupy"
    assert launches == ["forward", "backward"]


@needs_cupy
def test_kernel_runs_on_torch_current_stream():
    x = torch.randn(4, 1 << 20, device="cuda") * 2
    expected = ILIFNode(backend="torch")(x)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        y = torch.mm(torch.randn(2048, 2048, device="cuda"), torch.randn(2048, 2048, device="cuda"))
        x_side = x * 1.0 + y[0, 0] * 0  # x, written on the side stream after a long matmul
        out = ILIFNode(backend="cupy")(x_side)
    side.synchronize()
    assert torch.equal(out, expected)


@needs_cupy
def test_cuda_graph_capture_and_replay():
    node = ILIFNode(backend="cupy")
    static_x = torch.randn(2, 64, 32, device="cuda") * 2
    node(static_x)  # compile and warm up outside the capture
    graph = torch.cuda.CUDAGraph()
    from spikingjelly.activation_based import functional

    functional.reset_net(node)
    with torch.cuda.graph(graph):
        static_out = node(static_x)
    new_x = torch.randn(2, 64, 32, device="cuda") * 2
    static_x.copy_(new_x)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(static_out, ILIFNode(backend="torch")(new_x))


@needs_cupy
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_cupy_equals_spikingjelly_on_cuda(dtype):
    from spikingjelly.activation_based import neuron

    gen = torch.Generator(device="cuda").manual_seed(5)
    x = (torch.randn(4, 8, 16, 20, 20, generator=gen, device="cuda") * 2).to(dtype)
    grad = torch.randn(x.shape, generator=gen, device="cuda").to(dtype)
    ours_x, sj_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = ILIFNode(backend="cupy")(ours_x)
    sj = neuron.ILIFNode(detach_reset=True, step_mode="m").cuda()(sj_x)
    ours.backward(grad)
    sj.backward(grad)
    if dtype == torch.float32:
        assert torch.equal(ours, sj)
        assert torch.allclose(ours_x.grad, sj_x.grad, atol=1e-6)
    else:  # SpikingJelly keeps an fp16 state here; ours stays float32
        assert (ours != sj).float().mean().item() < 0.02


def test_cupy_backend_rejects_cpu_tensors():
    if NO_CUPY is not None:
        with pytest.raises(RuntimeError, match="cupy"):
            ILIFNode(backend="cupy")
        return
    with pytest.raises(ValueError, match="CUDA tensors"):
        ILIFNode(backend="cupy")(torch.rand(2, 3))
