"""Pareto-smoothed importance sampling (PSIS) diagnostic of the guide, per sequence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pyrosequence.inference.evaluate import PARTICLE_STEP_BUDGET, log_importance_weights
from pyrosequence.models.core.base import SequenceModel
from pyrosequence.models.core.capabilities import draws_latents, is_whole_program

#: Vehtari et al.'s reading of k-hat: below 0.5 good, 0.5-0.7 usable, above 0.7 unreliable.
KHAT_GOOD, KHAT_BAD = 0.5, 0.7


@dataclass(frozen=True)
class PSISDiagnostic:
    """k-hat of the importance weights ``p(x, z) / q(z | x)`` of each sequence.

    Attributes:
        khat: ``(B,)`` the estimated shape of the generalised Pareto tail of each sequence's
            weights (Vehtari, Simpson, Gelman, Yao and Gabry, "Pareto smoothed importance
            sampling", JMLR 2024). Above ``0.7`` the weights' variance is effectively infinite:
            the guide misses mass of the posterior and importance bounds on that sequence are
            unreliable. ``inf`` when the weights were too few or too degenerate to fit a tail.
        num_particles: weights drawn per sequence.
    """

    khat: np.ndarray
    num_particles: int

    @property
    def fraction_bad(self) -> float:
        """Fraction of sequences with ``k-hat > 0.7``."""
        return float(np.mean(self.khat > KHAT_BAD))


@torch.no_grad()
def psis_khat(model: SequenceModel, x: torch.Tensor, lengths: torch.Tensor | None = None, num_particles: int = 1000) -> PSISDiagnostic:
    """Draw ``num_particles`` importance weights per sequence from the guide
    (:func:`~pyrosequence.inference.evaluate.log_importance_weights`) and fit their Pareto tail
    with ``arviz.psislw``. Needs a model with latents (``z_dim > 0``; for a
    :class:`~pyrosequence.models.PyroProgram`, a guide with latent sites); a few hundred weights or
    more give a stable k-hat.
    """
    from pyrosequence.diagnostics.inference_data import require_arviz

    az = require_arviz()
    program = is_whole_program(model)
    no_latents = f"{type(model).__name__} has no latent variables: its weights are all equal and PSIS does not apply"
    if not program and not model.z_dim:
        raise ValueError(no_latents)
    if isinstance(num_particles, bool) or not isinstance(num_particles, int) or num_particles < 10:
        raise ValueError(f"num_particles must be an integer of at least 10 to fit a tail, got {num_particles!r}")
    seqs = model.prepare(x, lengths)
    if not draws_latents(model, seqs):
        raise ValueError(no_latents)
    chunk = max(1, PARTICLE_STEP_BUDGET // (seqs.num_steps * seqs.batch_size))
    parts, done = [], 0
    while done < num_particles:
        k = min(chunk, num_particles - done)
        parts.append(log_importance_weights(model, seqs, k))
        done += k
    log_w = torch.cat(parts).transpose(0, 1).double().cpu().numpy()  # (B, K)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz warns when k-hat is high; that is the result here
        _, khat = az.psislw(log_w)
    return PSISDiagnostic(khat=np.asarray(khat, dtype=float), num_particles=num_particles)
