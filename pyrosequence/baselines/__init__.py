"""Forecasting baselines that users know, fitted on the same splits as our models (for
:func:`pyrosequence.diagnostics.backtest.backtest`): the naive seasonal forecast (no dependency)
and statsmodels' SARIMAX and UnobservedComponents (a local level; univariate, one per feature) and
VAR (multivariate), behind the optional
extra ``pip install 'pyrosequence[baselines]'``.

Every baseline is fitted once on a series' training steps (:meth:`Baseline.fit`) and then, with
its parameters fixed, conditions on everything before a forecast origin and forecasts ``horizon``
steps (:meth:`Fitted.forecast`), as a trained sequence model's particle filter does. Forecasts are
Gaussian per step and feature (:class:`GaussianForecast`: mean and standard deviation).
"""

from pyrosequence.baselines.base import Baseline, Fitted, GaussianForecast
from pyrosequence.baselines.naive import NaiveSeasonal
from pyrosequence.baselines.registry import (
    BASELINES,
    DEFAULT,
    baseline_names,
    make_baselines,
    statsmodels_missing,
)
from pyrosequence.baselines.statsmodels_models import SARIMAXBaseline, UnobservedComponentsBaseline, VARBaseline

__all__ = ["Baseline", "Fitted", "GaussianForecast", "NaiveSeasonal", "SARIMAXBaseline", "UnobservedComponentsBaseline", "VARBaseline",
           "BASELINES", "DEFAULT", "baseline_names", "make_baselines", "statsmodels_missing"]
