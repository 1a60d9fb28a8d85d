"""``pyrosequence report RUN_DIR --out DIR``: a one-page Markdown report of a trained run.

The report embeds a PNG of every plot kind of :data:`pyrosequence.diagnostics.kinds.PLOT_KINDS`
and lists the run's configuration, its test result, the calibration of the one-step-ahead
predictive distribution, the particle filter's health, active latent units and the guide's PSIS
k-hat. The calibration checks suit the emission: coverage of central predictive intervals for
continuous data, and for a binary emission (Bernoulli piano rolls, where an interval of a 0/1
value says nothing) the Brier score and reliability of the predicted probabilities
(:mod:`pyrosequence.diagnostics.binary`). Every check and figure names the evaluation it comes
from (split, sequences, particles, draws, seed). Nothing in an existing non-empty ``--out`` is
overwritten without ``--force``.
"""

from __future__ import annotations

from pyrosequence.atomic import atomic_write, check_writable

import json
from pathlib import Path

import numpy as np
import pyro

from pyrosequence.training.output_dir import check_output_dir

REPORT_FILE = "report.md"


def add_parser(sub) -> None:
    """Register the ``report`` subcommand on the CLI's subparsers."""
    p = sub.add_parser(
        "report",
        help="write a one-page Markdown report of a run with its diagnostic plots",
        description="Write DIR/report.md and one PNG per plot kind (kl, variance, ppc, ess, calibration, "
        "training) for a run directory, with its config, results and diagnostic checks.",
    )
    p.add_argument("run_dir", help="a run directory written by `pyrosequence train`")
    p.add_argument("--out", required=True, help="folder to write report.md and the PNGs into")
    p.add_argument("--split", default="test", help="data split the diagnostics use")
    p.add_argument("--data-root", dest="data_root", help="read the data from this folder instead of the one the run recorded (a run on your own data: this file or folder instead of its recorded path)")
    p.add_argument("--sequences", type=int, default=16, help="use the first N sequences of the split")
    p.add_argument("--draws", type=int, default=100, help="predictive and posterior draws per step")
    p.add_argument("--particles", type=int, default=100, help="particles of the filter")
    p.add_argument("--psis-particles", dest="psis_particles", type=int, default=500,
                   help="importance weights per sequence for PSIS k-hat")
    p.add_argument("--seed", type=int, default=0, help="random seed of the draws")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out, replacing its files")
    p.set_defaults(command=run_report)


def _table(rows: dict) -> str:
    lines = ["| key | value |", "| --- | --- |"]
    lines += [f"| {k} | {json.dumps(v) if isinstance(v, (dict, list)) else v} |" for k, v in rows.items()]
    return "\n".join(lines)


