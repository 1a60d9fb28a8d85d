"""What a baseline is: fitted on training steps, then forecasting from any history with its
parameters fixed; its forecasts are Gaussian per step and feature."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GaussianForecast:
    """``mean`` and ``std`` ``(horizon, x_dim)`` of a forecast, in the data's units (``std`` 0:
    a point forecast)."""

    mean: np.ndarray
    std: np.ndarray

    def sample(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """``(num, horizon, x_dim)`` draws (independent across steps and features: the scores are
        marginal, per step and feature, so only the marginals matter)."""
        return self.mean + self.std * rng.standard_normal((num,) + self.mean.shape)


class Fitted:
    """A baseline fitted on one series; ``description`` names what was fitted (e.g. the order)."""

    description: str = ""

    def forecast(self, history: np.ndarray, horizon: int) -> GaussianForecast:  # pragma: no cover - interface
        """Forecast the ``horizon`` steps after ``history`` ``(T, x_dim)`` (the whole series up to
        the origin, in the data's units) with the fitted parameters."""
        raise NotImplementedError


class Baseline:
    """A forecasting method by name; :meth:`fit` returns a :class:`Fitted` for one series."""

    name: str = ""

    def fit(self, train: np.ndarray) -> Fitted:  # pragma: no cover - interface
        """Fit on the training steps ``(T, x_dim)`` of one series (the data's units)."""
        raise NotImplementedError
