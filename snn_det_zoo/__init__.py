"""snn-det-zoo: spiking object detectors (SpikeYOLO, EMS-YOLO, SpiCalib-converted baselines) on SpikingJelly."""

from . import archs  # noqa: F401  (registers every family)
from .errors import ZooError
from .registry import create_model, list_models, model_info, register_model

__version__ = "0.1.0"
__all__ = ["ZooError", "__version__", "create_model", "list_models", "model_info", "register_model"]
