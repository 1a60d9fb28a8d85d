"""The run directory: the files a training run writes, and how a run is reopened.

A run directory holds ``config.json`` (the :class:`TrainConfig`, enough to rebuild the model),
``checkpoint.pt`` (model, optimizer, RNG state; replaced at the end of every epoch by
write-then-rename), ``metrics.jsonl`` (one line per epoch: the learning curve), ``best.pt`` (with
``keep_best``: the weights of the best validation epoch), ``results.json`` (the test bound, when
training finishes), ``evaluations.jsonl`` (one line per ``pyrosequence evaluate``) and ``data.json``
(the resolved data root and a fingerprint of every split the run read, :func:`fingerprint`). The
training loop (:mod:`pyrosequence.training.loop`) writes it, holding the directory's lock
(:mod:`pyrosequence.training.runlock`) for the whole run; the CLI and the diagnostics read it through
:func:`load_run`, which refuses data whose fingerprint differs from the recorded one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from typing import Callable

import torch

from pyrosequence.atomic import atomic_write, first_line, remove_orphans, strict_json
from pyrosequence.training.checkpoint import WEIGHTS_REQUIRED, load_checkpoint
from pyrosequence.training.config import TrainConfig
from pyrosequence.data.registry import load_split
from pyrosequence.data.synthetic import LAWS as SYNTHETIC_LAWS
from pyrosequence.device import resolve_device
from pyrosequence.models import SequenceModel, model_class
from pyrosequence.models.multi_rate import multi_rate
from pyrosequence.training.output_dir import check_output_dir
from pyrosequence.training.runlock import LOCK_FILE, run_lock

CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE, RESULTS_FILE = "config.json", "checkpoint.pt", "metrics.jsonl", "results.json"
#: ``pyrosequence evaluate`` appends one line per evaluation here.
EVALUATIONS_FILE = "evaluations.jsonl"
#: With ``keep_best``: the weights of the epoch with the best validation bound so far.
BEST_FILE = "best.pt"
#: One line per start and resume of the run: when, at which epoch and update, and which
#: settings a resume changed (``{"lr": [old, new], ...}``), so a run's protocol stays explainable.
HISTORY_FILE = "history.jsonl"
#: The data the run read: its resolved root and a fingerprint (shape, sha256) of each split
#: (:func:`record_data`); commands that reopen the run refuse data that differs.
DATA_FILE = "data.json"
#: The files this library writes into a run directory (``--force`` removes these and nothing else).
OWN_FILES = (CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE, RESULTS_FILE, BEST_FILE, EVALUATIONS_FILE, HISTORY_FILE, DATA_FILE)


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



def adopt_model(model, config: TrainConfig, x_dim: int, covariate_dim: int = 0):
    """For ``train(config, model=instance)``: check the instance against the data and return
    ``(model, config)``, the config's ``model``, ``z_dim`` and ``model_options`` replaced by the
    instance's recipe (:mod:`pyrosequence.models.core.rebuild`), or, when it cannot be rebuilt, with
    ``model_not_rebuildable`` saying why; its ``covariate_dim`` must be the data's. With ``config.multi_rate`` the instance is gated here,
    as :func:`build_model` gates a built model."""
    from pyrosequence.models.core.capabilities import is_multi_rate
    from pyrosequence.models.core.program import PyroProgram
    from pyrosequence.models.core.rebuild import recipe

    if not isinstance(model, (SequenceModel, PyroProgram)):
        raise TypeError(f"train(config, model=...) needs a SequenceModel or PyroProgram instance, got {type(model).__name__}")
    model_x_dim = getattr(model, "x_dim", None)
    if model_x_dim is not None and model_x_dim != x_dim:
        raise ValueError(f"the model instance has x_dim {model_x_dim} but the data set {config.data!r} has x_dim {x_dim}")
    model_covariates = getattr(model, "covariate_dim", 0)
    if model_x_dim is not None and model_covariates != covariate_dim:
        raise ValueError(f"the model instance reads {model_covariates} covariate column(s) but the data set {config.data!r} "
                         f"has {covariate_dim}: build it with covariate_dim={covariate_dim}")
    if is_multi_rate(model):
        raise ValueError("give train() the plain model and set multi_rate=True in the config, so the run can rebuild its gates")
    found = recipe(model)
    config = replace(config, model=found.model, z_dim=found.z_dim, model_options=found.model_options,
                     model_not_rebuildable=found.reason)
    return (multi_rate(model, config.beta_range) if config.multi_rate else model), config


def prepare_run_dir(
    out: str | Path | None, config: TrainConfig, resume: bool, force: bool, log: Callable[[str], None] = print,
    locks: contextlib.ExitStack | None = None,
) -> Path:
    """Check (and for a new run, create) the run directory.

    Nothing in it is touched, except with ``force``: then the files of a previous run that this
    library wrote (:data:`OWN_FILES` and the temporary files of interrupted writes) are removed
    before anything new is written, so a crash can never leave the new configuration beside the
    old run's weights; the user's other files stay. Resuming also clears interrupted writes.

    ``locks``: the directory's lock (:func:`pyrosequence.training.runlock.run_lock`) is entered on this
    stack before anything in it is checked or removed, so a second ``train`` of the same
    directory is refused naming the first; the caller releases it when the run ends."""
    if resume and force:
        raise ValueError("--resume and --force exclude each other")
    if out is None:
        if resume:
            raise ValueError("--resume needs the run directory (--out DIR)")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        label = f"{config.model}-{_label(config.data)}"
        out = Path("runs") / f"{label}-{stamp}"
        suffix = 1
        while out.exists():
            out = out.with_name(f"{label}-{stamp}-{suffix}")
            suffix += 1
    path = Path(out)

    def lock() -> None:
        if locks is not None:
            locks.enter_context(run_lock(path, "train", log=log))

    if resume:
        if path.exists() and not path.is_dir():
            raise FileExistsError(f"{path} exists and is not a directory")
        if not (path / CHECKPOINT_FILE).is_file():
            raise FileNotFoundError(f"cannot resume: no checkpoint at {path / CHECKPOINT_FILE}")
        lock()
        remove_orphans(path, OWN_FILES)
        return path
    hint = "pass --resume to continue the run in it or --force to write into it"

    def check_fresh() -> None:  # check_output_dir's rule; a lock file left by a killed command does not count
        if path.is_dir() and not force and any(p.name != LOCK_FILE for p in path.iterdir()):
            raise FileExistsError(f"{path} exists and is not empty; {hint}")
        check_output_dir(path, True)

    check_output_dir(path, True)  # a file of that name
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)  # exist_ok: two commands may create it at once (the lock then decides)
    try:  # the lock first: a folder another train is writing is refused naming it, --force or not
        lock()
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                path.rmdir()
        raise
    check_fresh()  # under the lock: nobody writes the folder between this check and the run
    if force:
        previous = [path / name for name in OWN_FILES if (path / name).exists()]
        for file in previous:
            file.unlink()
        remove_orphans(path, OWN_FILES)
        if previous:
            log(f"--force: removed the previous run's {', '.join(f.name for f in previous)} from {path}")
    return path


def _label(name: str) -> str:
    """A name fit for a folder name: a path's or import path's last part (``sales.csv`` -> ``sales``)."""
    last = name.replace(":", "/").rstrip("/").rsplit("/", 1)[-1]
    return Path(last).stem or "data"


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
    defaults = asdict(TrainConfig(model=config.model, data=config.data, data_root=config.data_root, data_options=config.data_options,
                                  model_options=config.model_options,
                                  model_not_rebuildable=config.model_not_rebuildable, optimizer=config.optimizer))
    changed = {k: [saved.get(k, defaults[k]), current[k]] for k in RESUMABLE_CHANGES if saved.get(k, defaults[k]) != current[k]}
    return {"changed": changed, "restarts_schedule": any(k in changed for k in SCHEDULE_SETTINGS)}


def check_same_run(saved: dict, config: TrainConfig, run_dir: Path, what: str = "") -> None:
    """Refuse a checkpoint whose recorded configuration differs from ``config`` outside
    :data:`RESUMABLE_CHANGES`, naming the settings that differ."""
    current = asdict(config)
    # a checkpoint written before a setting existed ran with that setting's default
    defaults = asdict(TrainConfig(model=config.model, data=config.data, data_root=config.data_root, data_options=config.data_options,
                                  model_options=config.model_options,
                                  model_not_rebuildable=config.model_not_rebuildable))
    changed = sorted(
        k for k in current if k not in RESUMABLE_CHANGES and saved.get(k, defaults[k]) != current[k]
    )
    if changed:
        what = what or "cannot resume it: the configuration differs from the checkpoint's"
        raise ValueError(f"{run_dir}: {what} in {', '.join(changed)}")



def fingerprint(data) -> dict:
    """A split's identity: ``{"shape": [sequences, steps, x_dim], "sha256": ...}``, the hash over
    the dtypes, shapes and bytes of its padded tensor ``x`` and its ``lengths`` (on the CPU)."""
    digest = hashlib.sha256()
    for tensor in (data.x, data.lengths):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return {"shape": list(data.x.shape), "sha256": digest.hexdigest()}


def _short(found: dict) -> str:
    return f"shape {found.get('shape')}, sha256 {str(found.get('sha256'))[:16]}"


def read_data_record(run_dir: str | Path) -> dict:
    """The run's :data:`DATA_FILE` (``{}`` for a run from before it existed)."""
    path = Path(run_dir) / DATA_FILE
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is damaged ({first_line(error)}); restore it or delete it to stop checking the data") from None
    if not isinstance(record, dict) or not isinstance(record.get("splits", {}), dict):
        raise ValueError(f"{path} is not a data record (a JSON object with 'splits'); restore it or delete it")
    return record


