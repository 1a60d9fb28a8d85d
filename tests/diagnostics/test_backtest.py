"""Rolling-origin backtests (pyrosequence.diagnostics.backtest), the baselines (pyrosequence.baselines)
and ``pyrosequence backtest``: which steps each window conditions on and scores, the baselines'
forecasts exact, bad input in one line, and the command end to end on a tiny run."""

import csv
import json

import numpy as np
import pytest
import torch

from pyrosequence.baselines import (NaiveSeasonal, SARIMAXBaseline, UnobservedComponentsBaseline, VARBaseline, baseline_names,
                                    make_baselines)
from pyrosequence.baselines import registry as baseline_registry
from pyrosequence.cli import main
from pyrosequence.diagnostics import backtest as backtest_module
from pyrosequence.diagnostics.backtest import BacktestSeries, backtest, rolling_origins, series_from_arrays
from pyrosequence.models import VRNN

try:
    import statsmodels  # noqa: F401

    HAVE_STATSMODELS = True
except ImportError:
    HAVE_STATSMODELS = False
needs_statsmodels = pytest.mark.skipif(not HAVE_STATSMODELS, reason="statsmodels is not installed (pip install 'pyrosequence[baselines]')")

FAST = ["--epochs", "2", "--z-dim", "2", "--hidden-dim", "4", "--eval-particles", "2", "--no-progress", "--seed", "0"]


# ---------------------------------------------------------------------------- windows
def test_rolling_origins_exact_and_refusals():
    assert rolling_origins(10, horizon=3, windows=4) == [0, 1, 2, 3]
    assert rolling_origins(10, horizon=3, windows=3, stride=3) == [0, 3, 6]      # the last window ends at step 9 of 10
    assert rolling_origins(5, horizon=5, windows=1) == [0]
    with pytest.raises(ValueError, match=r"^horizon 6 is longer than the held-out part \(5 steps\)$"):
        rolling_origins(5, horizon=6, windows=1)
    with pytest.raises(ValueError, match=r"^4 windows of 3 steps, 2 apart, need 9 held-out steps; the held-out part has 8 \(at most 3 windows\)$"):
        rolling_origins(8, horizon=3, windows=4, stride=2)
    for bad in (dict(horizon=0, windows=1), dict(horizon=1, windows=0), dict(horizon=1, windows=1, stride=0)):
        with pytest.raises(ValueError, match="must be an integer of at least 1"):
            rolling_origins(5, **bad)


class Recorder:
    """Stands in for diagnostics.forecast.forecast: records what the model is conditioned on and
    returns draws equal to ``value`` (the model's units)."""

    def __init__(self, value=0.0):
        self.value, self.calls = value, []

    def __call__(self, model, x, lengths, horizon, num_samples, **kwargs):
        self.calls.append((x.clone(), lengths.clone(), horizon, num_samples))

        class F:
            samples = torch.full((num_samples, x.shape[0], horizon, x.shape[-1]), self.value)

        return F()


def test_each_window_conditions_on_the_steps_before_its_origin_and_scores_the_next_horizon(monkeypatch):
    """Two series of 20 and 23 steps, the last 6 held out, 3 windows of 3 steps, stride 1: window
    w of series b conditions on steps 0 .. o - 1 and scores steps o .. o + 2, o = T_b - 6 + w."""
    recorder = Recorder()
    monkeypatch.setattr("pyrosequence.diagnostics.forecast.forecast", recorder)
    series = [np.arange(20.0).reshape(20, 1), 100 + np.arange(23.0).reshape(23, 1)]
    result = backtest(VRNN(1, 2, hidden_dim=4), series, horizon=3, windows=3, heldout=6, num_samples=5, baselines="none")
    assert result.origins.tolist() == [[14, 17], [15, 18], [16, 19]]
    x, lengths, horizon, num = recorder.calls[0]
    assert (horizon, num) == (3, 5)
    assert lengths.tolist() == [14, 17, 15, 18, 16, 19]                      # window-major
    for row, (b, o) in enumerate([(0, 14), (1, 17), (0, 15), (1, 18), (0, 16), (1, 19)]):
        assert x[row, :o, 0].tolist() == series[b][:o, 0].tolist()          # exactly the steps before the origin
        assert (x[row, o:] == 0).all()                                      # nothing after it (padding)
    assert result.truth[:, 0, :, 0].tolist() == [[14, 15, 16], [15, 16, 17], [16, 17, 18]]
    assert result.truth[:, 1, :, 0].tolist() == [[117, 118, 119], [118, 119, 120], [119, 120, 121]]
    # the draws are all 0: the error of the median is the truth itself, per step over windows and series
    mae = [result.score("vrnn (ours)", "mae", step=h) for h in (1, 2, 3)]
    assert mae == pytest.approx([np.mean([14, 15, 16, 117, 118, 119]), np.mean([15, 16, 17, 118, 119, 120]),
                                 np.mean([16, 17, 18, 119, 120, 121])])
    assert result.score("vrnn (ours)", "crps") == pytest.approx(result.truth.mean())   # a point forecast's CRPS
    assert result.window_crps["vrnn (ours)"].tolist() == pytest.approx(result.truth.reshape(3, -1).mean(1).tolist())