def write_report(diagnostics, out: Path, psis_particles: int = 500) -> Path:
    """Write ``out/report.md`` and the PNGs for ``diagnostics`` (a :class:`RunDiagnostics`)."""
    from pyrosequence.diagnostics.active_units import active_units
    from pyrosequence.diagnostics.binary import predictive_reliability
    from pyrosequence.diagnostics.calibration import calibration
    from pyrosequence.diagnostics.filter_health import filter_health
    from pyrosequence.diagnostics.kinds import PLOT_KINDS, plot_kind
    from pyrosequence.diagnostics.psis import psis_khat

    d = diagnostics
    images = {kind: plot_kind(kind, d, out / f"{kind}.png", force=True).name for kind in PLOT_KINDS}
    config = json.loads((d.run_dir / "config.json").read_text())
    health = filter_health(d.idata)
    bound = d.idata.log_likelihood["x_sequence"].values.ravel()
    lengths = d.idata.constant_data["lengths"].values
    if d.binary:  # probabilities of 0/1 values: Brier score and reliability, not interval coverage
        r = predictive_reliability(d.idata)
        filled = r.bin_count > 0
        gap = np.abs(r.frequency[filled] - r.mean_probability[filled])
        calibration_checks = {
            "Brier score of P(x_t = 1 | x_<t)": (f"{r.brier:.4f} (forecasting the base rate {r.base_rate:.3f} "
                                                 f"everywhere: {r.reference_brier:.4f}; skill {r.skill:.3f})"),
            "reliability (bins of 0.1)": (f"largest gap between observed frequency and mean probability {gap.max():.3f}; "
                                          f"weighted mean gap {np.average(gap, weights=r.bin_count[filled]):.3f}"),
        }
    else:
        cal = calibration(d.idata)
        calibration_checks = {
            f"coverage of the central {level:.0%} interval": f"{c:.3f} (nominal {level:.2f}, binomial s.e. {se:.3f})"
            for level, c, se in zip(cal.levels, cal.coverage, cal.standard_error)
        }
    checks = {
        "sequences checked": f"{len(lengths)} ({d.split} split), {int(lengths.sum())} steps",
        f"FIVO bound per step (K = {d.particles})": f"{bound.sum() / lengths.sum():.4f}",
        **calibration_checks,
        "mean ESS / K": f"{np.nanmean(health.ess) / health.num_particles:.3f}",
        "resampling events per sequence": f"{np.mean(health.resamples_per_sequence):.1f}",
    }
    if d.model.z_dim:
        units = active_units(d.idata)
        checks["active latent units (Burda et al., A_u > 0.01)"] = f"{units.num_active} of {len(units.active)}"
        pyro.set_rng_seed(d.seed)
        khat = psis_khat(d.model, *d.batch, num_particles=psis_particles).khat
        checks[f"PSIS k-hat of the guide (K = {psis_particles})"] = (
            f"median {np.median(khat):.2f}, max {np.max(khat):.2f}, {np.mean(khat > 0.7):.0%} of sequences above 0.7 "
            f"(its own {psis_particles} guide draws per sequence, seed {d.seed})"
        )
    filtered, posterior = f"From {d.evaluation('filter')}.", f"From {d.evaluation('posterior')}."
    captions = {
        "training": ("Training objective and validation bound per epoch (`metrics.jsonl`); the test line is "
                     "`results.json`, the evaluation `train` ran at its end."),
        "ppc": f"Posterior predictive check: one-step-ahead predictive draws against the data. {filtered}",
        "calibration": (f"Reliability of the predicted probabilities and the Brier score per step (binary emission). {filtered}"
                        if d.binary else f"Coverage of the central predictive intervals, overall and per step. {filtered}"),
        "ess": f"Particle filter: effective sample size and resampling events over time. {filtered}",
        "kl": f"Per-step KL between the guide and the prior. {posterior}",
        "variance": f"Predicted log-variance over time. From {d.evaluation('both' if d.model.z_dim else 'filter')}.",
    }
    parts = [
        f"# Run report: {d.title}",
        (f"Run directory `{d.run_dir}`. The checks and figures below come from one evaluation: "
         f"{d.evaluation('filter')} (the per-step KL curves: {d.samples} posterior draws per sequence)."),
        "## Results (`results.json`: the test evaluation `train` ran at its end)",
        _table(d.results) if d.results else "No `results.json`: the run has not finished.",
        "## Checks",
        _table(checks),
        "## Plots",
    ]
    for kind in ("training", "ppc", "calibration", "ess", "kl", "variance"):
        if kind in images:
            parts.append(f"### {kind}\n{captions.get(kind, '')}\n\n![{kind}]({images[kind]})")
    parts += ["## Configuration (`config.json`)", _table(config)]
    path = out / REPORT_FILE
    atomic_write(path, "\n\n".join(parts) + "\n")
    return path


def run_report(args) -> int:
    from pyrosequence.diagnostics.kinds import RunDiagnostics

    out = check_output_dir(args.out, args.force, "pass --force to replace its report")
    check_writable(next(p for p in (out, *out.absolute().parents) if p.exists()))  # before computing anything
    if not isinstance(args.psis_particles, int) or args.psis_particles < 10:
        raise ValueError(f"--psis-particles must be at least 10, got {args.psis_particles}")
    diagnostics = RunDiagnostics(
        args.run_dir, split=args.split, draws=args.draws, particles=args.particles,
        sequences=args.sequences, seed=args.seed, data_root=args.data_root,
    )
    if not (diagnostics.run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{diagnostics.run_dir} has no config.json: not a run directory")
    _ = diagnostics.loaded  # load (and check) the run before creating anything
    out.mkdir(parents=True, exist_ok=True)
    print(f"wrote {write_report(diagnostics, out, args.psis_particles)}")
    return 0
