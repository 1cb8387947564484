"""snn-det-zoo: spiking object detectors (SpikeYOLO, EMS-YOLO, SpiCalib-converted baselines) on SpikingJelly.

The public names are imported on first use: ``import snn_det_zoo`` is cheap (no torch), so that listing and
describing models from the catalog, and the command line's ``--help``, answer at once.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["ZooError", "__version__", "create_model", "list_models", "model_info", "register_model"]

_LAZY = {
    "ZooError": "errors",
    "create_model": "factory",
    "list_models": "registry",
    "model_info": "registry",
    "register_model": "registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
