"""Calibration of predictive intervals: how often the data fall inside central predictive intervals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: Nominal levels checked by default: the central 50 % and 90 % intervals.
DEFAULT_LEVELS = (0.5, 0.9)


@dataclass(frozen=True)
class Calibration:
    """Coverage of central predictive intervals (``L`` levels, ``T`` steps).

    Attributes:
        levels: ``(L,)`` nominal coverage of each central interval.
        coverage: ``(L,)`` fraction of observed values (over sequences, steps and features) that
            fall inside their interval.
        per_step: ``(L, T)`` the same fraction at each step (NaN where no sequence reaches it).
        count: number of observed values checked; ``per_step_count``: ``(T,)`` per step.
        standard_error: ``(L,)`` ``sqrt(l (1 - l) / count)``, the binomial standard error of the
            coverage of a calibrated predictive whose hits are independent (true of one-step-ahead
            intervals of a one-dimensional series under the true model; features of one step can
            be dependent, which widens the real spread).
    """

    levels: np.ndarray
    coverage: np.ndarray
    per_step: np.ndarray
    count: int
    per_step_count: np.ndarray
    standard_error: np.ndarray


def interval_coverage(draws: np.ndarray, observed: np.ndarray, levels: Sequence[float] = DEFAULT_LEVELS) -> Calibration:
    """Coverage of ``observed`` ``(B, T, D)`` (NaN = padding) by the central intervals of
    ``draws`` ``(N, B, T, D)`` (empirical quantiles ``(1 -+ l) / 2`` over the ``N`` draws).

    For discrete data (e.g. binary piano rolls) the intervals are sets of ties: a value equal to
    an interval end counts as covered, so coverage is at least nominal and says little.
    """
    levels = np.asarray(levels, dtype=float)
    if levels.ndim != 1 or not np.all((levels > 0) & (levels < 1)):
        raise ValueError(f"levels must be numbers in (0, 1), got {levels.tolist()}")
    draws, observed = np.asarray(draws, dtype=float), np.asarray(observed, dtype=float)
    if draws.ndim != 4 or draws.shape[1:] != observed.shape:
        raise ValueError(f"draws must be (num_draws, *observed.shape) = (N, B, T, D); got {draws.shape} for observed {observed.shape}")
    valid = ~np.isnan(observed)
    per_step_count = valid.sum(axis=(0, 2))
    count = int(per_step_count.sum())
    if count == 0:
        raise ValueError("no observed values to check (all NaN)")
    per_step, coverage = [], []
    for level in levels:
        lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
        inside = (observed >= lo) & (observed <= hi) & valid
        hits = inside.sum(axis=(0, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            per_step.append(np.where(per_step_count > 0, hits / per_step_count, np.nan))
        coverage.append(hits.sum() / count)
    return Calibration(
        levels=levels,
        coverage=np.array(coverage),
        per_step=np.stack(per_step),
        count=count,
        per_step_count=per_step_count,
        standard_error=np.sqrt(levels * (1 - levels) / count),
    )


def calibration(idata, levels: Sequence[float] = DEFAULT_LEVELS, var_name: str = "x") -> Calibration:
    """Coverage of the one-step-ahead predictive intervals of an InferenceData made by
    :func:`~pyrosequence.diagnostics.inference_data.to_inference_data` (``posterior_predictive``
    draws of ``var_name`` against ``observed_data``)."""
    for group in ("posterior_predictive", "observed_data"):
        if group not in idata.groups() or var_name not in idata[group]:
            raise ValueError(f"the InferenceData has no {group}.{var_name}")
    pp = idata.posterior_predictive[var_name].stack(sample=("chain", "draw")).transpose("sample", ...)
    return interval_coverage(pp.values, idata.observed_data[var_name].values, levels)
