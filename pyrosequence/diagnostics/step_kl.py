"""Per-step KL and predicted variance over many sequences, from :func:`step_dynamics`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pyrosequence.diagnostics.dynamics import step_dynamics
from pyrosequence.models.core.base import SequenceModel
from pyrosequence.models.core.capabilities import is_whole_program, pieces_error


@dataclass(frozen=True)
class StepCurves:
    """Per-step curves of several sequences (``B`` sequences, ``T`` steps), NaN beyond a length.

    Attributes:
        kl: ``(B, T)`` ``KL(q(z_t | .) || p(z_t | .))`` averaged over posterior draws.
        log_variance: ``(B, T)`` log-variance of ``p(x_t | z_t, s_{t-1})`` given posterior draws,
            averaged over draws and features.
        l2: ``(B, T)`` distance of that distribution's mean to ``x_t``.
    """

    kl: np.ndarray
    log_variance: np.ndarray
    l2: np.ndarray


def step_curves(model: SequenceModel, x: torch.Tensor, lengths: torch.Tensor | None = None, num_samples: int = 16) -> StepCurves:
    """Run :func:`~pyrosequence.diagnostics.dynamics.step_dynamics` on every sequence of ``x``
    (``(B, T, D)``, each cut to its length) and stack the results, padding with NaN."""
    if is_whole_program(model):
        raise pieces_error(model, "step curves (per-step KL and emission moments)")
    seqs = model.prepare(x, lengths)
    shape = (seqs.batch_size, seqs.num_steps)
    kl, log_variance, l2 = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for b in range(seqs.batch_size):
        n = int(seqs.lengths[b])
        dyn = step_dynamics(model, seqs.x[b, :n], num_samples=num_samples)
        kl[b, :n] = dyn.kl.cpu().numpy()
        log_variance[b, :n] = dyn.log_variance.mean(-1).cpu().numpy()
        l2[b, :n] = dyn.l2.cpu().numpy()
    return StepCurves(kl=kl, log_variance=log_variance, l2=l2)
