"""Whole detectors on a GPU: the CuPy I-LIF inside SpikeYOLO equals the torch path (skipped without CUDA)."""

import pytest
import torch

import snn_det_zoo as zoo
from snn_det_zoo.neurons._ilif_backend import cupy_unavailable_reason

NO_CUPY = cupy_unavailable_reason()
pytestmark = pytest.mark.cuda


@pytest.mark.skipif(NO_CUPY is not None, reason=f"CuPy kernels cannot run here: {NO_CUPY}")
@pytest.mark.parametrize("name,T", [("spikeyolo_n", 1), ("spikeyolo_s_gen1", 2)])
def test_spikeyolo_cupy_neurons_equal_torch_neurons(name, T, monkeypatch):
    # cuDNN's default convolution backward adds in a nondeterministic order (two torch-backend runs already
    # differ); with deterministic algorithms the only difference left is the neuron implementation.
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    torch.manual_seed(0)
    reference = zoo.create_model(name, num_classes=3, T=T, img_size=128).cuda()
    fast = zoo.create_model(name, num_classes=3, T=T, img_size=128, neuron_backend="cupy").cuda()
    fast.load_state_dict(reference.state_dict())
    images = torch.rand(2, 3, 128, 128, device="cuda")
    if reference.modality == "events":  # frame stacks [T, B, C, H, W]
        images = images.unsqueeze(0).repeat(T, 1, 1, 1, 1)
    for mode in ("eval", "train"):
        getattr(reference, mode)()
        getattr(fast, mode)()
        ours, ref = fast(images), reference(images)
        assert all(torch.equal(a, b) for a, b in zip(ours, ref, strict=True)), mode
    sum(o.sum() for o in ours).backward()
    sum(o.sum() for o in ref).backward()
    for (key, a), (_, b) in zip(fast.named_parameters(), reference.named_parameters(), strict=True):
        assert (a.grad is None) == (b.grad is None), key
        if a.grad is not None:
            assert torch.equal(a.grad, b.grad), key
    assert {m.last_implementation for m in fast.modules() if hasattr(m, "last_implementation")} == {"cupy"}
