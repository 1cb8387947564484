"""Energy accounting: hand-checked counts, the SpikeYOLO authors' Excel arithmetic, hooks and edge cases."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from snn_det_zoo.energy import (
    EnergyConstants,
    EnergyMeter,
    EnergyReport,
    conv_macs,
    is_spike_tensor,
    layer_energy,
)
from snn_det_zoo.nn.layer_geometry import ConvGeometry

DATA = Path(__file__).parent / "data"


class _Quantise(nn.Module):
    """Stands in for an I-LIF neuron at T=1: ``round(clamp(x, 0, 4))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(torch.clamp(x, 0, 4))


def _two_layer() -> nn.Sequential:
    """conv1 (1->2, 1x1) sees the real image; conv2 (2->3, 3x3, pad 1) sees integer counts."""
    conv1 = nn.Conv2d(1, 2, 1, bias=False)
    conv2 = nn.Conv2d(2, 3, 3, padding=1)
    with torch.no_grad():
        conv1.weight.copy_(torch.tensor([2.0, 6.0]).view(2, 1, 1, 1))
        conv2.weight.normal_()
    return nn.Sequential(conv1, _Quantise(), conv2)


def test_two_layer_counts_match_a_hand_calculation():
    model = _two_layer()
    # Image 0.5 everywhere -> conv1 gives 1.0 and 3.0 -> counts 1 and 3 -> mean count 2.0 per element.
    images = torch.full((2, 1, 4, 4), 0.5)
    with EnergyMeter(model, T=1, D=4) as meter, torch.no_grad():
        model(images)
    report = meter.report()
    conv1, conv2 = report.layers
    # By hand, per image: conv1 has 2 channels x 16 pixels outputs, 1 input x 1x1 kernel each -> 32 MACs.
    assert (conv1.input_kind, conv1.mac_ops, conv1.ac_ops) == ("real", 32, 0)
    # conv2: 3 x 16 outputs, each 2 inputs x 3x3 -> 864 dense MACs; times mean count 2 -> 1728 ACs.
    assert (conv2.input_kind, conv2.dense_macs, conv2.firing_rate) == ("spike", 864, 2.0)
    assert (conv2.ac_ops, conv2.mac_ops) == (1728, 0)
    assert report.samples == 2
    assert report.energy_mj == pytest.approx((32 * 4.6 + 1728 * 0.9) * 1e-9)
    assert report.ann_energy_mj == pytest.approx((32 + 864) * 4.6 * 1e-9)
    assert report.firing_rate == pytest.approx(2.0)


def test_multi_step_input_multiplies_ops_by_T_and_counts_samples_on_dim_1():
    model = _two_layer()

    class FoldTime(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x.flatten(0, 1))  # [T, B, ...] -> [T*B, ...], as SpikeYOLO runs convs

    wrapper = FoldTime()
    with EnergyMeter(wrapper, T=2, D=4) as meter, torch.no_grad():
        wrapper(torch.full((2, 3, 1, 4, 4), 0.5))
    report = meter.report()
    assert report.samples == 3
    assert [layer.mac_ops for layer in report.layers] == [64, 0]
    assert [layer.ac_ops for layer in report.layers] == [0, 3456]


def test_rates_are_weighted_by_elements_over_the_whole_set_not_averaged_per_batch():
    conv = nn.Conv2d(1, 1, 1, bias=False)
    meter = EnergyMeter(conv, T=1, D=4)
    with meter, torch.no_grad():
        conv(torch.full((1, 1, 2, 2), 4.0))  # 1 image, count 4 everywhere
        conv(torch.zeros(3, 1, 2, 2))  # 3 images, silent
    (layer,) = meter.report().layers
    # Per-batch means would average 4 and 0 to 2.0; over the 16 elements the rate is 1.0.
    assert layer.firing_rate == pytest.approx(1.0)
    assert layer.ac_ops == pytest.approx(16 * 1.0 / 4)


