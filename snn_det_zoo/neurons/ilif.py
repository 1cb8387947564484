"""I-LIF, the integer leaky integrate-and-fire neuron of SpikeYOLO (Luo et al., ECCV 2024, arXiv:2407.20708).

During training the neuron emits integer counts in ``[0, D]``; at inference each count is read as ``D``
binary virtual time steps (see :mod:`snn_det_zoo.neurons.spike_driven`). The defaults are SpikeYOLO's COCO
neuron (``mem_update`` in the authors' ``yolo_spikformer.py``: decay 0.25, D = 4, detached soft reset);
``tau=2, decay_input=True`` is their Gen1 neuron (the modified SpikingJelly 0.0.0.0.12 ``MultiStepLIFNode``
with a threshold-free multi-level fire). Semantics: ``_ilif_reference``.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import surrogate

from ._fused_node import FusedMultiStepNode
from ._ilif_backend import check_backend
from ._ilif_function import ilif_multi_step
from ._ilif_params import ILIFParams
from ._ilif_torch import state_dtype_for

__all__ = ["ILIFNode"]


class ILIFNode(FusedMultiStepNode):
    """Integer LIF neuron, a SpikingJelly ``BaseNode``.

    Per step: charge ``H = (1 - 1/tau) V + X`` (or ``H = V + (X - V)/tau`` with ``decay_input``), fire
    ``S = round(clamp(H / v_threshold, 0, D))`` (half to even), reset ``V = H - S v_threshold`` (``S``
    detached when ``detach_reset``). The gradient is straight-through: 1 where ``0 <= H/v_th <= D``.

    Args:
        max_level: D, the largest integer a neuron emits in one step.
        tau: membrane time constant (>= 1).
        decay_input: charge with ``V + (X - V)/tau`` instead of ``(1 - 1/tau) V + X``.
        v_threshold: the charge of one unit spike.
        detach_reset: detach the spike in the reset (SpikeYOLO does).
        step_mode: ``'s'`` (input ``[N, ...]``) or ``'m'`` (input ``[T, N, ...]``).
        backend: ``'torch'`` (any device; on the CPU the forward is one fused loop compiled at first use,
            ``_ilif_cpu``, and the torch loops where no C compiler works), ``'cupy'`` (CUDA, one kernel launch
            per direction) or ``'auto'``. Every backend runs as the custom op ``snn_det_zoo::ilif_forward``,
            which ``torch.compile`` traces through without a graph break.
        store_v_seq: keep the membrane after every step in ``self.v_seq``.

    The state ``v`` persists across calls, as in SpikingJelly, until ``functional.reset_net``; it is kept in
    float32 for half-precision inputs. ``last_implementation`` names the implementation of the last call.

    Example::

        >>> node = ILIFNode()
        >>> node(torch.tensor([[0.4, 1.5, 2.5, 9.0]]))
        tensor([[0., 2., 2., 4.]])
    """

    def __init__(
        self,
        max_level: int = 4,
        tau: float = 4.0 / 3.0,
        decay_input: bool = False,
        v_threshold: float = 1.0,
        detach_reset: bool = True,
        step_mode: str = "m",
        backend: str = "torch",
        store_v_seq: bool = False,
    ) -> None:
        self.params = ILIFParams(max_level, float(tau), bool(decay_input), float(v_threshold), bool(detach_reset))
        super().__init__(
            v_threshold=float(v_threshold),
            v_reset=None,
            surrogate_function=surrogate.MultiLevelSpikeCount(self.params.max_level),
            detach_reset=bool(detach_reset),
            step_mode=step_mode,
            store_v_seq=store_v_seq,
        )
        self.backend = check_backend(backend)
        self.last_implementation: str | None = None

    @property
    def max_level(self) -> int:
        return self.params.max_level

    @property
    def tau(self) -> float:
        return self.params.tau

    @property
    def decay_input(self) -> bool:
        return self.params.decay_input

    def extra_repr(self) -> str:
        p = self.params
        return (f"max_level={p.max_level}, tau={p.tau:.6g}, decay_input={p.decay_input}, "
                f"v_threshold={p.v_threshold}, detach_reset={p.detach_reset}, step_mode={self.step_mode}, "
                f"backend={self.backend}, store_v_seq={self.store_v_seq}")

    def state_dtype(self, dtype: torch.dtype) -> torch.dtype:
        return state_dtype_for(dtype)

    def _run(self, x_seq: torch.Tensor, v: torch.Tensor | None, store_v_seq: bool):
        self._check_params_in_sync()
        spikes, v_last, v_seq, impl = ilif_multi_step(x_seq, v, self.params, store_v_seq, self.backend)
        self.last_implementation = impl
        return spikes, v_last, v_seq

    def _check_params_in_sync(self) -> None:
        # BaseNode exposes v_threshold and detach_reset as plain attributes; a user may set them.
        if (self.v_threshold, self.detach_reset) != (self.params.v_threshold, self.params.detach_reset):
            p = self.params
            self.params = ILIFParams(p.max_level, p.tau, p.decay_input, float(self.v_threshold),
                                     bool(self.detach_reset))
