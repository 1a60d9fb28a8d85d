"""``pyrosequence compare RUN_A RUN_B``: one bound of two trained runs on the same sequences, and
whether the difference is more than the choice of sequences and the evaluation's draws would
give (:mod:`pyrosequence.diagnostics.paired_comparison`). Nothing is written into either run."""

from __future__ import annotations

import pyro
import torch

from pyrosequence.cli.common import bound_arguments
from pyrosequence.device import resolve_device
from pyrosequence.diagnostics.paired_comparison import compare_bounds, seed_spread
from pyrosequence.inference.evaluate import EvaluationResult, evaluate, make_bound
from pyrosequence.training.rundir import WEIGHTS, load_run


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare", help="compare two trained runs on the same sequences: the paired difference of a bound, with its "
        "uncertainty over sequences and evaluation seeds",
        description="Evaluate one bound of RUN_A and RUN_B on the same split and report A minus B per time step, "
        "its standard error over sequences, a bootstrap interval, and (with --seeds) its spread over evaluation seeds.")
    p.add_argument("run_a", help="a run directory written by `pyrosequence train`")
    p.add_argument("run_b", help="another run directory, trained on the same data")
    bound_arguments(p, "read the data from this folder instead of the one the runs recorded")
    p.add_argument("--seed", type=int, default=0, help="random seed of the first evaluation's draws")
    p.add_argument("--seeds", type=int, default=1,
                   help="evaluate each run with this many seeds (seed, seed+1, ...) and compare the per-sequence means")
    p.add_argument("--weights", choices=WEIGHTS, help="best or last (default: each run's own, as evaluate)")
    p.add_argument("--level", type=float, default=0.95, help="coverage of the bootstrap interval (default 0.95)")
    p.add_argument("--bootstrap", type=int, default=4000, help="bootstrap resamples of the sequences (default 4000)")
    p.set_defaults(command=run_compare)


def _check_arguments(args) -> None:
    if isinstance(args.seeds, bool) or args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {args.seeds}")
    if args.particles < 1:
        raise ValueError(f"--particles must be at least 1, got {args.particles}")
    if not 0 < args.level < 1:
        raise ValueError(f"--level must lie strictly between 0 and 1, got {args.level}")
    if args.bootstrap < 1:
        raise ValueError(f"--bootstrap must be at least 1, got {args.bootstrap}")


def _scores(model, data, bound, particles: int, seeds: range) -> list[EvaluationResult]:
    results = []
    for seed in seeds:
        pyro.set_rng_seed(seed)
        results.append(evaluate(model, data.x, data.lengths, bound=bound, num_particles=particles))
    return results


def _mean(results: list[EvaluationResult]) -> EvaluationResult:
    first = results[0]
    mean = torch.stack([r.log_likelihood for r in results]).mean(0)
    return EvaluationResult(first.bound, first.num_particles, mean, first.num_steps, first.num_observed, first.block_size)


def run_compare(args) -> int:
    _check_arguments(args)
    device = str(resolve_device(args.device))
    loaded = [load_run(run, args.split, device, args.data_root, weights=args.weights) for run in (args.run_a, args.run_b)]
    (_, model_a, data_a, checkpoint_a), (_, model_b, data_b, checkpoint_b) = loaded
    if checkpoint_a["data_fingerprint"] != checkpoint_b["data_fingerprint"]:
        raise ValueError(f"{args.run_a} and {args.run_b} do not read the same {args.split!r} split (data fingerprints "
                         f"{checkpoint_a['data_fingerprint']} and {checkpoint_b['data_fingerprint']}); a paired comparison "
                         "needs the same sequences")
    bound = make_bound(args.bound, args.resampler, args.ess_threshold)
    seeds = range(args.seed, args.seed + args.seeds)
    scores_a = _scores(model_a, data_a, bound, args.particles, seeds)
    scores_b = _scores(model_b, data_b, bound, args.particles, seeds)
    per_seed = [a.per_timestep - b.per_timestep for a, b in zip(scores_a, scores_b)]  # same sequences, same steps
    result = compare_bounds(_mean(scores_a), _mean(scores_b), level=args.level, bootstrap=args.bootstrap, seed=args.seed)
    label = f"{args.split} {args.bound}({args.particles})"
    averaged = f", the mean of {args.seeds} evaluation seeds from {args.seed}" if args.seeds > 1 else f", evaluation seed {args.seed}"
    print(f"{label} per time step{averaged}:")
    for name, run, value, checkpoint in (("A", args.run_a, result.a_per_timestep, checkpoint_a),
                                         ("B", args.run_b, result.b_per_timestep, checkpoint_b)):
        print(f"  {name} {value:.4f}  {run} (the {checkpoint['scored_weights']} weights, epoch {int(checkpoint['epoch'])})")
    low, high = result.interval
    print(f"A - B: {result.difference:+.4f} per time step over {result.num_sequences} sequences "
          f"({int(result.num_steps.sum())} steps); A's bound is higher on {result.a_higher} of them")
    print(f"  over sequences: standard error {result.standard_error:.4f}; {100 * args.level:g}% bootstrap interval "
          f"{low:+.4f} .. {high:+.4f} ({args.bootstrap} resamples)")
    if args.seeds > 1:
        print(f"  over evaluation seeds: standard error {seed_spread(per_seed):.4f} "
              f"(per-seed differences {min(per_seed):+.4f} .. {max(per_seed):+.4f})")
    largest = ", ".join(f"{i}: {v:+.3f}" for i, v in result.largest(5))
    print(f"  largest per-sequence differences (sequence: A - B per step): {largest}")
    if result.num_sequences > 2:
        print(f"  without the 2 sequences of largest difference: {result.without_largest(2):+.4f} per time step")
    if data_a.scale is not None:
        print("  (the data are standardised: a difference is the same in the data's own units)")
    return 0
