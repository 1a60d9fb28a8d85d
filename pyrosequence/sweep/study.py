"""Running a sweep: the Optuna study, its storage, and the worker loop that runs its trials.

Every trial is an ordinary run directory, ``SWEEP_DIR/trial-NNNN`` (``NNNN`` = Optuna's trial
number, unique across every worker of the study), trained by :func:`pyrosequence.training.loop.train`
with an ``on_epoch`` reporter: each epoch's validation bound goes to ``trial.report`` and the
trial ends as PRUNED when the pruner says so (its run directory stays resumable). The objective
is the best validation bound of the run (the maximum over its epochs). A trial whose training
diverges or whose drawn configuration is refused (``FloatingPointError``, ``ValueError``) is
recorded as FAIL with the reason in its ``error`` attribute, and the sweep goes on. Each trial's
user attributes hold ``run_dir``, ``host``, ``pid``, ``epochs``, ``updates``, ``wall_seconds`` and
``stopped`` (epochs, patience, max_updates, time_limit, pruned, failed or interrupted).

Storage: ``--storage URL`` (any database URL Optuna accepts: several machines can share one
study) or, by default, a file in the sweep folder: ``study.db`` (SQLite), or ``journal.log``
(Optuna's journal file storage, safe for several processes on one machine) when the sweep is
started with ``--workers N > 1``. A folder that already holds one of the two keeps using it.

Restarts: the same command again continues the study (``load_if_exists``). The study records its
base configuration and search space and refuses to continue with others. Trials left RUNNING by
a process that died (its ``host`` is this machine and its ``pid`` is gone), and trials stopped by
Ctrl-C, are marked FAIL and queued again with the same parameters (Optuna's
:class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`, at most :data:`MAX_RETRY` times): the new trial
continues the old trial's run directory from its last checkpoint. On a database storage a
heartbeat does the same for trials of dead processes on other machines (stale after twice
``--heartbeat`` seconds).

``--trials N`` counts COMPLETE and PRUNED trials across every worker. A worker starts a trial
only while the finished trials plus those running elsewhere are fewer than N, and otherwise
waits for the running ones (one of them may fail), so the workers finish N trials between them.
The workers on one machine take a lock on ``SWEEP_DIR/.sweep.lock`` from that count until their
new trial is RUNNING, so they never start one trial too many. (Optuna's ``MaxTrialsCallback``
stops a worker only after its own trial ends, so every other worker would overshoot by the trial
it had started meanwhile.) Machines sharing a database have no common lock: two of them that
look at the study in the same few milliseconds may both start a last trial.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
import re
import socket
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from pyrosequence.atomic import first_line
from pyrosequence.training.config import TrainConfig
from pyrosequence.training.rundir import CHECKPOINT_FILE
from pyrosequence.sweep.space import SearchSpace
from pyrosequence.training.loop import train

#: The default storages in the sweep folder.
SQLITE_FILE, JOURNAL_FILE = "study.db", "journal.log"
#: The lock the workers on this machine take to start a trial.
LOCK_FILE = ".sweep.lock"
#: How often a worker with nothing to start looks at the study again (seconds).
POLL_SECONDS = 2.0
#: How many times a trial of a dead or interrupted process is queued again.
MAX_RETRY = 2
#: The study's user attribute that records the sweep's base configuration and space.
RECORD_KEY = "pyrosequence"
#: Configuration fields that may differ between the processes of one study (machines differ).
PER_MACHINE = ("device", "data_root", "compile")
#: A RUNNING trial that has not recorded its process this long after it started is taken as dead.
UNCLAIMED_SECONDS = 120.0

INSTALL_HINT = 'sweeps need Optuna: install with pip install -e ".[sweep]"'


def import_optuna():
    """``optuna``, or an ``ImportError`` that says how to install it (one line)."""
    try:
        import optuna
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return optuna


def redact(url: str) -> str:
    """A storage URL without its password (for messages)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def storage_spec(out: str | Path, storage: str | None = None, workers: int = 1) -> tuple[str, str]:
    """``("rdb", URL)`` or ``("journal", PATH)``: ``storage`` as given (a URL with ``://``, else a
    journal file), or the sweep folder's default (see the module docstring)."""
    if storage is not None:
        return ("rdb", storage) if "://" in storage else ("journal", str(Path(storage)))
    out = Path(out)
    journal, sqlite = out / JOURNAL_FILE, out / SQLITE_FILE
    if journal.exists() or (workers > 1 and not sqlite.exists()):
        return "journal", str(journal)
    return "rdb", f"sqlite:///{sqlite}"


