"""Scoring rules for probabilistic forecasts given as draws: CRPS, errors of the median, interval coverage.

A forecast of a value ``y`` is ``S`` draws ``x_1 .. x_S`` (the first dimension of ``samples``);
every score is computed element-wise and :func:`score_by_step` averages them per horizon step.

* **CRPS** (continuous ranked probability score, Gneiting & Raftery 2007, eq. 21): ``E|X - y| -
  E|X - X'| / 2`` under the forecast distribution; lower is better, in the data's units, and for a
  point forecast it is the absolute error. From draws it is Pyro's
  :func:`pyro.ops.stats.crps_empirical`, which uses the empirical distribution of the draws
  (so ``E|X - X'|`` includes the ``i = j`` pairs: its mean exceeds the CRPS of the distribution
  the draws come from by ``E|X - X'| / (2 S)``, ``sigma / (S sqrt(pi))`` for a Gaussian).
  :func:`crps_gaussian` is the closed form for a Normal forecast,
  ``sigma [z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)]`` with ``z = (y - mu) / sigma``.
* **MAE / RMSE of the median**: the point forecast is the median of the draws (``torch.quantile``
  at 0.5, linear interpolation: the mean of the two middle draws for an even ``S``).
* **Coverage** at level ``l``: whether ``y`` lies in the central interval between the empirical
  ``(1 - l) / 2`` and ``(1 + l) / 2`` quantiles of the draws (linear interpolation, ends
  included, as :func:`pyrosequence.diagnostics.calibration.interval_coverage`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from pyro.ops.stats import crps_empirical

#: Central interval levels scored by default.
LEVELS = (0.5, 0.8, 0.95)
#: Names of the scores :func:`score_by_step` returns (coverage names depend on the levels).
POINT_SCORES = ("crps", "mae", "rmse")


def coverage_name(level: float) -> str:
    """``0.8 -> "coverage_80"`` (``0.975 -> "coverage_97.5"``)."""
    return f"coverage_{100 * level:g}"


def _check_pair(samples: torch.Tensor, truth: torch.Tensor) -> None:
    if samples.dim() < 1 or tuple(samples.shape[1:]) != tuple(truth.shape):
        raise ValueError(f"samples must be (num_samples, *truth.shape); got {tuple(samples.shape)} for truth {tuple(truth.shape)}")
    if samples.shape[0] < 1:
        raise ValueError("samples hold no draws")


def _check_levels(levels: Sequence[float]) -> tuple:
    levels = tuple(float(l) for l in levels)
    if not all(0 < l < 1 for l in levels):
        raise ValueError(f"interval levels must be numbers in (0, 1), got {list(levels)}")
    return levels


def crps_gaussian(mean, std, truth) -> torch.Tensor:
    """CRPS of the forecast ``Normal(mean, std)`` for the value ``truth`` (element-wise, broadcast).

    ``std = 0`` is the point forecast ``mean``: its CRPS is ``|truth - mean|``.
    """
    mean, std, truth = torch.broadcast_tensors(*(torch.as_tensor(v, dtype=torch.get_default_dtype()) if not torch.is_tensor(v)
                                                 else v for v in (mean, std, truth)))
    if (std < 0).any():
        raise ValueError("std must be non-negative")
    point = std == 0
    safe = torch.where(point, torch.ones_like(std), std)
    z = (truth - mean) / safe
    normal = torch.distributions.Normal(torch.zeros_like(z), torch.ones_like(z))
    crps = safe * (z * (2 * normal.cdf(z) - 1) + 2 * normal.log_prob(z).exp() - 1 / math.sqrt(math.pi))
    return torch.where(point, (truth - mean).abs(), crps)


def crps(samples: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """CRPS of the forecast given by ``samples`` ``(S, ...)`` for ``truth`` ``(...)``, element-wise
    (Pyro's ``crps_empirical``; see the module docstring for its small-sample bias)."""
    _check_pair(samples, truth)
    return crps_empirical(samples, truth)


def median(samples: torch.Tensor) -> torch.Tensor:
    """The median of the draws (linear interpolation between the two middle draws)."""
    return torch.quantile(samples, 0.5, dim=0)


def interval(samples: torch.Tensor, level: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The central ``level`` interval of the draws: their ``(1 -+ level) / 2`` empirical quantiles."""
    (level,) = _check_levels([level])
    bounds = torch.quantile(samples, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=samples.dtype, device=samples.device), dim=0)
    return bounds[0], bounds[1]


def covered(samples: torch.Tensor, truth: torch.Tensor, level: float) -> torch.Tensor:
    """Whether ``truth`` lies in the central ``level`` interval of ``samples`` (ends included), element-wise."""
    _check_pair(samples, truth)
    lo, hi = interval(samples, level)
    return (truth >= lo) & (truth <= hi)


def pointwise_scores(samples: torch.Tensor, truth: torch.Tensor, levels: Sequence[float] = LEVELS) -> dict:
    """Per element of ``truth``: ``crps``, ``abs_error`` and ``sq_error`` of the median, and
    ``coverage_XX`` (0. or 1.) for each level; every value has ``truth``'s shape."""
    _check_pair(samples, truth)
    levels = _check_levels(levels)
    samples, truth = samples.double(), truth.double()
    error = median(samples) - truth
    scores = {"crps": crps(samples, truth), "abs_error": error.abs(), "sq_error": error ** 2}
    for level in levels:
        scores[coverage_name(level)] = covered(samples, truth, level).double()
    return scores


def score_by_step(samples: torch.Tensor, truth: torch.Tensor, levels: Sequence[float] = LEVELS) -> dict:
    """Scores per horizon step of forecasts ``samples`` ``(S, ..., H, D)`` of ``truth`` ``(..., H, D)``.

    Returns ``{"crps", "mae", "rmse", "coverage_XX", ...}`` each ``(H + 1,)``: the mean CRPS, the
    mean absolute and root mean squared error of the median, and the fraction of values covered,
    over every dimension but the horizon (windows, sequences, features), for steps ``1 .. H``;
    the last entry is the same over all steps. A missing truth (NaN: a value that was not
    observed) is left out of every score; ``count`` ``(H + 1,)`` is the number of values scored
    per step and in all.
    """
    _check_pair(samples, truth)
    if truth.dim() < 2:
        raise ValueError(f"truth must be (..., horizon, features); got shape {tuple(truth.shape)}")
    observed = ~torch.isnan(truth)
    per = pointwise_scores(samples, torch.where(observed, truth, torch.zeros_like(truth)), levels)
    weight = observed.double()
    per_step_count = weight.movedim(-2, 0).reshape(weight.shape[-2], -1).sum(1)
    counts = torch.cat([per_step_count, weight.sum().reshape(1)])

    def by_step(value: torch.Tensor) -> torch.Tensor:  # the mean over the observed values (NaN where none)
        value = value * weight
        steps = value.movedim(-2, 0).reshape(value.shape[-2], -1).sum(1)
        return torch.cat([steps, value.sum().reshape(1)]) / counts

    out = {"crps": by_step(per["crps"]), "mae": by_step(per["abs_error"]), "rmse": by_step(per["sq_error"]).sqrt()}
    out.update({k: by_step(v) for k, v in per.items() if k.startswith("coverage_")})
    out["count"] = counts.long()
    return out
