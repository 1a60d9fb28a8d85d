"""Slicing a distribution batched over time into per-step distributions.

The model side of :class:`~pyrosequence.models.base.SequenceModel` can evaluate a time-homogeneous
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