def test_overall_firing_rate_counts_silent_layers_in_the_denominator():
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.Conv2d(1, 1, 1, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(0.0)
    with EnergyMeter(model, T=1, D=4) as meter, torch.no_grad():
        model(torch.full((1, 1, 2, 2), 2.0))  # layer 0: count 2; layer 1: all zero (silent)
    report = meter.report()
    assert [layer.firing_rate for layer in report.layers] == [2.0, 0.0]
    assert report.firing_rate == pytest.approx(1.0)  # 8 ACs over 8 spike-input MACs


def test_binary_spike_ops_equal_spikingjelly_synop_counter_on_a_1x1_conv():
    from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter

    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 1, bias=False)
    spikes = (torch.rand(2, 4, 6, 6) > 0.7).float()
    counter = SynOpCounter()
    with DispatchCounterMode([counter]), torch.no_grad():
        conv(spikes)
    with EnergyMeter(conv, T=1, D=1) as meter, torch.no_grad():
        conv(spikes)
    # A 1x1 conv has no padding edge, so the rate model is exact: total ACs = spikes x fan-out.
    assert meter.report().synaptic_ops * 2 == pytest.approx(counter.get_total())


def test_a_block_with_fused_geometry_counts_as_one_conv_on_its_input():
    class RepBlock(nn.Module):
        """1x1 conv -> BN -> depthwise 3x3: real values flow between the inner convs."""

        def __init__(self) -> None:
            super().__init__()
            self.pw = nn.Conv2d(2, 4, 1, bias=False)
            self.bn = nn.BatchNorm2d(4)
            self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.dw(self.bn(self.pw(x)))

        def fused_conv_geometry(self) -> ConvGeometry:
            return ConvGeometry(in_channels=2, out_channels=4, kernel_size=(3, 3))

    model = nn.Sequential(RepBlock()).eval()
    with EnergyMeter(model, T=1, D=4) as meter, torch.no_grad():
        model(torch.ones(1, 2, 5, 5))
    (layer,) = meter.report().layers
    assert layer.name == "0" and layer.op == "fused_conv" and layer.input_kind == "spike"
    assert layer.ac_ops == 4 * 25 * 2 * 9  # one 3x3 conv 2->4 on 5x5, rate 1


def test_mixed_layer_reports_both_kinds():
    conv = nn.Conv2d(1, 1, 1, bias=False)
    with EnergyMeter(conv, T=1, D=4) as meter, torch.no_grad():
        conv(torch.ones(1, 1, 2, 2))
        conv(torch.full((1, 1, 2, 2), 0.3))
    (layer,) = meter.report().layers
    assert layer.input_kind == "mixed"
    assert (layer.ac_ops, layer.mac_ops) == (2.0, 2.0)


def test_counts_above_D_are_real_valued_inputs():
    assert is_spike_tensor(torch.tensor([0.0, 1.0, 4.0]), max_level=4)
    assert not is_spike_tensor(torch.tensor([0.0, 5.0]), max_level=4)  # e.g. a raw 0..255 image
    assert not is_spike_tensor(torch.tensor([0.5]), max_level=4)
    assert not is_spike_tensor(torch.tensor([-1.0]), max_level=4)
    assert is_spike_tensor(torch.tensor([-1.0, 0.0, 3.0]), max_level=4, signed=True)  # SpiCalib's negative spikes
    assert not is_spike_tensor(torch.tensor([-5.0]), max_level=4, signed=True)