def test_standardised_runs_are_scored_in_the_data_units(monkeypatch):
    """The model sees (x - mean) / std; its draws (here all 0, i.e. the mean) come back as the mean."""
    recorder = Recorder(value=0.0)
    monkeypatch.setattr("pyrosequence.diagnostics.forecast.forecast", recorder)
    raw = 5.0 + 2.0 * np.arange(12.0).reshape(12, 1)
    scaling = {"scaling": {"mean": [4.0], "std": [2.0]}}
    data = BacktestSeries([raw], heldout=4, fit_steps=[8], scaling=scaling, feature_names=["y"])
    result = backtest(VRNN(1, 2, hidden_dim=4), data, horizon=2, windows=3, num_samples=4, baselines=["naive"])
    x, lengths, _, _ = recorder.calls[0]
    assert x[0, :8, 0].tolist() == pytest.approx(((raw[:8, 0] - 4.0) / 2.0).tolist())
    assert np.allclose(result.quantiles["vrnn (ours)"], 4.0)
    assert result.truth[:, 0, :, 0].tolist() == [[21.0, 23.0], [23.0, 25.0], [25.0, 27.0]]   # raw steps 8..11


def test_bad_input_is_one_line(monkeypatch):
    monkeypatch.setattr("pyrosequence.diagnostics.forecast.forecast", Recorder())
    model, series = VRNN(1, 2, hidden_dim=4), np.zeros((20, 1))
    with pytest.raises(ValueError, match=r"^horizon 7 is longer than the held-out part \(6 steps\)$"):
        backtest(model, series, horizon=7, windows=1, heldout=6)
    with pytest.raises(ValueError, match=r"need 8 held-out steps; the held-out part has 6 \(at most 4 windows\)$"):
        backtest(model, series, horizon=3, windows=6, heldout=6)
    with pytest.raises(ValueError, match="needs heldout=N"):
        backtest(model, series, horizon=1, windows=1)
    with pytest.raises(ValueError, match="nothing is left before its last 20"):
        backtest(model, series, horizon=1, windows=1, heldout=20)
    with pytest.raises(ValueError, match="model has x_dim 1 but the data have 2"):
        backtest(model, np.zeros((20, 2)), horizon=1, windows=1, heldout=5)
    with pytest.raises(ValueError, match="unknown baseline"):
        backtest(model, series, horizon=1, windows=1, heldout=5, baselines=["arima"])
    with pytest.raises(FileNotFoundError, match="no run directory at"):
        backtest("/nonexistent/run", horizon=1, windows=1)