def describe_storage(spec: tuple[str, str]) -> str:
    """The storage in words, password hidden."""
    kind, where = spec
    return f"journal file {where}" if kind == "journal" else redact(where)


def open_storage(spec: tuple[str, str], heartbeat: int | None = 60):
    """The Optuna storage of ``spec``: a database (with a ``heartbeat`` in seconds, None = off, and
    dead trials retried) or a journal file."""
    optuna = import_optuna()
    kind, where = spec
    try:
        if kind == "journal":
            try:
                from optuna.storages.journal import JournalFileBackend, JournalStorage
            except ImportError:  # Optuna < 4.0
                from optuna.storages import JournalFileStorage as JournalFileBackend, JournalStorage

            Path(where).parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(where))
        kwargs = {}
        if where.startswith("sqlite:"):
            kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
        if heartbeat:
            # Optuna >= 4.9 names the callback heartbeat_stale_trial_callback (failed_trial_callback before)
            takes = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
            callback = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in takes else "failed_trial_callback"
            kwargs.update({"heartbeat_interval": int(heartbeat), "grace_period": 2 * int(heartbeat), callback: _retry()})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(where, **kwargs)
    except (ImportError, OSError) as error:
        raise type(error)(f"cannot open the study storage {describe_storage(spec)}: {first_line(error)}") from None
    except Exception as error:  # SQLAlchemy's errors (a bad URL, a refused connection) in one line
        raise ValueError(f"cannot open the study storage {describe_storage(spec)}: {first_line(error)}") from None


def _retry():
    """Optuna's callback that queues a failed trial again with its parameters, user attributes
    (its run directory) and reported epochs (RetryHeartbeatStaleTrialCallback, as Optuna >= 4.9
    names RetryFailedTrialCallback)."""
    optuna = import_optuna()
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(max_retry=MAX_RETRY, inherit_intermediate_values=True)


def make_pruner(kind: str = "median", startup: int = 5, warmup: int | None = None, epochs: int = 60):
    """``"median"``: Optuna's MedianPruner that waits for ``startup`` complete trials and prunes
    from epoch ``warmup`` on (default: a tenth of the epochs, at least 1); ``"none"``: no pruning."""
    optuna = import_optuna()
    if kind == "none":
        return optuna.pruners.NopPruner()
    if kind != "median":
        raise ValueError(f"unknown pruner {kind!r}; choose one of: median, none")
    if warmup is None:
        warmup = max(1, epochs // 10)
    if startup < 0 or warmup < 0:
        raise ValueError(f"--pruner-startup and --pruner-warmup must not be negative, got {startup} and {warmup}")
    return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)


def _jsonable(value):
    return json.loads(json.dumps(value))


def sweep_record(base: TrainConfig, space: SearchSpace, preset: str | None = None) -> dict:
    """What the study records about the sweep: the base configuration, the space and the preset."""
    return _jsonable({"base": asdict(base), "space": space.to_dict(), "preset": preset})


def check_record(recorded: dict, record: dict, study_name: str) -> None:
    """Refuse to continue a study with another base configuration or space, naming what differs."""
    old_base, new_base = recorded.get("base", {}), record["base"]
    differs = sorted(k for k in set(old_base) | set(new_base) if k not in PER_MACHINE and old_base.get(k) != new_base.get(k))
    if recorded.get("preset") != record["preset"]:
        differs.insert(0, "preset")
    if recorded.get("space") != record["space"]:
        differs.append("the search space")
    if differs:
        raise ValueError(
            f"study {study_name!r} was started with another sweep (it differs in {', '.join(differs)}); "
            "give the same settings to continue it, or start a new sweep (another --out or --study-name)"
        )


