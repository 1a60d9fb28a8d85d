"""``pyrosequence rd-curve``: rate-distortion points of trained runs, as a table and a plot.

A multi-rate run (``train --multi-rate``) gives one point per ``--betas`` value from its single
model; any other run with latents gives one point at the beta it was trained with, so a set of
beta-VAE runs can be compared with the multi-rate curve. Writes ``rd_curve.csv``,
``rd_curve.md``, ``rd_curve.json`` and ``rd_curve.png`` into ``--out`` (refusing to overwrite
them without ``--force``).
"""

from __future__ import annotations

from pyrosequence.atomic import atomic_write

from pathlib import Path

import pyro

FILES = ("rd_curve.csv", "rd_curve.md", "rd_curve.json", "rd_curve.png")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "rd-curve",
        help="rate-distortion curve of trained runs (multi-rate and beta-VAE)",
        description="Rate (KL per step) and distortion (-log p(x|z) per step) on a split: at each --betas value for "
        "a multi-rate run, at its training beta for any other run. Writes a table (CSV, Markdown, JSON) and a PNG.",
    )
    p.add_argument("runs", nargs="+", help="run directories written by `pyrosequence train`")
    p.add_argument("--betas", type=float, nargs="+", help="KL weights for multi-rate runs (default: 10 log-spaced over the run's range)")
    p.add_argument("--split", default="test", help="data split (default test)")
    p.add_argument("--samples", type=int, default=1, help="guide draws averaged per sequence (default 1)")
    p.add_argument("--mc-kl", dest="analytic", action="store_false", help="Monte Carlo KL even where it is analytic")
    p.add_argument("--seed", type=int, default=0, help="random seed of the guide's draws")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, help="folder for rd_curve.{csv,md,json,png}")
    p.add_argument("--force", action="store_true", help="overwrite existing rd_curve.* files in --out")
    p.set_defaults(command=run)


def run(args) -> int:
    from pyrosequence.diagnostics.rate_distortion_report import plot_rd, to_csv, to_json, to_markdown
    from pyrosequence.inference.rate_distortion import rd_curve
    from pyrosequence.models.core.capabilities import draws_latents
    from pyrosequence.training.rundir import load_run

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    existing = [name for name in FILES if (out / name).exists()]
    if existing and not args.force:
        raise FileExistsError(f"{out} already holds {', '.join(existing)}; pass --force to overwrite")
    if args.samples < 1:
        raise ValueError(f"--samples must be at least 1, got {args.samples}")
    points = []
    for run_dir in args.runs:
        config, model, data, _ = load_run(run_dir, args.split, args.device)
        if not draws_latents(model, model.prepare(data.x, data.lengths)):  # a program: its guide says
            raise ValueError(f"{run_dir}: model {config.model!r} has no latent variables, so no rate to measure")
        if args.betas is not None and not config.multi_rate:
            print(f"note: {run_dir} is not a multi-rate run; it gives one point at its training beta {config.beta:g}")
        pyro.set_rng_seed(args.seed)
        points += rd_curve(
            model, data.x, data.lengths, args.betas if config.multi_rate else None,
            num_samples=args.samples, analytic=args.analytic, label=Path(run_dir).name, beta=config.beta,
        )
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("rd_curve.csv", to_csv(points)), ("rd_curve.md", to_markdown(points)), ("rd_curve.json", to_json(points))):
        atomic_write(out / name, text)
    plot_rd(points, out / "rd_curve.png", title=f"rate-distortion on the {args.split} split")
    print(to_markdown(points), end="")
    print(f"wrote {', '.join(str(out / name) for name in FILES)}")
    return 0
