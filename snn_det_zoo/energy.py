"""Energy accounting: input firing rates, synaptic operations and compute energy per layer.

The model (shared by SpikeYOLO and EMS-YOLO papers, and stated here so every number carries it):

- A *synaptic layer* is a convolution or a linear layer. Its dense cost is ``MACs`` = output elements x
  (input channels / groups) x kernel size, counted on the tensors that really flow through it.
- When its input holds spikes or I-LIF integer counts (non-negative integers no larger than ``D``), each unit
  spike triggers accumulations only: ``AC = MACs x firing rate``, where the firing rate is the mean integer
  count per input element per time step (so a count of 3 costs three unit spikes, and the ``D`` virtual steps
  are inside the rate, not a further factor). Summed over the ``T`` steps the model runs, this is the
  authors' ``FLOPs x fr x T``.
- When its input is real-valued (the encoding stem, a real-valued shortcut feeding a conv), every MAC is paid:
  ``MAC = MACs``.
- Energy = ``E_AC x AC + E_MAC x MAC`` with the 45 nm constants of Horowitz (ISSCC 2014) used by the papers,
  ``E_AC = 0.9 pJ``, ``E_MAC = 4.6 pJ``, unless the caller passes others.

What is *not* modelled, as in the papers: memory access, neuron state updates, batch-norm and additions
(folded or negligible at inference), pooling, and the exact edge effects of padding (a spike at the border
reaches fewer outputs; the rate model charges it the full fan-out).

Re-parameterisable blocks (SpikeYOLO's ``RepConv``, ``SepRepConv``) run unfused, with batch norms *between*
their convolutions, so a hook on each inner conv would see real-valued inputs and charge MACs the deployed
network never pays. A module that defines ``fused_conv_geometry()`` (returning a :class:`ConvGeometry`) is
therefore counted as the single convolution it folds into, with its own input as the input; its children
are not counted. This is the authors' convention (``power_cal.xlsx`` counts each such block as one 3x3 conv).

Rates are accumulated over every forward call while the meter is active, weighted by element count (not an
average of per-batch means, which depends on the batch size), so a whole evaluation set gives one rate per
layer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ._atomic import write_csv_atomic
from .errors import InvalidArgumentError
from .nn.layer_geometry import ConvGeometry

__all__ = [
    "E_AC_PJ",
    "E_MAC_PJ",
    "EnergyConstants",
    "EnergyMeter",
    "EnergyReport",
    "LayerEnergy",
    "LayerTally",
    "conv_macs",
    "is_spike_tensor",
    "layer_energy",
    "report_dict",
    "summarize",
]

# 45 nm, 32-bit (Horowitz, ISSCC 2014), as used by SpikeYOLO, EMS-YOLO and SpikingJelly's simple estimator.
E_AC_PJ = 0.9
E_MAC_PJ = 4.6

InputKind = Literal["spike", "real"]


@dataclass(frozen=True)
class EnergyConstants:
    """Energy per operation, in picojoules, and the process they refer to."""

    e_ac_pj: float = E_AC_PJ
    e_mac_pj: float = E_MAC_PJ
    technology: str = "45nm"

    def __post_init__(self) -> None:
        for name in ("e_ac_pj", "e_mac_pj"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise InvalidArgumentError(f"EnergyConstants.{name} must be a non-negative number of pJ, got {value!r}")

    def describe(self) -> str:
        """A short label for result rows, e.g. ``'E_AC=0.9pJ E_MAC=4.6pJ (45nm)'``."""
        return f"E_AC={self.e_ac_pj:g}pJ E_MAC={self.e_mac_pj:g}pJ ({self.technology})"


def conv_macs(in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
              out_hw: tuple[int, int], groups: int = 1) -> int:
    """Dense MACs of one 2-D convolution for one frame: ``Cin/groups * Cout * k_h * k_w * H_out * W_out``."""
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
        if not isinstance(value, int) or value <= 0:
            raise InvalidArgumentError(f"conv_macs: {name} must be a positive integer, got {value!r}")
    if in_channels % groups or out_channels % groups:
        raise InvalidArgumentError(f"conv_macs: groups={groups} must divide in_channels={in_channels} and "
                                   f"out_channels={out_channels}")
    return in_channels // groups * out_channels * kh * kw * out_hw[0] * out_hw[1]


def is_spike_tensor(x: torch.Tensor, max_level: int, signed: bool = False) -> bool:
    """Whether ``x`` holds spikes or integer spike counts: every value an integer in ``[0, max_level]`` (with
    ``signed``, in ``[-max_level, max_level]``: SpiCalib's negative spikes are spikes too)."""
    if x.is_complex():
        return False
    low = -max_level if signed else 0
    if not x.is_floating_point():
        return x.numel() == 0 or bool(((x >= low) & (x <= max_level)).all())
    if x.numel() == 0:
        return True
    return bool(((x >= low) & (x <= max_level) & (x == torch.round(x))).all())


@dataclass
class LayerEnergy:
    """One synaptic layer's cost for one sample (an image or an event sample) of the measured set.

    ``dense_macs`` is what the layer would cost as an ANN (all its time steps); ``ac_ops`` and ``mac_ops``
    are the synaptic operations of the spiking network; ``firing_rate`` is the mean integer count per input
    element per time step over the spike-input calls (``nan`` when the layer never saw spikes).
    """

    name: str
    op: str
    input_kind: str  # "spike", "real" or "mixed"
    dense_macs: float
    firing_rate: float
    ac_ops: float
    mac_ops: float
    energy_pj: float
    spike_macs: float = 0.0  # the part of dense_macs whose input held spikes

    @property
    def energy_mj(self) -> float:
        return self.energy_pj * 1e-9


_CSV_COLUMNS = ("layer", "op", "input_kind", "T", "D", "dense_macs_per_step", "firing_rate", "ac_ops",
                "mac_ops", "energy_pj", "energy_mj", "e_ac_pj", "e_mac_pj")


@dataclass
class EnergyReport:
    """Per-sample totals over a measured set, with the per-layer breakdown and the constants used."""

    layers: list[LayerEnergy]
    samples: int
    T: int
    D: int
    constants: EnergyConstants = field(default_factory=EnergyConstants)

    @property
    def synaptic_ops(self) -> float:
        """Accumulate operations (AC) per sample: spike-driven synaptic operations."""
        return sum(layer.ac_ops for layer in self.layers)

    @property
    def mac_ops(self) -> float:
        """Multiply-accumulate operations per sample on real-valued inputs."""
        return sum(layer.mac_ops for layer in self.layers)

    @property
    def dense_macs(self) -> float:
        """MACs per sample of the same network run as an ANN (every input dense), over all its time steps."""
        return sum(layer.dense_macs for layer in self.layers)

    @property
    def energy_mj(self) -> float:
        return sum(layer.energy_pj for layer in self.layers) * 1e-9

    @property
    def ann_energy_mj(self) -> float:
        """The same dense MACs at ``E_MAC``: the papers' ANN reference."""
        return self.dense_macs * self.constants.e_mac_pj * 1e-9

    @property
    def firing_rate(self) -> float:
        """Mean integer count per element per time step over all spike inputs, weighted by dense MACs.

        Weighting by the MACs each input feeds makes ``synaptic_ops == firing_rate x spike-input MACs``.
        """
        spike_macs = sum(layer.spike_macs for layer in self.layers)
        return self.synaptic_ops / spike_macs if spike_macs else 0.0

    def totals(self) -> dict[str, Any]:
        """Scalar summary for a result row."""
        return {
            "samples": self.samples, "T": self.T, "D": self.D,
            "synaptic_ops": self.synaptic_ops, "mac_ops": self.mac_ops, "dense_macs": self.dense_macs,
            "energy_mj": self.energy_mj, "ann_energy_mj": self.ann_energy_mj, "firing_rate": self.firing_rate,
            "energy_constants": self.constants.describe(),
        }

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the per-layer breakdown (one row per layer, per sample) atomically; returns the path."""
        rows = []
        for layer in self.layers:
            rows.append({
                "layer": layer.name, "op": layer.op, "input_kind": layer.input_kind, "T": self.T, "D": self.D,
                "dense_macs_per_step": f"{layer.dense_macs / self.T:.6g}",
                "firing_rate": "" if math.isnan(layer.firing_rate) else f"{layer.firing_rate:.6g}",
                "ac_ops": f"{layer.ac_ops:.6g}", "mac_ops": f"{layer.mac_ops:.6g}",
                "energy_pj": f"{layer.energy_pj:.6g}", "energy_mj": f"{layer.energy_mj:.6g}",
                "e_ac_pj": self.constants.e_ac_pj, "e_mac_pj": self.constants.e_mac_pj,
            })
        return write_csv_atomic(path, _CSV_COLUMNS, rows)


_TALLY_FIELDS = ("spike_macs", "spike_ops", "spike_count", "spike_elements", "real_macs")


@dataclass
class LayerTally:
    """Running sums for one synaptic layer over every call while a meter is active.

    ``spike_ops`` sums, call by call, the dense MACs times that call's mean input count, so batches of
    different sizes or shapes weigh exactly what they cost.
    """

    op: str
    spike_macs: float = 0.0  # dense MACs of the calls whose input held spikes / counts
    spike_ops: float = 0.0  # sum over those calls of dense MACs x mean input count
    spike_count: float = 0.0  # sum of the input counts of those calls
    spike_elements: float = 0.0  # input elements of those calls
    real_macs: float = 0.0  # dense MACs of the calls whose input was real-valued

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([getattr(self, f) for f in _TALLY_FIELDS], dtype=torch.float64)

    def load(self, values: torch.Tensor) -> None:
        for f, v in zip(_TALLY_FIELDS, values.tolist(), strict=True):
            setattr(self, f, float(v))


def layer_energy(name: str, dense_macs_per_step: float, T: int, firing_rate: float | None,
                 constants: EnergyConstants | None = None, op: str = "conv2d") -> LayerEnergy:
    """One layer's energy per sample from its dense MACs per time step.

    ``firing_rate`` (mean integer count per input element per step) makes it a spike-input layer,
    ``AC = MACs x fr x T``; ``None`` makes it a real-input layer, ``MAC = MACs x T``. This is the arithmetic
    of the papers' hand calculations, for layers whose rates were measured elsewhere.
    """
    constants = constants or EnergyConstants()
    _check_positive_int("T", T)
    if not dense_macs_per_step >= 0:
        raise InvalidArgumentError(f"layer {name!r}: dense_macs_per_step must be >= 0, got {dense_macs_per_step!r}")
    dense = dense_macs_per_step * T
    if firing_rate is None:
        return LayerEnergy(name=name, op=op, input_kind="real", dense_macs=dense, firing_rate=math.nan,
                           ac_ops=0.0, mac_ops=dense, energy_pj=dense * constants.e_mac_pj)
    if not firing_rate >= 0:
        raise InvalidArgumentError(f"layer {name!r}: firing_rate must be >= 0 (a mean count), got {firing_rate!r}")
    ac = dense * firing_rate
    return LayerEnergy(name=name, op=op, input_kind="spike", dense_macs=dense, firing_rate=firing_rate,
                       ac_ops=ac, mac_ops=0.0, energy_pj=ac * constants.e_ac_pj, spike_macs=dense)


def summarize(tallies: dict[str, LayerTally], samples: int, T: int, D: int,
              constants: EnergyConstants | None = None) -> EnergyReport:
    """Turn whole-set sums (one :class:`LayerTally` per layer) into per-sample layer energies."""
    constants = constants or EnergyConstants()
    if isinstance(samples, bool) or not isinstance(samples, int) or samples <= 0:
        raise InvalidArgumentError(f"summarize needs a positive number of samples, got {samples!r}")
    _check_positive_int("T", T)
    _check_positive_int("D", D)
    layers = []
    for name, t in tallies.items():
        rate = t.spike_count / t.spike_elements if t.spike_elements else math.nan
        ac = t.spike_ops / samples
        mac = t.real_macs / samples
        kind = "mixed" if t.spike_elements and t.real_macs else ("spike" if t.spike_elements else "real")
        layers.append(LayerEnergy(
            name=name, op=t.op, input_kind=kind, dense_macs=(t.spike_macs + t.real_macs) / samples,
            firing_rate=rate, ac_ops=ac, mac_ops=mac,
            energy_pj=ac * constants.e_ac_pj + mac * constants.e_mac_pj, spike_macs=t.spike_macs / samples,
        ))
    return EnergyReport(layers=layers, samples=samples, T=T, D=D, constants=constants)


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")


def _fused_geometry(module: nn.Module) -> ConvGeometry | None:
    getter = getattr(module, "fused_conv_geometry", None)
    if getter is None:
        return None
    geometry = getter()
    if not isinstance(geometry, ConvGeometry):
        raise TypeError(f"{type(module).__name__}.fused_conv_geometry() must return a ConvGeometry, "
                        f"got {type(geometry).__name__}")
    return geometry


def _synaptic_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module, ConvGeometry | None]]:
    """Convs, linears and fused blocks in module order, skipping the insides of fused blocks."""
    fused_prefixes: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix) for prefix in fused_prefixes):
            continue
        geometry = _fused_geometry(module)
        if geometry is not None:
            fused_prefixes.append(f"{name}." if name else "")
            yield name or "<root>", module, geometry
        elif isinstance(module, nn.modules.conv._ConvNd | nn.Linear):
            yield name or "<root>", module, None


def _dense_macs(module: nn.Module, geometry: ConvGeometry | None, out: torch.Tensor) -> float:
    if geometry is not None:
        return out.numel() * geometry.macs_per_output_element()
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    conv: nn.modules.conv._ConvNd = module  # type: ignore[assignment]
    return out.numel() * (conv.in_channels // conv.groups) * math.prod(conv.kernel_size)


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, list | tuple) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


class EnergyMeter:
    """Forward hooks that measure firing rates and synaptic operations of a model over a whole data set.

    Example::

        meter = EnergyMeter(model, T=1, D=4)
        with meter, torch.no_grad():
            for images, _ in loader:
                model(images)          # the root input's batch size counts the samples
        report = meter.report()        # per-sample totals; report.to_csv("energy.csv")

    Args:
        model: the network; its convs, linears and fused blocks (``fused_conv_geometry()``) are counted.
        T: time steps per sample (reported; the counts do not depend on it).
        D: the largest spike count one neuron emits in one step (4 for SpikeYOLO's I-LIF, 1 for binary
            spikes); an input whose values are all integers in ``[0, D]`` is a spike input, and also in
            ``[-D, D]`` where the model says ``signed_spikes = True`` (a spike of either sign is one AC).
        constants: energy per AC and per MAC (45 nm defaults).
        sample_dim: which dimension of the model's input is the batch. ``None`` (default) infers it:
            dimension 0 of a 4-D ``[B, C, H, W]`` input, dimension 1 of a 5-D ``[T, B, C, H, W]`` input.
    """

    def __init__(self, model: nn.Module, T: int, D: int, constants: EnergyConstants | None = None,
                 sample_dim: int | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"EnergyMeter needs an nn.Module, got {type(model).__name__}")
        _check_positive_int("T", T)
        _check_positive_int("D", D)
        self.model, self.T, self.D = model, T, D
        self.signed = bool(getattr(model, "signed_spikes", False))
        self.constants = constants or EnergyConstants()
        self.sample_dim = sample_dim
        self.samples = 0
        self._tallies: dict[str, LayerTally] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        for name, module, geometry in _synaptic_layers(model):
            op = "fused_conv" if geometry is not None else type(module).__name__.lower()
            self._tallies[name] = LayerTally(op=op)
        if not self._tallies:
            raise InvalidArgumentError(f"{type(model).__name__} has no convolution or linear layer to count")

    def __enter__(self) -> EnergyMeter:
        self.attach()
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def attach(self) -> None:
        """Register the hooks (idempotent)."""
        if self._handles:
            return
        self._handles.append(self.model.register_forward_pre_hook(self._count_samples))
        for name, module, geometry in _synaptic_layers(self.model):
            self._handles.append(module.register_forward_hook(self._make_hook(name, geometry)))

    def detach(self) -> None:
        """Remove the hooks; the sums are kept."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def reset(self) -> None:
        """Forget everything measured so far."""
        self.samples = 0
        for tally in self._tallies.values():
            tally.load(torch.zeros(len(_TALLY_FIELDS), dtype=torch.float64))

    def _count_samples(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        x = _first_tensor(args)
        if x is None:
            raise TypeError("EnergyMeter counts samples from the model's first positional tensor argument")
        dim = self.sample_dim
        if dim is None:
            if x.dim() not in (4, 5):
                raise InvalidArgumentError(f"cannot infer the batch dimension of a {x.dim()}-D input "
                                           f"{tuple(x.shape)}; pass sample_dim= to EnergyMeter")
            dim = 0 if x.dim() == 4 else 1
        self.samples += int(x.shape[dim])

    def _make_hook(self, name: str, geometry: ConvGeometry | None) -> Any:
        tally = self._tallies[name]

        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            x, y = _first_tensor(args), _first_tensor(out)
            if x is None or y is None:
                return
            macs = _dense_macs(module, geometry, y)
            x = x.detach()
            if is_spike_tensor(x, self.D, self.signed):
                count = float((x.abs() if self.signed else x).sum(dtype=torch.float64))
                tally.spike_macs += macs
                tally.spike_ops += macs * count / max(x.numel(), 1)
                tally.spike_count += count
                tally.spike_elements += x.numel()
            else:
                tally.real_macs += macs

        return hook

    def sync_distributed(self) -> None:
        """Sum the measurements of all ranks (under ``torch.distributed``); every rank gets the totals."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        names = list(self._tallies)
        state = torch.stack([self._tallies[n].as_tensor() for n in names])
        state = torch.cat([state.flatten(), torch.tensor([float(self.samples)], dtype=torch.float64)])
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        state = state.to(device)
        dist.all_reduce(state)
        state = state.cpu()
        width = len(_TALLY_FIELDS)
        for i, name in enumerate(names):
            self._tallies[name].load(state[width * i: width * (i + 1)])
        self.samples = int(state[-1])

    def report(self) -> EnergyReport:
        """Per-sample energy over everything measured since construction or :meth:`reset`."""
        if self.samples == 0:
            raise RuntimeError("EnergyMeter has measured no samples; run the model inside `with meter:`")
        tallies = {name: t for name, t in self._tallies.items() if t.spike_macs or t.real_macs}
        return summarize(tallies, self.samples, self.T, self.D, self.constants)


def report_dict(report: EnergyReport) -> dict[str, Any]:
    """The report as plain data (JSON-friendly): totals plus the per-layer list."""
    return {**report.totals(), "layers": [asdict(layer) for layer in report.layers]}
