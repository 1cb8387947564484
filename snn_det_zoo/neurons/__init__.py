"""Spiking neurons of the zoo: SpikeYOLO's I-LIF (torch and CuPy paths) and spike-driven expansion."""

from ._ilif_backend import backend_report
from ._ilif_reference import ilif_reference
from .ems_lif import EMSLIFNode, EMSSiLUIntegrator
from .ilif import ILIFNode
from .spike_driven import expand_to_binary, spike_driven_conv2d, sum_virtual_steps

__all__ = [
    "EMSLIFNode",
    "EMSSiLUIntegrator",
    "ILIFNode",
    "backend_report",
    "expand_to_binary",
    "ilif_reference",
    "spike_driven_conv2d",
    "sum_virtual_steps",
]