# ---------------------------------------------------------------------------- baselines
def test_naive_seasonal_exact():
    y = np.array([[1.0], [2.0], [3.0], [5.0], [4.0], [6.0], [9.0], [7.0]])
    fitted = NaiveSeasonal(season=3).fit(y)
    # seasonal differences y_t - y_{t-3}: 4, 2, 3, 4, 3 -> sigma^2 = (16 + 4 + 9 + 16 + 9) / 5
    sigma = np.sqrt(54 / 5)
    forecast = fitted.forecast(y[:7], horizon=5)      # origin 7: the last season is steps 4, 5, 6 = 4, 6, 9
    assert forecast.mean[:, 0].tolist() == [4.0, 6.0, 9.0, 4.0, 6.0]
    assert forecast.std[:, 0] == pytest.approx(sigma * np.sqrt([1, 1, 1, 2, 2]))
    naive = NaiveSeasonal().fit(y).forecast(y, horizon=3)         # m = 1: the last value, sd sqrt(h)
    assert naive.mean[:, 0].tolist() == [7.0, 7.0, 7.0]
    diffs = np.diff(y[:, 0])
    assert naive.std[:, 0] == pytest.approx(np.sqrt(np.mean(diffs ** 2)) * np.sqrt([1, 2, 3]))
    point = NaiveSeasonal(point=True).fit(y).forecast(y, horizon=2)
    assert point.std.tolist() == [[0.0], [0.0]]
    # missing values: a gap in the last season repeats that phase from the season before; the
    # seasonal differences with a missing end are left out of sigma
    gappy = y.copy()
    gappy[5, 0] = np.nan                                # step 5 (phase 2 of the last season)
    fitted = NaiveSeasonal(season=3).fit(gappy)
    # differences 4, 2, (nan), 4, 3 -> sigma^2 = (16 + 4 + 16 + 9) / 4 (steps 3-0, 4-1, 6-3, 7-4)
    forecast = fitted.forecast(gappy[:7], horizon=3)   # last season: steps 4, 5, 6 = 4, nan, 9; step 5 -> step 2 = 3
    assert forecast.mean[:, 0].tolist() == [4.0, 3.0, 9.0]
    assert forecast.std[:, 0] == pytest.approx(np.sqrt(45 / 4) * np.ones(3))
    with pytest.raises(ValueError, match="season must be a positive"):
        NaiveSeasonal(season=0)
    with pytest.raises(ValueError, match="needs more than 3 training steps"):
        NaiveSeasonal(season=3).fit(y[:3])


@needs_statsmodels
def test_sarimax_keeps_its_parameters_and_conditions_on_the_history():
    """An AR(1) with a constant: after fitting on the first 150 steps, the forecast from any origin
    is c + phi * y_{o-1} with standard deviation sqrt(sigma2), from the fitted parameters."""
    rng = np.random.default_rng(0)
    y = np.zeros(200)
    for t in range(1, 200):
        y[t] = 1.0 + 0.6 * y[t - 1] + rng.normal()
    fitted = SARIMAXBaseline(order=(1, 0, 0)).fit(y[:150, None])
    c, phi, sigma2 = fitted.results[0].params
    assert phi == pytest.approx(0.6, abs=0.15)
    for origin in (150, 170, 199):
        forecast = fitted.forecast(y[:origin, None], horizon=2)
        assert forecast.mean[0, 0] == pytest.approx(c + phi * y[origin - 1], rel=1e-6)
        assert forecast.mean[1, 0] == pytest.approx(c + phi * forecast.mean[0, 0], rel=1e-6)
        assert forecast.std[0, 0] == pytest.approx(np.sqrt(sigma2), rel=1e-4)
        assert forecast.std[1, 0] == pytest.approx(np.sqrt(sigma2 * (1 + phi ** 2)), rel=1e-4)
    assert list(fitted.results[0].params) == [c, phi, sigma2]
    auto = SARIMAXBaseline().fit(y[:150, None])
    assert auto.description.startswith("SARIMAX(") and auto.description.endswith("by AIC")


@needs_statsmodels
def test_unobserved_components_local_level_forecast():
    """A local level: the forecast is flat at the filtered level of the last step before the
    origin, and its variance grows by the level's variance per step (sigma2.level)."""
    rng = np.random.default_rng(2)
    y = (np.cumsum(rng.normal(scale=0.5, size=160)) + rng.normal(size=160))[:, None]
    fitted = UnobservedComponentsBaseline().fit(y[:120])
    results = fitted.results[0]
    names = list(results.model.param_names)
    level_var = results.params[names.index("sigma2.level")]
    for origin in (120, 150):
        forecast = fitted.forecast(y[:origin], horizon=3)
        filtered = results.apply(y[:origin, 0])
        assert forecast.mean[:, 0] == pytest.approx([filtered.filtered_state[0, -1]] * 3, rel=1e-6)
        assert np.diff(forecast.std[:, 0] ** 2) == pytest.approx([level_var] * 2, rel=1e-4)
    assert fitted.description == "UnobservedComponents(local level)"
    built, _ = make_baselines(["uc"], 1, False)
    assert isinstance(built[0], UnobservedComponentsBaseline)


