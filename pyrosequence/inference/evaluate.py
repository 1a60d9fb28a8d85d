"""Evaluation of variational bounds on a data set, reported as the FIVO paper does."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

import pyro
import pyro.poutine as poutine
from pyro.poutine.util import site_is_subsample

from pyrosequence.data.checks import Sequences
from pyrosequence.models.base import SequenceModel

#: Default cap on particles x sequences x steps evaluated at once (bounds peak memory).
PARTICLE_STEP_BUDGET = 2**18


@dataclass(frozen=True)
class EvaluationResult:
    """A bound evaluated on a set of sequences.

    Attributes:
        bound: the bound's name (``"elbo"``, ``"iwae"``, ...).
        num_particles: particles per sequence.
        log_likelihood: ``(batch,)`` the bound for each sequence (a lower bound on, or for IWAE
            an estimate of a lower bound on, ``log p(x_b)``).
        num_steps: ``(batch,)`` the length of each sequence.
        per_timestep: ``sum(log_likelihood) / sum(num_steps)``, the normalisation of the FIVO
            paper and its reference code.
    """

    bound: str
    num_particles: int
    log_likelihood: torch.Tensor
    num_steps: torch.Tensor

    @property
    def per_timestep(self) -> float:
        return float(self.log_likelihood.sum() / self.num_steps.sum())

    @property
    def total(self) -> float:
        return float(self.log_likelihood.sum())


def log_importance_weights(model: SequenceModel, seqs: Sequences, num_particles: int) -> torch.Tensor:
    """``log p(x, z_k) - log q(z_k | x)`` per particle and sequence, shape ``(num_particles, batch)``.

    Runs the guide once, vectorized over a particle plate left of the sequence plate, and replays
    the model against it (``poutine.trace``/``poutine.replay``). Pyro's own
    ``vectorized_importance_weights`` sums over the sequences too; the FIVO normalisation needs
    them apart, so the per-site log-densities are summed here keeping the sequence dimension.
    """
    shape = (num_particles, seqs.batch_size)
    with pyro.plate("particles", num_particles, dim=-2):
        guide_trace = poutine.trace(model.guide).get_trace(seqs.x, seqs.lengths)
        model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(seqs.x, seqs.lengths)
    log_w = seqs.x.new_zeros(shape)
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()
        for site in trace.nodes.values():
            if site["type"] == "sample" and not site_is_subsample(site):
                log_w = log_w + sign * site["log_prob"].expand(shape)
    return log_w


@dataclass(frozen=True)
class ImportanceBound:
    """A bound computed from log importance weights drawn in chunks of particles.

    ``reduce_chunk`` turns a ``(k, batch)`` chunk into a ``(1, batch)`` summary, so memory does not
    grow with K; ``finish`` combines the summaries of all K particles into a ``(batch,)`` bound.
    """

    reduce_chunk: Callable[[torch.Tensor], torch.Tensor]
    finish: Callable[[torch.Tensor, int], torch.Tensor]


#: name -> how to turn K log importance weights per sequence into a bound.
IMPORTANCE_BOUNDS: dict[str, ImportanceBound] = {
    # mean of K one-sample ELBOs
    "elbo": ImportanceBound(lambda w: w.sum(0, keepdim=True), lambda s, k: s.sum(0) / k),
    # log (1/K) sum_k w_k  (Burda et al., 2016)
    "iwae": ImportanceBound(lambda w: w.logsumexp(0, keepdim=True), lambda s, k: s.logsumexp(0) - math.log(k)),
}


def evaluate(
    model: SequenceModel,
    x: torch.Tensor,
    lengths: torch.Tensor | None = None,
    bound: str = "elbo",
    num_particles: int = 1,
    batch_size: int | None = None,
    particle_chunk: int | None = None,
) -> EvaluationResult:
    """Evaluate ``bound`` with ``num_particles`` particles on every sequence of ``x``.

    Args:
        model: a :class:`SequenceModel`.
        x: ``(batch, time, x_dim)`` padded sequences.
        lengths: ``(batch,)`` lengths or ``None`` for full-length sequences.
        bound: ``"elbo"`` (the mean of ``num_particles`` one-sample ELBOs) or ``"iwae"``
            (``log mean_k w_k``, Burda et al.).
        num_particles: K. Particles are drawn in chunks, and sequences in batches, so that
            ``K = 1024`` fits in memory.
        batch_size: sequences per pass (default: all, or fewer if the particle budget demands).
        particle_chunk: particles per pass (default: from ``PARTICLE_STEP_BUDGET``).

    Returns:
        :class:`EvaluationResult` with ``log_likelihood`` per sequence and ``per_timestep``.
    """
    if bound not in IMPORTANCE_BOUNDS:
        raise ValueError(f"unknown bound {bound!r}; choose one of: {', '.join(sorted(IMPORTANCE_BOUNDS))}")
    if int(num_particles) < 1:
        raise ValueError(f"the number of particles must be at least 1, got {num_particles}")
    num_particles = int(num_particles)
    seqs = model.prepare(x, lengths)
    n, steps = seqs.batch_size, seqs.num_steps
    batch_size = batch_size or max(1, min(n, PARTICLE_STEP_BUDGET // (steps * min(num_particles, 16))))
    chunk = particle_chunk or max(1, min(num_particles, PARTICLE_STEP_BUDGET // (steps * batch_size)))
    rule = IMPORTANCE_BOUNDS[bound]
    out = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            rows = slice(start, start + batch_size)
            part = Sequences(seqs.x[rows], seqs.lengths[rows], None if seqs.mask is None else seqs.mask[rows])
            chunks, done = [], 0
            while done < num_particles:
                k = min(chunk, num_particles - done)
                chunks.append(rule.reduce_chunk(log_importance_weights(model, part, k)))
                done += k
            out.append(rule.finish(torch.cat(chunks), num_particles))
    return EvaluationResult(bound, num_particles, torch.cat(out), seqs.lengths.clone())
