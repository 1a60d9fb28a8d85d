"""Diagnostic plots of a trained model (matplotlib, headless): one function per kind.

Each takes computed diagnostics (an InferenceData from
:func:`~pyrosequence.diagnostics.inference_data.to_inference_data` or a checks dataclass) and a
PNG path, writes the figure and returns the path. ``pyrosequence plot --kind`` reaches them
through :data:`pyrosequence.diagnostics.kinds.PLOT_KINDS`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from pyrosequence.diagnostics.binary import Reliability, predictive_reliability
from pyrosequence.diagnostics.calibration import Calibration, interval_coverage
from pyrosequence.diagnostics.filter_health import FilterHealth
from pyrosequence.diagnostics.plots import _pyplot, save_figure
from pyrosequence.diagnostics.step_kl import StepCurves

#: Cap on the observed values handed to ``az.plot_ppc`` (a random subset beyond it).
PPC_MAX_POINTS = 20_000
#: Levels drawn on the calibration plot's reliability curve.
RELIABILITY_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def _band(ax, values: np.ndarray, label: str, color: str | None = None) -> None:
    """Mean over rows (sequences) and the 10-90 % band of a ``(B, T)`` array with NaN padding."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0)
        lo, hi = np.nanquantile(values, [0.1, 0.9], axis=0)
    steps = np.arange(values.shape[1])
    line, = ax.plot(steps, mean, label=f"{label} (mean over {values.shape[0]} sequences)", color=color)
    ax.fill_between(steps, lo, hi, alpha=0.25, color=line.get_color(), label="10-90 % of sequences")


