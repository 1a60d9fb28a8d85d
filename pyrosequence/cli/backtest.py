"""``pyrosequence backtest RUN_DIR --horizon H --windows N --out DIR``: rolling-origin forecasts of a
trained run scored against what happened, beside baselines fitted on the same splits
(:func:`pyrosequence.diagnostics.backtest.backtest`).

Written into ``--out`` (never into a non-empty folder without ``--force``):

``scores.md``
    the table: CRPS, MAE and RMSE of the median, coverage of the central 50/80/95 % intervals
    over all steps, CRPS and 80 % coverage per horizon step, per feature, one row per method.
``scores.csv``
    every row: ``method, step (1..H or all), feature (all or a name), crps, mae, rmse, coverage_*, count``.
``scores.png``, ``forecast.png``
    CRPS and coverage per horizon step; one window's forecasts (``--plot-window``, ``--plot-index``).
``forecasts.npz``
    ``quantiles_<method>`` ``(W, B, H, D, 7)`` at ``quantiles``, ``window_crps_<method>`` ``(W,)``
    (each window's mean CRPS), ``truth`` ``(W, B, H, D)``, ``origins`` ``(W, B)``.
``backtest.json``
    the options, the run and its epoch, each method's description, the skipped baselines and why,
    the scores over all steps and each window's mean CRPS per method.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pyrosequence.atomic import atomic_path, atomic_write, strict_json
from pyrosequence.cli.common import filter_arguments
from pyrosequence.training.output_dir import check_output_dir

FILES = ("scores.md", "scores.csv", "scores.png", "forecast.png", "forecasts.npz", "backtest.json")


def add_parser(sub) -> None:
    """Register the ``backtest`` subcommand on the CLI's subparsers."""
    p = sub.add_parser(
        "backtest",
        help="score rolling-origin forecasts of a run (CRPS, MAE/RMSE, coverage) beside naive, SARIMAX and VAR baselines",
        description="Rolling-origin backtest: from each of --windows origins in the held-out part (a time split's test "
        "split, or the last --holdout steps of each sequence), condition on every step before it and forecast --horizon "
        "steps; score CRPS, MAE/RMSE of the median and the coverage of 50/80/95 % intervals per horizon step, in the "
        "data's units, beside baselines fitted on the same training steps. Writes scores.md/.csv/.png, forecast.png, "
        "forecasts.npz and backtest.json into --out.",
    )
    p.add_argument("run_dir", help="a run directory written by `pyrosequence train`")
    p.add_argument("--horizon", type=int, required=True, help="steps forecast from each origin")
    p.add_argument("--windows", type=int, required=True, help="number of forecast origins (rolling windows)")
    p.add_argument("--stride", type=int, default=1, help="steps between two origins (default 1)")
    p.add_argument("--out", required=True, help="folder to write into (must be empty or new unless --force)")
    p.add_argument("--holdout", type=int, default=None,
                   help="a run not split by time: score the last N steps of each sequence of --split")
    p.add_argument("--split", default="test", help="the split whose sequences are scored (a time split: test)")
    p.add_argument("--num-samples", dest="num_samples", type=int, default=200, help="draws per forecast (every method)")
    p.add_argument("--particles", type=int, default=100, help="particles of the filter conditioning on each prefix")
    filter_arguments(p, defaults=True)
    p.add_argument("--baselines", default="auto",
                   help="comma-separated: naive, sarimax, uc (UnobservedComponents, a local level), var; auto (naive + sarimax for one feature, + var for several; "
                   "skipped with the reason where they do not apply) or none")
    p.add_argument("--season", type=int, default=1, help="season of the naive seasonal forecast in steps (1 = last value)")
    p.add_argument("--sarimax-order", dest="sarimax_order", default=None,
                   help="p,d,q of SARIMAX (default: p <= 3, q <= 2, d = 0 by AIC)")
    p.add_argument("--plot-window", dest="plot_window", type=int, default=-1, help="window of forecast.png (default the last)")
    p.add_argument("--plot-index", dest="plot_index", type=int, default=0, help="series of forecast.png")
    p.add_argument("--seed", type=int, default=0, help="random seed of every draw")
    p.add_argument("--data-root", dest="data_root", help="read the data from this folder instead of the one the run recorded (a run on your own data: this file or folder instead of its recorded path)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out, replacing its files")
    p.add_argument("--accept-data-change", dest="accept_data_change", action="store_true",
                   help="use data whose fingerprint differs from the run's (backtest.json says so)")
    p.set_defaults(command=run_backtest)


def _order(text):
    if text is None:
        return None
    try:
        order = tuple(int(v) for v in text.split(","))
    except ValueError:
        order = ()
    if len(order) != 3 or min(order) < 0:
        raise ValueError(f"--sarimax-order takes p,d,q (three non-negative integers), got {text!r}")
    return order


def run_backtest(args) -> int:
    from pyrosequence.diagnostics.backtest import QUANTILES, backtest, check_plot_choice, plot_fan, plot_scores

    out = check_output_dir(args.out, args.force)
    if not Path(args.run_dir).is_dir():
        raise FileNotFoundError(f"no run directory at {args.run_dir}")
    names = [n.strip() for n in args.baselines.split(",") if n.strip()]
    baselines = names[0] if names in (["auto"], ["none"]) else names
    result = backtest(args.run_dir, horizon=args.horizon, windows=args.windows, stride=args.stride,
                      num_samples=args.num_samples, num_particles=args.particles, baselines=baselines, season=args.season,
                      heldout=args.holdout, sarimax_order=_order(args.sarimax_order), seed=args.seed, split=args.split,
                      data_root=args.data_root, device=args.device, resampler=args.resampler,
                      ess_threshold=args.ess_threshold, accept_data_change=args.accept_data_change)
    check_plot_choice(result, args.plot_window, args.plot_index)  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "scores.md", result.to_markdown())
    atomic_write(out / "scores.csv", result.to_csv())
    plot_scores(result, out / "scores.png")
    plot_fan(result, out / "forecast.png", window=args.plot_window, sequence=args.plot_index)
    arrays = {"truth": result.truth, "origins": result.origins, "quantiles": np.asarray(QUANTILES)}
    key = {m: m.replace(" ", "_").replace("(", "").replace(")", "") for m in result.methods}
    arrays.update({f"quantiles_{key[m]}": q for m, q in result.quantiles.items()})
    arrays.update({f"window_crps_{key[m]}": c for m, c in result.window_crps.items()})
    with atomic_path(out / "forecasts.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    info = {"options": result.options, "methods": result.descriptions, "skipped": result.skipped,
            "source": result.series.source, "scores_all_steps": result.table(),
            "window_crps": {m: [float(v) for v in c] for m, c in result.window_crps.items()}}
    atomic_write(out / "backtest.json", strict_json(info, indent=2) + "\n")
    summary = ", ".join(f"{m} {result.score(m, 'crps'):.4g}" for m in result.methods)
    print(f"CRPS over {args.windows} window(s) x {args.horizon} step(s): {summary}")
    for name, why in result.skipped.items():
        print(f"skipped {name}: {why}")
    print(f"wrote {len(FILES)} files to {out} ({', '.join(FILES)})")
    return 0
