"""``pyrosequence evaluate``: one bound on one split of a trained run, appended to its ``evaluations.jsonl``.

The record is appended under the run directory's lock (:mod:`pyrosequence.training.runlock`), so concurrent
evaluations each keep their line; a run being trained is refused (the trainer holds the lock).
``--no-record`` (and, with a one-line note, a run directory that cannot be written) prints the
result without writing anything.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pyro

from pyrosequence.atomic import atomic_append, check_writable, strict_json
from pyrosequence.cli.common import bound_arguments
from pyrosequence.device import resolve_device
from pyrosequence.training.distributed import setup as setup_processes
from pyrosequence.inference.evaluate import evaluate, in_data_units, make_bound
from pyrosequence.training.rundir import EVALUATIONS_FILE, WEIGHTS, load_run
from pyrosequence.training.runlock import RunDirectoryLocked, run_lock

#: How long an evaluation waits for another one to finish appending its record (seconds).
RECORD_WAIT = 60.0


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained run", description="Evaluate a bound on one split for a trained run.")
    p.add_argument("run_dir", help="a run directory written by `pyrosequence train`")
    bound_arguments(p, "read the data from this folder instead of the one the run recorded (a run on your own data: "
                    "this file or folder instead of its recorded path)")
    p.add_argument("--compile", action="store_true",
                   help="compile the particle filter's step with torch.compile (same bound; faster for long evaluations)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the evaluation's draws")
    p.add_argument("--beta", type=float, help="multi-rate runs: evaluate the model the gates give at this KL weight (default 1)")
    p.add_argument("--weights", choices=WEIGHTS,
                   help="best (best.pt, the default of a --keep-best run) or last (checkpoint.pt, the last epoch's)")
    p.add_argument("--no-record", dest="record", action="store_false",
                   help="print the result without writing into the run directory (evaluations.jsonl)")
    p.add_argument("--accept-data-change", dest="accept_data_change", action="store_true",
                   help="evaluate on data whose fingerprint differs from the run's (the record says so)")
    p.set_defaults(command=run_evaluate)


def run_evaluate(args) -> int:
    group, device = setup_processes(resolve_device(args.device))  # under torchrun: the blocks are shared
    try:
        status = _evaluate_run(args, group, device)
    except BaseException:
        group.close()
        raise
    group.close(synchronise=True)
    return status


@contextlib.contextmanager
def _locked(run_dir: Path, wait: float = 0.0):
    """The run directory's lock; a trainer holding it is named, with what to do instead."""
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(run_lock(run_dir, "evaluate", wait=wait))
    except RunDirectoryLocked as error:
        raise RunDirectoryLocked(f"{error} (or pass --no-record to evaluate it without recording)", error.holder) from None
    with stack:
        yield


def _can_record(args, run_dir: Path) -> bool:
    """Whether this evaluation is recorded: not with --no-record, nor (with a note) in a run
    directory that cannot be written; a run being trained is refused here, before evaluating."""
    if not args.record:
        return False
    try:
        check_writable(run_dir)
    except PermissionError as error:
        print(f"note: {error}; the result is printed, not recorded", file=sys.stderr)
        return False
    # a probe, released at once (the record is appended under the lock after evaluating); it waits
    # through another evaluation's probe or append, never for a trainer
    with _locked(run_dir, wait=RECORD_WAIT):
        pass
    return True


def _evaluate_run(args, group, device) -> int:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run directory at {run_dir}")
    record_it = group.on_main(lambda: _can_record(args, run_dir))  # before the (possibly long) evaluation
    config, model, data, checkpoint = load_run(args.run_dir, args.split, str(device), args.data_root,
                                               weights=args.weights, accept_data_change=args.accept_data_change)
    if args.beta is not None:
        from pyrosequence.models.core.capabilities import is_multi_rate
        from pyrosequence.models.multi_rate import set_beta

        if not is_multi_rate(model):
            raise ValueError(f"--beta needs a multi-rate run; {args.run_dir} was trained without --multi-rate")
        set_beta(model, args.beta)
    bound = make_bound(args.bound, args.resampler, args.ess_threshold, compile=args.compile)
    sharded = {}
    if group.active:  # block j draws from its own stream seeded by (seed, j): see evaluate's group
        result = evaluate(model, data.x, data.lengths, bound=bound, num_particles=args.particles, seed=args.seed,
                          group=group)
        sharded = {"world_size": group.world_size, "block": result.block_size}
    else:
        pyro.set_rng_seed(args.seed)
        result = evaluate(model, data.x, data.lengths, bound=bound, num_particles=args.particles)
    record = {
        "split": args.split,
        "bound": args.bound,
        "particles": args.particles,
        **{key: getattr(bound, key) for key in ("resampler", "ess_threshold") if hasattr(bound, key)},
        "per_timestep": result.per_timestep,
        "per_element": result.per_element,
        "observed_elements": int(result.num_observed.sum()),
        "elements": int(result.num_steps.sum()) * model.x_dim,
        "total": result.total,
        "epoch": int(checkpoint["epoch"]),
        "weights": checkpoint["scored_weights"],
        "data": checkpoint["data_fingerprint"],
        **({"data_changed_from": checkpoint["data_change"]["recorded"]} if checkpoint["data_change"] else {}),
        "seed": args.seed,
        **({"beta": args.beta} if args.beta is not None else {}),
        **({"compile": True} if args.compile else {}),
        **sharded,
    }
    if data.scale is not None:  # standardised data (stock, --standardize): the data's own units too
        record["per_timestep_data_units"] = in_data_units(result, data.observations, data.lengths, data.scale).per_timestep
    if group.is_main:
        print(f"{args.split} {args.bound}({args.particles}) per time step: {result.per_timestep:.4f}  "
              f"per observed element: {result.per_element:.4f}{_missing_note(record)}  "
              f"(the {checkpoint['scored_weights']} weights, epoch {record['epoch']})")
        if "per_timestep_data_units" in record:
            print(f"{args.split} {args.bound}({args.particles}) per time step in the data's units (standardisation "
                  f"undone): {record['per_timestep_data_units']:.4f}")

    def append() -> None:
        with _locked(run_dir, wait=RECORD_WAIT):
            atomic_append(run_dir / EVALUATIONS_FILE, strict_json(record) + "\n")

    if record_it:
        group.on_main(append)
    return 0


def _missing_note(record: dict) -> str:
    """`` (12.5% of the values missing)`` when the data has gaps, else nothing."""
    missing = record["elements"] - record["observed_elements"]
    return f" ({100 * missing / record['elements']:.1f}% of the values missing)" if missing else ""