@needs_statsmodels
def test_var_forecast_from_the_fitted_coefficients():
    rng = np.random.default_rng(1)
    A = np.array([[0.5, 0.2], [-0.1, 0.4]])
    y = np.zeros((300, 2))
    for t in range(1, 300):
        y[t] = np.array([0.3, -0.2]) + A @ y[t - 1] + rng.normal(size=2)
    fitted = VARBaseline(maxlags=4).fit(y[:250])
    results = fitted.results
    p = results.k_ar
    forecast = fitted.forecast(y[:280], horizon=3)
    expected = results.params[0] + sum(results.coefs[i] @ y[279 - i] for i in range(p))
    assert forecast.mean[0] == pytest.approx(expected)
    assert forecast.std[0] == pytest.approx(np.sqrt(np.diag(results.sigma_u)))
    with pytest.raises(ValueError, match="VAR is for multivariate series"):
        VARBaseline().fit(y[:250, :1])


def test_baseline_choice_without_statsmodels_and_for_binary_data(monkeypatch):
    missing = "statsmodels is not installed (pip install 'pyrosequence[baselines]')"
    monkeypatch.setattr(baseline_registry, "statsmodels_missing", lambda: missing)
    assert baseline_names("auto", 1, False) == (["naive"], {"sarimax": missing})
    assert baseline_names("auto", 3, False) == (["naive"], {"var": missing})
    with pytest.raises(ImportError, match=r"^baseline 'var' cannot run: statsmodels is not installed"):
        baseline_names(["naive", "var"], 3, False)
    monkeypatch.setattr(baseline_registry, "statsmodels_missing", lambda: None)
    assert baseline_names("auto", 1, False) == (["naive", "sarimax"], {})
    keep, skipped = baseline_names("auto", 1, True)              # binary data: SARIMAX makes no sense
    assert keep == ["naive"] and "binary" in skipped["sarimax"]
    with pytest.raises(ValueError, match=r"^baseline 'sarimax' cannot run: sarimax models real values; this run's data are binary"):
        baseline_names(["sarimax"], 1, True)
    with pytest.raises(ValueError, match="VAR is for multivariate"):
        baseline_names(["var"], 1, False)
    assert baseline_names("none", 1, False) == ([], {})
    built, _ = make_baselines("auto", 1, True, season=2)
    assert isinstance(built[0], NaiveSeasonal) and built[0].point and built[0].season == 2


def test_backtest_with_the_naive_baseline_scores_it_exactly(monkeypatch):
    """A series whose held-out part repeats the last training value: the naive forecast (m = 1)
    has median = that value, so its MAE per step is the known error."""
    monkeypatch.setattr("pyrosequence.diagnostics.forecast.forecast", Recorder())
    y = np.array([0.0, 1.0, 0.0, 1.0, 3.0, 5.0, 4.0, 8.0])[:, None]
    result = backtest(VRNN(1, 2, hidden_dim=4), y, horizon=2, windows=2, heldout=3, num_samples=2001, baselines=["naive"])
    # origins 5 and 6: naive medians y4 = 3 and y5 = 5; truths (5, 4) and (4, 8)
    assert result.score("naive", "mae", step=1) == pytest.approx(np.mean([2.0, 1.0]), abs=0.05)
    assert result.score("naive", "mae", step=2) == pytest.approx(np.mean([1.0, 3.0]), abs=0.05)
    assert result.methods == ["vrnn (ours)", "naive"]
    assert result.descriptions["naive"] == "naive (last value, m = 1)"
    text = result.to_markdown()
    assert "| naive |" in text and "CRPS (crps) per horizon step" in text
    assert result.to_csv().splitlines()[0] == "method,step,feature,crps,mae,rmse,coverage_50,coverage_80,coverage_95,count"


