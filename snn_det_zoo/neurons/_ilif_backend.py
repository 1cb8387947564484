"""Which I-LIF implementation runs: the requested backend, an environment override, and the reasons.

``backend="torch"`` runs the graph-free torch loops on any device (on the CPU the forward is one fused loop
compiled at first use, ``_ilif_cpu``, where a C compiler works); ``"cupy"`` the CuPy kernels (CUDA only,
and an error where CuPy or CUDA is missing, never a silent fallback); ``"auto"`` the CuPy kernels on CUDA
tensors when CuPy imports, else torch. ``SNN_DET_ZOO_ILIF_BACKEND`` (torch, cupy or auto) overrides what
the modules ask for, for the whole process.
"""

from __future__ import annotations

import importlib
import os
from functools import cache

import torch

from ..errors import BackendUnavailableError, InvalidArgumentError

__all__ = ["BACKENDS", "ENV_VAR", "backend_report", "check_backend", "cupy_unavailable_reason", "resolve_backend"]

BACKENDS = ("torch", "cupy", "auto")
ENV_VAR = "SNN_DET_ZOO_ILIF_BACKEND"
_CUPY_HINT = "pip install 'snn-det-zoo[cuda]' (cupy-cuda13x) on a machine with CUDA"


def _env_override() -> str | None:
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return None
    if value not in BACKENDS:
        raise InvalidArgumentError(f"{ENV_VAR}={value!r} is not one of {BACKENDS}")
    return value


@cache
def cupy_unavailable_reason() -> str | None:
    """``None`` when the CuPy kernels can run here, else why not (kept, like SpikingJelly's selection)."""
    if not torch.cuda.is_available():
        return "CUDA is not available to torch"
    try:
        importlib.import_module("cupy")
    except Exception as exc:  # an ImportError, or a CUDA-library error raised while importing
        return f"cupy does not import ({type(exc).__name__}: {exc}); {_CUPY_HINT}"
    return None


def check_backend(backend: str) -> str:
    """Validate a requested backend at construction; ``"cupy"`` needs CuPy and CUDA right away."""
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {BACKENDS}, got {backend!r}")
    effective = _env_override() or backend
    if effective == "cupy":
        reason = cupy_unavailable_reason()
        if reason is not None:
            raise BackendUnavailableError(f"I-LIF backend 'cupy' cannot run here: {reason}")
    return backend


def resolve_backend(backend: str, device: torch.device) -> str:
    """The implementation (``"torch"`` or ``"cupy"``) that runs for tensors on ``device``."""
    effective = _env_override() or backend
    if effective == "torch":
        return "torch"
    if effective == "cupy":
        if device.type != "cuda":
            raise InvalidArgumentError(f"I-LIF backend 'cupy' needs CUDA tensors, got a tensor on {device}; "
                                       "use backend='torch' or 'auto' for CPU tensors")
        reason = cupy_unavailable_reason()
        if reason is not None:
            raise BackendUnavailableError(f"I-LIF backend 'cupy' cannot run here: {reason}")
        return "cupy"
    return "cupy" if device.type == "cuda" and cupy_unavailable_reason() is None else "torch"


def backend_report(backend: str = "auto", device: str | torch.device = "cpu") -> dict[str, object]:
    """What runs for ``backend`` on ``device`` and why the others do not: ``{'implementation', 'unavailable'}``."""
    device = torch.device(device)
    unavailable: dict[str, str] = {}
    reason = cupy_unavailable_reason()
    if device.type != "cuda":
        unavailable["cupy"] = f"tensors on {device} are not CUDA tensors"
    elif reason is not None:
        unavailable["cupy"] = reason
    try:
        implementation: str | None = resolve_backend(backend, device)
        error = None
    except (ValueError, RuntimeError) as exc:
        implementation, error = None, str(exc)
    if device.type == "cpu":
        from ._ilif_cpu import cpu_kernel_unavailable_reason

        reason = cpu_kernel_unavailable_reason()
        if reason is not None:  # the torch backend's forward then runs the torch loops
            unavailable["cpu_fused_loop"] = reason
    return {"implementation": implementation, "requested": backend, "env_override": _env_override(),
            "unavailable": unavailable, "error": error}
