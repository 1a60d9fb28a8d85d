"""``pyrosequence evaluate``: one bound on one split of a trained run, appended to its ``evaluations.jsonl``."""

from __future__ import annotations

from pathlib import Path

import pyro

from pyrosequence.atomic import atomic_append, check_writable, strict_json
from pyrosequence.cli.common import filter_arguments
from pyrosequence.device import resolve_device
from pyrosequence.distributed import evaluate_sharded, setup as setup_processes
from pyrosequence.inference.evaluate import evaluate, make_bound
from pyrosequence.rundir import EVALUATIONS_FILE, load_run


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained run", description="Evaluate a bound on one split for a trained run.")
    p.add_argument("run_dir", help="a run directory written by `pyrosequence train`")
    p.add_argument("--bound", default="elbo", help="elbo, iwae or fivo")
    p.add_argument("--particles", type=int, default=1)
    filter_arguments(p, defaults=True)
    p.add_argument("--split", default="test")
    p.add_argument("--data-root", dest="data_root", help="read the data from this folder instead of the one the run recorded")
    p.add_argument("--device", default="cpu")
    p.add_argument("--compile", action="store_true",
                   help="compile the particle filter's step with torch.compile (same bound; faster for long evaluations)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the evaluation's draws")
    p.add_argument("--beta", type=float, help="multi-rate runs: evaluate the model the gates give at this KL weight (default 1)")
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


def _evaluate_run(args, group, device) -> int:
    config, model, data, checkpoint = load_run(args.run_dir, args.split, str(device), args.data_root)
    if args.beta is not None:
        from pyrosequence.models.multi_rate import is_multi_rate, set_beta

        if not is_multi_rate(model):
            raise ValueError(f"--beta needs a multi-rate run; {args.run_dir} was trained without --multi-rate")
        set_beta(model, args.beta)
    run_dir = Path(args.run_dir)
    group.on_main(lambda: check_writable(run_dir))  # before the (possibly long) evaluation, not after it
    bound = make_bound(args.bound, args.resampler, args.ess_threshold, compile=args.compile)
    sharded = {}
    if group.active:  # block j draws from its own stream seeded by (seed, j): see distributed.evaluate_sharded
        result, block = evaluate_sharded(group, model, data.x, data.lengths, bound, args.particles, seed=args.seed)
        sharded = {"world_size": group.world_size, "block": block}
    else:
        pyro.set_rng_seed(args.seed)
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
        **({"compile": True} if args.compile else {}),
        **sharded,
    }
    group.on_main(lambda: atomic_append(run_dir / EVALUATIONS_FILE, strict_json(record) + "\n"))
    if group.is_main:
        print(f"{args.split} {args.bound}({args.particles}) per time step: {result.per_timestep:.4f}")
    return 0
