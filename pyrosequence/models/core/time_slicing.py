"""Moving between whole sequences and time steps: per-step slices of a context, states stacked
over time, and a distribution batched over time sliced into per-step distributions.

The model side of :class:`~pyrosequence.models.core.base.SequenceModel` can evaluate a time-homogeneous
prior for all steps at once (when the guide has already computed the states), and then needs one
distribution per ``z_t`` site. Only distributions whose parameters are plain tensors listed in
``arg_constraints`` (Normal, Bernoulli, Laplace, StudentT, ...), possibly wrapped in
``Independent``, can be sliced; :func:`time_slices` returns ``None`` for anything else and the
caller falls back to computing step by step.
"""

from __future__ import annotations

import torch
import torch.distributions as tdist

import pyro.distributions as dist

from pyrosequence.nn.cells import State, map_state

#: What ``context``/``proposal_context`` return: a ``(batch, time, ...)`` tensor, a tuple of them, or None.
Context = torch.Tensor | tuple[torch.Tensor, ...] | None


def context_steps(context: Context, num_steps: int) -> list:
    """Split a ``(batch, time, ...)`` context (or a tuple of them) into per-step slices."""
    if context is None:
        return [None] * num_steps
    if isinstance(context, tuple):
        return list(zip(*(c.unbind(1) for c in context)))
    return list(context.unbind(1))


def stack_states(states: list[State], dim: int = -2) -> State:
    """Stack per-step states (tensors or tuples of tensors) on a new time dimension ``dim``."""
    return map_state(lambda *parts: torch.stack(torch.broadcast_tensors(*parts), dim=dim), *states)

_SLICEABLE = (dist.Normal, dist.Bernoulli, dist.Laplace, dist.StudentT, dist.Gamma, dist.Beta, dist.LogNormal)


def time_slices(d: tdist.Distribution, num_steps: int) -> list[tdist.Distribution] | None:
    """Split ``d`` (batch shape ``(..., num_steps)``) into ``num_steps`` distributions.

    Returns ``None`` when ``d``'s type is not known to be sliceable this way.
    """
    reinterpreted = 0
    base = d
    if isinstance(base, dist.Independent):
        reinterpreted = base.reinterpreted_batch_ndims
        base = base.base_dist
    if type(base) not in _SLICEABLE or not d.batch_shape or d.batch_shape[-1] != num_steps:
        return None
    # The time dimension counted from the right of each parameter tensor.
    position = 1 + reinterpreted + len(base.event_shape)
    params = {name: base.__dict__[name] for name in base.arg_constraints if name in base.__dict__}
    per_step = []
    for name, value in params.items():
        if not torch.is_tensor(value):
            return None
        if value.dim() < position:
            per_step.append([value] * num_steps)  # constant over time
        else:
            per_step.append(value.unbind(value.dim() - position) if value.shape[-position] == num_steps else
                            [value.squeeze(value.dim() - position)] * num_steps)
    out = []
    for t in range(num_steps):
        piece = type(base)(**{name: values[t] for name, values in zip(params, per_step)}, validate_args=False)
        out.append(piece.to_event(reinterpreted) if reinterpreted else piece)
    return out
