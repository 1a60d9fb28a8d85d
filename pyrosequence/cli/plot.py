"""``pyrosequence plot``: per-step dynamics of one or more runs side by side, or one diagnostic kind of one run."""

from __future__ import annotations

from pathlib import Path

from pyrosequence.atomic import check_writable
from pyrosequence.training.rundir import load_run


def add_parser(sub) -> None:
    p = sub.add_parser(
        "plot",
        help="plot trained runs",
        description="Plot one sequence's per-step dynamics (data, KL, L2 error of the predicted mean, "
        "predicted log-variance) for one or more runs side by side, as in the VHRNN paper's Figures 3-7.",
    )
    p.add_argument("runs", nargs="+", help="run directories written by `pyrosequence train`")
    p.add_argument("--kind", default="dynamics", help="dynamics (several runs), or for one run: kl, variance, ppc, ess, calibration, training")
    p.add_argument("--split", "--setting", dest="split", default="test", help="data split, e.g. switch")
    p.add_argument("--data-root", dest="data_root", help="read the data from this folder instead of the one the run recorded (a run on your own data: this file or folder instead of its recorded path)")
    p.add_argument("--index", type=int, default=0, help="which sequence of the split")
    p.add_argument("--samples", type=int, default=16, help="posterior draws averaged per step")
    p.add_argument("--draws", type=int, default=100, help="kinds ppc/calibration/variance/ess: predictive draws per step")
    p.add_argument("--particles", type=int, default=100, help="kinds ppc/calibration/variance/ess: particles of the filter")
    p.add_argument("--sequences", type=int, default=16, help="new kinds: use the first N sequences of the split")
    p.add_argument("--seed", type=int, default=0, help="new kinds: random seed of the draws")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.add_argument("--accept-data-change", dest="accept_data_change", action="store_true",
                   help="use data whose fingerprint differs from the run's")
    p.set_defaults(command=run_plot)


def run_plot(args) -> int:
    from pyrosequence.diagnostics import plot_dynamics, step_dynamics
    from pyrosequence.diagnostics.markers import change_points

    check_writable(Path(args.out).parent)  # before computing anything
    if args.kind != "dynamics":
        from pyrosequence.diagnostics.kinds import plot_run

        options = {k: getattr(args, k) for k in ("split", "index", "samples", "draws", "particles", "sequences", "seed", "data_root",
                                                 "accept_data_change")}
        print(f"wrote {plot_run(args.kind, args.runs, args.out, args.force, **options)}")
        return 0
    out = Path(args.out)
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists; pass --force to overwrite it")
    curves, data_name = {}, None
    for run_dir in args.runs:
        config, model, data, _ = load_run(run_dir, args.split, data_root=args.data_root, accept_data_change=args.accept_data_change)
        if not 0 <= args.index < len(data):
            raise ValueError(f"{config.data}/{args.split} has {len(data)} sequences; --index {args.index} is out of range")
        x = data.x[args.index, : int(data.lengths[args.index])]
        label = f"{type(model).__name__} ({Path(run_dir).name})"
        curves[label] = step_dynamics(model, x, num_samples=args.samples)
        data_name = config.data
    title = f"{data_name}/{args.split}, sequence {args.index}"
    plot_dynamics(curves, out, title, change_points(data_name, args.split, args.index))
    print(f"wrote {out}")
    return 0
