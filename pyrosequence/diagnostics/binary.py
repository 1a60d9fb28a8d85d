"""Checks of one-step-ahead predictive probabilities for binary data (piano rolls, Bernoulli
emissions): the Brier score and the reliability diagram.

Central predictive intervals say little about a 0/1 value (every interval of a Bernoulli is
``{0}``, ``{1}`` or ``{0, 1}``, so coverage is at least nominal whatever the model), so for a
model whose emission is binary the report checks the predicted probabilities instead:

- the **Brier score**, the mean of ``(p - x)^2`` over every observed element (0 is perfect; a
  forecast of the data's own base rate ``r`` everywhere scores ``r (1 - r)``, the reference the
  skill score ``1 - Brier / (r (1 - r))`` compares against);
- the **reliability diagram**: the predicted probabilities grouped in bins, and in each bin the
  fraction of the elements that were 1 (a calibrated forecast lies on the diagonal).

The probabilities are ``P(x_t = 1 | x_<t)`` of the particle filter, the ``predictive_mean`` of
:func:`~pyrosequence.diagnostics.inference_data.to_inference_data` (exact mixtures of the
emission's means over the weighted particles; a Monte Carlo estimate for an emission without a
``mean``, such as the autoregressive outputs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch.distributions import constraints

#: Bins of the reliability diagram: equal widths over [0, 1].
DEFAULT_BINS = 10


def binary_emission(model) -> bool:
    """Whether ``model`` scores binary data (its declared emission support is Boolean)."""
    support = getattr(model, "emission_support", None)
    return support is constraints.boolean or type(support) is type(constraints.boolean)


@dataclass(frozen=True)
class Reliability:
    """Brier score and reliability diagram of predicted probabilities (``N`` elements, ``M`` bins).

    Attributes:
        brier: mean squared difference between probability and outcome.
        base_rate: the fraction of observed elements that are 1.
        reference_brier: ``base_rate (1 - base_rate)``, the Brier score of forecasting the base rate.
        skill: ``1 - brier / reference_brier`` (1 perfect, 0 no better than the base rate; NaN
            when every element is equal).
        count: ``N``, the number of observed elements.
        edges: ``(M + 1,)`` bin edges; ``mean_probability``, ``frequency``: ``(M,)`` the mean
            predicted probability and the observed fraction of ones in each bin (NaN for an empty
            bin); ``bin_count``: ``(M,)`` elements per bin.
        per_step: ``(T,)`` Brier score at each step (NaN where no sequence reaches it).
    """

    brier: float
    base_rate: float
    reference_brier: float
    skill: float
    count: int
    edges: np.ndarray
    mean_probability: np.ndarray
    frequency: np.ndarray
    bin_count: np.ndarray
    per_step: np.ndarray


def reliability(probability: np.ndarray, observed: np.ndarray, bins: int = DEFAULT_BINS) -> Reliability:
    """Brier score and reliability diagram of ``probability`` ``(B, T, D)`` against ``observed``
    ``(B, T, D)`` of 0/1 values (NaN in either = padding, not counted)."""
    p, x = np.asarray(probability, dtype=float), np.asarray(observed, dtype=float)
    if p.shape != x.shape or p.ndim != 3:
        raise ValueError(f"probability and observed must both be (B, T, D); got {p.shape} and {x.shape}")
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    valid = ~(np.isnan(p) | np.isnan(x))
    if not valid.any():
        raise ValueError("no observed values to check (all NaN)")
    if not np.all(np.isin(x[valid], (0.0, 1.0))):
        raise ValueError("the observed values are not binary (0 or 1): the Brier score needs binary data")
    if np.any((p[valid] < -1e-6) | (p[valid] > 1 + 1e-6)):
        raise ValueError("the predicted probabilities must lie in [0, 1]")
    p = np.clip(p, 0.0, 1.0)  # float rounding of a mixture of probabilities
    pv, xv = p[valid], x[valid]
    squared = np.where(valid, (p - x) ** 2, 0.0)
    per_step_count = valid.sum(axis=(0, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_step = np.where(per_step_count > 0, squared.sum(axis=(0, 2)) / per_step_count, np.nan)
    brier = float(np.mean((pv - xv) ** 2))
    rate = float(xv.mean())
    reference = rate * (1 - rate)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(pv, edges[1:-1]), 0, bins - 1)
    bin_count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_probability = np.bincount(which, weights=pv, minlength=bins) / bin_count
        frequency = np.bincount(which, weights=xv, minlength=bins) / bin_count
    return Reliability(
        brier=brier, base_rate=rate, reference_brier=reference,
        skill=1 - brier / reference if reference > 0 else float("nan"),
        count=int(valid.sum()), edges=edges, mean_probability=mean_probability, frequency=frequency,
        bin_count=bin_count, per_step=per_step,
    )


def predictive_reliability(idata, bins: int = DEFAULT_BINS, var_name: str = "x") -> Reliability:
    """:func:`reliability` of the one-step-ahead predictive probabilities of an InferenceData made
    by :func:`~pyrosequence.diagnostics.inference_data.to_inference_data`
    (``filter_stats.predictive_mean`` against ``observed_data``)."""
    if "filter_stats" not in idata.groups() or "predictive_mean" not in idata.filter_stats:
        raise ValueError("the InferenceData has no filter_stats.predictive_mean")
    if "observed_data" not in idata.groups() or var_name not in idata.observed_data:
        raise ValueError(f"the InferenceData has no observed_data.{var_name}")
    observed = idata.observed_data[var_name]
    probability = idata.filter_stats["predictive_mean"].transpose(*observed.dims)
    return reliability(probability.values, observed.values, bins)
