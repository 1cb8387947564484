"""Spiking neurons of the zoo: SpikeYOLO's I-LIF (torch and CuPy paths), spike-driven expansion, EMS-YOLO's LIF,
and the conversion neurons (IF with soft reset, burst IF, SpiCalib) with the lossless max-pool."""

from ._cpu_buffers import cpu_buffer_cache_info, empty_cpu_buffer_cache
from ._ilif_backend import backend_report
from ._ilif_reference import ilif_reference
from .conversion import BurstIFNode, LosslessMaxPool2d, SpiCalibIFNode
from .ems_lif import EMSLIFNode, EMSSiLUIntegrator
from .ilif import ILIFNode
from .spike_driven import expand_to_binary, spike_driven_conv2d, sum_virtual_steps

__all__ = [
    "BurstIFNode",
    "EMSLIFNode",
    "EMSSiLUIntegrator",
    "ILIFNode",
    "LosslessMaxPool2d",
    "SpiCalibIFNode",
    "backend_report",
    "cpu_buffer_cache_info",
    "empty_cpu_buffer_cache",
    "expand_to_binary",
    "ilif_reference",
    "spike_driven_conv2d",
    "sum_virtual_steps",
]
