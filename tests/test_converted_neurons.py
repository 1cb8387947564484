"""The conversion neurons and the lossless max-pool: count identities, SpiCalib's withdrawal, resets."""

import random

import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, neuron

from snn_det_zoo.errors import InvalidArgumentError
from snn_det_zoo.neurons import BurstIFNode, LosslessMaxPool2d, SpiCalibIFNode


def _run(node, currents):
    functional.reset_net(node)
    return torch.stack([node(c) for c in currents])


@pytest.mark.parametrize("trial", range(12))
def test_lossless_maxpool_running_sum_is_the_maxpool_of_the_running_sum(trial):
    rng = random.Random(trial)
    k = rng.choice([2, 3, 5, 9, 13])
    s = rng.choice([1, 2, 3])
    p = rng.randint(0, k // 2)
    d = rng.choice([1, 1, 2]) if p <= (k // 2) else 1
    ceil = rng.choice([False, True])
    signed = trial % 4 == 3  # SpiCalib's negative spikes reach pools too
    g = torch.Generator().manual_seed(trial)
    size = rng.randint(k * d, 20)
    x = torch.randint(-1 if signed else 0, 4, (24, 2, 3, size, size + 1), generator=g).float()
    pool = LosslessMaxPool2d(k, s, p, d, ceil)  # multi-step by default
    y = pool(x)
    expected = F.max_pool2d(x.cumsum(0).flatten(0, 1), k, s, p, d, ceil).view(24, 2, 3, *y.shape[-2:])
    assert torch.equal(y.cumsum(0), expected)
    if not signed:
        assert y.min() >= 0 and y.max() <= 3  # the burst alphabet of its inputs
    # single steps after a reset give the same outputs; a reset forgets the accumulated input
    pool.step_mode = "s"
    functional.reset_net(pool)
    assert torch.equal(torch.stack([pool(xt) for xt in x]), y)
    functional.reset_net(pool)
    assert torch.equal(pool(x[5]), F.max_pool2d(x[5], k, s, p, d, ceil))


def test_lossless_maxpool_refuses_impossible_settings():
    with pytest.raises(RuntimeError):
        LosslessMaxPool2d(2, 2, padding=2)


def test_if_count_is_the_floor_of_the_running_maximum_of_the_accumulated_input():
    g = torch.Generator().manual_seed(0)
    currents = torch.randn(50, 2000, generator=g).double() * 0.7 + 0.05
    counts = _run(BurstIFNode(gamma=1000), currents).cumsum(0)  # bursts never saturate: pure soft reset
    running_max = currents.cumsum(0).cummax(0).values
    assert torch.equal(counts, torch.clamp(torch.floor(running_max + 1e-9), min=0))


@pytest.mark.parametrize("gamma", [1, 3, 5])
def test_constant_current_gives_floor_cT_clamped_by_gamma(gamma):
    c = torch.tensor([0.0, 0.25, 0.5, 1.0, 2.5, 4.0, 7.0]).double()
    T = 40
    counts = _run(BurstIFNode(gamma=gamma), c.expand(T, -1)).sum(0)
    assert torch.equal(counts, torch.floor(c * T).clamp(max=gamma * T))
    # the layer scale divides the current: lambda * rate approximates min(a, gamma * lambda)
    scaled = _run(BurstIFNode(gamma=gamma, scale=2.0), (2 * c).expand(T, -1)).sum(0)
    assert torch.equal(scaled, counts)


def test_plain_if_equals_spikingjellys_soft_reset_if_node():
    g = torch.Generator().manual_seed(1)
    currents = torch.rand(30, 500, generator=g) * 1.5 - 0.3
    ours = _run(BurstIFNode(gamma=1), currents)
    theirs = _run(neuron.IFNode(v_reset=None), currents)
    assert torch.equal(ours, theirs)


def test_plain_if_over_fires_and_spicalib_withdraws_the_spikes():
    currents = torch.tensor([0.5] * 10 + [-0.25] * 54).view(64, 1).double()  # ANN: ReLU(sum) = 0
    plain = _run(BurstIFNode(gamma=1), currents)
    assert plain.sum() == 5  # the running maximum was 5: five spikes that should not exist
    for faithful in (True, False):
        calibrated = _run(SpiCalibIFNode(allowance=8, faithful=faithful, gamma=1), currents)
        assert calibrated.sum() == 0 and calibrated.min() == -1
        assert torch.equal(calibrated[:10], plain[:10])  # nothing changes before the neuron falls silent
    # an active neuron is left alone
    steady = torch.full((64, 1), 0.5).double()
    assert torch.equal(_run(SpiCalibIFNode(allowance=8, gamma=1), steady), _run(BurstIFNode(gamma=1), steady))


def test_spicalib_allowance_zero_or_beyond_T_is_the_burst_neuron_and_the_fixed_mode_never_goes_negative():
    g = torch.Generator().manual_seed(2)
    currents = torch.randn(32, 300, generator=g).double()
    burst = _run(BurstIFNode(gamma=3), currents)
    assert torch.equal(_run(SpiCalibIFNode(0, gamma=3), currents), burst)
    assert torch.equal(_run(SpiCalibIFNode(64, gamma=3), currents), burst)
    fixed = SpiCalibIFNode(2, faithful=False, gamma=3)
    out = _run(fixed, currents)
    assert (out.cumsum(0) >= 0).all() and (fixed.net >= 0).all()
    faithful = SpiCalibIFNode(2, faithful=True, gamma=3)
    _run(faithful, currents)
    assert (faithful.net < 0).any()  # BrainCog's bookkeeping lets the net count go negative (quirk a)


def test_reset_net_clears_every_state_and_batches_can_change_size():
    node = SpiCalibIFNode(4, gamma=2)
    first = _run(node, torch.rand(20, 3, 5))
    assert node.t == 20 and isinstance(node.net, torch.Tensor)
    functional.reset_net(node)
    assert node.t == 0 and node.v == 0.0 and node.net == 0.0
    again = _run(node, torch.rand(20, 7, 5))  # another batch size after a reset
    assert again.shape == (20, 7, 5) and first.shape == (20, 3, 5)


def test_bad_neuron_settings_are_refused():
    for bad in ({"gamma": 0}, {"gamma": 1.5}, {"scale": 0.0}, {"v_threshold": -1.0}):
        with pytest.raises(InvalidArgumentError):
            BurstIFNode(**bad)
    with pytest.raises(InvalidArgumentError):
        SpiCalibIFNode(allowance=-1)