def plot_kl(curves: StepCurves, path: str | Path, title: str = "") -> Path:
    """Per-step ``KL(q(z_t) || p(z_t))`` over time: mean and band over sequences."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    _band(ax, curves.kl, "KL")
    ax.set_xlabel("time step")
    ax.set_ylabel("KL(q(z_t | .) || p(z_t | .))  [nats]")
    ax.legend(fontsize=8)
    return save_figure(fig, path, title)


def plot_variance(idata, curves: StepCurves | None, path: str | Path, title: str = "") -> Path:
    """Predicted log-variance over time: (a) of the one-step predictive ``p(x_t | x_<t)`` of the
    filter, (b) of ``p(x_t | z_t, s_{t-1})`` given posterior draws (``curves``), both averaged
    over features, mean and band over sequences."""
    plt = _pyplot()
    panels = 2 if curves is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    variance = idata.filter_stats["predictive_variance"].transpose("sequence", "time", "feature").values
    with np.errstate(divide="ignore"):
        _band(axes[0, 0], np.log(variance).mean(-1), "log Var[x_t | x_<t]")
    axes[0, 0].set_title("(a) one-step predictive (particle filter)")
    if curves is not None:
        _band(axes[0, 1], curves.log_variance, "log Var[x_t | z_t, s_t-1]", color="C1")
        axes[0, 1].set_title("(b) emission given posterior draws of z")
    for ax in axes[0]:
        ax.set_xlabel("time step")
        ax.set_ylabel("log-variance (mean over features)")
        ax.legend(fontsize=8)
    return save_figure(fig, path, title)


def _flat_ppc_data(idata, max_points: int, seed: int):
    """An InferenceData with the valid observed values flattened to one ``obs`` dim (ArviZ's
    KDEs do not take NaN padding), subsampled to ``max_points``."""
    import arviz as az
    import xarray as xr

    observed = idata.observed_data["x"].values.reshape(-1)
    draws = idata.posterior_predictive["x"].transpose("chain", "draw", ...).values
    draws = draws.reshape(draws.shape[:2] + (-1,))
    keep = np.flatnonzero(~np.isnan(observed))
    if len(keep) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_points, replace=False))
    return az.InferenceData(
        posterior_predictive=xr.Dataset({"x": (("chain", "draw", "obs"), draws[..., keep])}),
        observed_data=xr.Dataset({"x": (("obs",), observed[keep])}),
    )


def plot_ppc(idata, path: str | Path, index: int = 0, num_pp_samples: int = 20, title: str = "", seed: int = 0) -> Path:
    """Posterior predictive check: (a) ``az.plot_ppc`` of all observed values against the
    one-step-ahead predictive draws (KDE; empirical CDFs for discrete data), (b) one sequence
    over time: the data and the predictive mean with its 90 % interval, for the (up to) three
    features that vary most in that sequence."""
    import arviz as az

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    flat = _flat_ppc_data(idata, PPC_MAX_POINTS, seed)
    observed = flat.observed_data["x"].values
    discrete = bool(np.all(observed == np.round(observed)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        az.plot_ppc(flat, kind="cumulative" if discrete else "kde", ax=axes[0],
                    num_pp_samples=min(num_pp_samples, flat.posterior_predictive.sizes["draw"]), random_seed=seed)
    axes[0].set_title("(a) data vs one-step-ahead predictive draws (az.plot_ppc)")
    length = int(idata.constant_data["lengths"].values[index])
    x = idata.observed_data["x"].isel(sequence=index).values[:length]
    draws = idata.posterior_predictive["x"].isel(sequence=index).stack(s=("chain", "draw")).transpose("s", ...).values[:, :length]
    lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
    mean = draws.mean(0)
    steps = np.arange(length)
    binary = bool(np.all(np.isin(x, (0.0, 1.0))))  # a 90 % interval of a 0/1 value is {0, 1}: say nothing with it
    for d in np.argsort(-x.std(0))[: min(3, x.shape[1])]:
        line, = axes[1].plot(steps, x[:, d], "o", markersize=3, label=f"x[{d}]")
        axes[1].plot(steps, mean[:, d], color=line.get_color(), linewidth=1)
        if not binary:
            axes[1].fill_between(steps, lo[:, d], hi[:, d], color=line.get_color(), alpha=0.2)
    axes[1].set_title(f"(b) sequence {index}: data (dots) and " + (
        f"the fraction of {draws.shape[0]} predictive draws that are 1" if binary else "predictive mean and 90 % interval"))
    axes[1].set_xlabel("time step")
    axes[1].legend(fontsize=8)
    return save_figure(fig, path, title)


def plot_ess(health: FilterHealth, path: str | Path, ess_threshold: float | None = None, title: str = "") -> Path:
    """The particle filter over time: ESS / K (mean over sequences, band, minimum) and the
    fraction of sequences that resampled after each step."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    k = health.num_particles
    _band(top, health.ess / k, "ESS / K")
    top.plot(health.min_ess / k, color="black", linewidth=0.8, linestyle=":", label="minimum over sequences")
    if ess_threshold:
        top.axhline(ess_threshold, color="red", linewidth=0.8, label=f"resampling threshold {ess_threshold:g}")
    top.set_ylabel(f"ESS / K (K = {k})")
    top.set_ylim(0, 1.05)
    top.legend(fontsize=8)
    bottom.bar(np.arange(len(health.resample_rate)), np.nan_to_num(health.resample_rate), color="C2")
    bottom.set_ylabel("fraction resampled")
    bottom.set_xlabel("time step")
    bottom.set_title(f"resampling events: {int(np.nansum(health.resampled))} in {health.ess.shape[0]} sequences")
    return save_figure(fig, path, title)


