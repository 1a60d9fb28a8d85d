"""statsmodels baselines: SARIMAX and UnobservedComponents (one model per feature) and VAR (all
features jointly).

Both are fitted by maximum likelihood on a series' training steps; to forecast from an origin the
fitted parameters are kept and the model conditions on every step before it (SARIMAX and
UnobservedComponents: ``results.apply(history)``, a Kalman filter with the same parameters; VAR: the last ``p`` steps),
so nothing after the training steps changes a parameter. The forecasts' standard deviations are
those statsmodels reports (``get_forecast(...).se_mean``; the diagonal of VAR's
``forecast_cov``), which ignore the uncertainty of the estimated parameters.

statsmodels is an optional dependency (``pip install 'pyrosequence[baselines]'``); it is imported
when a baseline is fitted.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings

import numpy as np

from pyrosequence.baselines.base import Baseline, Fitted, GaussianForecast

#: The (p, q) orders SARIMAX chooses from by AIC when no order is given (d = 0, with a constant).
AUTO_P, AUTO_Q = range(0, 4), range(0, 3)
#: VAR's largest lag order (chosen by AIC up to it, fewer when the series is short).
VAR_MAXLAGS = 8


def _statsmodels():
    """Import statsmodels' models outside :func:`_quiet` (its import adds warning filters that
    would take precedence inside the block)."""
    try:
        import statsmodels.tsa.api  # noqa: F401
        import statsmodels.tsa.statespace.sarimax  # noqa: F401
    except ImportError:
        raise ImportError("the SARIMAX and VAR baselines need statsmodels: pip install 'pyrosequence[baselines]'") from None


@contextlib.contextmanager
def _quiet():
    """Silence statsmodels' convergence and frequency warnings, which say nothing a user can act on here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class _FittedStateSpace(Fitted):
    """One fitted statsmodels state-space model per feature (SARIMAX, UnobservedComponents)."""

    def __init__(self, results: list, descriptions: list):
        self.results = results
        self.description = "; ".join(dict.fromkeys(descriptions))

    def forecast(self, history: np.ndarray, horizon: int) -> GaussianForecast:
        means, stds = [], []
        with _quiet():
            for d, results in enumerate(self.results):
                forecast = results.apply(np.asarray(history[:, d], dtype=float)).get_forecast(horizon)
                means.append(np.asarray(forecast.predicted_mean, dtype=float))
                stds.append(np.asarray(forecast.se_mean, dtype=float))
        return GaussianForecast(np.stack(means, 1), np.stack(stds, 1))


class SARIMAXBaseline(Baseline):
    """statsmodels' ``SARIMAX`` on each feature separately.

    ``order``: ``(p, d, q)``, or ``None`` to choose ``p`` in 0..3 and ``q`` in 0..2 (``d = 0``) by
    AIC on the training steps; ``seasonal_order``: ``(P, D, Q, m)`` or ``None``. A constant is
    fitted when ``d = D = 0``.
    """

    name = "sarimax"

    def __init__(self, order=None, seasonal_order=None):
        self.order = None if order is None else tuple(int(v) for v in order)
        self.seasonal_order = None if seasonal_order is None else tuple(int(v) for v in seasonal_order)
        if self.order is not None and (len(self.order) != 3 or min(self.order) < 0):
            raise ValueError(f"a SARIMAX order is (p, d, q) of non-negative integers, got {order!r}")
        if self.seasonal_order is not None and (len(self.seasonal_order) != 4 or min(self.seasonal_order) < 0
                                                or self.seasonal_order[3] < 2):
            raise ValueError(f"a SARIMAX seasonal order is (P, D, Q, m) with m >= 2, got {seasonal_order!r}")

    def _fit_one(self, y: np.ndarray, order: tuple):
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        seasonal = self.seasonal_order or (0, 0, 0, 0)
        trend = "c" if order[1] == 0 and seasonal[1] == 0 else "n"
        return SARIMAX(y, order=order, seasonal_order=seasonal, trend=trend).fit(disp=False)

    def fit(self, train: np.ndarray) -> Fitted:
        _statsmodels()
        train = np.asarray(train, dtype=float)
        results, names = [], []
        with _quiet():
            for d in range(train.shape[1]):
                y = train[:, d]
                if self.order is not None:
                    fitted, order = self._fit_one(y, self.order), self.order
                else:
                    candidates = []
                    for p, q in itertools.product(AUTO_P, AUTO_Q):
                        try:
                            candidates.append((self._fit_one(y, (p, 0, q)), (p, 0, q)))
                        except (ValueError, np.linalg.LinAlgError):  # an order the data cannot carry
                            continue
                    candidates = [c for c in candidates if np.isfinite(c[0].aic)]
                    if not candidates:
                        raise ValueError("no SARIMAX order could be fitted to the training steps")
                    fitted, order = min(candidates, key=lambda c: c[0].aic)
                results.append(fitted)
                seasonal = f"x{self.seasonal_order}" if self.seasonal_order else ""
                names.append(f"SARIMAX{order}{seasonal}" + (" by AIC" if self.order is None else ""))
        return _FittedStateSpace(results, names)


