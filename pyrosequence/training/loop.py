"""The training loop: any objective, KL weighting, validation, atomic checkpoints, exact resume.

What a run writes, and how it is reopened, lives in :mod:`pyrosequence.training.rundir`.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

import pyro

from pyrosequence.atomic import atomic_append, atomic_write, first_line, remove_orphans, strict_json
from pyrosequence.training.checkpoint import WEIGHTS_REQUIRED, load_checkpoint, save_checkpoint
from pyrosequence.training.config import TrainConfig
from pyrosequence.data.dataset import SequenceDataset
from pyrosequence.data.registry import load_split
from pyrosequence.inference.evaluate import evaluate, in_data_units, make_bound
from pyrosequence.inference.objectives import make_objective
from pyrosequence.inference.scaling import ConstantBeta, KLAnnealing, scale_latents
from pyrosequence.models import SequenceModel
from pyrosequence.models.core.capabilities import is_multi_rate
from pyrosequence.models.multi_rate import set_beta
from pyrosequence.inference.multi_rate import LogUniformBeta
from pyrosequence.nn.cells import map_state
from pyrosequence.optim.init import initialize
from pyrosequence.optim.optimizers import apply_options, build_optimizer, per_update_decay
from pyrosequence.optim.schedules import LearningRate
from pyrosequence.device import model_device, resolve_device
from pyrosequence.training.distributed import (
    DataParallel,
    check_world_size,
    evaluation_seed,
    gather_rng_states,
    rank_rng_state,
    rank_seed,
    setup as setup_processes,
)
from pyrosequence.training.rundir import (
    BEST_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    OWN_FILES,
    RESULTS_FILE,
    adopt_model,
    build_model,
    check_data,
    check_same_run,
    fingerprint,
    record_data,
    resolve_root,
    protocol_changes,
    prepare_run_dir,
    rng_state,
    set_rng_state,
)



@dataclass
class RunResult:
    """What :func:`train` returns: the run directory, how far it got, and the final test bound."""

    run_dir: Path
    epochs_completed: int
    steps: int
    test: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    #: Why the run stopped: "epochs" (all of them ran), "patience", "max_updates", or
    #: "time_limit" (checkpointed and not evaluated on test: continue it with --resume).
    stopped: str = "epochs"


def _shuffle_generator(seed: int, epoch: int) -> torch.Generator:
    """The batch order of an epoch depends only on (seed, epoch), so a resumed run sees the same."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def _check_weights(model: SequenceModel, epoch: int) -> None:
    """Stop a run whose weights diverged before its checkpoint is replaced: the last good one stays.
    (A non-finite loss stops ``train_epoch`` at its update, a non-finite bound ``evaluate``.)"""
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        kept = f"the checkpoint of epoch {epoch - 1} is kept" if epoch > 1 else "no checkpoint was written"
        raise FloatingPointError(
            f"training diverged in epoch {epoch}: the weights ({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}) "
            f"became non-finite; {kept} (try a lower --lr or a --grad-clip)"
        )


def _windows(x: torch.Tensor, lengths: torch.Tensor, window: int | None):
    """Split a batch into consecutive windows of ``window`` steps (truncated backpropagation
    through time); yields ``(start, rows, x_w, lengths_w)`` where ``rows`` selects, among the
    previous window's sequences, those that go on. ``window=None``: the whole batch once."""
    steps = x.shape[1]
    if window is None or window >= steps:
        yield 0, None, x, lengths
        return
    alive = torch.ones_like(lengths, dtype=torch.bool)
    for start in range(0, steps, window):
        now = lengths > start
        rows = now[alive]
        alive = now
        yield start, rows, x[now, start : start + window], (lengths[now] - start).clamp(max=window)