def test_signed_spike_counts_cost_one_ac_per_spike_of_either_sign():
    class Signed(nn.Module):
        signed_spikes = True

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    counts = torch.tensor([[[[2.0, -1.0], [0.0, 1.0]], [[-2.0, 0.0], [0.0, 0.0]]]])  # |counts| sum to 6
    for model, kind in ((Signed(), "spike"), (nn.Sequential(nn.Conv2d(2, 3, 1, bias=False)), "real")):
        with EnergyMeter(model, T=1, D=2) as meter, torch.no_grad():
            model(counts)
        (layer,) = meter.report().layers
        assert layer.input_kind == kind
        if kind == "spike":  # 6 spikes, each reaching the 3 output channels
            assert layer.ac_ops == pytest.approx(18.0) and layer.mac_ops == 0
        else:  # an unsigned meter takes negative values for an analog input
            assert layer.mac_ops == pytest.approx(3 * 2 * 4) and layer.ac_ops == 0


def test_hooks_are_removed_and_reset_forgets(tmp_path):
    model = _two_layer()
    meter = EnergyMeter(model, T=1, D=4)
    with meter, torch.no_grad():
        model(torch.full((1, 1, 4, 4), 0.5))
    with torch.no_grad():
        model(torch.full((5, 1, 4, 4), 0.5))  # outside the meter: not counted
    assert meter.samples == 1
    path = meter.report().to_csv(tmp_path / "sub" / "energy.csv")
    rows = list(csv.DictReader(path.open()))
    assert [r["layer"] for r in rows] == ["0", "2"]
    assert rows[1]["e_ac_pj"] == "0.9" and rows[1]["e_mac_pj"] == "4.6"
    assert float(rows[1]["ac_ops"]) == 1728
    assert not list(path.parent.glob("*.tmp"))
    meter.reset()
    with pytest.raises(RuntimeError, match="no samples"):
        meter.report()


def test_user_constants_are_used_and_described():
    constants = EnergyConstants(e_ac_pj=0.03, e_mac_pj=0.23, technology="int8")
    layer = layer_energy("x", 100, T=2, firing_rate=0.5, constants=constants)
    assert layer.energy_pj == pytest.approx(100 * 2 * 0.5 * 0.03)
    assert constants.describe() == "E_AC=0.03pJ E_MAC=0.23pJ (int8)"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: EnergyMeter("not a model", T=1, D=4), TypeError),  # type: ignore[arg-type]
        (lambda: EnergyMeter(nn.Conv2d(1, 1, 1), T=0, D=4), ValueError),
        (lambda: EnergyMeter(nn.Conv2d(1, 1, 1), T=1, D=1.5), ValueError),  # type: ignore[arg-type]
        (lambda: EnergyMeter(nn.ReLU(), T=1, D=4), ValueError),
        (lambda: EnergyConstants(e_ac_pj=-1), ValueError),
        (lambda: conv_macs(3, 4, 3, (8, 8), groups=2), ValueError),
        (lambda: layer_energy("x", 10, T=1, firing_rate=-0.1), ValueError),
    ],
)
def test_bad_arguments_raise_clear_errors(call, error):
    with pytest.raises(error):
        call()


def test_input_of_unknown_rank_asks_for_sample_dim():
    lin = nn.Linear(3, 2)
    with EnergyMeter(lin, T=1, D=1) as meter, pytest.raises(ValueError, match="sample_dim"):
        lin(torch.zeros(2, 3))
    with EnergyMeter(lin, T=1, D=1, sample_dim=0) as meter, torch.no_grad():
        lin(torch.ones(2, 3))
    assert meter.report().layers[0].ac_ops == 6  # 2 outputs x 3 inputs x rate 1


# --- The SpikeYOLO authors' Excel method -------------------------------------------------------------------
# tests/data/spikeyolo_s_power_cal.csv holds the inputs of BICLab/SpikeYOLO power_cal.xlsx @309ef5e (sheet 1,
# rows 4-92; firing rates measured by the authors' test.py on the s model). The sheet's totals: 101.21 G MACs,
# ANN 465.57 mJ, SNN 34.49 mJ.


