"""``pyrosequence train``: a :class:`TrainConfig` from the flags (or a preset, or a run to resume), then :func:`train`."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from pyrosequence.cli.common import filter_arguments
from pyrosequence.config import TrainConfig
from pyrosequence.distributed import is_main_process
from pyrosequence.rundir import CONFIG_FILE, RESUMABLE_CHANGES
from pyrosequence.train import train

#: CLI flags that become constructor options of the model rather than TrainConfig fields.
MODEL_OPTIONS = ("hidden_dim", "likelihood", "cell", "layers", "hyper_dim", "hyper_input", "hyper_net", "omega_dim", "components", "output",
                 "architecture", "proposal", "backward_dim", "aux_alpha", "aux_beta", "posterior")

def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (defaults: VRNN on the built-in synthetic data)",
        description="Train a sequence model. With no arguments: VRNN (z=8) on the VHRNN synthetic data, "
        "Trace_ELBO, a few minutes on a laptop CPU; prints the test bound per time step.",
    )
    p.add_argument("--preset", help="a named configuration of a paper's experiment (see `pyrosequence presets`); "
                   "other flags override its settings")
    p.add_argument("--model", help="model name: vrnn, vhrnn, hyperlstm, lgssm, linear-vae, storn, srnn, zforcing, "
                   "srnn-simple, srnn-hier, srnn-flat, dmm, frnn, rnn-hier, rnn-flat, delta-rnn, delta-rnn-random; "
                   "a plugin's name; or your own SequenceModel as package.module:Class")
    p.add_argument("--data", help="data set: synthetic (built in), bach (music21), jsb, piano, nottingham, muse, "
                   "stock, htsensor, speech (read from --data-root)")
    p.add_argument("--data-root", dest="data_root", help="folder holding the dataset files, for datasets read from disk")
    p.add_argument("--objective", help="elbo (Trace_ELBO), mean-field (TraceMeanField_ELBO), iwae (RenyiELBO alpha=0) or fivo")
    p.add_argument("--particles", type=int, help="particles per sequence for the objective")
    filter_arguments(p, defaults=False)
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
    p.add_argument("--compile", action="store_const", const=True,
                   help="compile the particle filter's step with torch.compile (the fivo objective and the "
                   "validation/test bounds; a warm-up of about a minute on a CPU); eager is the reference")
    p.add_argument("--out", help="run directory (default: runs/MODEL-DATA-TIMESTAMP)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out (replaces a previous run's files)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(command=run_train)


def config_from_args(args) -> TrainConfig:
    given = {k: v for k, v in vars(args).items() if v is not None}
    extra = model_options(given.pop("model_option", None) or [])
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
                "a resumed run keeps its configuration; only --epochs, --device and --compile may change, and --data-root "
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


def model_options(pairs: list[str]) -> dict:
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


def run_train(args) -> int:
    config = config_from_args(args)
    result = train(config, out=args.out, resume=args.resume, force=args.force, progress=args.progress)
    if is_main_process():  # under torchrun: process 0 alone
        print(f"results written to {result.run_dir}")
    return 0
