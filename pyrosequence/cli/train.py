"""``pyrosequence train``: a :class:`TrainConfig` from the flags (or a preset, or a run to resume), then :func:`train`."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, fields
from pathlib import Path

from pyrosequence.cli.common import filter_arguments
from pyrosequence.data.registry import REGISTRY as DATA_REGISTRY
from pyrosequence.inference.objectives import OBJECTIVES
from pyrosequence.models import MODELS, REGISTRY as MODEL_REGISTRY
from pyrosequence.models.core.options import model_options as model_options_of
from pyrosequence.atomic import first_line
from pyrosequence.training.config import TrainConfig
from pyrosequence.training.distributed import is_main_process
from pyrosequence.training.rundir import CONFIG_FILE, RESUMABLE_CHANGES, run_data_root
from pyrosequence.training.loop import train

#: Constructor options of a built-in model that are not flags of their own, because a run setting
#: has the name (delta-rnn's ``seed``): ``--model-option seed=3`` reaches them.
SHADOWED = ("seed",)
#: CLI flags that become constructor options of the model rather than TrainConfig fields: every
#: built-in model's constructor options, read from the classes (pyrosequence.models.core.options).
BUILTIN_OPTIONS = {name: option for name, option in model_options_of(MODELS).items() if name not in SHADOWED}
MODEL_OPTIONS = tuple(BUILTIN_OPTIONS)

#: CLI flags that become options of the optimizer (TrainConfig.optimizer_options).
OPTIMIZER_OPTIONS = ("betas", "eps", "weight_decay", "clip_norm", "lrd", "momentum", "nesterov")


#: Flags whose value 0 means "off" (None in the configuration), so a resumed run can drop them.
OFF_WHEN_ZERO = ("grad_clip", "patience", "max_updates", "time_limit")


def duration(text: str) -> float:
    """``"3600"``, ``"90m"``, ``"2h"``, ``"1h30m"``, ``"45s"`` -> seconds."""
    import re

    match = re.fullmatch(r"\s*(?:(\d+(?:\.\d*)?)h)?\s*(?:(\d+(?:\.\d*)?)m)?\s*(?:(\d+(?:\.\d*)?)s?)?\s*", text)
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"--time-limit takes a duration such as 3600, 45m, 2h or 1h30m, got {text!r}")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (defaults: VRNN on the built-in synthetic data)",
        description="Train a sequence model. With no arguments: VRNN (z=8) on the VHRNN synthetic data, "
        "Trace_ELBO, a few minutes on a laptop CPU; prints the test bound per time step.",
    )
    config_arguments(p)
    p.add_argument("--out", help="run directory (default: runs/MODEL-DATA-TIMESTAMP)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out (replaces a previous run's files)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--accept-data-change", dest="accept_data_change", action="store_true",
                   help="with --resume: continue on data whose fingerprint differs from the run's (recorded in data.json)")
    p.set_defaults(command=run_train)


def config_arguments(p) -> None:
    """The flags that make a :class:`TrainConfig` (read by :func:`config_from_args`): ``--preset``, the
    model, data, objective and protocol flags, ``--seed``, ``--device``. ``train`` adds its run-directory
    flags to these; ``sweep`` takes the same ones as the base configuration of its trials."""
    p.add_argument("--preset", help="a named configuration of a paper's experiment (see `pyrosequence presets`); "
                   "other flags override its settings")
    p.add_argument("--model", help=f"model name: {', '.join(MODEL_REGISTRY.names())}; a plugin's name; or your own "
                   "SequenceModel as package.module:Class")
    p.add_argument("--data", help=f"data set: {', '.join(DATA_REGISTRY.names())} (the disk-backed ones read from "
                   "--data-root), a name given to register_dataset or an installed plugin, or a PATH to your own data: "
                   "a .npz/.npy file, a CSV or Parquet table (long: a 'sequence' id column; wide: one series per file), "
                   "or a folder of them or of .mid/.wav files (train/valid/test files give the splits)")
    p.add_argument("--data-option", dest="data_option", action="append", metavar="KEY=VALUE",
                   help="how --data PATH is read (repeatable): layout=long|wide, id_column, time_column, split_column, "
                   "value_columns='[\"a\",\"b\"]', covariate_columns='[\"price\",\"holiday\"]' (known inputs the model reads "
                   "but does not emit), split=file|sequence|time, split_seed, valid_fraction, test_fraction, "
                   "holdout=N (split=time: the last N steps for test, N before for valid), likelihood, step_quarters (MIDI), "
                   "frame_size (WAV); recorded in config.json")
    p.add_argument("--standardize", action="store_const", const=True,
                   help="--data PATH: scale every feature to mean 0, sd 1 with the training split's statistics "
                   "(recorded; samples are written in the data's units)")
    p.add_argument("--data-root", dest="data_root", help="folder holding the dataset files, for datasets read from disk")
    p.add_argument("--objective", help="; ".join(f"{name}: {first_line(factory.__doc__).rstrip('.')}" for name, factory in OBJECTIVES.items()))
    p.add_argument("--particles", type=int, help="particles per sequence for the objective")
    filter_arguments(p, defaults=False)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--lr", type=float, help="learning rate (the schedule multiplies it)")
    p.add_argument("--grad-clip", dest="grad_clip", type=float, help="clip the global gradient norm (0 = off)")
    p.add_argument("--optimizer", help="adam (default), adamw (decoupled weight decay), clipped-adam (Pyro's ClippedAdam: "
                   "element-wise --clip-norm, per-update --lrd, L2 --weight-decay) or sgd (--momentum)")
    p.add_argument("--betas", type=float, nargs=2, metavar=("B1", "B2"), help="Adam's moment decays (default 0.9 0.999)")
    p.add_argument("--eps", type=float, help="Adam's epsilon (default 1e-8)")
    p.add_argument("--weight-decay", dest="weight_decay", type=float,
                   help="weight decay: an L2 term for adam/clipped-adam/sgd, decoupled for adamw")
    p.add_argument("--clip-norm", dest="clip_norm", type=float, help="clipped-adam: clamp every gradient element to [-C, C] (default 10)")
    p.add_argument("--lrd", type=float, help="clipped-adam: multiply the learning rate by this at every update (e.g. 0.99996)")
    p.add_argument("--momentum", type=float, help="sgd: momentum")
    p.add_argument("--nesterov", action="store_const", const=True, help="sgd: Nesterov momentum")
    p.add_argument("--schedule", action="append", metavar="NAME:K=V,...",
                   help="a learning-rate schedule factor (repeat to multiply several): constant, warmup:steps=N, "
                   "exponential:gamma=G (per update), cosine:steps=N,floor=LR,warmup=W, step:every=E,gamma=G (per epoch), "
                   "plateau:factor=F,patience=P,threshold=T,cooldown=C,min_lr=LR (on the validation bound)")
    p.add_argument("--init", help="initialisation: default (PyTorch's), xavier (Xavier weights, zero biases) or fivo "
                   "(xavier plus LSTM forget-gate bias 1, as the FIVO reference code)")
    p.add_argument("--loss-reduction", dest="loss_reduction",
                   help="mean-step (default: gradient of the batch loss per time step) or sum (of the batch's summed loss, as Pyro's examples)")
    p.add_argument("--patience", type=int, help="stop after N epochs without a better validation bound (0 = off)")
    p.add_argument("--max-updates", dest="max_updates", type=int, help="stop at the end of the epoch that reaches N updates (0 = off)")
    p.add_argument("--time-limit", dest="time_limit", type=duration, metavar="DURATION",
                   help="wall-clock budget of this command (3600, 45m, 2h): checkpoint and exit before an epoch "
                   "would end past it; continue with --resume (0 = off)")
    p.add_argument("--z-dim", dest="z_dim", type=int)
    p.add_argument("--model-option", dest="model_option", action="append", metavar="KEY=VALUE",
                   help="any constructor option of the model (repeatable; VALUE is read as JSON when it parses, "
                   "else as a string), e.g. for a model given as package.module:Class")
    p.add_argument("--length-buckets", dest="length_buckets", type=int, metavar="POOL",
                   help="batches of similar lengths: sort pools of POOL batches by length (less padding)")
    p.add_argument("--keep-best", dest="keep_best", action="store_const", const=True,
                   help="keep the weights of the best validation epoch and score those")
    p.add_argument("--train-subset", dest="train_subset", type=int, help="train on the first N training sequences")
    p.add_argument("--tbptt", type=int, help="truncated backpropagation through time: windows of N steps")
    p.add_argument("--center-inputs", dest="center_inputs", action="store_const", const=True,
                   help="mean-centre the network inputs with the training mean (targets stay raw)")
    p.add_argument("--beta", type=float, help="weight of the KL (latent) terms (beta-VAE)")
    p.add_argument("--kl-anneal", dest="kl_anneal", action="store_const", const=True,
                   help="anneal the KL weight linearly to 1 (from --anneal-start, default 0.2, by --anneal-increment per update, default 5e-5)")
    p.add_argument("--anneal-start", dest="anneal_start", type=float, help="with --kl-anneal: the first update's KL weight")
    p.add_argument("--anneal-increment", dest="anneal_increment", type=float, help="with --kl-anneal: added to the KL weight per update")
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
    p.add_argument("--compile", action="store_const", const=True,
                   help="run the objective (any: fivo, elbo, iwae, mean-field, iwae-dreg, elbo-stl) and the "
                   "validation/test bounds through the per-step engine compiled with torch.compile (a warm-up of "
                   "about a minute on a CPU); the eager objectives are the reference")
    models = p.add_argument_group("model options", "the built-in models' constructor options, read from the model "
                                  "classes (the models that take each, and its meaning there); the default is the model's, "
                                  "except --likelihood, which defaults to the data set's")
    for option in BUILTIN_OPTIONS.values():
        if option.flag not in p._option_string_actions:
            models.add_argument(option.flag, dest=option.name, type=_reader(option), metavar=option.kind.upper(),
                                help=option.help())


def _reader(option):
    """The argparse ``type`` of a model option (its errors name the flag)."""
    def read(text: str):
        try:
            return option.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    read.__name__ = option.kind
    return read


def config_from_args(args) -> TrainConfig:
    given = {k: v for k, v in vars(args).items() if v is not None}
    extra = model_options(given.pop("model_option", None) or [])
    data_options = model_options(given.pop("data_option", None) or [], flag="--data-option")
    if given.pop("standardize", None):
        data_options["standardize"] = True
    optimizer_options = {k: given.pop(k) for k in OPTIMIZER_OPTIONS if k in given}
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
                "a resumed run keeps its model, data and objective; only the learning rate, schedule, optimizer options, "
                "--grad-clip, --patience, --max-updates, --time-limit, --epochs, --device, --compile and --data-root may change "
                f"(got {', '.join(ignored)})"
            )
        changed = sorted(k for k, v in data_options.items() if config.data_options.get(k) != v)
        if changed:
            raise ValueError(f"a resumed run keeps how its data is read and split (got --data-option {', '.join(changed)} "
                             f"differing from {Path(args.out) / CONFIG_FILE})")
        if args.preset is not None:  # the preset must describe this run (as the same command without --resume would)
            fresh = asdict(config_from_args(argparse.Namespace(**{**vars(args), "resume": False})))
            differ = sorted(k for k, v in asdict(config).items()
                            if k not in allowed | {"world_size", "model_not_rebuildable"} and fresh.get(k) != v)
            if differ:
                raise ValueError(f"--preset {args.preset} is not the configuration of the run in {args.out}: it differs in "
                                 f"{', '.join(differ)} (a resumed run keeps its model, data and objective; drop --preset)")
        values = {**vars(config), **{k: given[k] for k in allowed if k in given}}
        # a relative root recorded by an older run would be read against the current folder: refused
        values["data_root"] = run_data_root(config, Path(args.out), given.get("data_root"))
        for key in OFF_WHEN_ZERO:
            if values.get(key) == 0:
                values[key] = None
        values["optimizer_options"] = {**config.optimizer_options, **optimizer_options}
        return TrainConfig(**values)
    options = {k: given.pop(k) for k in MODEL_OPTIONS if k in given}
    for key, value in extra.items():
        if key in options and options[key] != value:
            raise ValueError(f"--model-option {key} contradicts --{key.replace('_', '-')}")
        options[key] = value
    for key in OFF_WHEN_ZERO:
        if given.get(key) == 0:
            given[key] = None
    known = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in given.items() if k in known}
    if data_options:
        values["data_options"] = data_options
    if optimizer_options:
        values["optimizer_options"] = optimizer_options
    if args.preset is not None:
        from pyrosequence.training.presets import get_preset

        return get_preset(args.preset).config(model_options=options, **values)
    return TrainConfig(model_options=options, **values)


def model_options(pairs: list[str], flag: str = "--model-option") -> dict:
    """``["hidden_dim=5", "cell=gru"]`` -> ``{"hidden_dim": 5, "cell": "gru"}`` (values read as JSON
    when they are, else kept as text)."""
    options = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            what = "a constructor argument" if flag == "--model-option" else "an option name"
            raise ValueError(f"{flag} takes KEY=VALUE with KEY {what}, got {pair!r}")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def run_train(args) -> int:
    config = config_from_args(args)
    if args.accept_data_change and not args.resume:
        raise ValueError("--accept-data-change is for --resume (a new run records the data it reads)")
    result = train(config, out=args.out, resume=args.resume, force=args.force, progress=args.progress,
                   accept_data_change=args.accept_data_change)
    if is_main_process():  # under torchrun: process 0 alone
        if result.stopped == "time_limit":
            print(f"stopped at the time limit; continue with: pyrosequence train --out {result.run_dir} --resume")
        else:
            print(f"results written to {result.run_dir}")
    return 0