def open_study(out, base: TrainConfig, space: SearchSpace, *, storage: str | None = None, study_name: str | None = None,
               workers: int = 1, pruner=None, preset: str | None = None, heartbeat: int | None = 60):
    """Create or continue (``load_if_exists``) the sweep's study and check it belongs to this
    sweep; returns ``(study, storage_spec)``."""
    optuna = import_optuna()
    spec = storage_spec(out, storage, workers)
    study = optuna.create_study(
        storage=open_storage(spec, heartbeat), study_name=study_name or default_study_name(out), direction="maximize",
        load_if_exists=True, pruner=pruner,
    )
    record = sweep_record(base, space, preset)
    recorded = study.user_attrs.get(RECORD_KEY)
    if recorded is None:
        study.set_user_attr(RECORD_KEY, record)
    else:
        check_record(recorded, record, study.study_name)
    return study, spec


def default_study_name(out) -> str:
    """The study name of a sweep folder when ``--study-name`` is not given: the folder's name."""
    return Path(out).resolve().name or "sweep"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _retried(trials) -> set:
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def recover_trials(study, log: Callable[[str], None] = print) -> list[int]:
    """Mark FAIL the RUNNING trials whose process is gone (on this machine), and queue again, with
    their parameters and run directory, those and the trials stopped by Ctrl-C. Returns the
    numbers of the trials queued again."""
    optuna = import_optuna()
    from optuna.trial import TrialState

    host, me, now = socket.gethostname(), os.getpid(), time.time()
    storage = study._storage  # as optuna.storages.fail_stale_trials does: a state change that says who won
    trials = study.get_trials(deepcopy=False)
    retried = _retried(trials)
    again = []
    for t in trials:
        if t.state == TrialState.RUNNING:
            pid, owner = t.user_attrs.get("pid"), t.user_attrs.get("host")
            if owner == host and isinstance(pid, int):
                dead = pid == me or not _alive(pid)  # this process runs no trial while it recovers
            elif owner is None and t.datetime_start is not None:
                dead = now - t.datetime_start.timestamp() > UNCLAIMED_SECONDS
            else:
                dead = False  # another machine's: the database heartbeat judges it
            if not dead:
                continue
            try:
                if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker got there first
            t = storage.get_trial(t._trial_id)
            log(f"trial {t.number}: its process ({owner}:{pid}) is gone; marked failed")
        elif not (t.state == TrialState.FAIL and t.user_attrs.get("stopped") == "interrupted"):
            continue
        if t.number in retried:
            continue
        if len(t.system_attrs.get("retry_history", [])) >= MAX_RETRY:
            log(f"trial {t.number}: not queued again (already retried {MAX_RETRY} times)")
            continue
        _retry()(study, copy.deepcopy(t))
        again.append(t.number)
        log(f"trial {t.number}: queued again with its parameters (continues {t.user_attrs.get('run_dir', 'its run directory')})")
    return again


def _system_attrs(trial) -> dict:
    """A running trial's system attributes (Optuna 5's Trial no longer shows them)."""
    return trial.study._storage.get_trial_system_attrs(trial._trial_id)


