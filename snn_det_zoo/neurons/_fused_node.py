"""A SpikingJelly node whose single- and multi-step modes both run one fused multi-step op."""

from __future__ import annotations

import torch
from spikingjelly.activation_based.neuron import BaseNode

from ..errors import InvalidArgumentError

__all__ = ["FusedMultiStepNode"]


class FusedMultiStepNode(BaseNode):
    """Base of the zoo's neurons: every call goes through ``_run`` over ``[T, N, ...]``.

    A subclass implements ``_run(x_seq, v0, store_v_seq) -> (spikes, v_last, v_seq or None)``, where ``v0`` is
    the state tensor, or ``None`` for a fresh state (the kernels then start from zero without reading memory).
    A single step is the same op with T = 1, so both step modes give bit-identical results. The state ``v``
    persists across calls, as in SpikingJelly, until ``functional.reset_net``.
    """

    def _run(self, x_seq: torch.Tensor, v0: torch.Tensor | None, store_v_seq: bool):
        raise NotImplementedError

    def state_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """The dtype the membrane is kept in for inputs of ``dtype``."""
        return dtype

    def _initial_state(self, v: object, x_seq: torch.Tensor) -> torch.Tensor | None:
        if not isinstance(v, torch.Tensor):
            return None
        if v.shape != x_seq.shape[1:]:
            raise InvalidArgumentError(
                f"{self._get_name()} state has shape {tuple(v.shape)} but the input step has "
                f"{tuple(x_seq.shape[1:])}; call spikingjelly.activation_based.functional.reset_net(model) "
                "between inputs of different shapes"
            )
        dtype = self.state_dtype(x_seq.dtype)
        return v if v.dtype == dtype and v.device == x_seq.device else v.to(dtype=dtype, device=x_seq.device)

    def materialize_states(
        self, inputs: tuple[torch.Tensor, ...], states: tuple[object, ...], step_mode: str
    ) -> tuple[object, ...]:
        x_seq = inputs[0] if step_mode == "m" else inputs[0].unsqueeze(0)
        v = self._initial_state(states[0], x_seq)
        if v is None:
            v = torch.zeros(x_seq.shape[1:], dtype=self.state_dtype(x_seq.dtype), device=x_seq.device)
        return (v, *states[1:])

    def single_step_functional_forward(self, inputs, states, **kwargs):
        x_seq = inputs[0].unsqueeze(0)
        spikes, v_last, _ = self._run(x_seq, self._initial_state(states[0], x_seq), False)
        return (spikes[0],), (v_last, *states[1:])

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        spikes, v_last, _ = self._run(inputs[0], self._initial_state(states[0], inputs[0]), False)
        return (spikes,), (v_last, *states[1:])

    def single_step_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        x_seq = x.unsqueeze(0)
        spikes, v_last, _ = self._run(x_seq, self._initial_state(self.v, x_seq), False)
        self.v = v_last
        if self.store_v_seq:
            self._append_v_seq(v_last)
        return spikes[0]

    def multi_step_forward(self, x_seq: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        spikes, v_last, v_seq = self._run(x_seq, self._initial_state(self.v, x_seq), self.store_v_seq)
        self.v = v_last
        self.v_seq = v_seq
        return spikes
