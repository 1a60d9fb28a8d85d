"""Forecasting walk-through on data sets we did not choose: statsmodels' ``sunspots``, ``macrodata`` and ``co2``.

Steps (docs/forecasting-walkthrough.md explains each; experiments/RESULTS.md has the figures)::

    python experiments/statsmodels_walkthrough.py export --out runs/walkthrough/data
    python experiments/statsmodels_walkthrough.py commands --data runs/walkthrough/data --runs runs/walkthrough
    # ... run each printed command, then:
    python experiments/statsmodels_walkthrough.py summary --runs runs/walkthrough

``export`` writes three wide CSV files (one series per file, a row per step) from the data sets that
statsmodels ships (needs ``pip install statsmodels``; nothing is downloaded):

``sunspots.csv``
    ``time`` (the year, 1700-2008) and ``sunactivity`` (the yearly sunspot number), 309 steps.
``macrodata.csv``
    ``time`` (year + (quarter - 1) / 4, 1959Q2-2009Q3) and three quarterly US series, 202 steps:
    ``gdp_growth`` = 400 * diff(log real GDP) (annualised growth, %), ``inflation`` (statsmodels'
    ``infl``: 400 * diff(log CPI)) and ``unemp`` (the unemployment rate, %). The first quarter is
    dropped because a growth rate needs the quarter before it (``infl`` is 0 there by construction).

``co2.csv``
    ``time`` (the week's Saturday as a year fraction, 1958-03-29 to 2001-12-29) and ``co2``, the
    weekly Mauna Loa CO2 concentration (ppm), 2,284 steps of which 59 are missing (written as
    ``nan``: the library masks them in every bound and the baselines' state-space fits skip them).

sunspots and macrodata have no missing values. ``commands`` prints the train and backtest commands the walk-through
runs, one per line, so that they can be run one at a time. ``summary`` reads every
``RUN/backtest/backtest.json`` and prints one markdown table per data set (each baseline once: the
baselines of the VRNN's and the DMM's backtests are the same fits on the same windows and seed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

#: Per data set: the holdout (steps held out for test, and again for valid), the horizon, the
#: windows and the season of the naive baseline.
SETTINGS = {
    "sunspots": {"holdout": 30, "horizon": 10, "windows": 21, "season": 11},
    "macrodata": {"holdout": 20, "horizon": 8, "windows": 13, "season": 1},
    "co2": {"holdout": 52, "horizon": 13, "windows": 40, "season": 52},
}

#: The models trained on each data set: name -> train flags (beside the data flags).
MODELS = {
    "vrnn": "--model vrnn --z-dim 4 --hidden-dim 32",
    "dmm": "--model dmm --z-dim 4 --hidden-dim 32",
}
#: --tbptt 50: each training series is cut into windows of 50 steps, one update each (a series is
#: one sequence, so without it an epoch is one update).
TRAIN_FLAGS = "--standardize --tbptt 50 --epochs {epochs} --lr 3e-3 --keep-best --seed 0 --no-progress"
EPOCHS = 150


def _write_csv(path: Path, header: list, rows: np.ndarray) -> None:
    from pyrosequence.atomic import atomic_write

    lines = [",".join(header)] + [",".join(repr(float(v)) for v in row) for row in rows]
    atomic_write(path, "\n".join(lines) + "\n")


def export(out: Path) -> list:
    """Write sunspots.csv, macrodata.csv and co2.csv into ``out`` (made if needed); returns the paths."""
    import statsmodels.api as sm

    out.mkdir(parents=True, exist_ok=True)
    sun = sm.datasets.sunspots.load_pandas().data
    rows = np.stack([sun["YEAR"].to_numpy(float), sun["SUNACTIVITY"].to_numpy(float)], 1)
    _write_csv(out / "sunspots.csv", ["time", "sunactivity"], rows)
    macro = sm.datasets.macrodata.load_pandas().data
    time = macro["year"].to_numpy(float) + (macro["quarter"].to_numpy(float) - 1) / 4
    growth = 400 * np.diff(np.log(macro["realgdp"].to_numpy(float)))
    rows = np.stack([time[1:], growth, macro["infl"].to_numpy(float)[1:], macro["unemp"].to_numpy(float)[1:]], 1)
    _write_csv(out / "macrodata.csv", ["time", "gdp_growth", "inflation", "unemp"], rows)
    co2 = sm.datasets.co2.load_pandas().data["co2"]
    days = (co2.index - co2.index[0]).days.to_numpy(float)
    time = co2.index[0].year + (co2.index[0].day_of_year - 1) / 365.25 + days / 365.25
    _write_csv(out / "co2.csv", ["time", "co2"], np.stack([time, co2.to_numpy(float)], 1))
    return [out / "sunspots.csv", out / "macrodata.csv", out / "co2.csv"]


def commands(data: Path, runs: Path, epochs: int = EPOCHS) -> list:
    """The walk-through's commands: train each model on each data set, then backtest it."""
    lines = []
    for name, s in SETTINGS.items():
        csv = data / f"{name}.csv"
        data_flags = f"--data {csv} --data-option split=time --data-option holdout={s['holdout']}"
        for model, flags in MODELS.items():
            run = runs / f"{name}-{model}"
            lines.append(f"pyrosequence train {data_flags} {flags} {TRAIN_FLAGS.format(epochs=epochs)} --out {run}")
        for model in MODELS:
            run = runs / f"{name}-{model}"
            lines.append(f"pyrosequence backtest {run} --horizon {s['horizon']} --windows {s['windows']} "
                         f"--season {s['season']} --num-samples 500 --particles 200 --seed 0 --out {run}/backtest")
    return lines


def summary(runs: Path) -> str:
    """Markdown tables of the backtests under ``runs`` (see the module docstring)."""
    import json

    lines = []
    for name, s in SETTINGS.items():
        rows, seen = [], set()
        for model in MODELS:
            path = runs / f"{name}-{model}" / "backtest" / "backtest.json"
            if not path.is_file():
                continue
            info = json.loads(path.read_text())
            for row in info["scores_all_steps"]:
                if row["method"] in seen:
                    continue
                seen.add(row["method"])
                rows.append((row, info["methods"][row["method"]]))
        if not rows:
            continue
        lines += [f"{name}: horizon {s['horizon']}, {s['windows']} windows (stride 1) over the last {s['holdout']} steps, "
                  "scores over all steps and features (data units)", "",
                  "| method | CRPS | MAE | RMSE | cov 50% | cov 80% | cov 95% | what |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row, what in rows:
            cells = [f"{row[k]:.3f}" for k in ("crps", "mae", "rmse", "coverage_50", "coverage_80", "coverage_95")]
            lines.append(f"| {row['method']} | " + " | ".join(cells) + f" | {what} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("export", help="write sunspots.csv, macrodata.csv and co2.csv")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("commands", help="print the train and backtest commands")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p = sub.add_parser("summary", help="print the backtests' scores as markdown tables")
    p.add_argument("--runs", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.step == "export":
        for path in export(args.out):
            print(path)
    elif args.step == "summary":
        print(summary(args.runs))
    else:
        print("\n".join(commands(args.data, args.runs, args.epochs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