def check_data(run_dir: str | Path, config: TrainConfig, split: str, found: dict, root, accept: bool = False) -> dict | None:
    """Compare the fingerprint ``found`` of ``split`` (read from ``root``) with the one the run
    recorded: ``None`` when they agree or none was recorded; when they differ, a ``ValueError``
    naming the split and both fingerprints, or with ``accept`` the change
    ``{"split", "recorded", "now", "root"}`` for the caller to record."""
    recorded = read_data_record(run_dir).get("splits", {}).get(split)
    if not isinstance(recorded, dict) or (recorded.get("shape"), recorded.get("sha256")) == (found["shape"], found["sha256"]):
        return None
    change = {"split": split, "recorded": recorded, "now": found, "root": root}
    if accept:
        return change
    raise ValueError(
        f"{run_dir}: the {config.data}/{split} data read from {root or 'the default location'} is not what the run used "
        f"(recorded {_short(recorded)}; now {_short(found)}); point --data-root at the run's data, or pass "
        "--accept-data-change to use this data on purpose (it is recorded)"
    )


def record_data(run_dir: str | Path, config: TrainConfig, splits: dict, changes: list | None = None) -> None:
    """Merge the fingerprints ``{split: fingerprint}`` into the run's :data:`DATA_FILE`, with the
    data set, its resolved root and any accepted changes (atomically)."""
    record = read_data_record(run_dir)
    record.update(data=config.data, root=config.data_root)
    record["splits"] = {**record.get("splits", {}), **splits}
    if changes:
        record["accepted_changes"] = [*record.get("accepted_changes", []),
                                      *({**c, "time": datetime.now().isoformat(timespec="seconds")} for c in changes)]
    atomic_write(Path(run_dir) / DATA_FILE, strict_json(record, indent=2) + "\n")


