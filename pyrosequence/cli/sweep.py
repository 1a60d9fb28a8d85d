"""``pyrosequence sweep``: a hyperparameter search on Optuna (:mod:`pyrosequence.sweep`).

The base configuration takes exactly ``pyrosequence train``'s flags (``--preset`` and the model,
data, objective and protocol flags: :func:`pyrosequence.cli.train.config_arguments`), so a
sweep is written like the run it tunes (``--seed`` is every trial's training seed and also seeds
the sampler); ``--space`` says what each trial varies. Optuna is imported only when the command
runs. Sharing the argument definitions (rather than ``--set key=value`` overrides) keeps one
spelling, one help text and one parser (:func:`~pyrosequence.cli.train.config_from_args`) for
both commands, and the best trial's command is written in those same flags.
"""

from __future__ import annotations

import argparse

from pyrosequence.cli.train import config_arguments, config_from_args


def add_parser(sub) -> None:
    """Register ``pyrosequence sweep``: train's configuration flags plus the sweep's own."""
    p = sub.add_parser(
        "sweep",
        help='search hyperparameters with Optuna (pip install -e ".[sweep]")',
        description="Run trials of a search space around a base configuration (a --preset and/or train's flags), "
        "each an ordinary run directory SWEEP_DIR/trial-NNNN; a pruner stops hopeless trials on their validation "
        "bound; prints the results table and the best configuration as a pyrosequence train command. The same "
        "command again continues the study.",
    )
    config_arguments(p)
    g = p.add_argument_group("sweep")
    g.add_argument("--space", nargs="+", action="extend", metavar="NAME=KIND:ARGS",
                   help="what the trials vary: lr=log:1e-5:1e-3, weight_decay=float:0:1e-3, batch_size=int:4:32, "
                   "hidden_dim=intlog:16:256, init=choice:default,fivo (choices with commas: separated by |); NAME is a "
                   "train setting, an optimizer option (weight_decay, betas, beta1, beta2, ...) or a model option")
    g.add_argument("--space-file", dest="space_file", metavar="FILE",
                   help="the space as YAML or JSON: {name: {type: log, low: 1e-5, high: 1e-3} or [choices]}")
    g.add_argument("--trials", type=int, default=20, help="COMPLETE plus PRUNED trials the study should hold, across "
                   "all workers and restarts (default 20)")
    g.add_argument("--out", required=True, metavar="SWEEP_DIR", help="the sweep folder (trial run directories, study.db, results)")
    g.add_argument("--pruner", choices=("median", "none"), default="median",
                   help="median (default: stop a trial whose best validation bound so far is below the median of the "
                   "complete trials' at the same epoch) or none")
    g.add_argument("--pruner-startup", dest="pruner_startup", type=int, default=5, metavar="N",
                   help="median pruner: complete trials before any pruning (default 5)")
    g.add_argument("--pruner-warmup", dest="pruner_warmup", type=int, metavar="EPOCHS",
                   help="median pruner: no trial is pruned before this epoch (default: a tenth of --epochs, at least 1)")
    g.add_argument("--storage", metavar="URL", help="an Optuna storage URL (postgresql://, mysql://, sqlite:///) shared "
                   "by several machines, or a journal file path; default SWEEP_DIR/study.db, or SWEEP_DIR/journal.log "
                   "with --workers > 1")
    g.add_argument("--study-name", dest="study_name", help="the study in the storage (default: SWEEP_DIR's name); "
                   "machines sharing a storage give the same one")
    g.add_argument("--direction", choices=("maximize",), default="maximize",
                   help="the validation bound is maximised (fixed)")
    g.add_argument("--workers", type=int, default=1, help="worker processes on this machine sharing the study (default 1)")
    g.add_argument("--heartbeat", type=int, default=60, metavar="SECONDS",
                   help="database storages: a trial whose process has not beaten for twice this long is failed and "
                   "queued again (default 60)")
    g.add_argument("--report", action="store_true",
                   help="print the table and best command of the sweep in --out, and rewrite its results files; run nothing")
    p.set_defaults(command=run_sweep_command)


def run_sweep_command(args) -> int:
    """Run (or continue) the sweep, or with ``--report`` only report it; print the table and best command."""
    from pyrosequence.sweep.study import import_optuna

    optuna = import_optuna()  # one line saying how to install it when it is missing
    from pyrosequence.sweep.report import load_sweep, write_report

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the sweep prints a line per trial itself
    if args.report:
        study = load_sweep(args.out, args.storage, args.study_name)
        write_report(study, args.out)
        return 0
    from pyrosequence.sweep.space import parse_space
    from pyrosequence.sweep.study import run_sweep

    space = parse_space(args.space or [], args.space_file)
    base = config_from_args(argparse.Namespace(**{**vars(args), "resume": False}))
    study = run_sweep(
        base, space, args.trials, args.out, storage=args.storage, study_name=args.study_name, pruner=args.pruner,
        pruner_startup=args.pruner_startup, pruner_warmup=args.pruner_warmup, workers=args.workers,
        preset=args.preset, heartbeat=args.heartbeat,
    )
    write_report(study, args.out)
    return 0