def test_backtest_on_a_series_with_gaps_scores_the_observed_values(monkeypatch):
    """NaN = not observed: the windows condition on the gappy history, a missing truth is left out
    of the scores (count), and the naive forecast repeats the latest observed value; inf and NaN
    covariates are refused."""
    monkeypatch.setattr("pyrosequence.diagnostics.forecast.forecast", Recorder())
    y = np.array([0.0, 1.0, 0.0, 1.0, 3.0, np.nan, 4.0, 8.0])[:, None]
    result = backtest(VRNN(1, 2, hidden_dim=4), y, horizon=2, windows=2, heldout=3, num_samples=2001, baselines=["naive"])
    # origins 5 and 6: naive medians y4 = 3 (y4 is the last observed before 5) and y4 = 3 again (y5 missing);
    # truths (nan, 4) and (4, 8): step 1 scores only the second window's 4, step 2 both
    count = {step: next(r["count"] for r in result.table(step=step) if r["method"] == "naive") for step in (1, 2, "all")}
    assert count == {1: 1, 2: 2, "all": 3}
    assert result.score("naive", "mae", step=1) == pytest.approx(1.0, abs=0.05)
    assert result.score("naive", "mae", step=2) == pytest.approx(np.mean([1.0, 5.0]), abs=0.05)
    assert np.isfinite(result.score("vrnn (ours)", "crps"))
    with pytest.raises(ValueError, match="infinite values"):
        series_from_arrays(np.array([[0.0], [np.inf], [1.0], [2.0]]), heldout=1)
    with pytest.raises(ValueError, match="covariate columns hold NaN"):
        series_from_arrays(np.array([[0.0, 1.0], [1.0, np.nan], [1.0, 0.0], [2.0, 1.0]]), heldout=1, covariate_dim=1)