def resolve_root(root: str | Path | None) -> str | None:
    """A data root as recorded: absolute (``~`` expanded), so the run reads the same folder from anywhere."""
    return None if root is None else str(Path(root).expanduser().resolve())


#: Data sets generated in memory: the data root a run recorded does not matter for them.
GENERATED_DATASETS = frozenset(law.dataset for law in SYNTHETIC_LAWS.values())


def run_data_root(config: TrainConfig, run_dir: Path, data_root: str | Path | None = None) -> str | None:
    """The folder to read the run's data from: ``data_root`` when given, else the one the run
    recorded. A relative recorded root (runs from before roots were resolved, such as the shipped
    ones in pretrained/) would be read against the current folder, so it is refused."""
    if data_root is not None:
        return resolve_root(data_root)
    root = config.data_root
    if root is not None and config.data not in GENERATED_DATASETS and not Path(root).expanduser().is_absolute():
        raise ValueError(
            f"{run_dir} records the relative data root {root!r}, which depends on the folder a command runs from "
            f"(here {Path.cwd()}); pass --data-root with the folder holding its {config.data} data"
        )
    return root


#: What ``load_run(weights=...)`` accepts: the best validation epoch's weights (``best.pt``) or the last epoch's.
WEIGHTS = ("best", "last")


