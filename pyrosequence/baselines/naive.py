"""The naive seasonal forecast (Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*,
3rd ed., sections 5.2 and 5.5): every step repeats the value one season ``m`` before it, from the
last observed season, and its spread grows with the number of seasons forecast ahead.

With ``y_0 .. y_{o-1}`` observed and steps ``h = 0 .. H-1`` after the origin ``o``:

* mean ``y_{o - m + (h mod m)}`` (``m = 1``: the last value, the random-walk forecast); where that
  value is missing (NaN), the same phase of the latest season before it that was observed;
* standard deviation ``sigma sqrt(floor(h / m) + 1)``, where ``sigma`` is the root mean square of
  the seasonal differences ``y_t - y_{t-m}`` of the training steps (per feature; pairs with a
  missing value left out).

For binary data the forecast is the point mass at that value (``std`` 0): a persistence forecast.
"""

from __future__ import annotations

import numpy as np

from pyrosequence.baselines.base import Baseline, Fitted, GaussianForecast


class _FittedNaive(Fitted):
    def __init__(self, season: int, sigma: np.ndarray):
        self.season, self.sigma = season, sigma
        self.description = f"naive seasonal (m = {season})" if season > 1 else "naive (last value, m = 1)"

    def forecast(self, history: np.ndarray, horizon: int) -> GaussianForecast:
        m = self.season
        if len(history) < m:
            raise ValueError(f"the naive seasonal forecast needs at least one season ({m} steps) before the origin; got {len(history)}")
        h = np.arange(horizon)
        mean = _last_observed_phase(np.asarray(history, dtype=float), m)[h % m]
        std = self.sigma[None, :] * np.sqrt(h // m + 1)[:, None]
        return GaussianForecast(np.asarray(mean, dtype=float), np.asarray(std, dtype=float))


def _last_observed_phase(history: np.ndarray, m: int) -> np.ndarray:
    """``(m, D)``: for each phase of the last season, its latest observed value (going back whole
    seasons over missing ones); NaN only where that phase was never observed."""
    season = history[len(history) - m:].copy()
    back = len(history) - m
    while np.isnan(season).any() and back >= m:
        back -= m
        season = np.where(np.isnan(season), history[back:back + m], season)
    return season


class NaiveSeasonal(Baseline):
    """The naive seasonal forecast with season ``season`` (1: the naive forecast); ``point=True``
    (binary data) forecasts the point mass at the repeated value."""

    name = "naive"

    def __init__(self, season: int = 1, point: bool = False):
        if isinstance(season, bool) or not isinstance(season, (int, np.integer)) or season < 1:
            raise ValueError(f"season must be a positive number of steps, got {season!r}")
        self.season, self.point = int(season), point

    def fit(self, train: np.ndarray) -> Fitted:
        train = np.asarray(train, dtype=float)
        m = self.season
        if len(train) <= m:
            raise ValueError(f"the naive seasonal forecast with season {m} needs more than {m} training steps; got {len(train)}")
        sigma = np.zeros(train.shape[1]) if self.point else np.sqrt(np.nanmean((train[m:] - train[:-m]) ** 2, axis=0))
        return _FittedNaive(m, sigma)