def plot_calibration(idata, path: str | Path, levels: Sequence[float] = (0.5, 0.9), title: str = "") -> Path:
    """Calibration of the one-step-ahead predictive intervals: (a) empirical vs nominal coverage
    of central intervals (with 2 binomial standard errors), (b) coverage of ``levels`` per step."""
    plt = _pyplot()
    draws = idata.posterior_predictive["x"].stack(s=("chain", "draw")).transpose("s", ...).values
    observed = idata.observed_data["x"].values
    curve: Calibration = interval_coverage(draws, observed, RELIABILITY_LEVELS)
    chosen: Calibration = interval_coverage(draws, observed, levels)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.plot([0, 1], [0, 1], color="gray", linewidth=0.8, label="calibrated")
    left.errorbar(curve.levels, curve.coverage, yerr=2 * curve.standard_error, fmt="o-", markersize=4, label="empirical")
    left.set_xlabel("nominal coverage of the central interval")
    left.set_ylabel("empirical coverage")
    left.set_title(f"(a) {curve.count} observed values")
    left.legend(fontsize=8)
    for i, level in enumerate(chosen.levels):
        line, = right.plot(chosen.per_step[i], label=f"{level:.0%} interval: {chosen.coverage[i]:.3f} overall")
        right.axhline(level, color=line.get_color(), linestyle="--", linewidth=0.8)
    right.set_ylim(-0.02, 1.02)
    right.set_xlabel("time step")
    right.set_ylabel("coverage")
    right.set_title("(b) coverage per step (dashed: nominal)")
    right.legend(fontsize=8)
    return save_figure(fig, path, title)


def plot_reliability(idata, path: str | Path, title: str = "") -> Path:
    """Calibration of one-step-ahead predictive probabilities of binary data (the ``calibration``
    kind for a model with a binary emission): (a) the reliability diagram, the observed fraction
    of ones against the mean predicted probability per bin, with the elements per bin; (b) the
    Brier score per step beside that of forecasting the base rate."""
    plt = _pyplot()
    r: Reliability = predictive_reliability(idata)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.plot([0, 1], [0, 1], color="gray", linewidth=0.8, label="calibrated")
    filled = r.bin_count > 0
    left.plot(r.mean_probability[filled], r.frequency[filled], "o-", markersize=4, label="observed frequency of 1")
    left.set_xlim(0, 1)
    left.set_ylim(0, 1)
    left.set_xlabel("predicted probability P(x = 1 | x_<t) (bin mean)")
    left.set_ylabel("fraction of ones")
    left.set_title(f"(a) reliability: {r.count} elements, Brier {r.brier:.4f}, skill {r.skill:.3f}")
    counts = left.twinx()
    counts.bar((r.edges[:-1] + r.edges[1:]) / 2, r.bin_count, width=np.diff(r.edges) * 0.9, color="C7", alpha=0.25)
    counts.set_yscale("log")
    counts.set_ylabel("elements per bin (bars, log scale)")
    left.set_zorder(counts.get_zorder() + 1)
    left.patch.set_visible(False)
    left.legend(fontsize=8, loc="upper left")
    right.plot(r.per_step, label=f"model: {r.brier:.4f} overall")
    right.axhline(r.reference_brier, color="gray", linestyle="--", linewidth=0.8,
                  label=f"base rate {r.base_rate:.3f} everywhere: {r.reference_brier:.4f}")
    right.set_xlabel("time step")
    right.set_ylabel("Brier score (lower is better)")
    right.set_title("(b) Brier score per step")
    right.legend(fontsize=8)
    return save_figure(fig, path, title)


def plot_training(history: Sequence[dict], path: str | Path, test: dict | None = None, title: str = "") -> Path:
    """A run's ``metrics.jsonl``: the training objective (minus the loss, per step) and the
    validation bound per epoch, and the test bound of ``results.json`` when given."""
    if not history:
        raise ValueError("the run has no completed epoch in metrics.jsonl")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [-r["train_loss_per_step"] for r in history], "o-", label="train: -loss per step")
    for key in sorted({k for r in history for k in r if k.startswith("valid_") and k.endswith("_per_step")}):
        ax.plot(epochs, [r.get(key, np.nan) for r in history], "s-", label=key.replace("_", " "))
    if test and "per_timestep" in test:
        ax.axhline(test["per_timestep"], color="red", linewidth=0.8,
                   label=f"test {test.get('bound', '')}({test.get('particles', '')}): {test['per_timestep']:.4f} "
                         "(results.json: the evaluation train ran at its end)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("bound per time step [nats]")
    ax.legend(fontsize=8)
    return save_figure(fig, path, title)
