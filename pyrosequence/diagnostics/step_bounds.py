"""Per-step log-likelihood of the importance bounds (ELBO, IWAE), for diagnostics.

:func:`pyrosequence.inference.evaluate` reports one number per sequence. Here the same traces
(:func:`~pyrosequence.inference.evaluate.log_importance_weights`'s construction: the guide under a
particle plate, the model replayed against it) are split by step, so a bound can be looked at
over time. The FIVO bound's per-step terms are the particle filter's own log increments and come
from :func:`pyrosequence.diagnostics.forecast.one_step_predictive`.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Independent

import pyro
import pyro.poutine as poutine

from pyrosequence.data.checks import Sequences
from pyrosequence.models.core.base import SequenceModel

#: Bounds split by step here; ``"fivo"`` is handled by the particle filter.
IMPORTANCE_BOUNDS = ("elbo", "iwae")


def step_log_weights(model: SequenceModel, seqs: Sequences, num_particles: int) -> torch.Tensor:
    r"""``w[k, b, t] = log p(x_t | s_{t-1}, z_t) + log p(z_t | s_{t-1}) - log q(z_t | s_{t-1}, x)``
    for ``num_particles`` draws ``z ~ q`` of every sequence, shape ``(K, B, T)``; zero beyond each
    sequence's length. Summed over ``t`` it is the log importance weight ``log p(x, z) - log q(z | x)``.
    """
    k, batch, steps = num_particles, seqs.batch_size, seqs.num_steps
    with torch.no_grad(), pyro.plate("particles", k, dim=-2):
        x = seqs.as_input  # the gaps (and the covariates) survive the model's own validation
        guide_trace = poutine.trace(model.guide).get_trace(x, seqs.lengths)
        model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x, seqs.lengths)
        out = seqs.x.new_zeros(k, batch, steps)
        if model.z_dim:
            for t, name in enumerate(model.latent_sites(steps)):
                z = guide_trace.nodes[name]["value"]
                out[..., t] = model_trace.nodes[name]["fn"].log_prob(z) - guide_trace.nodes[name]["fn"].log_prob(z)
        likelihood = model_trace.nodes[model.obs_name]["fn"]
        if not isinstance(likelihood, Independent) or likelihood.reinterpreted_batch_ndims != 1:
            raise TypeError(f"the observation site of {type(model).__name__} is not a per-step likelihood with to_event(1)")
        per_step = likelihood.base_dist.log_prob(seqs.x)  # masked steps and missing elements score 0
        out = out + per_step.expand(k, batch, steps)
    if seqs.mask is not None:
        out = out.masked_fill(~seqs.mask, 0.0)
    return out


def step_log_likelihood(model: SequenceModel, seqs: Sequences, bound: str, num_particles: int) -> torch.Tensor:
    r"""Per-step terms ``(B, T)`` of an importance bound; they sum over ``t`` to the bound.

    - ``"elbo"``: ``mean_k w[k, b, t]`` (the mean of ``K`` one-sample ELBOs, split by step).
    - ``"iwae"``: the IWAE bound is not a sum over steps, so it is split by telescoping: the term
      of step ``t`` is ``log mean_k exp W_{k,<=t} - log mean_k exp W_{k,<t}`` with
      ``W_{k,<=t} = sum_{s<=t} w[k, b, s]``: the log increments of a particle filter that never
      resamples. The terms sum to the IWAE bound of the whole sequence.

    Zero beyond each sequence's length (callers mask them).
    """
    if bound not in IMPORTANCE_BOUNDS:
        raise ValueError(f"unknown importance bound {bound!r}; choose one of: {', '.join(IMPORTANCE_BOUNDS)}")
    w = step_log_weights(model, seqs, num_particles)
    if bound == "elbo":
        return w.mean(0)
    cumulative = w.cumsum(-1).logsumexp(0) - math.log(num_particles)  # (B, T)
    return torch.diff(cumulative, dim=-1, prepend=cumulative.new_zeros(cumulative.shape[:-1] + (1,)))
