"""The run directory: the files a training run writes, and how a run is reopened.

A run directory holds ``config.json`` (the :class:`TrainConfig`, enough to rebuild the model),
``checkpoint.pt`` (model, optimizer, RNG state; replaced at the end of every epoch by
write-then-rename), ``metrics.jsonl`` (one line per epoch: the learning curve), ``best.pt`` (with
``keep_best``: the weights of the best validation epoch), ``results.json`` (the test bound, when
training finishes) and ``evaluations.jsonl`` (one line per ``pyrosequence evaluate``). The training
loop (:mod:`pyrosequence.train`) writes it; the CLI and the diagnostics read it through
:func:`load_run`.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from typing import Callable

import torch

from pyrosequence.atomic import first_line, remove_orphans
from pyrosequence.checkpoint import WEIGHTS_REQUIRED, load_checkpoint
from pyrosequence.config import TrainConfig
from pyrosequence.data.registry import load_split
from pyrosequence.device import resolve_device
from pyrosequence.models import SequenceModel, model_class
from pyrosequence.models.multi_rate import multi_rate
from pyrosequence.output_dir import check_output_dir

CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE, RESULTS_FILE = "config.json", "checkpoint.pt", "metrics.jsonl", "results.json"
#: ``pyrosequence evaluate`` appends one line per evaluation here.
EVALUATIONS_FILE = "evaluations.jsonl"
#: With ``keep_best``: the weights of the epoch with the best validation bound so far.
BEST_FILE = "best.pt"
#: One line per start and resume of the run: when, at which epoch and update, and which
#: settings a resume changed (``{"lr": [old, new], ...}``), so a run's protocol stays explainable.
HISTORY_FILE = "history.jsonl"
#: The files this library writes into a run directory (``--force`` removes these and nothing else).
OWN_FILES = (CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE, RESULTS_FILE, BEST_FILE, EVALUATIONS_FILE, HISTORY_FILE)


def build_model(config: TrainConfig, x_dim: int) -> SequenceModel:
    """Construct the configured model for data of dimension ``x_dim``."""
    if config.model_not_rebuildable is not None:
        raise ValueError(
            f"the model of this run cannot be rebuilt from its configuration: {config.model_not_rebuildable} "
            "(it was trained from a model instance, train(config, model=...))"
        )
    cls = model_class(config.model)
    if config.z_dim is None:  # a deterministic model (TrainConfig checked that it takes no z_dim)
        return cls(x_dim, **config.model_options)
    model = cls(x_dim, config.z_dim, **config.model_options)
    return multi_rate(model, config.beta_range) if config.multi_rate else model



def adopt_model(model, config: TrainConfig, x_dim: int):
    """For ``train(config, model=instance)``: check the instance against the data and return
    ``(model, config)``, the config's ``model``, ``z_dim`` and ``model_options`` replaced by the
    instance's recipe (:mod:`pyrosequence.models.rebuild`), or, when it cannot be rebuilt, with
    ``model_not_rebuildable`` saying why. With ``config.multi_rate`` the instance is gated here,
    as :func:`build_model` gates a built model."""
    from pyrosequence.models.multi_rate import is_multi_rate
    from pyrosequence.models.program import PyroProgram
    from pyrosequence.models.rebuild import recipe

    if not isinstance(model, (SequenceModel, PyroProgram)):
        raise TypeError(f"train(config, model=...) needs a SequenceModel or PyroProgram instance, got {type(model).__name__}")
    model_x_dim = getattr(model, "x_dim", None)
    if model_x_dim is not None and model_x_dim != x_dim:
        raise ValueError(f"the model instance has x_dim {model_x_dim} but the data set {config.data!r} has x_dim {x_dim}")
    if is_multi_rate(model):
        raise ValueError("give train() the plain model and set multi_rate=True in the config, so the run can rebuild its gates")
    found = recipe(model)
    config = replace(config, model=found.model, z_dim=found.z_dim, model_options=found.model_options,
                     model_not_rebuildable=found.reason)
    return (multi_rate(model, config.beta_range) if config.multi_rate else model), config


def prepare_run_dir(
    out: str | Path | None, config: TrainConfig, resume: bool, force: bool, log: Callable[[str], None] = print
) -> Path:
    """Check (and for a new run, create) the run directory.

    Nothing in it is touched, except with ``force``: then the files of a previous run that this
    library wrote (:data:`OWN_FILES` and the temporary files of interrupted writes) are removed
    before anything new is written, so a crash can never leave the new configuration beside the
    old run's weights; the user's other files stay. Resuming also clears interrupted writes."""
    if resume and force:
        raise ValueError("--resume and --force exclude each other")
    if out is None:
        if resume:
            raise ValueError("--resume needs the run directory (--out DIR)")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{config.model}-{config.data}-{stamp}"
        suffix = 1
        while out.exists():
            out = out.with_name(f"{config.model}-{config.data}-{stamp}-{suffix}")
            suffix += 1
    path = Path(out)
    if resume:
        if path.exists() and not path.is_dir():
            raise FileExistsError(f"{path} exists and is not a directory")
        if not (path / CHECKPOINT_FILE).is_file():
            raise FileNotFoundError(f"cannot resume: no checkpoint at {path / CHECKPOINT_FILE}")
        remove_orphans(path, OWN_FILES)
        return path
    check_output_dir(path, force, "pass --resume to continue the run in it or --force to write into it")
    if force and path.is_dir():
        previous = [path / name for name in OWN_FILES if (path / name).exists()]
        for file in previous:
            file.unlink()
        remove_orphans(path, OWN_FILES)
        if previous:
            log(f"--force: removed the previous run's {', '.join(f.name for f in previous)} from {path}")
    path.mkdir(parents=True, exist_ok=True)
    return path



def rng_state(device: torch.device) -> dict:
    """The random-number state a checkpoint stores (CPU, and the CUDA device's when on one)."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore :func:`rng_state`'s output; a damaged state is a ``ValueError``."""
    try:
        torch.set_rng_state(state["torch"])
        if device.type == "cuda" and "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], device)
    except (KeyError, TypeError, RuntimeError) as error:
        raise ValueError(f"the checkpoint's random-number state is damaged ({first_line(error)}); the run cannot be resumed exactly") from None



#: Settings a resumed run may change; any other difference from the checkpoint is an error
#: (the model, its data and its objective define the run; the optimizer's kind defines its state).
RESUMABLE_CHANGES = ("epochs", "device", "data_root", "compile", "lr", "optimizer_options", "schedule", "grad_clip",
                     "patience", "max_updates", "time_limit")
#: Of those, the ones whose change starts the learning-rate schedule again at the resume.
SCHEDULE_SETTINGS = ("lr", "optimizer_options", "schedule")


def protocol_changes(saved: dict, config: TrainConfig) -> dict:
    """What a resume changes: ``{"changed": {setting: [old, new]}, "restarts_schedule": bool}``
    over :data:`RESUMABLE_CHANGES` (a setting the checkpoint predates counts at its default)."""
    current = asdict(config)
    defaults = asdict(TrainConfig(model=config.model, data=config.data, data_root=config.data_root,
                                  model_not_rebuildable=config.model_not_rebuildable, optimizer=config.optimizer))
    changed = {k: [saved.get(k, defaults[k]), current[k]] for k in RESUMABLE_CHANGES if saved.get(k, defaults[k]) != current[k]}
    return {"changed": changed, "restarts_schedule": any(k in changed for k in SCHEDULE_SETTINGS)}


def check_same_run(saved: dict, config: TrainConfig, run_dir: Path, what: str = "") -> None:
    """Refuse a checkpoint whose recorded configuration differs from ``config`` outside
    :data:`RESUMABLE_CHANGES`, naming the settings that differ."""
    current = asdict(config)
    # a checkpoint written before a setting existed ran with that setting's default
    defaults = asdict(TrainConfig(model=config.model, data=config.data, data_root=config.data_root,
                                  model_not_rebuildable=config.model_not_rebuildable))
    changed = sorted(
        k for k in current if k not in RESUMABLE_CHANGES and saved.get(k, defaults[k]) != current[k]
    )
    if changed:
        what = what or "cannot resume it: the configuration differs from the checkpoint's"
        raise ValueError(f"{run_dir}: {what} in {', '.join(changed)}")



def load_run(run_dir: str | Path, split: str, device: str = "cpu", data_root: str | Path | None = None):
    """``(config, model, data, checkpoint)`` of a run directory: the model carries the run's last
    checkpoint (its best one for a ``keep_best`` run) and is in eval mode on ``device``; ``data``
    is the split ``split`` of its data set, read from ``data_root`` when given (a run trained on
    another machine records that machine's folder) and else from the folder the run recorded."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run directory at {run_dir}")
    config = TrainConfig.load(run_dir / CONFIG_FILE)
    if config.model_not_rebuildable is not None:
        raise ValueError(
            f"{run_dir}: its model cannot be rebuilt: {config.model_not_rebuildable} "
            "(it was trained from a model instance, train(config, model=...))"
        )
    # a keep-best run is scored with the weights of its best validation epoch, as train() does
    best = run_dir / BEST_FILE
    if config.keep_best and best.is_file():
        checkpoint = load_checkpoint(best, required=WEIGHTS_REQUIRED)
    else:
        checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE)
    if "config" in checkpoint:  # a --force run that crashed early must never be scored with another run's weights
        check_same_run(checkpoint["config"], config, run_dir, what="its config.json differs from the checkpoint's")
    data = load_split(config.data, split, config.data_root if data_root is None else str(data_root)).to(resolve_device(device))
    model = build_model(config, data.x_dim)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise ValueError(f"checkpoint in {run_dir} does not match its config.json: {first_line(error)}") from None
    return config, model.to(resolve_device(device)).eval(), data, checkpoint