def _carry(state, reference, rows: torch.Tensor):
    """The state a window ended in, detached, with any particle dimensions (those beyond the
    ``reference`` state's) reduced to their first particle, for the sequences that go on."""

    def one(tensor: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        tensor = tensor.detach()
        while tensor.dim() > ref.dim():
            tensor = tensor[0]
        return tensor[rows]

    return map_state(one, state, reference)


def _window_size(batch_lengths: torch.Tensor, start: int, window: int | None) -> tuple[int, int]:
    """(time steps, sequences) of the whole batch in the window that starts at ``start``."""
    alive = batch_lengths > start
    steps = batch_lengths[alive] - start
    return int((steps if window is None else steps.clamp(max=window)).sum()), int(alive.sum())


def train_epoch(
    model: SequenceModel,
    data: SequenceDataset,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    objective,
    schedule: Callable[[int], float],
    epoch: int,
    step: int,
    progress: bool = False,
    group: DataParallel | None = None,
    rate: LearningRate | None = None,
) -> tuple[float, int]:
    """One pass over ``data``; returns (mean loss per time step, updated step count).

    The loss of a batch is the negative bound summed over its sequences; gradients are divided
    by the batch's number of time steps, so the learning rate does not depend on batch size or
    sequence length. Objectives that normalise their loss themselves (``normalized_loss``, e.g.
    FIVO: each sequence's bound over its length, averaged over the batch) are used as they are.
    With ``config.tbptt = W`` each batch is cut into windows of W steps and every window is an
    update; a window starts from the (detached) state the previous one ended in.

    With a multi-process ``group`` (:mod:`pyrosequence.training.distributed`) this process computes its
    shard of every batch and the gradients are summed over the processes with the weights that
    make them the gradient of the whole batch's loss, normalised as above.

    ``rate`` sets the learning rate of every update (:class:`~pyrosequence.optim.LearningRate`);
    without it the optimizer keeps the rate it has. With ``config.loss_reduction == "sum"`` the
    gradients are those of the batch's summed loss, not divided by its number of steps.
    """
    group = group or DataParallel()
    params = [p for p in model.parameters() if p.requires_grad]
    normalized = getattr(objective, "normalized_loss", False)
    total_loss, total_steps = 0.0, 0
    batches = group.batches(data, config.batch_size, _shuffle_generator(config.seed, epoch), config.length_buckets)
    bar = tqdm(batches, total=math.ceil(len(data) / config.batch_size), desc=f"epoch {epoch + 1}", leave=False, disable=not progress)
    for x, lengths, batch_lengths in bar:
        carried = None
        for start, rows, x_w, lengths_w in _windows(x, lengths, config.tbptt):
            beta = schedule(step)
            if is_multi_rate(model):  # the gates of a multi-rate model see this update's beta
                set_beta(model, beta)
            fn_model, fn_guide = model.model, model.guide
            if beta != 1.0:
                fn_model, fn_guide = scale_latents(fn_model, beta), scale_latents(fn_guide, beta)
            if start == 0 or not len(x_w):
                continuation = {}
            else:
                reference = model.initial_state(torch.Size([1]), x_w[:1])
                continuation = {"initial": _carry(carried, reference, rows), "start": start}
            optimizer.zero_grad(set_to_none=True)
            loss = 0.0
            if len(x_w):  # one process's shard of a short last batch (or late window) may be empty
                loss = objective.loss_and_grads(fn_model, fn_guide, x_w, lengths_w, **continuation)
                carried = model.final_state
            num_steps, num_sequences = _window_size(batch_lengths, start, config.tbptt)
            loss = group.sum_gradients(params, loss, len(x_w) / num_sequences if normalized else 1.0)
            if not math.isfinite(loss):
                kept = f"the checkpoint of epoch {epoch} is kept" if epoch else "no checkpoint was written"
                raise FloatingPointError(
                    f"training diverged: the loss became {loss} at update {step} (epoch {epoch + 1}); {kept} (try a lower --lr)"
                )
            if normalized:
                loss = loss * num_steps  # back to a sum over steps, for the running average
            elif config.loss_reduction == "mean-step":
                for p in params:
                    if p.grad is not None:
                        p.grad.div_(num_steps)
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            if rate is not None:
                rate.apply(optimizer, step, epoch)
            optimizer.step()
            step += 1
            total_loss += loss
            total_steps += num_steps
            bar.set_postfix(loss=f"{loss / num_steps:.3f}", beta=f"{beta:.3g}")
    if is_multi_rate(model):  # a multi-rate model is validated and evaluated at beta = 1 (the ELBO)
        set_beta(model, 1.0)
    return total_loss / total_steps, step


def train(
    config: TrainConfig,
    out: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    model: SequenceModel | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    evaluate_test: bool = True,
    accept_data_change: bool = False,
) -> RunResult:
    """Train ``config``'s model on its data, writing the run to ``out`` (see module docstring).

    Everything that can be checked (configuration, data, device, run directory, checkpoint) is
    checked before the first update. ``resume=True`` continues the run in ``out`` from its last
    checkpoint up to ``config.epochs`` and reproduces an uninterrupted run exactly on the CPU.

    ``model``: an already-built model instance to train instead of building ``config.model``
    (its ``x_dim`` must match the data; it is initialised from the data like a built model).
    ``config.json`` records how to rebuild it (its class's import path and constructor arguments,
    :mod:`pyrosequence.models.core.rebuild`), so ``evaluate``, ``sample``, ``plot``, ``report`` and
    ``--resume`` reopen the run; when it cannot be rebuilt the run still trains, and those commands
    refuse it saying why (``model_not_rebuildable``).

    Started by torchrun (``RANK``/``WORLD_SIZE``/... set), every process calls this and the run is
    data-parallel (:mod:`pyrosequence.training.distributed`): each process computes its shard of every
    batch, process 0 alone writes the run directory and prints, ``config.world_size`` records
    the number of processes, and every process returns the same :class:`RunResult`.

    ``on_epoch(record)`` is called (on process 0) with every epoch's metrics record after the
    epoch's checkpoint is written; an exception it raises (e.g. ``optuna.TrialPruned``) ends the
    run there, resumable. The run stops after ``config.epochs`` epochs, or earlier on
    ``config.patience``, ``config.max_updates`` or ``config.time_limit``
    (:attr:`RunResult.stopped` says which; a time limit skips the test evaluation).
    ``evaluate_test=False`` skips the test evaluation too (a sweep selects on validation alone):
    no ``results.json`` is written and :attr:`RunResult.test` is empty.

    The run directory is locked for the whole run (:mod:`pyrosequence.training.runlock`): another ``train``
    of it is refused naming this process. ``config.data_root`` is recorded resolved (absolute), and
    ``data.json`` records a fingerprint of every split read; a resumed run whose data differs from
    the recorded fingerprints is refused unless ``accept_data_change`` (the change is then recorded
    in ``data.json`` and ``history.jsonl``). A new run that fails before its first checkpoint
    leaves the folder as it found it (the files it wrote removed; a folder it created removed).
    """
    group, device = setup_processes(resolve_device(config.device), config.batch_size)
    if config.world_size != group.world_size:
        config = replace(config, world_size=group.world_size)
    if config.data_root is not None and resolve_root(config.data_root) != config.data_root:
        config = replace(config, data_root=resolve_root(config.data_root))  # read from the same folder from anywhere
    state = {"created": None, "run_dir": None, "checkpointed": resume}
    with contextlib.ExitStack() as locks:  # the run directory's lock, released however the run ends
        try:
            result = _train(
                config, group, device, out, resume, force, progress and group.is_main,
                log if group.is_main else (lambda message: None), model, on_epoch, evaluate_test,
                accept_data_change, locks, state,
            )
        except BaseException:
            group.close()
            if group.is_main and not state["checkpointed"] and state["run_dir"] is not None:
                _undo_start(state["run_dir"], state["created"], locks)
            raise
    group.close(synchronise=True)
    return result


def _undo_start(run_dir: Path, created: bool, locks: contextlib.ExitStack) -> None:
    """A new run that failed before its first checkpoint (a refused or diverged first update, an
    interruption): remove what it wrote, and the folder if it created it, so the corrected command
    runs without --force. Files it did not write stay."""
    from pyrosequence.atomic import remove_orphans

    for name in OWN_FILES:
        with contextlib.suppress(OSError):
            (run_dir / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        remove_orphans(run_dir, OWN_FILES)
    locks.close()  # releases (and removes) the lock file
    if created:
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only when empty: a user's file put there meanwhile keeps it


def _evaluate(group: DataParallel, model, data: SequenceDataset, bound, particles: int, seed: int):
    """One process: :func:`evaluate` on the global stream (as always); several: the blocks shared
    by the processes, each drawing from its own seeded stream."""
    if not group.active:
        return evaluate(model, data.x, data.lengths, bound, particles)
    return evaluate(model, data.x, data.lengths, bound, particles, seed=seed, group=group)


def _train(config: TrainConfig, group: DataParallel, device: torch.device, out, resume: bool, force: bool, progress: bool,
           log: Callable[[str], None], model: SequenceModel | None, on_epoch=None, evaluate_test: bool = True,
           accept_data_change: bool = False, locks: contextlib.ExitStack | None = None, state: dict | None = None) -> RunResult:
    started = time.perf_counter()
    state = {} if state is None else state
    train_set = load_split(config.data, "train", config.data_root, config.data_options)
    fingerprints = {"train": fingerprint(train_set)}  # the whole split, as evaluate reads it
    if config.train_subset is not None:
        train_set = train_set.subset(range(min(config.train_subset, len(train_set))))
    valid_set = load_split(config.data, "valid", config.data_root, config.data_options)
    fingerprints["valid"] = fingerprint(valid_set)
    pyro.set_rng_seed(config.seed)
    if model is None:
        model = build_model(config, train_set.x_dim)  # rejects bad model options before any file is touched
        initialize(model, config.init)
    else:
        model, config = adopt_model(model, config, train_set.x_dim, train_set.covariate_dim)
        if config.model_not_rebuildable is not None:
            log(f"this model instance cannot be rebuilt from config.json ({config.model_not_rebuildable}); "
                "evaluate, sample, plot, report and --resume will refuse the run")
        initialize(model, config.init)
    # an instance handed in may already live on another device than the data (a model on the GPU)
    model.init_from_data(train_set.x.to(model_device(model)), train_set.lengths, center=config.center_inputs)
    if group.active:  # each process draws from its own stream; the initial weights are the one-process ones
        pyro.set_rng_seed(rank_seed(config.seed, group.rank))
    objective = make_objective(
        config.objective, config.particles, resampler=config.resampler, ess_threshold=config.ess_threshold,
        compile=config.compile,
    )
    valid_bound = make_bound(config.valid_bound, config.resampler, config.ess_threshold, compile=config.compile)
    eval_bound = make_bound(config.eval_bound, config.resampler, config.ess_threshold, compile=config.compile)
    if config.multi_rate:
        schedule = LogUniformBeta(*config.beta_range, seed=config.seed)
    elif config.kl_anneal:
        schedule = KLAnnealing(config.anneal_start, config.anneal_increment, 1.0, config.beta)
    else:
        schedule = ConstantBeta(config.beta)
    def open_run_dir() -> Path:
        state["created"] = out is None or not Path(out).exists()
        path = prepare_run_dir(out, config, resume, force, log, locks)
        state["run_dir"] = path
        return path

    run_dir = group.on_main(open_run_dir)
    checkpoint = group.on_main(lambda: load_checkpoint(run_dir / CHECKPOINT_FILE)) if resume else None
    # the data is the run's (recorded fingerprints), unless told to accept other data
    data_changes = [] if not resume else [c for c in group.on_main(lambda: [
        check_data(run_dir, config, split, found, config.data_root, accept_data_change) for split, found in fingerprints.items()
    ]) if c is not None]
    model.to(device)
    group.broadcast_module(model)  # the same start everywhere, whatever a user's model does at construction
    optimizer = build_optimizer(config.optimizer, model.parameters(), config.lr, config.optimizer_options)
    rate = LearningRate(config.lr, config.schedule, per_update_decay(config.optimizer, config.optimizer_options))
    epoch, step, history = 0, 0, []
    event = {"event": "start"}
    if checkpoint is not None:
        check_world_size(checkpoint.get("config", {}), group.world_size, run_dir)
        check_same_run(checkpoint.get("config", {}), config, run_dir)  # first: it names the setting (z_dim, ...)
        try:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise ValueError(f"checkpoint in {run_dir} does not match this configuration: {first_line(error)}") from None
        epoch, step = int(checkpoint["epoch"]), int(checkpoint["step"])
        if config.epochs < epoch:
            raise ValueError(f"{run_dir} has completed {epoch} epochs; a resumed run continues to --epochs >= {epoch} "
                             f"(got {config.epochs})")
        if config.keep_best and epoch and not group.on_main(lambda: (run_dir / BEST_FILE).is_file()):
            raise FileNotFoundError(f"cannot resume: {run_dir} keeps its best validation epoch's weights (keep_best) "
                                    f"but {run_dir / BEST_FILE} is missing; restore it, or start the run again with --force")
        history = list(checkpoint.get("history", []))
        set_rng_state(rank_rng_state(checkpoint["rng"], group), device)
        apply_options(optimizer, config.optimizer, config.optimizer_options)  # the options given now
        changes = protocol_changes(checkpoint.get("config", {}), config)
        if "schedule" in checkpoint and not changes["restarts_schedule"]:
            rate.load_state_dict(checkpoint["schedule"])
        else:  # a new rate, schedule or optimizer options (or a run from before schedules): they start here
            rate.origin_step, rate.origin_epoch = step, epoch
        event = {"event": "resume", "changes": changes["changed"]}
        if changes["restarts_schedule"]:
            event["schedule_restarted"] = True
        if data_changes:
            event["data_changed"] = [c["split"] for c in data_changes]
            log(f"--accept-data-change: the {', '.join(event['data_changed'])} data differ from what the run recorded; "
                "continuing on them (recorded in data.json and history.jsonl)")

    def start_files() -> None:
        atomic_write(run_dir / CONFIG_FILE, config.to_json())  # resumed: the epochs (or device) it now runs to
        # metrics.jsonl may hold an epoch the checkpoint does not (a crash between the two writes)
        atomic_write(run_dir / METRICS_FILE, "".join(strict_json(r) + "\n" for r in history))
        record_data(run_dir, config, fingerprints, data_changes)

    group.on_main(start_files)
    event.update(epoch=epoch, step=step, time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    group.on_main(lambda: atomic_append(run_dir / HISTORY_FILE, strict_json(event) + "\n"))
    train_set, valid_set = train_set.to(device), valid_set.to(device)

    processes = f", {group.world_size} processes" if group.active else ""
    log(f"run directory: {run_dir}  ({model.num_parameters()} parameters, {type(model).__name__} on {device}{processes})")
    valid_key = f"valid_{config.valid_bound}_per_step"
    best_valid = max((r[valid_key] for r in history), default=-math.inf)
    epochs_run, last_seconds = 0, 0.0
    while True:
        stopped = _stop_reason(config, history, valid_key, epoch, step)
        if stopped is None and config.time_limit is not None and epochs_run:
            elapsed = time.perf_counter() - started  # decided on process 0 alone, so every process stops together
            stopped = group.on_main(lambda: "time_limit" if elapsed + last_seconds > config.time_limit else None)
        if stopped is not None:
            break
        start = time.perf_counter()
        model.train()
        with pyro.validation_enabled(config.pyro_validation):
            loss, step = train_epoch(model, train_set, config, optimizer, objective, schedule, epoch, step, progress, group, rate)
            _check_weights(model, epoch + 1)
            model.eval()
            valid = _evaluate(group, model, valid_set, valid_bound, config.valid_particles, evaluation_seed(config.seed, epoch))
        epoch += 1
        rate.end_epoch(valid.per_timestep)
        record = {
            "epoch": epoch,
            "step": step,
            "train_loss_per_step": loss,
            f"valid_{config.valid_bound}_per_step": valid.per_timestep,
            "beta": schedule(step),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - start, 3),
        }
        history.append(record)
        improved = config.keep_best and valid.per_timestep > best_valid
        best_valid = valid.per_timestep if improved else best_valid
        rng = gather_rng_states(group, rng_state(device))  # every process's stream, for an exact resume

        def epoch_files() -> None:
            if improved:  # written before the checkpoint: a crash between the two redoes this epoch exactly
                save_checkpoint(
                    run_dir / BEST_FILE,
                    {"model": model.state_dict(), "epoch": epoch, "step": step, valid_key: best_valid, "config": asdict(config)},
                )
            atomic_append(run_dir / METRICS_FILE, strict_json(record) + "\n")
            save_checkpoint(
                run_dir / CHECKPOINT_FILE,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "step": step,
                    "rng": rng,
                    "config": asdict(config),
                    "history": history,
                    "schedule": rate.state_dict(),
                },
            )
            state["checkpointed"] = True  # from here on a failure leaves a resumable run, never undone

        group.on_main(epoch_files)
        epochs_run, last_seconds = epochs_run + 1, time.perf_counter() - start
        log(
            f"epoch {epoch}/{config.epochs}  train loss/step {loss:.4f}  "
            f"valid {config.valid_bound}/step {valid.per_timestep:.4f}  lr {record['lr']:.3g}  ({record['seconds']:.1f}s)"
        )
        if on_epoch is not None:
            group.on_main(lambda: on_epoch(dict(record)))

    if stopped == "time_limit":
        log(f"time limit of {config.time_limit:g} s reached after epoch {epoch} (update {step}); "
            f"the checkpoint is in {run_dir}: continue with --resume")
        return RunResult(run_dir, epoch, step, {}, history, stopped)
    if stopped in ("patience", "max_updates"):
        why = (f"no better validation bound for {config.patience} epochs" if stopped == "patience"
               else f"{step} updates reached (max_updates {config.max_updates})")
        log(f"stopped after epoch {epoch}: {why}")
    if not evaluate_test:
        return RunResult(run_dir, epoch, step, {}, history, stopped)

    selected = epoch
    best = None
    if config.keep_best:
        best_file = run_dir / BEST_FILE
        best = group.on_main(lambda: load_checkpoint(best_file, required=WEIGHTS_REQUIRED) if best_file.is_file() else None)
    if config.keep_best and best is None:
        raise FileNotFoundError(f"{run_dir / BEST_FILE} is missing: the test bound of a keep_best run is never "
                                "computed with other weights (restore it, or evaluate --weights last)")
    if best is not None:
        model.load_state_dict(best["model"])
        selected = int(best["epoch"])
        log(f"evaluating the weights of epoch {selected} (best {valid_key} {best[valid_key]:.4f})")
    test_set = load_split(config.data, "test", config.data_root, config.data_options)
    test_print = fingerprint(test_set)

    def test_identity() -> None:
        change = check_data(run_dir, config, "test", test_print, config.data_root, accept_data_change)
        record_data(run_dir, config, {"test": test_print}, [change] if change else None)

    group.on_main(test_identity)
    test_set = test_set.to(device)
    with pyro.validation_enabled(config.pyro_validation):
        test = _evaluate(group, model, test_set, eval_bound, config.eval_particles, evaluation_seed(config.seed, -1))  # raises if non-finite
    result = {
        "split": "test",
        "bound": config.eval_bound,
        "particles": config.eval_particles,
        "per_timestep": test.per_timestep,
        "total": test.total,
        "num_sequences": len(test_set),
        "num_steps": test_set.total_steps,
        "epochs": epoch,
        "selected_epoch": selected,
        "seed": config.seed,
        "stopped": stopped,
    }
    units = ""
    if test_set.scale is not None:  # standardised data: the bound in the data's own units too
        result["per_timestep_data_units"] = in_data_units(test, test_set.observations, test_set.lengths, test_set.scale).per_timestep
        units = f"  (in the data's units: {result['per_timestep_data_units']:.4f})"
    group.on_main(lambda: atomic_write(run_dir / RESULTS_FILE, strict_json(result, indent=2)))
    log(f"test {config.eval_bound}({config.eval_particles}) per time step: {test.per_timestep:.4f}{units}")
    return RunResult(run_dir, epoch, step, result, history, stopped)


def _stop_reason(config: TrainConfig, history: list, valid_key: str, epoch: int, step: int) -> str | None:
    """Why the run must not start another epoch (the time limit aside), or None."""
    if epoch >= config.epochs:
        return "epochs"
    if config.max_updates is not None and step >= config.max_updates:
        return "max_updates"
    if config.patience is not None and history:
        values = [r[valid_key] for r in history if valid_key in r]
        if values and len(values) - 1 - max(range(len(values)), key=values.__getitem__) >= config.patience:
            return "patience"
    return None
