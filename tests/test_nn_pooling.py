"""Tiled max pooling: max_pool2d's values on every path, its gradient where one is needed."""

import pytest
import torch
import torch.nn.functional as F

from snn_det_zoo.errors import InvalidArgumentError
from snn_det_zoo.nn import TiledMaxPool2d, pooling


def _spikes(shape, seed=0):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) > 0.7).float()


def _reference(x, s):  # SpikingJelly's multi-step pooling: the steps flattened into the batch
    return F.max_pool2d(x.flatten(0, 1), s, s).unflatten(0, x.shape[:2])


@pytest.mark.parametrize("shape", [(2, 3, 4, 8, 8), (2, 3, 4, 9, 7), (1, 2, 5, 6, 10)])
@pytest.mark.parametrize("s", [2, 3])
def test_values_equal_max_pool2d_without_a_gradient(shape, s, monkeypatch):
    x = torch.randn(shape, dtype=torch.float64)
    expected = _reference(x, s)
    monkeypatch.setattr(pooling.F, "max_pool2d", None)  # inference must not call it
    with torch.no_grad():
        assert torch.equal(TiledMaxPool2d(s)(x), expected)


def test_spike_maps_pool_exactly_on_the_inference_path():
    x = _spikes((2, 2, 3, 10, 12), seed=1)
    with torch.no_grad():
        assert torch.equal(TiledMaxPool2d(2)(x), _reference(x, 2))


def test_training_keeps_max_pool2d_gradient_on_ties():
    x = _spikes((2, 2, 3, 8, 8), seed=2)  # full of ties: windows with several ones
    mine, ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    weight = torch.randn(2, 2, 3, 4, 4)
    (TiledMaxPool2d(2)(mine) * weight).sum().backward()
    (_reference(ref, 2) * weight).sum().backward()
    assert torch.equal(mine.grad, ref.grad)
    tied = x.unflatten(-1, (4, 2)).unflatten(-3, (4, 2)).sum((-1, -3))
    assert (tied > 1).any()  # the case where amax's gradient would differ


def test_single_frames_and_bad_settings():
    x = torch.randn(3, 8, 8)
    with torch.no_grad():
        assert torch.equal(TiledMaxPool2d(2)(x), F.max_pool2d(x, 2, 2))
    with pytest.raises(InvalidArgumentError, match="positive integer"):
        TiledMaxPool2d(0)
    with pytest.raises(InvalidArgumentError, match=r"\[\.\.\., C, H, W\]"):
        TiledMaxPool2d(2)(torch.randn(8, 8))


def test_forward_mode_derivatives_keep_max_pool2d_on_ties():
    from torch.autograd import forward_ad

    x = torch.ones(1, 1, 2, 2)  # one window, four tied maxima
    tangent = torch.ones_like(x)
    with torch.no_grad(), forward_ad.dual_level():
        mine = forward_ad.unpack_dual(TiledMaxPool2d(2)(forward_ad.make_dual(x, tangent))).tangent
        ref = forward_ad.unpack_dual(F.max_pool2d(forward_ad.make_dual(x, tangent), 2, 2)).tangent
    assert torch.equal(mine, ref)


def test_an_input_smaller_than_the_window_is_refused_as_max_pool2d_refuses_it():
    with torch.no_grad(), pytest.raises(RuntimeError, match="too small"):
        TiledMaxPool2d(2)(torch.randn(1, 2, 3, 1, 8))
