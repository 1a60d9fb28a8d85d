"""Rolling-origin backtests: forecasts of a trained model scored against what happened, beside baselines.

The scored part of each series is its last ``heldout`` steps: for a run on data split by time
(``split=time``) the test split (the series is its train, valid and test parts put back
together), otherwise the last ``heldout`` steps of each sequence of a split. With ``s = T -
heldout`` the first held-out step of a series of ``T`` steps, window ``w = 0 .. windows - 1`` has
the origin ``o_w = s + w * stride``: the forecast conditions on steps ``0 .. o_w - 1`` and is
scored on steps ``o_w .. o_w + horizon - 1``. Every window must end inside the series
(``(windows - 1) * stride + horizon <= heldout``); nothing after an origin is seen by its forecast.

Our model's forecasts are :func:`pyrosequence.diagnostics.forecast.forecast` (the particle filter
conditions on the steps before the origin, then ``num_samples`` continuations are drawn), for all
windows and series in one batch; the model's parameters are those of the run and are not refitted.
The baselines (:mod:`pyrosequence.baselines`) are fitted once per series on the same training steps
(the training split for a time split, else the steps before the held-out part), then, with their
parameters fixed, condition on the steps before each origin. Their Gaussian forecasts are scored
through ``num_samples`` draws, like ours, so every method carries the same Monte Carlo error.
Scores (:mod:`pyrosequence.diagnostics.forecast_scores`) are in the data's units: for a run on
standardised data (``--standardize``) the recorded scaling is undone on the draws, as
``pyrosequence sample`` does.
"""

from __future__ import annotations

import csv
import io
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pyrosequence.diagnostics.forecast_scores import LEVELS, coverage_name, crps, score_by_step

#: Quantiles of every method's forecasts kept in the result (for the fan chart and forecasts.npz).
QUANTILES = (0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975)
#: Suffix of our model's name in the tables.
OURS = " (ours)"


@dataclass(frozen=True)
class BacktestSeries:
    """The series of a backtest, in the data's units.

    Attributes:
        series: one ``(T_b, D)`` array per series (the whole series).
        heldout: the number of last steps of every series that the windows score.
        fit_steps: per series, how many first steps the baselines are fitted on.
        scaling: a run's ``data_options`` when its model sees standardised data (else ``None``).
        binary: whether every value is 0 or 1.
        feature_names: a name per feature.
        source: a sentence saying where the held-out part comes from.
        covariates: for a model with covariates, one ``(T_b, U)`` array per series: the known
            inputs of every step (the model reads those of the forecast steps; they are not
            scored, and the baselines do not read them); ``None`` without covariates.
    """

    series: list
    heldout: int
    fit_steps: list
    scaling: dict | None = None
    binary: bool = False
    feature_names: list = field(default_factory=list)
    source: str = ""
    covariates: list | None = None