def _sheet_rows() -> list[dict[str, str]]:
    with (DATA / "spikeyolo_s_power_cal.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


def _sheet_layers(stem_pj_per_mac: float | None) -> EnergyReport:
    """The sheet as our layers; ``stem_pj_per_mac`` reproduces the sheet's own stem cost when given."""
    layers = []
    for row in _sheet_rows():
        n = {k: int(row[k]) for k in ("in_channels", "out_channels", "kernel", "stride", "h_in", "w_in",
                                      "h_out", "w_out", "groups")}
        # The sheet's formula uses H_in*W_in/S^2; it equals H_out*W_out on every row.
        assert (n["h_in"] // n["stride"], n["w_in"] // n["stride"]) == (n["h_out"], n["w_out"])
        macs = conv_macs(n["in_channels"], n["out_channels"], n["kernel"], (n["h_out"], n["w_out"]),
                         n["groups"])
        rate = float(row["firing_rate"]) if row["firing_rate"] else None
        if rate is None and stem_pj_per_mac is not None:
            # The sheet charges the stem as if it were an AC layer with "rate" 4.6: 0.9 x 4.6 = 4.14 pJ/MAC.
            rate = stem_pj_per_mac / 0.9
        layers.append(layer_energy(row["neuron"], macs, T=1, firing_rate=rate))
    return EnergyReport(layers=layers, samples=1, T=1, D=4)


def test_excel_method_reproduces_the_authors_34_49_mJ_for_spikeyolo_s():
    rows = _sheet_rows()
    assert len(rows) == 89 and sum(1 for r in rows if not r["firing_rate"]) == 1
    report = _sheet_layers(stem_pj_per_mac=0.9 * 4.6)
    assert report.energy_mj == pytest.approx(34.489370419, rel=1e-9)  # sheet cell U92
    assert report.dense_macs == 101_211_340_800  # sheet cell Q92
    assert report.ann_energy_mj == pytest.approx(465.57216768, rel=1e-9)  # sheet cell S92


def test_our_convention_charges_the_stem_at_E_MAC_and_gives_34_60_mJ():
    sheet = _sheet_layers(stem_pj_per_mac=0.9 * 4.6)
    ours = _sheet_layers(stem_pj_per_mac=None)
    stem_macs = 3 * 64 * 7 * 7 * 160 * 160
    assert ours.layers[0].mac_ops == stem_macs and ours.layers[0].input_kind == "real"
    assert ours.energy_mj - sheet.energy_mj == pytest.approx(stem_macs * (4.6 - 4.14) * 1e-9)
    assert round(ours.energy_mj, 2) == 34.60
    assert ours.mac_ops == stem_macs
    assert math.isclose(ours.synaptic_ops + stem_macs * 4.6, sheet.synaptic_ops, rel_tol=1e-12)


def test_spikeyolo_unfused_energy_equals_fused_energy_layer_by_layer():
    import copy

    from snn_det_zoo.archs.spikeyolo import SpikeYOLO

    torch.manual_seed(0)
    model = SpikeYOLO("n", num_classes=3, img_size=64).eval()
    for module in model.modules():  # trained-like BN statistics, so the fused convs have real biases
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.3)
    images = torch.rand(2, 3, 64, 64)

    def measure(net: nn.Module) -> EnergyReport:
        meter = EnergyMeter(net, T=1, D=4)
        with meter, torch.no_grad():
            net(images)
        return meter.report()

    unfused, fused = measure(model), measure(copy.deepcopy(model).fuse())
    assert not any(".body." in layer.name for layer in unfused.layers)  # RepConv insides are not counted
    assert [(la.name, la.input_kind, la.dense_macs) for la in unfused.layers] == [
        (lb.name, lb.input_kind, lb.dense_macs) for lb in fused.layers]
    assert sum(layer.input_kind == "spike" for layer in unfused.layers) == 88
    assert unfused.synaptic_ops > 0
    assert unfused.synaptic_ops == pytest.approx(fused.synaptic_ops, rel=1e-6)
    assert unfused.energy_mj == pytest.approx(fused.energy_mj, rel=1e-6)