# ---------------------------------------------------------------------------- the command
def write_series(path, steps=48, binary=False, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time", "y"])
        for i in t:
            value = float(rng.random() < 0.5) if binary else round(50 + 10 * np.sin(i / 3) + rng.normal(), 4)
            writer.writerow([int(i), value])
    return np.loadtxt(path, delimiter=",", skiprows=1)[:, 1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("backtest")
    data = folder / "series.csv"
    raw = write_series(data)
    run = folder / "run"
    assert main(["train", *FAST, "--data", str(data), "--data-option", "split=time", "--data-option", "holdout=8",
                 "--standardize", "--model", "vrnn", "--out", str(run)]) == 0
    return run, raw


def test_cli_backtest_end_to_end(tiny_run, tmp_path, capsys):
    run, raw = tiny_run
    out = tmp_path / "bt"
    baselines = "auto" if HAVE_STATSMODELS else "naive"
    argv = ["backtest", str(run), "--horizon", "2", "--windows", "4", "--stride", "2", "--num-samples", "20",
            "--particles", "8", "--baselines", baselines, "--sarimax-order", "1,0,0", "--out", str(out)]
    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "CRPS over 4 window(s) x 2 step(s): vrnn (ours)" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(["scores.md", "scores.csv", "scores.png", "forecast.png",
                                                           "forecasts.npz", "backtest.json"])
    arrays = np.load(out / "forecasts.npz")
    # 48 steps, the last 8 held out: origins 40, 42, 44, 46 -> scored steps o, o + 1, in the CSV's units
    assert arrays["origins"][:, 0].tolist() == [40, 42, 44, 46]
    for w, o in enumerate([40, 42, 44, 46]):
        assert arrays["truth"][w, 0, :, 0] == pytest.approx(raw[o:o + 2], abs=1e-4)
    median = arrays["quantiles_vrnn_ours"][..., 3]
    assert 20 < float(np.median(median)) < 80            # data units, not standardised ones
    info = json.loads((out / "backtest.json").read_text())
    assert info["options"]["time_split"] and info["options"]["heldout"] == 8
    methods = [row["method"] for row in info["scores_all_steps"]]
    assert methods == ["vrnn (ours)", "naive"] + (["sarimax"] if HAVE_STATSMODELS else [])
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert len(rows) == len(methods) * 3                 # steps 1, 2 and all
    assert arrays["window_crps_vrnn_ours"].shape == (4,) and len(info["window_crps"]["naive"]) == 4
    assert np.mean(info["window_crps"]["naive"]) == pytest.approx(float(rows[len(rows) // len(methods) * 1 + 2]["crps"]), rel=1e-4)
    assert all(np.isfinite(float(r["crps"])) for r in rows)
    # never overwritten without --force
    assert main(argv) == 1
    assert "exists and is not empty; pass --force" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0


def test_cli_backtest_refusals_are_one_line(tiny_run, tmp_path, capsys):
    run, _ = tiny_run
    base = ["backtest", str(run), "--out", str(tmp_path / "x"), "--num-samples", "4", "--particles", "2"]
    cases = [
        (["--horizon", "9", "--windows", "1"], "pyrosequence: error: horizon 9 is longer than the held-out part (8 steps)"),
        (["--horizon", "3", "--windows", "7"], "pyrosequence: error: 7 windows of 3 steps, 1 apart, need 9 held-out steps; "
                                               "the held-out part has 8 (at most 6 windows)"),
        (["--horizon", "2", "--windows", "1", "--holdout", "4"], "is split by time with holdout 8"),
        (["--horizon", "2", "--windows", "1", "--sarimax-order", "1,0"], "--sarimax-order takes p,d,q"),
        (["--horizon", "2", "--windows", "1", "--baselines", "naive,arima"], "unknown baseline(s) 'arima'"),
        (["--horizon", "2", "--windows", "2", "--baselines", "naive", "--plot-window", "2"], "the backtest has 2 windows; window 2 is out of range"),
    ]
    for extra, message in cases:
        capsys.readouterr()
        assert main(base + extra) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    capsys.readouterr()
    assert main(["backtest", str(tmp_path / "missing"), "--horizon", "1", "--windows", "1", "--out", str(tmp_path / "y")]) == 1
    err = capsys.readouterr().err
    assert err == f"pyrosequence: error: no run directory at {tmp_path / 'missing'}\n"
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_cli_backtest_of_a_run_on_binary_data(tmp_path, capsys):
    """CRPS of our forecasts is still fine; SARIMAX is skipped with the reason (auto) or refused
    (asked for); the naive forecast is a persistence point forecast."""
    data = tmp_path / "flips.csv"
    write_series(data, steps=30, binary=True)
    run = tmp_path / "run"
    assert main(["train", *FAST, "--data", str(data), "--data-option", "split=time", "--data-option", "holdout=5",
                 "--model", "vrnn", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["backtest", str(run), "--horizon", "2", "--windows", "2", "--num-samples", "8", "--particles", "4",
                 "--out", str(tmp_path / "bt")]) == 0
    printed = capsys.readouterr().out
    assert "skipped sarimax: sarimax models real values; this run's data are binary" in printed
    info = json.loads((tmp_path / "bt" / "backtest.json").read_text())
    assert [r["method"] for r in info["scores_all_steps"]] == ["vrnn (ours)", "naive"]
    assert all(0 <= r["crps"] <= 1 for r in info["scores_all_steps"])
    assert main(["backtest", str(run), "--horizon", "2", "--windows", "2", "--baselines", "sarimax",
                 "--out", str(tmp_path / "bt2")]) == 1
    assert "baseline 'sarimax' cannot run: sarimax models real values" in capsys.readouterr().err


def test_a_run_not_split_by_time_needs_holdout(tmp_path, capsys):
    data = tmp_path / "walks.npz"
    np.savez(data, *[np.random.default_rng(i).normal(size=(14, 1)).cumsum(0) for i in range(6)])
    run = tmp_path / "run"
    assert main(["train", *FAST, "--data", str(data), "--model", "vrnn", "--out", str(run)]) == 0
    capsys.readouterr()
    argv = ["backtest", str(run), "--horizon", "2", "--windows", "2", "--num-samples", "8", "--particles", "4",
            "--baselines", "naive"]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 1
    assert "data are not split by time: pass --holdout N" in capsys.readouterr().err
    assert main(argv + ["--holdout", "4", "--out", str(tmp_path / "b")]) == 0
    info = json.loads((tmp_path / "b" / "backtest.json").read_text())
    assert info["source"] == "the last 4 steps of each test sequence"
