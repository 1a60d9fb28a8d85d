"""Per-step dynamics of a model on one sequence: the quantities of the VHRNN paper's Figures 3-7."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import kl_divergence

import pyro
import pyro.poutine as poutine

from pyrosequence.diagnostics.forecast import emission_moments
from pyrosequence.models.core.base import SequenceModel
from pyrosequence.models.core.capabilities import is_whole_program, pieces_error


@dataclass(frozen=True)
class StepDynamics:
    """What a model does at each step of one sequence (``T`` steps, ``D`` = x_dim).

    Attributes:
        x: ``(T, D)`` the data.
        kl: ``(T,)`` KL(q(z_t | .) || p(z_t | .)) between the proposal and the prior, averaged over
            ``num_samples`` posterior draws (zero for a model without latents).
        mean: ``(T, D)`` mean of the predictive distribution ``p(x_t | z_t, h_{t-1})``.
        log_variance: ``(T, D)`` log of its variance.
        l2: ``(T,)`` Euclidean distance between ``mean`` and ``x``.
    """

    x: torch.Tensor
    kl: torch.Tensor
    mean: torch.Tensor
    log_variance: torch.Tensor
    l2: torch.Tensor


@torch.no_grad()
def step_dynamics(model: SequenceModel, x: torch.Tensor, num_samples: int = 16) -> StepDynamics:
    """Trace the guide (``num_samples`` draws at once) and replay the model on one sequence
    ``x`` of shape ``(T, D)``; average the per-step KL and the emission's moments over the draws.
    """
    if is_whole_program(model):  # it reads the latent sites z_t and the per-step emission by name
        raise pieces_error(model, "step dynamics (per-step KL and emission moments)")
    if x.dim() != 2:
        raise ValueError(f"x must be one sequence of shape (time, x_dim), got {tuple(x.shape)}")
    batch = x[None]
    with pyro.plate("samples", num_samples, dim=-2):
        guide_trace = poutine.trace(model.guide).get_trace(batch)
        model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(batch)
    steps = x.shape[0]
    kl = torch.zeros(steps)
    for t, name in enumerate(model.latent_sites(steps) if model.z_dim else []):
        kl[t] = kl_divergence(guide_trace.nodes[name]["fn"], model_trace.nodes[name]["fn"]).mean()
    # exact moments where the emission has them, Monte Carlo ones for autoregressive outputs
    moments = emission_moments(model_trace.nodes[model.obs_name]["fn"])
    mean, log_variance = (m.reshape(-1, steps, x.shape[-1]) for m in (moments[0], moments[1].clamp_min(1e-12).log()))
    mean, log_variance = mean.mean(0), log_variance.mean(0)
    return StepDynamics(x=x, kl=kl, mean=mean, log_variance=log_variance, l2=(mean - x).norm(dim=-1))