def _check_count(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")
    return int(value)


def _is_binary(arrays) -> bool:  # of the observed values (NaN marks a missing one)
    return all(bool(np.isin(a[~np.isnan(a)], (0.0, 1.0)).all()) for a in arrays)


def rolling_origins(heldout: int, horizon: int, windows: int, stride: int = 1) -> list:
    """The origins of the windows as offsets into the held-out part (0 = its first step):
    ``[0, stride, ..., (windows - 1) * stride]``; refuses a horizon longer than the held-out part
    and windows that do not fit in it."""
    horizon = _check_count(horizon, "horizon")
    windows = _check_count(windows, "windows")
    stride = _check_count(stride, "stride")
    if horizon > heldout:
        raise ValueError(f"horizon {horizon} is longer than the held-out part ({heldout} steps)")
    need = (windows - 1) * stride + horizon
    if need > heldout:
        most = (heldout - horizon) // stride + 1
        raise ValueError(f"{windows} windows of {horizon} steps, {stride} apart, need {need} held-out steps; "
                         f"the held-out part has {heldout} (at most {most} window{'s' if most > 1 else ''})")
    return [w * stride for w in range(windows)]


def series_from_arrays(data, heldout: int, fit_steps=None, feature_names=None, covariate_dim: int = 0) -> BacktestSeries:
    """A :class:`BacktestSeries` from arrays: ``(T, D)``, ``(B, T, D)`` or a list of ``(T_b, D)``
    (NumPy or torch, the data's units), scoring the last ``heldout`` steps of each; the baselines
    fit on the steps before them unless ``fit_steps`` (an int or one per series) says otherwise.
    ``covariate_dim``: the last columns are covariates (:attr:`BacktestSeries.covariates`)."""
    if torch.is_tensor(data):
        data = data.detach().cpu().numpy()
    if isinstance(data, np.ndarray):
        data = [data] if data.ndim == 2 else list(data)
    series = [np.asarray(s.detach().cpu().numpy() if torch.is_tensor(s) else s, dtype=float) for s in data]
    if not series or any(s.ndim != 2 for s in series) or len({s.shape[1] for s in series}) != 1:
        raise ValueError("data must be (T, D), (B, T, D) or a list of (T_b, D) arrays with one D")
    if any(np.isinf(s).any() for s in series):
        raise ValueError("data hold infinite values (NaN marks a missing value; inf is refused)")
    if covariate_dim and any(np.isnan(s[:, s.shape[1] - covariate_dim:]).any() for s in series):
        raise ValueError("the covariate columns hold NaN: covariates must be known at every step")
    heldout = _check_count(heldout, "heldout")
    for b, s in enumerate(series):
        if len(s) <= heldout:
            raise ValueError(f"series {b} has {len(s)} steps: nothing is left before its last {heldout} (heldout)")
    if fit_steps is None:
        fit_steps = [len(s) - heldout for s in series]
    elif isinstance(fit_steps, numbers.Integral):
        fit_steps = [int(fit_steps)] * len(series)
    for b, (s, n) in enumerate(zip(series, fit_steps)):
        if not 1 <= n <= len(s) - heldout:
            raise ValueError(f"series {b}: the baselines must fit on 1 to {len(s) - heldout} steps before the held-out part, got {n}")
    covariates = None
    if covariate_dim:
        if covariate_dim >= series[0].shape[1]:
            raise ValueError(f"data have {series[0].shape[1]} columns: {covariate_dim} covariate column(s) leave no observation")
        covariates = [s[:, s.shape[1] - covariate_dim:] for s in series]
        series = [s[:, : s.shape[1] - covariate_dim] for s in series]
    names = list(feature_names) if feature_names else [f"x{d}" for d in range(series[0].shape[1])]
    return BacktestSeries(series, heldout, list(fit_steps), None, _is_binary(series), names,
                          f"the last {heldout} steps of each series", covariates)


def _rows(dataset) -> list:
    return [dataset.x[b, : int(n)].detach().cpu().numpy().astype(float) for b, n in enumerate(dataset.lengths)]


def series_from_run(run_dir, split: str = "test", heldout: int | None = None, data_root=None, device: str = "cpu",
                    accept_data_change: bool = False):
    """``(model, BacktestSeries, info)`` of a run directory (see the module docstring for what is
    held out). ``heldout`` is for runs whose data are not split by time (the last ``heldout``
    steps of each sequence of ``split``); a time-split run holds out its recorded ``holdout``."""
    from pyrosequence.data.from_path import unstandardize
    from pyrosequence.data.registry import load_split
    from pyrosequence.training.rundir import check_data, fingerprint, load_run, run_data_root

    time_split = None
    config, model, data, checkpoint = load_run(run_dir, split, device, data_root, accept_data_change=accept_data_change)
    options = config.data_options or {}
    scaling = options if options.get("scaling") else None
    names = list(options.get("value_columns") or []) or [f"x{d}" for d in range(data.x_dim)]
    if options.get("split") == "time":
        if split != "test":
            raise ValueError(f"{run_dir} is split by time: its held-out part is the test split (--split test), not {split!r}")
        recorded = int(options["holdout"])
        if heldout is not None and heldout != recorded:
            raise ValueError(f"{run_dir} is split by time with holdout {recorded}: the backtest scores those steps "
                             f"(--holdout {heldout} does not apply)")
        root = run_data_root(config, Path(run_dir), data_root)
        parts = {}
        for part in ("train", "valid"):
            parts[part] = load_split(config.data, part, root, options)
            check_data(run_dir, config, part, fingerprint(parts[part]), root, accept_data_change)
        train, valid, test = _rows(parts["train"]), _rows(parts["valid"]), _rows(data)
        series = [np.concatenate([a, b, c]) for a, b, c in zip(train, valid, test)]
        series = [unstandardize(s, options) for s in series]
        made = series_from_arrays(series, recorded, [len(a) for a in train], names, data.covariate_dim)
        backtest_series = BacktestSeries(made.series, recorded, made.fit_steps, scaling, made.binary, names,
                                         f"the test split of a time split (the last {recorded} steps of each series)",
                                         made.covariates)
        time_split = True
    else:
        if heldout is None:
            raise ValueError(f"{run_dir}'s data are not split by time: pass --holdout N (heldout=N) to score the last N "
                             f"steps of each {split} sequence")
        series = [unstandardize(s, options) for s in _rows(data)]
        made = series_from_arrays(series, heldout, feature_names=names, covariate_dim=data.covariate_dim)
        backtest_series = BacktestSeries(made.series, made.heldout, made.fit_steps, scaling, made.binary, names,
                                         f"the last {heldout} steps of each {split} sequence", made.covariates)
    info = {"run_dir": str(Path(run_dir).resolve()), "model": config.model, "data": config.data,
            "epoch": int(checkpoint["epoch"]), "weights": checkpoint.get("scored_weights"), "time_split": bool(time_split)}
    return model, backtest_series, info


@dataclass
class BacktestResult:
    """What :func:`backtest` measured.

    Attributes:
        rows: the table, one dict per method and horizon step (``step`` 1..H, or ``"all"``) and
            feature (``"all"``, or a feature's name for the per-feature rows over all steps):
            ``crps``, ``mae``, ``rmse``, ``coverage_50`` ... and ``count`` (values scored).
        methods: the method names, ours first.
        descriptions: what each method is (e.g. the SARIMAX order chosen).
        skipped: baselines not run, with the reason.
        quantiles: per method, ``(W, B, H, D, len(QUANTILES))`` quantiles of its forecasts.
        truth: ``(W, B, H, D)`` the scored values; ``origins``: ``(W, B)`` the origins (steps).
        series: the :class:`BacktestSeries` (for plots); ``options``: the settings.
        window_crps: per method, ``(W,)`` the mean CRPS of each window (over series, steps and
            features), to see how many windows a difference between methods rests on.
    """

    rows: list
    methods: list
    descriptions: dict
    skipped: dict
    quantiles: dict
    truth: np.ndarray
    origins: np.ndarray
    series: BacktestSeries
    options: dict
    levels: tuple = LEVELS
    window_crps: dict = field(default_factory=dict)

    @property
    def columns(self) -> list:
        return ["method", "step", "feature", "crps", "mae", "rmse", *map(coverage_name, self.levels), "count"]

    def table(self, step="all", feature="all") -> list:
        """The rows for one ``step`` (``"all"`` or 1..H; ``None``: every step) and ``feature``."""
        return [r for r in self.rows if (step is None or r["step"] == step) and (feature is None or r["feature"] == feature)]

    def score(self, method: str, name: str = "crps", step="all", feature="all") -> float:
        """One number of the table, e.g. ``result.score("sarimax", "crps")``."""
        for r in self.rows:
            if r["method"] == method and r["step"] == step and r["feature"] == feature:
                return r[name]
        raise KeyError(f"no row for method {method!r}, step {step!r}, feature {feature!r}; methods: {', '.join(self.methods)}")

    def to_csv(self) -> str:
        """The whole table as CSV text."""
        out = io.StringIO()
        writer = csv.DictWriter(out, self.columns, lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        return out.getvalue()

    def to_markdown(self) -> str:
        """Markdown: the scores over all steps, CRPS and 80 % coverage per step, and per feature."""
        cov = [coverage_name(l) for l in self.levels]
        head = ["method", "CRPS", "MAE", "RMSE", *[f"cov {100 * l:g}%" for l in self.levels]]

        def line(cells):
            return "| " + " | ".join(cells) + " |"

        def fmt(v):
            return f"{v:.4g}"

        lines = [f"Rolling-origin backtest: {self.options['windows']} window(s) x {len(self.series.series)} series, "
                 f"horizon {self.options['horizon']}, stride {self.options['stride']}; scored on {self.series.source}; "
                 f"{self.options['num_samples']} draws per forecast. Lower CRPS/MAE/RMSE is better; coverage should be near "
                 "its level.", "", "All steps:", "", line(head), line(["---"] * len(head))]
        for r in self.table():
            lines.append(line([r["method"], fmt(r["crps"]), fmt(r["mae"]), fmt(r["rmse"]), *[fmt(r[c]) for c in cov]]))
        steps = list(range(1, self.options["horizon"] + 1))
        for name, title in (("crps", "CRPS"), (coverage_name(0.8) if 0.8 in self.levels else cov[-1], "coverage")):
            lines += ["", f"{title} ({name}) per horizon step:", "", line(["method", *map(str, steps)]),
                      line(["---"] * (len(steps) + 1))]
            for method in self.methods:
                lines.append(line([method, *[fmt(self.score(method, name, step=h)) for h in steps]]))
        if len(self.series.feature_names) > 1:
            lines += ["", "CRPS per feature (all steps):", "", line(["method", *self.series.feature_names]),
                      line(["---"] * (len(self.series.feature_names) + 1))]
            for method in self.methods:
                lines.append(line([method, *[fmt(self.score(method, "crps", feature=f)) for f in self.series.feature_names]]))
        if self.descriptions:
            lines += ["", "Methods:", ""] + [f"- {m}: {d}" for m, d in self.descriptions.items()]
        if self.skipped:
            lines += ["", "Skipped:", ""] + [f"- {m}: {why}" for m, why in self.skipped.items()]
        return "\n".join(lines) + "\n"


def _model_rows(data: BacktestSeries, b: int, like: torch.Tensor) -> torch.Tensor:
    """Series ``b`` as the model reads it: its covariates (if any) as the last columns, in the
    model's units."""
    from pyrosequence.data.from_path import standardize

    s = data.series[b] if data.covariates is None else np.concatenate([data.series[b], data.covariates[b]], 1)
    rows = torch.as_tensor(s, dtype=like.dtype, device=like.device)
    return standardize(rows, data.scaling) if data.scaling else rows


def _prefix_batch(data: BacktestSeries, origins: np.ndarray, like: torch.Tensor, horizon: int = 0):
    """``(W * B, max_origin, D)`` prefixes (the model's units) and their lengths, window-major;
    with covariates also the ``(W * B, horizon, U)`` covariates of the steps after each origin
    (else ``None``)."""
    windows, batch = origins.shape
    steps = int(origins.max())
    width = data.series[0].shape[1] + (0 if data.covariates is None else data.covariates[0].shape[1])
    x = torch.zeros(windows * batch, steps, width, dtype=like.dtype, device=like.device)
    lengths = torch.zeros(windows * batch, dtype=torch.long, device=like.device)
    future = None if data.covariates is None else x.new_zeros(windows * batch, horizon, width - data.series[0].shape[1])
    for b in range(batch):
        rows = _model_rows(data, b, like)
        for w in range(windows):
            o = int(origins[w, b])
            x[w * batch + b, :o] = rows[:o]
            lengths[w * batch + b] = o
            if future is not None:  # the windows end within the series: their covariates are known
                future[w * batch + b] = rows[o : o + horizon, data.series[0].shape[1]:]
    return x, lengths, future


def _model_draws(model, data, origins, horizon, num_samples, num_particles, resampler, ess_threshold) -> np.ndarray:
    from pyrosequence.data.from_path import unstandardize
    from pyrosequence.diagnostics.forecast import forecast

    like = model.input_offset if hasattr(model, "input_offset") else torch.zeros(())
    x, lengths, future = _prefix_batch(data, origins, like, horizon)
    fc = forecast(model, x, lengths, horizon=horizon, num_samples=num_samples, num_particles=num_particles,
                  resampler=resampler, ess_threshold=ess_threshold, future_covariates=future)
    samples = fc.samples
    if data.scaling:
        samples = unstandardize(samples, data.scaling)
    windows, batch = origins.shape
    return samples.reshape(num_samples, windows, batch, horizon, -1).detach().cpu().double().numpy()


def _baseline_draws(baseline, data, origins, horizon, num_samples, rng) -> tuple[np.ndarray, str]:
    windows, batch = origins.shape
    draws = np.zeros((num_samples, windows, batch, horizon, data.series[0].shape[1]))
    descriptions = []
    for b, s in enumerate(data.series):
        fitted = baseline.fit(s[: data.fit_steps[b]])
        descriptions.append(fitted.description)
        for w in range(windows):
            o = int(origins[w, b])
            draws[:, w, b] = fitted.forecast(s[:o], horizon).sample(num_samples, rng)
    unique = list(dict.fromkeys(descriptions))
    return draws, unique[0] if len(unique) == 1 else "; ".join(f"series {b}: {d}" for b, d in enumerate(descriptions))


def _score_rows(method: str, draws: np.ndarray, truth: np.ndarray, names: list, levels) -> list:
    samples, target = torch.as_tensor(draws), torch.as_tensor(truth)
    keys = ["crps", "mae", "rmse", *map(coverage_name, levels)]
    scores = score_by_step(samples, target, levels)
    horizon = truth.shape[-2]
    rows = [{"method": method, "step": h + 1 if h < horizon else "all", "feature": "all",
             **{k: float(scores[k][h]) for k in keys}, "count": int(scores["count"][h])}
            for h in range(horizon + 1)]
    if len(names) > 1:
        for d, name in enumerate(names):
            per = score_by_step(samples[..., d:d + 1], target[..., d:d + 1], levels)
            rows.append({"method": method, "step": "all", "feature": name, **{k: float(per[k][-1]) for k in keys},
                         "count": int(per["count"][-1])})
    return rows


def backtest(run_or_model, data=None, horizon: int = 1, windows: int = 1, stride: int = 1, num_samples: int = 200,
             num_particles: int = 100, baselines="auto", season: int = 1, heldout: int | None = None,
             sarimax_order=None, seasonal_order=None, seed: int = 0, split: str = "test", data_root=None,
             device: str = "cpu", levels=LEVELS, resampler="multinomial", ess_threshold: float = 0.5,
             accept_data_change: bool = False) -> BacktestResult:
    """Rolling-origin backtest of a trained run (a run directory) or a model, beside baselines.

    ``run_or_model``: a run directory (its data and held-out part are the run's; ``data`` must be
    ``None``) or a :class:`~pyrosequence.models.core.base.SequenceModel` with ``data`` a
    :class:`BacktestSeries` or arrays for :func:`series_from_arrays` (with ``heldout``), in the
    units the model sees. ``windows`` windows of ``horizon`` steps, ``stride`` apart, from the
    start of the held-out part (:func:`rolling_origins`). ``baselines``: ``"auto"`` (the naive
    seasonal forecast with ``season``, and SARIMAX for one feature or VAR for several, skipped with
    the reason where they do not apply), ``"none"``, or a list of names of
    :data:`pyrosequence.baselines.BASELINES`. ``sarimax_order``: ``(p, d, q)``, default by AIC.
    ``seed`` seeds every draw. Returns a :class:`BacktestResult`.
    """
    import pyro

    from pyrosequence.baselines import make_baselines

    num_samples = _check_count(num_samples, "num_samples")
    num_particles = _check_count(num_particles, "num_particles")
    if isinstance(run_or_model, (str, Path)):
        if data is not None:
            raise ValueError("backtest(run_dir, ...) reads the run's own data; pass data only with a model")
        model, series, info = series_from_run(run_or_model, split, heldout, data_root, device, accept_data_change)
        name = info["model"]
    else:
        if data is None:
            raise ValueError("backtest(model, data, ...) needs the data: arrays (with heldout=N) or a BacktestSeries")
        if isinstance(data, BacktestSeries):
            if heldout is not None and heldout != data.heldout:
                raise ValueError(f"the BacktestSeries holds out {data.heldout} steps; heldout={heldout} does not apply")
            series = data
        else:
            if heldout is None:
                raise ValueError("backtest(model, arrays, ...) needs heldout=N: the last N steps of each series are scored")
            series = series_from_arrays(data, heldout, covariate_dim=getattr(run_or_model, "covariate_dim", 0))
        model, info = run_or_model, {"model": type(run_or_model).__name__}
        name = type(run_or_model).__name__.lower()
        if getattr(model, "x_dim", series.series[0].shape[1]) != series.series[0].shape[1]:
            raise ValueError(f"the model has x_dim {model.x_dim} but the data have {series.series[0].shape[1]} features")
    offsets = rolling_origins(series.heldout, horizon, windows, stride)
    origins = np.array([[len(s) - series.heldout + off for s in series.series] for off in offsets])  # (W, B)
    truth = np.stack([np.stack([s[o:o + horizon] for s, o in zip(series.series, row)]) for row in origins])
    built, skipped = make_baselines(baselines, series.series[0].shape[1], series.binary, season, sarimax_order, seasonal_order)
    levels = tuple(levels)

    pyro.set_rng_seed(seed)
    ours = name + OURS
    draws = {ours: _model_draws(model, series, origins, horizon, num_samples, num_particles, resampler, ess_threshold)}
    descriptions = {ours: f"{info.get('model')} run" + (f" at epoch {info['epoch']} ({info['weights']} weights)" if "epoch" in info else "")
                    + f", particle filter with {num_particles} particles"}
    rng = np.random.default_rng(seed)
    for baseline in built:
        draws[baseline.name], descriptions[baseline.name] = _baseline_draws(baseline, series, origins, horizon, num_samples, rng)
    rows, quantiles, window_crps = [], {}, {}
    for method, d in draws.items():
        rows += _score_rows(method, d, truth, series.feature_names, levels)
        quantiles[method] = np.moveaxis(np.quantile(d, QUANTILES, axis=0), 0, -1)
        per_value = crps(torch.as_tensor(d), torch.as_tensor(truth))
        window_crps[method] = per_value.reshape(per_value.shape[0], -1).mean(1).numpy()
    options = {"horizon": int(horizon), "windows": int(windows), "stride": int(stride), "num_samples": num_samples,
               "num_particles": num_particles, "season": int(season), "seed": int(seed), "heldout": series.heldout,
               "baselines": baselines if isinstance(baselines, str) or baselines is None else list(baselines),
               "sarimax_order": list(sarimax_order) if sarimax_order is not None else "by AIC", **info}
    return BacktestResult(rows, list(draws), descriptions, skipped, quantiles, truth, origins, series, options, levels,
                          window_crps)


# ---------------------------------------------------------------------------- plots
def plot_scores(result: BacktestResult, path) -> Path:
    """CRPS and interval coverage per horizon step, one line per method (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(1, result.options["horizon"] + 1)
    fig, axes = plt.subplots(1, 1 + len(result.levels), figsize=(4.2 * (1 + len(result.levels)), 3.4))
    for method in result.methods:
        axes[0].plot(steps, [result.score(method, "crps", step=int(h)) for h in steps], marker="o", ms=3, label=method)
        for ax, level in zip(axes[1:], result.levels):
            ax.plot(steps, [result.score(method, coverage_name(level), step=int(h)) for h in steps], marker="o", ms=3, label=method)
    axes[0].set_title("CRPS (data units; lower is better)")
    for ax, level in zip(axes[1:], result.levels):
        ax.axhline(level, color="k", lw=0.8, ls="--")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"coverage of the central {100 * level:g} % interval")
    for ax in axes:
        ax.set_xlabel("horizon step")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    _save(fig, path)
    plt.close(fig)
    return path


def check_plot_choice(result: BacktestResult, window: int, sequence: int) -> tuple:
    """``(windows, series)`` of the result, after checking that ``window`` (negative: from the
    end) and ``sequence`` name one of them."""
    windows, batch = result.origins.shape
    if not -windows <= window < windows:
        raise ValueError(f"the backtest has {windows} windows; window {window} is out of range")
    if not 0 <= sequence < batch:
        raise ValueError(f"the backtest has {batch} series; series {sequence} is out of range")
    return windows, batch


def plot_fan(result: BacktestResult, path, window: int = -1, sequence: int = 0, context: int | None = None) -> Path:
    """One window's forecasts: the steps before the origin, what happened, our model's median with
    its 50/80/95 % bands, and each baseline's median and 95 % band (one panel per feature, up to 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows, batch = check_plot_choice(result, window, sequence)
    w = window % windows
    origin, horizon = int(result.origins[w, sequence]), result.options["horizon"]
    series = result.series.series[sequence]
    context = context or 3 * horizon
    start = max(0, origin - context)
    names = result.series.feature_names
    shown = min(len(names), 4)
    fig, axes = plt.subplots(shown, 1, figsize=(8, 2.8 * shown), squeeze=False)
    future = np.arange(origin, origin + horizon)
    q = {v: i for i, v in enumerate(QUANTILES)}
    ours = result.methods[0]
    for d, ax in enumerate(axes[:, 0]):
        ax.plot(np.arange(start, origin), series[start:origin, d], color="k", lw=1.2, label="before the origin")
        ax.plot(future, result.truth[w, sequence, :, d], color="k", lw=1.2, ls=":", marker="o", ms=3, label="what happened")
        qs = result.quantiles[ours][w, sequence, :, d]
        for lo, hi, alpha in ((0.025, 0.975, 0.15), (0.1, 0.9, 0.25), (0.25, 0.75, 0.35)):
            ax.fill_between(future, qs[:, q[lo]], qs[:, q[hi]], color="C0", alpha=alpha, lw=0)
        ax.plot(future, qs[:, q[0.5]], color="C0", lw=1.5, label=f"{ours}: median, 50/80/95 %")
        for i, method in enumerate(result.methods[1:], start=1):
            bq = result.quantiles[method][w, sequence, :, d]
            ax.plot(future, bq[:, q[0.5]], color=f"C{i}", lw=1.2, ls="--", label=f"{method}: median, 95 %")
            ax.plot(future, bq[:, q[0.025]], color=f"C{i}", lw=0.6, ls="--")
            ax.plot(future, bq[:, q[0.975]], color=f"C{i}", lw=0.6, ls="--")
        ax.axvline(origin - 0.5, color="r", lw=0.8)
        ax.set_ylabel(names[d])
    axes[0, 0].set_title(f"series {sequence}, window {w}: forecasts of steps {origin}..{origin + horizon - 1} "
                         f"from the {origin} steps before")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    path = Path(path)
    _save(fig, path)
    plt.close(fig)
    return path


def _save(fig, path: Path) -> None:
    from pyrosequence.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
