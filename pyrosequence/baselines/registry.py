"""Baselines by name, and which ones a data set gets by default."""

from __future__ import annotations

from pyrosequence.baselines.base import Baseline
from pyrosequence.baselines.naive import NaiveSeasonal
from pyrosequence.baselines.statsmodels_models import SARIMAXBaseline, UnobservedComponentsBaseline, VARBaseline

#: The baselines by name.
BASELINES = ("naive", "sarimax", "uc", "var")
#: ``"auto"``: the naive seasonal forecast, and SARIMAX for a univariate or VAR for a multivariate series.
DEFAULT = "auto"
#: Baselines that model real values with statsmodels.
STATSMODELS = ("sarimax", "uc", "var")


def statsmodels_missing() -> str | None:
    """Why the statsmodels baselines cannot run here (``None`` when they can)."""
    try:
        import statsmodels  # noqa: F401
    except ImportError:
        return "statsmodels is not installed (pip install 'pyrosequence[baselines]')"
    return None


def baseline_names(names, x_dim: int, binary: bool) -> tuple[list, dict]:
    """``(names to run, {name: why skipped})`` for ``names`` (a list, ``"auto"``, ``"none"`` or
    ``None``). ``auto`` skips, with the reason, what does not apply to the data (statsmodels
    missing, binary data); a name asked for explicitly that cannot run is refused (ValueError /
    ImportError) instead."""
    if names is None or names == "none" or names == ["none"]:
        return [], {}
    auto = names == DEFAULT or names == [DEFAULT]
    if auto:
        names = ["naive", "sarimax" if x_dim == 1 else "var"]
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {', '.join(map(repr, unknown))}: choose from {', '.join(BASELINES)}, auto or none")
    keep, skipped = [], {}
    missing = statsmodels_missing()
    for name in names:
        if name in STATSMODELS and binary:
            why = f"{name} models real values; this run's data are binary (0/1), where only the CRPS of our forecasts and the naive (persistence) forecast apply"
        elif name == "var" and x_dim < 2:
            why = "VAR is for multivariate series; this one has one feature (sarimax is the univariate baseline)"
        elif name in STATSMODELS and missing:
            why = missing
        else:
            keep.append(name)
            continue
        if not auto:
            raise (ImportError if why == missing else ValueError)(f"baseline {name!r} cannot run: {why}")
        skipped[name] = why
    return keep, skipped


def make_baselines(names, x_dim: int, binary: bool, season: int = 1, sarimax_order=None, seasonal_order=None) -> tuple[list, dict]:
    """``([Baseline, ...], {name: why skipped})``: see :func:`baseline_names`."""
    keep, skipped = baseline_names(names, x_dim, binary)
    built: list[Baseline] = []
    for name in keep:
        if name == "naive":
            built.append(NaiveSeasonal(season, point=binary))
        elif name == "sarimax":
            built.append(SARIMAXBaseline(sarimax_order, seasonal_order))
        elif name == "uc":
            built.append(UnobservedComponentsBaseline())
        else:
            built.append(VARBaseline())
    return built, skipped