class Objective:
    """The objective of one worker: a trial's configuration from the space, trained in its run
    directory, reported to Optuna per epoch; returns the best validation bound (NaN: failed)."""

    def __init__(self, out, base: TrainConfig, space: SearchSpace, log: Callable[[str], None] = print,
                 train_log: Callable[[str], None] | None = None) -> None:
        self.out, self.base, self.space, self.log = Path(out), base, space, log
        self.train_log = train_log
        #: Called when a trial starts (the worker loop releases its lock with it).
        self.on_start: Callable[[], None] | None = None

    def run_dir(self, trial) -> tuple[Path, bool, bool]:
        """``(run_dir, resume, force)`` for ``trial``: a retried trial continues its predecessor's."""
        previous = trial.user_attrs.get("run_dir") if "failed_trial" in _system_attrs(trial) else None
        if previous is not None and Path(previous).is_dir():
            previous = Path(previous)
            if (previous / CHECKPOINT_FILE).is_file():
                return previous, True, False
            return previous, False, True  # died before its first checkpoint: start it again there
        return self.out / f"trial-{trial.number:04d}", False, False

    def __call__(self, trial) -> float:
        optuna = import_optuna()
        run_dir, resume, force = self.run_dir(trial)
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        if self.on_start is not None:
            self.on_start()  # the trial is RUNNING and says whose it is: other workers may count it now
        retry_of = _system_attrs(trial).get("failed_trial")
        if retry_of is not None:
            trial.set_user_attr("retry_of", retry_of)
        number = trial.number
        seen: list[dict] = []
        started = time.perf_counter()

        def finish(stopped: str, **extra) -> None:
            """Record how far the trial got and why it stopped, in its user attributes."""
            last = seen[-1] if seen else {}
            trial.set_user_attr("epochs", last.get("epoch", 0))
            trial.set_user_attr("updates", last.get("step", 0))
            trial.set_user_attr("wall_seconds", round(time.perf_counter() - started, 3))
            trial.set_user_attr("stopped", stopped)
            for key, value in extra.items():
                trial.set_user_attr(key, value)

        try:
            values = self.space.suggest(trial)
            shown = ", ".join(f"{k}={_short(v)}" for k, v in values.items())
            config = self.space.config(self.base, values)
        except ValueError as error:
            finish("failed", error=first_line(error))
            self.log(f"trial {number}: failed: {first_line(error)}")
            return math.nan
        valid_key = f"valid_{config.valid_bound}_per_step"
        self.log(f"trial {number}: {shown}" + (f" (continues {run_dir})" if resume else ""))

        def reporter(record: dict) -> None:
            """train()'s on_epoch: report the epoch's validation bound; raise TrialPruned when told."""
            seen.append(record)
            trial.report(record[valid_key], record["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {record['epoch']} (valid {record[valid_key]:.4f})")

        train_log = self.train_log or (lambda message: self.log(f"[trial {number}] {message}"))
        try:
            result = train(config, out=run_dir, resume=resume, force=force, progress=False, log=train_log, on_epoch=reporter,
                           evaluate_test=False)  # trials are selected on validation; the test split is never read
        except optuna.TrialPruned as pruned:
            finish("pruned")
            self.log(f"trial {number}: {pruned}")
            raise
        except (ValueError, FloatingPointError) as error:
            finish("failed", error=first_line(error))
            self.log(f"trial {number}: failed: {first_line(error)}")
            return math.nan
        except KeyboardInterrupt:
            finish("interrupted")
            raise
        seen[:] = result.history
        best = max(r[valid_key] for r in result.history) if result.history else math.nan
        finish(result.stopped)
        self.log(f"trial {number}: best valid {config.valid_bound}/step {best:.4f} "
                 f"({result.epochs_completed} epochs, {result.steps} updates, stopped: {result.stopped})")
        return best


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _counts(study) -> tuple[int, int]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return done, running


def sampler_seed(seed: int, trials_so_far: int, worker: int) -> int:
    """The sampler's seed for the next trial: a function of the sweep's seed, how many trials the
    study holds and the worker, so a restarted or parallel sweep does not draw the same points."""
    return (seed * 1_000_003 + trials_so_far * 7919 + worker * 104_729) % 2**32


class _FileLock:
    """An exclusive lock on a file in the sweep folder (``fcntl.flock``; none where there is no
    fcntl): held from counting the study's trials until the new trial is RUNNING, so workers on
    this machine never start more trials than asked. :meth:`release` may be called twice."""

    def __init__(self, path: Path) -> None:
        self.path, self.handle = Path(path), None

    def acquire(self) -> None:
        """Wait for the lock and take it."""
        try:
            import fcntl
        except ImportError:
            return
        self.handle = open(self.path, "a")
        fcntl.flock(self.handle, fcntl.LOCK_EX)

    def release(self) -> None:
        """Give the lock back (nothing when it is not held)."""
        if self.handle is not None:
            import fcntl

            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


def work(study, objective: Objective, trials: int, seed: int = 0, worker: int = 0,
         log: Callable[[str], None] = print) -> None:
    """Run trials of ``study`` until it holds ``trials`` COMPLETE or PRUNED ones (see the module
    docstring for how workers share the count)."""
    optuna = import_optuna()
    lock = _FileLock(objective.out / LOCK_FILE)
    waiting_for = None
    while True:
        lock.acquire()
        try:
            recover_trials(study, log)
            done, running = _counts(study)
            if done >= trials:
                return
            if done + running >= trials:
                lock.release()
                if waiting_for != (done, running):
                    log(f"worker {worker}: {done} trials finished, waiting for {running} running elsewhere")
                    waiting_for = (done, running)
                time.sleep(POLL_SECONDS)
                continue
            waiting_for = None
            objective.on_start = lock.release  # the new trial is RUNNING: others may count it now
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                seeded = sampler_seed(seed, len(study.get_trials(deepcopy=False)), worker)
                study.sampler = optuna.samplers.TPESampler(seed=seeded, constant_liar=True)
                study.optimize(objective, n_trials=1)
        finally:
            objective.on_start = None
            lock.release()


def _threads(workers: int) -> None:
    """Share this machine's cores between ``workers`` processes (torch's intra-op threads)."""
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def _worker_main(settings: dict, worker: int) -> None:
    """One process of ``--workers N``: open the study and run :func:`work` (spawned)."""
    import sys

    from pyrosequence.cli.common import USER_ERRORS

    optuna = import_optuna()
    optuna.logging.set_verbosity(settings["verbosity"])
    _threads(settings["workers"])
    try:
        base = TrainConfig(**settings["base"])
        space = SearchSpace.from_dict(settings["space"])
        storage = open_storage(tuple(settings["storage"]), settings["heartbeat"])
        pruner = make_pruner(**settings["pruner"])
        study = optuna.load_study(study_name=settings["study_name"], storage=storage, pruner=pruner)
        work(study, Objective(settings["out"], base, space), settings["trials"], base.seed, worker)
    except USER_ERRORS as error:
        print(f"pyrosequence: error: worker {worker}: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def run_sweep(base: TrainConfig, space: SearchSpace, trials: int, out, *, storage: str | None = None,
              study_name: str | None = None, pruner: str = "median", pruner_startup: int = 5,
              pruner_warmup: int | None = None, workers: int = 1, preset: str | None = None,
              heartbeat: int | None = 60, log: Callable[[str], None] = print):
    """Run (or continue) a sweep: ``trials`` COMPLETE or PRUNED trials of ``space`` around ``base``
    in the study of the sweep folder ``out``, by ``workers`` processes; returns the study.

    ``storage``: a database URL (or a journal file path); default: ``out/study.db``, or
    ``out/journal.log`` when ``workers > 1``. ``study_name``: default, ``out``'s folder name.
    ``pruner``: ``"median"`` (``pruner_startup`` complete trials first, no pruning before epoch
    ``pruner_warmup``, default a tenth of the epochs) or ``"none"``. ``preset``: the preset
    ``base`` was made from, recorded for the best trial's command. ``heartbeat``: seconds between a
    database storage's heartbeats (None = off)."""
    optuna = import_optuna()
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise ValueError(f"--trials must be a positive integer, got {trials!r}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {workers!r}")
    if heartbeat is not None and heartbeat < 1:
        raise ValueError(f"--heartbeat must be a positive number of seconds, got {heartbeat!r}")
    if not len(space):
        raise ValueError("a sweep needs a search space: --space NAME=KIND:ARGS ... or --space-file FILE")
    space.check(base)
    pruner_settings = {"kind": pruner, "startup": pruner_startup, "warmup": pruner_warmup, "epochs": base.epochs}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    study, spec = open_study(out, base, space, storage=storage, study_name=study_name, workers=workers,
                             pruner=make_pruner(**pruner_settings), preset=preset, heartbeat=heartbeat)
    log(f"sweep {study.study_name!r} in {out} ({describe_storage(spec)}): {trials} trials of {space.describe()}"
        + (f", {workers} workers" if workers > 1 else ""))
    recover_trials(study, log)
    if workers == 1:
        work(study, Objective(out, base, space, log), trials, base.seed, 0, log)
        return study
    import multiprocessing

    settings = {
        "base": asdict(base), "space": space.to_dict(), "storage": list(spec), "heartbeat": heartbeat,
        "pruner": pruner_settings, "study_name": study.study_name, "out": str(out), "trials": trials,
        "workers": workers, "verbosity": optuna.logging.get_verbosity(),
    }
    context = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited threads or connections
    processes = [context.Process(target=_worker_main, args=(settings, i), name=f"sweep-worker-{i}") for i in range(workers)]
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join()
    except BaseException:  # Ctrl-C reaches the workers too: let them record their trials as interrupted
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join()
        raise
    failed = [f"{p.name} (exit {p.exitcode})" for p in processes if p.exitcode != 0]
    if failed:
        raise ChildProcessError(f"sweep worker(s) stopped with an error: {', '.join(failed)}")
    return optuna.load_study(study_name=study.study_name, storage=open_storage(spec, heartbeat))
