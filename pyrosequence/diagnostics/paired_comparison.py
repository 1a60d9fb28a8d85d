"""Is model A better than model B on these sequences? A paired comparison of two bounds.

Two models scored on the same test sequences give per-sequence bounds ``a_b`` and ``b_b``; the
papers compare the per-time-step figures ``sum_b a_b / sum_b T_b`` and ``sum_b b_b / sum_b T_b``.
Their difference,

    D = sum_b (a_b - b_b) / sum_b T_b,

carries two kinds of uncertainty that a single pair of figures hides:

* **over sequences**: another draw of test sequences (other chorales, other companies) would
  give another ``D``. With the sequences as the sampling unit, ``D`` is a ratio estimator; its
  standard error is ``sqrt(n / (n - 1) * sum_b r_b^2) / sum_b T_b`` with residuals
  ``r_b = (a_b - b_b) - D * T_b`` (the usual linearisation; for equal lengths it is the standard
  error of the mean per-step difference). A percentile bootstrap over sequences gives an interval
  that does not assume normality, which matters when a few sequences carry most of the
  difference (heavy-tailed data such as daily returns in a crash);
* **over evaluation draws**: a particle bound is itself random; the spread of ``D`` over
  evaluation seeds (:func:`seed_spread`) is the Monte Carlo part.

Both are reported by ``pyrosequence compare RUN_A RUN_B``; neither says which model has the
higher true likelihood when the bounds are loose (a tighter bound at more particles can reorder
two models whose proposals differ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from pyrosequence.inference.evaluate import EvaluationResult


@dataclass(frozen=True)
class PairedComparison:
    """Bound A minus bound B on the same sequences (see the module docstring).

    Attributes:
        a_per_timestep, b_per_timestep: each model's figure, ``sum(bound) / sum(steps)``.
        difference: ``D``, A minus B per time step (positive: A's bound is higher).
        standard_error: the standard error of ``D`` over sequences (0 for one sequence).
        interval: ``(low, high)``, the percentile bootstrap interval of ``D`` over sequences at
            ``level``.
        level: the interval's coverage, e.g. 0.95.
        per_sequence: ``(n,)`` ``a_b - b_b``, each sequence's difference in nats (not per step).
        num_steps: ``(n,)`` each sequence's length.
        a_higher: on how many sequences A's bound is higher.
    """

    a_per_timestep: float
    b_per_timestep: float
    difference: float
    standard_error: float
    interval: tuple[float, float]
    level: float
    per_sequence: torch.Tensor
    num_steps: torch.Tensor
    a_higher: int

    @property
    def num_sequences(self) -> int:
        return int(self.per_sequence.shape[0])

    def largest(self, k: int = 5) -> list[tuple[int, float]]:
        """The ``k`` sequences with the largest ``|a_b - b_b|``: ``[(index, difference per step
        of that sequence), ...]``, largest first."""
        per_step = self.per_sequence / self.num_steps
        order = torch.argsort(self.per_sequence.abs(), descending=True)[:k]
        return [(int(i), float(per_step[i])) for i in order]

    def without_largest(self, k: int) -> float:
        """``D`` with the ``k`` sequences of largest ``|a_b - b_b|`` left out (how much of the
        difference a few sequences carry)."""
        if not 0 <= k < self.num_sequences:
            raise ValueError(f"k must leave at least one of the {self.num_sequences} sequences, got {k}")
        keep = torch.argsort(self.per_sequence.abs(), descending=True)[k:]
        return float(self.per_sequence[keep].sum() / self.num_steps[keep].sum())


def _totals(result: EvaluationResult, name: str) -> tuple[np.ndarray, np.ndarray]:
    values = result.log_likelihood.detach().cpu().double().numpy()
    steps = result.num_steps.detach().cpu().double().numpy()
    if values.ndim != 1 or values.shape != steps.shape or values.size == 0:
        raise ValueError(f"result {name} must hold one bound per sequence, got shapes {values.shape} and {steps.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"result {name} holds a non-finite bound (sequence {int(np.flatnonzero(~np.isfinite(values))[0])})")
    return values, steps


def compare_bounds(a: EvaluationResult, b: EvaluationResult, level: float = 0.95, bootstrap: int = 4000,
                   seed: int = 0) -> PairedComparison:
    """Compare two evaluations of the same sequences (A minus B; see :class:`PairedComparison`).

    ``a`` and ``b`` must score the same sequences in the same order (same count, same lengths);
    their bounds and particle counts may differ. ``bootstrap`` resamples of the sequences (drawn
    with ``numpy.random.default_rng(seed)``) give the interval at ``level``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 1:
        raise ValueError(f"bootstrap must be a positive number of resamples, got {bootstrap!r}")
    va, steps_a = _totals(a, "A")
    vb, steps_b = _totals(b, "B")
    if va.shape != vb.shape:
        raise ValueError(f"the two evaluations score different sequences: {va.size} and {vb.size} sequences")
    if not np.array_equal(steps_a, steps_b):
        first = int(np.flatnonzero(steps_a != steps_b)[0])
        raise ValueError(f"the two evaluations score different sequences: sequence {first} has {int(steps_a[first])} "
                         f"steps in A and {int(steps_b[first])} in B")
    d, steps = va - vb, steps_a
    n, total = d.size, steps.sum()
    difference = d.sum() / total
    residuals = d - difference * steps
    standard_error = math.sqrt(n / (n - 1) * float((residuals ** 2).sum())) / total if n > 1 else 0.0
    rows = np.random.default_rng(seed).integers(0, n, size=(bootstrap, n))
    draws = d[rows].sum(1) / steps[rows].sum(1)
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return PairedComparison(
        a_per_timestep=float(va.sum() / total),
        b_per_timestep=float(vb.sum() / total),
        difference=float(difference),
        standard_error=standard_error,
        interval=(float(low), float(high)),
        level=level,
        per_sequence=torch.as_tensor(d),
        num_steps=torch.as_tensor(steps),
        a_higher=int((d > 0).sum()),
    )


def seed_spread(differences: list[float]) -> float:
    """The standard error of the mean of ``D`` over evaluation seeds (the Monte Carlo part): the
    sample standard deviation of the per-seed differences over the square root of their count;
    0 for a single seed."""
    n = len(differences)
    return float(np.std(differences, ddof=1) / math.sqrt(n)) if n > 1 else 0.0
