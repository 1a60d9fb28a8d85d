"""The ``pyrosequence`` command: a thin layer over :class:`TrainConfig`, :func:`train` and :func:`evaluate`.

Errors print one line (``pyrosequence: error: ...``) and exit non-zero; nothing on disk is
removed or overwritten unless ``--force`` says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

import pyro


from pyrosequence.cli_report import add_parser as add_report_parser
from pyrosequence.cli_sample import add_parser as add_sample_parser
from pyrosequence.cli_rd_curve import add_parser as add_rd_curve_parser
from pyrosequence.config import TrainConfig
from pyrosequence.inference.evaluate import evaluate, make_bound
from pyrosequence.atomic import atomic_append, check_writable, strict_json
from pyrosequence.train import CONFIG_FILE, EVALUATIONS_FILE, RESUMABLE_CHANGES, load_run, train

#: CLI flags that become constructor options of the model rather than TrainConfig fields.
MODEL_OPTIONS = ("hidden_dim", "likelihood", "cell", "layers", "hyper_dim", "hyper_input", "hyper_net", "omega_dim", "components", "output",
                 "architecture", "proposal", "backward_dim", "aux_alpha", "aux_beta", "posterior")
USER_ERRORS = (ValueError, TypeError, OSError, FloatingPointError, ImportError, RecursionError)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, and no abbreviated flags (``--epoch`` is not ``--epochs``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def _filter_arguments(p, defaults: bool) -> None:
    p.add_argument("--resampler", default="multinomial" if defaults else None,
                   help="FIVO resampler: multinomial, systematic, stratified or residual")
    p.add_argument("--ess-threshold", dest="ess_threshold", type=float, default=0.5 if defaults else None,
                   help="FIVO resamples when ESS < threshold * K (0 = never, 1 = always; default 0.5)")


def _train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (defaults: VRNN on the built-in synthetic data)",
        description="Train a sequence model. With no arguments: VRNN (z=8) on the VHRNN synthetic data, "
        "Trace_ELBO, a few minutes on a laptop CPU; prints the test bound per time step.",
    )
    p.add_argument("--preset", help="a named configuration of a paper's experiment (see `pyrosequence presets`); "
                   "other flags override its settings")
    p.add_argument("--model", help="model name: vrnn, vhrnn, hyperlstm, lgssm, linear-vae, storn, srnn, zforcing, "
                   "srnn-simple, srnn-hier, srnn-flat, frnn, rnn-hier, rnn-flat, delta-rnn, delta-rnn-random; "
                   "a plugin's name; or your own SequenceModel as package.module:Class")
    p.add_argument("--data", help="data set: synthetic (built in), bach (music21), jsb, piano, nottingham, muse, "
                   "stock, htsensor, speech (read from --data-root)")
    p.add_argument("--data-root", dest="data_root", help="folder holding the dataset files, for datasets read from disk")
    p.add_argument("--objective", help="elbo (Trace_ELBO), mean-field (TraceMeanField_ELBO), iwae (RenyiELBO alpha=0) or fivo")
    p.add_argument("--particles", type=int, help="particles per sequence for the objective")
    _filter_arguments(p, defaults=False)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--lr", type=float, help="Adam learning rate")
    p.add_argument("--grad-clip", dest="grad_clip", type=float, help="clip the gradient norm (0 = off)")
    p.add_argument("--z-dim", dest="z_dim", type=int)
    p.add_argument("--hidden-dim", dest="hidden_dim", type=int)
    p.add_argument("--likelihood", help="bernoulli or gaussian (default: the dataset's)")
    p.add_argument("--cell", help="lstm or gru")
    p.add_argument("--layers", type=int, help="hidden layers in each MLP of the model")
    p.add_argument("--hyper-dim", dest="hyper_dim", type=int, help="VHRNN/HyperLSTM: units of the hyper network")
    p.add_argument("--hyper-input", dest="hyper_input", help="VHRNN: latent+hidden, latent or hidden")
    p.add_argument("--hyper-net", dest="hyper_net", help="VHRNN: rnn (an LSTM) or mlp (appendix H)")
    p.add_argument("--omega-dim", dest="omega_dim", type=int, help="VHRNN: hidden units of the decoder's hyper MLPs")
    p.add_argument("--components", type=int, help="mixture components (likelihood 'mixture')")
    p.add_argument("--output", help="output structure: factorized, hier-rnn or hier-made (autoregressive within a step)")
    p.add_argument("--model-option", dest="model_option", action="append", metavar="KEY=VALUE",
                   help="any constructor option of the model (repeatable; VALUE is read as JSON when it parses, "
                   "else as a string), e.g. for a model given as package.module:Class")
    p.add_argument("--architecture", help="VRNN/VHRNN: compact (default) or fivo (the FIVO reference code's reading, "
                   "which reproduces the VHRNN paper's parameter counts)")
    p.add_argument("--proposal", help="VRNN/VHRNN: filtering or smoothing (default: the architecture's)")
    p.add_argument("--length-buckets", dest="length_buckets", type=int, metavar="POOL",
                   help="batches of similar lengths: sort pools of POOL batches by length (less padding)")
    p.add_argument("--keep-best", dest="keep_best", action="store_const", const=True,
                   help="keep the weights of the best validation epoch and score those")
    p.add_argument("--backward-dim", dest="backward_dim", type=int, help="SRNN/Z-Forcing: units of the backward (posterior) LSTM")
    p.add_argument("--aux-alpha", dest="aux_alpha", type=float, help="Z-Forcing: weight of the auxiliary cost log p(b_t | z_t) (eq. 9)")
    p.add_argument("--aux-beta", dest="aux_beta", type=float, help="Z-Forcing: weight of the backward network's reverse prediction log p(x | b) (eq. 10)")
    p.add_argument("--posterior", help="STORN: filtering (q(z_t | x_<=t), default) or lagged (q(z_t | x_<t))")
    p.add_argument("--train-subset", dest="train_subset", type=int, help="train on the first N training sequences")
    p.add_argument("--tbptt", type=int, help="truncated backpropagation through time: windows of N steps")
    p.add_argument("--center-inputs", dest="center_inputs", action="store_const", const=True,
                   help="mean-centre the network inputs with the training mean (targets stay raw)")
    p.add_argument("--beta", type=float, help="weight of the KL (latent) terms (beta-VAE)")
    p.add_argument("--kl-anneal", dest="kl_anneal", action="store_const", const=True, help="anneal the KL weight 0.2 -> 1 by 5e-5 per update")
    p.add_argument("--multi-rate", dest="multi_rate", action="store_const", const=True,
                   help="train the Multi-Rate VAE of the model: beta-gated layers, beta drawn log-uniformly per update")
    p.add_argument("--beta-range", dest="beta_range", type=float, nargs=2, metavar=("A", "B"),
                   help="with --multi-rate: draw beta from [A, B] (default 0.01 10)")
    p.add_argument("--valid-bound", dest="valid_bound", help="bound for the per-epoch validation (elbo, iwae, fivo)")
    p.add_argument("--valid-particles", dest="valid_particles", type=int)
    p.add_argument("--eval-bound", dest="eval_bound", help="bound for the final test evaluation (elbo, iwae, fivo)")
    p.add_argument("--eval-particles", dest="eval_particles", type=int)
    p.add_argument("--pyro-validation", dest="pyro_validation", action="store_const", const=True,
                   help="keep Pyro's distribution validation on during updates (slower; for debugging a model)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--out", help="run directory (default: runs/MODEL-DATA-TIMESTAMP)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out (replaces a previous run's files)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(command=_run_train)


def _evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained run", description="Evaluate a bound on one split for a trained run.")
    p.add_argument("run_dir", help="a run directory written by `pyrosequence train`")
    p.add_argument("--bound", default="elbo", help="elbo, iwae or fivo")
    p.add_argument("--particles", type=int, default=1)
    _filter_arguments(p, defaults=True)
    p.add_argument("--split", default="test")
    p.add_argument("--data-root", dest="data_root", help="read the data from this folder instead of the one the run recorded")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0, help="random seed of the evaluation's draws")
    p.add_argument("--beta", type=float, help="multi-rate runs: evaluate the model the gates give at this KL weight (default 1)")
    p.set_defaults(command=_run_evaluate)


def _config_from_args(args) -> TrainConfig:
    given = {k: v for k, v in vars(args).items() if v is not None}
    extra = _model_options(given.pop("model_option", None) or [])
    if args.resume:
        if args.out is None:
            raise ValueError("--resume needs the run directory (--out DIR)")
        config = TrainConfig.load(Path(args.out) / CONFIG_FILE)
        allowed = set(RESUMABLE_CHANGES)
        saved = {**vars(config), **config.model_options}
        if saved.get("grad_clip") is None:
            saved["grad_clip"] = 0  # --grad-clip 0 is how the command line says "off"
        # the same command again (plus --resume) is fine: only flags whose value differs are refused
        ignored = sorted(
            k for k, v in {**given, **extra}.items()
            if (k in extra or k in {f.name for f in fields(TrainConfig)} | set(MODEL_OPTIONS)) and k not in allowed and v != saved.get(k)
        )
        if ignored:
            raise ValueError(
                "a resumed run keeps its configuration; only --epochs and --device may change, and --data-root "
                f"to read its data from another folder (got {', '.join(ignored)})"
            )
        values = {**vars(config), **{k: given[k] for k in allowed if k in given}}
        return TrainConfig(**values)
    options = {k: given.pop(k) for k in MODEL_OPTIONS if k in given}
    for key, value in extra.items():
        if key in options and options[key] != value:
            raise ValueError(f"--model-option {key} contradicts --{key.replace('_', '-')}")
        options[key] = value
    if given.get("grad_clip") == 0:
        given["grad_clip"] = None
    known = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in given.items() if k in known}
    if args.preset is not None:
        from pyrosequence.presets import get_preset

        return get_preset(args.preset).config(model_options=options, **values)
    return TrainConfig(model_options=options, **values)


def _model_options(pairs: list[str]) -> dict:
    """``["hidden_dim=5", "cell=gru"]`` -> ``{"hidden_dim": 5, "cell": "gru"}``."""
    options = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise ValueError(f"--model-option takes KEY=VALUE with KEY a constructor argument, got {pair!r}")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def _run_train(args) -> int:
    config = _config_from_args(args)
    result = train(config, out=args.out, resume=args.resume, force=args.force, progress=args.progress)
    print(f"results written to {result.run_dir}")
    return 0


def _run_evaluate(args) -> int:
    config, model, data, checkpoint = load_run(args.run_dir, args.split, args.device, args.data_root)
    if args.beta is not None:
        from pyrosequence.models.multi_rate import is_multi_rate, set_beta

        if not is_multi_rate(model):
            raise ValueError(f"--beta needs a multi-rate run; {args.run_dir} was trained without --multi-rate")
        set_beta(model, args.beta)
    run_dir = Path(args.run_dir)
    check_writable(run_dir)  # before the (possibly long) evaluation, not after it
    pyro.set_rng_seed(args.seed)
    bound = make_bound(args.bound, args.resampler, args.ess_threshold)
    result = evaluate(model, data.x, data.lengths, bound=bound, num_particles=args.particles)
    record = {
        "split": args.split,
        "bound": args.bound,
        "particles": args.particles,
        **{key: getattr(bound, key) for key in ("resampler", "ess_threshold") if hasattr(bound, key)},
        "per_timestep": result.per_timestep,
        "total": result.total,
        "epoch": int(checkpoint["epoch"]),
        "seed": args.seed,
        **({"beta": args.beta} if args.beta is not None else {}),
    }
    atomic_append(run_dir / EVALUATIONS_FILE, strict_json(record) + "\n")
    print(f"{args.split} {args.bound}({args.particles}) per time step: {result.per_timestep:.4f}")
    return 0


def _plot_parser(sub) -> None:
    p = sub.add_parser(
        "plot",
        help="plot trained runs",
        description="Plot one sequence's per-step dynamics (data, KL, L2 error of the predicted mean, "
        "predicted log-variance) for one or more runs side by side, as in the VHRNN paper's Figures 3-7.",
    )
    p.add_argument("runs", nargs="+", help="run directories written by `pyrosequence train`")
    p.add_argument("--kind", default="dynamics", help="dynamics (several runs), or for one run: kl, variance, ppc, ess, calibration, training")
    p.add_argument("--split", "--setting", dest="split", default="test", help="data split, e.g. switch")
    p.add_argument("--data-root", dest="data_root", help="read the data from this folder instead of the one the run recorded")
    p.add_argument("--index", type=int, default=0, help="which sequence of the split")
    p.add_argument("--samples", type=int, default=16, help="posterior draws averaged per step")
    p.add_argument("--draws", type=int, default=100, help="kinds ppc/calibration/variance/ess: predictive draws per step")
    p.add_argument("--particles", type=int, default=100, help="kinds ppc/calibration/variance/ess: particles of the filter")
    p.add_argument("--sequences", type=int, default=16, help="new kinds: use the first N sequences of the split")
    p.add_argument("--seed", type=int, default=0, help="new kinds: random seed of the draws")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.set_defaults(command=_run_plot)


def _run_plot(args) -> int:
    from pyrosequence.diagnostics import plot_dynamics, step_dynamics
    from pyrosequence.diagnostics.markers import change_points

    if args.kind != "dynamics":
        from pyrosequence.diagnostics.kinds import plot_run

        options = {k: getattr(args, k) for k in ("split", "index", "samples", "draws", "particles", "sequences", "seed", "data_root")}
        print(f"wrote {plot_run(args.kind, args.runs, args.out, args.force, **options)}")
        return 0
    out = Path(args.out)
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists; pass --force to overwrite it")
    curves, data_name = {}, None
    for run_dir in args.runs:
        config, model, data, _ = load_run(run_dir, args.split, data_root=args.data_root)
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


def _data_parser(sub) -> None:
    p = sub.add_parser("data", help="describe or fetch data sets", description="Describe or fetch data sets.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    describe = actions.add_parser("describe", help="splits, sequence counts, lengths and dimensions of a data set")
    describe.add_argument("name", help="data set name (see `pyrosequence train --help`)")
    describe.add_argument("--data-root", dest="data_root", help="folder holding the data set's files")
    describe.set_defaults(command=_run_describe)
    fetch = actions.add_parser("fetch", help="download a polyphonic music set, verified by its SHA-256 (needs internet)")
    fetch.add_argument("name", help="jsb, piano, nottingham or muse")
    fetch.add_argument("--root", required=True, help="folder to put the file in")
    fetch.add_argument("--force", action="store_true", help="download again over an existing file")
    fetch.add_argument("--url", help="another address to download from (e.g. the authors' original pickle)")
    fetch.add_argument("--sha256", help="the expected SHA-256 of the file at --url (required where the library knows none)")
    fetch.set_defaults(command=_run_fetch)
    p.set_defaults(command=lambda args: (p.print_help(), 2)[1])


def _run_describe(args) -> int:
    from pyrosequence.data.describe import describe

    print(describe(args.name, args.data_root))
    return 0


def _run_fetch(args) -> int:
    from pyrosequence.data.fetch import fetch_music

    print(f"wrote {fetch_music(args.name, args.root, url=args.url, force=args.force, sha256=args.sha256)}")
    return 0


def _presets_parser(sub) -> None:
    p = sub.add_parser("presets", help="list the named configurations of the papers' experiments",
                       description="List the presets `pyrosequence train --preset NAME` takes, with the paper's figures.")
    p.set_defaults(command=_run_presets)


def _run_presets(args) -> int:
    from pyrosequence.presets import PRESETS

    for preset in PRESETS.values():
        reported = ", ".join(f"{k} {v}" for k, v in preset.reported.items())
        print(f"{preset.name:24s} {preset.model} z={preset.z_dim} on {preset.training['data']}; {preset.paper}: {reported}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pyrosequence", description="Probabilistic sequence models on Pyro.")
    sub = parser.add_subparsers(dest="name", metavar="COMMAND", parser_class=_Parser)
    _train_parser(sub)
    _evaluate_parser(sub)
    _plot_parser(sub)
    _data_parser(sub)
    add_rd_curve_parser(sub)
    add_report_parser(sub)
    add_sample_parser(sub)
    _presets_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) is None:
        parser.print_help()
        return 2
    try:
        return args.command(args)
    except USER_ERRORS as error:
        print(f"pyrosequence: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pyrosequence: interrupted; the last completed epoch's checkpoint is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