class _FittedVAR(Fitted):
    def __init__(self, results):
        self.results = results
        self.description = f"VAR({results.k_ar}) with a constant, lag order by AIC"

    def forecast(self, history: np.ndarray, horizon: int) -> GaussianForecast:
        results, p = self.results, self.results.k_ar
        if p:
            if len(history) < p:
                raise ValueError(f"VAR({p}) needs {p} steps before the origin; got {len(history)}")
            mean = results.forecast(np.asarray(history[len(history) - p:], dtype=float), horizon)
        else:  # no lags: the constant
            mean = np.repeat(np.asarray(results.params)[:1], horizon, 0)
        cov = results.forecast_cov(horizon)
        return GaussianForecast(np.asarray(mean, dtype=float), np.sqrt(np.diagonal(cov, axis1=1, axis2=2)))


class VARBaseline(Baseline):
    """statsmodels' ``VAR`` with a constant, its lag order chosen by AIC up to ``maxlags``
    (default :data:`VAR_MAXLAGS`, fewer when the training steps are too few for it)."""

    name = "var"

    def __init__(self, maxlags: int | None = None):
        if maxlags is not None and (isinstance(maxlags, bool) or not isinstance(maxlags, int) or maxlags < 1):
            raise ValueError(f"maxlags must be a positive integer, got {maxlags!r}")
        self.maxlags = maxlags

    def fit(self, train: np.ndarray) -> Fitted:
        _statsmodels()
        from statsmodels.tsa.api import VAR

        train = np.asarray(train, dtype=float)
        steps, dims = train.shape
        if dims < 2:
            raise ValueError("VAR is for multivariate series; this one has one feature (use sarimax)")
        if np.isnan(train).any():
            raise ValueError("VAR needs complete training steps and this series has missing values; use sarimax or "
                             "unobserved-components, whose Kalman filters skip the gaps")
        # keep at least twice as many equations' observations as coefficients per equation
        room = max(1, (steps // 2 - 1) // dims)
        maxlags = min(self.maxlags or VAR_MAXLAGS, room)
        with _quiet():
            results = VAR(train).fit(maxlags=maxlags, ic="aic", trend="c")
        return _FittedVAR(results)


class UnobservedComponentsBaseline(Baseline):
    """statsmodels' ``UnobservedComponents`` on each feature separately: ``level`` (statsmodels'
    names: ``"local level"``, the default, ``"local linear trend"``, ...) and, with ``cycle=True``,
    a damped stochastic cycle (Harvey's trend-cycle model)."""

    name = "uc"

    def __init__(self, level: str = "local level", cycle: bool = False):
        self.level, self.cycle = level, bool(cycle)

    def fit(self, train: np.ndarray) -> Fitted:
        _statsmodels()
        from statsmodels.tsa.statespace.structural import UnobservedComponents

        train = np.asarray(train, dtype=float)
        options = {"cycle": True, "stochastic_cycle": True, "damped_cycle": True} if self.cycle else {}
        with _quiet():
            results = [UnobservedComponents(train[:, d], level=self.level, **options).fit(disp=False)
                       for d in range(train.shape[1])]
        name = f"UnobservedComponents({self.level}{', damped stochastic cycle' if self.cycle else ''})"
        return _FittedStateSpace(results, [name] * train.shape[1])