def load_run(run_dir: str | Path, split: str, device: str = "cpu", data_root: str | Path | None = None,
             weights: str | None = None, accept_data_change: bool = False):
    """``(config, model, data, checkpoint)`` of a run directory: the model carries the run's last
    checkpoint (its best one for a ``keep_best`` run) and is in eval mode on ``device``; ``data``
    is the split ``split`` of its data set, read from ``data_root`` when given (a run trained on
    another machine records that machine's folder) and else from the folder the run recorded.

    ``weights``: ``"best"`` (``best.pt``; the default of a ``keep_best`` run, which is refused when
    the file is missing rather than scored with other weights) or ``"last"`` (``checkpoint.pt``;
    the default otherwise). The split's fingerprint is compared with the one the run recorded
    (:func:`check_data`); ``accept_data_change`` accepts other data. The returned checkpoint
    carries ``scored_weights`` ("best"/"last"), ``data_fingerprint`` and ``data_change`` (``None``
    unless other data was accepted)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run directory at {run_dir}")
    config = TrainConfig.load(run_dir / CONFIG_FILE)
    if config.model_not_rebuildable is not None:
        raise ValueError(
            f"{run_dir}: its model cannot be rebuilt: {config.model_not_rebuildable} "
            "(it was trained from a model instance, train(config, model=...))"
        )
    if weights is not None and weights not in WEIGHTS:
        raise ValueError(f"weights must be 'best' or 'last', got {weights!r}")
    # a keep-best run is scored with the weights of its best validation epoch, as train() does
    weights = weights or ("best" if config.keep_best else "last")
    best = run_dir / BEST_FILE
    if weights == "best":
        if not config.keep_best:
            raise ValueError(f"{run_dir} was trained without keep_best: it has no best epoch's weights (use --weights last)")
        if not best.is_file():
            raise FileNotFoundError(
                f"{run_dir} keeps its best validation epoch's weights (keep_best) but {best} is missing; restore it, "
                "or pass --weights last to score the last epoch's weights"
            )
        checkpoint = load_checkpoint(best, required=WEIGHTS_REQUIRED)
    else:
        checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE)
    if "config" in checkpoint:  # a --force run that crashed early must never be scored with another run's weights
        check_same_run(checkpoint["config"], config, run_dir, what="its config.json differs from the checkpoint's")
    root = run_data_root(config, run_dir, data_root)
    data = load_split(config.data, split, root, config.data_options)
    found = fingerprint(data)
    change = check_data(run_dir, config, split, found, root, accept_data_change)
    data = data.to(resolve_device(device))
    model = build_model(config, data.x_dim)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise ValueError(f"checkpoint in {run_dir} does not match its config.json: {first_line(error)}") from None
    checkpoint.update(scored_weights=weights, data_fingerprint=found, data_change=change)
    return config, model.to(resolve_device(device)).eval(), data, checkpoint
