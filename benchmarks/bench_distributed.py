"""Data-parallel training and evaluation: updates per second and evaluation time for N processes.

For each entry of ``--procs`` (a process count, optionally ``xT`` for T torch threads per process,
e.g. ``1x2``) the script starts itself under ``torchrun --standalone --nproc_per_node=N`` as a
worker. A worker builds the model of ``pyrosequence train`` (same seed, same data), times one
sharded evaluation of the validation split with the initial weights (``evaluate(..., group=...)``,
seeded blocks: with ``--eval-block`` the figure is the same for every N), then runs one warm-up
epoch of ``train_epoch`` with the :class:`~pyrosequence.training.distributed.DataParallel` of its launch
and times ``--epochs`` epochs (updates per second of the global batch). Process 0 writes the
figures; the driver prints one JSON object with a row per entry.

Command (recorded in benchmarks/README.md)::

    python benchmarks/bench_distributed.py --data jsb --data-root /work/shared/data --procs 1x1,1x2,2x1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", default="1x1,1x2,2x1", help="comma-separated N or NxT (T torch threads per process)")
    p.add_argument("--data", default="synthetic")
    p.add_argument("--data-root", default=None)
    p.add_argument("--model", default="vrnn")
    p.add_argument("--z-dim", type=int, default=32)
    p.add_argument("--hidden-dim", type=int, default=32)
    p.add_argument("--objective", default="elbo")
    p.add_argument("--particles", type=int, default=1)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--train-subset", type=int, default=64, help="training sequences (updates per epoch = this / batch)")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up epoch)")
    p.add_argument("--eval-bound", default="fivo")
    p.add_argument("--eval-particles", type=int, default=16)
    p.add_argument("--eval-sequences", type=int, default=None, help="evaluate the first N validation sequences (default all)")
    p.add_argument("--eval-block", type=int, default=None,
                   help="sequences per evaluation block (default: the bound's budget capped at ceil(n / N), which "
                   "depends on N; give it to get the same figure from every N)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: the JSON file process 0 writes
    p.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    return p


def _worker(args) -> None:
    import pyro

    from pyrosequence.training.config import TrainConfig
    from pyrosequence.data.registry import load_split
    from pyrosequence.device import resolve_device
    from pyrosequence.training.distributed import rank_seed, setup
    from pyrosequence.inference.evaluate import evaluate, make_bound
    from pyrosequence.inference.objectives import make_objective
    from pyrosequence.inference.scaling import ConstantBeta
    from pyrosequence.training.rundir import build_model
    from pyrosequence.training.loop import train_epoch

    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(model=args.model, data=args.data, data_root=args.data_root, z_dim=args.z_dim,
                         model_options={"hidden_dim": args.hidden_dim}, objective=args.objective, particles=args.particles,
                         batch_size=args.batch, train_subset=args.train_subset)
    group, device = setup(resolve_device("cpu"), config.batch_size)
    train_set = load_split(config.data, "train", config.data_root)
    train_set = train_set.subset(range(min(args.train_subset, len(train_set))))
    valid = load_split(config.data, "valid", config.data_root)
    if args.eval_sequences:
        valid = valid.subset(range(min(args.eval_sequences, len(valid))))
    pyro.set_rng_seed(config.seed)
    model = build_model(config, train_set.x_dim)
    model.init_from_data(train_set.x, train_set.lengths)
    if group.active:
        pyro.set_rng_seed(rank_seed(config.seed, group.rank))
    objective = make_objective(config.objective, config.particles)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = ConstantBeta(1.0)
    barrier = torch.distributed.barrier if group.active else (lambda: None)
    with pyro.validation_enabled(False):
        # evaluation first, on the initial weights (the same for every N), so the figures can be compared
        model.eval()
        bound = make_bound(args.eval_bound)
        barrier()
        start = time.perf_counter()
        result = evaluate(model, valid.x, valid.lengths, bound, args.eval_particles, batch_size=args.eval_block, seed=0,
                          group=group)
        block = result.block_size
        barrier()
        eval_seconds = time.perf_counter() - start
        model.train()
        _, step = train_epoch(model, train_set, config, optimizer, objective, schedule, 0, 0, group=group)  # warm-up
        barrier()
        start = time.perf_counter()
        for epoch in range(1, args.epochs + 1):
            _, step_after = train_epoch(model, train_set, config, optimizer, objective, schedule, epoch, step, group=group)
            updates, step = step_after - step, step_after
        barrier()
        train_seconds = time.perf_counter() - start
        total_updates = args.epochs * updates
    if group.is_main:
        Path(args.worker).write_text(json.dumps({
            "processes": group.world_size,
            "threads_per_process": torch.get_num_threads(),
            "updates": total_updates,
            "updates_per_second": total_updates / train_seconds,
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
            "eval_block": block,
            "eval_per_timestep": result.per_timestep,
            "eval_sequences": len(valid),
        }))
    group.close()


def main(argv: list[str] | None = None) -> dict:
    args = _parser().parse_args(argv)
    if args.worker:
        _worker(args)
        return {}
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
    if "--procs" in passthrough:
        i = passthrough.index("--procs")
        del passthrough[i : i + 2]
    rows = []
    for entry in args.procs.split(","):
        n, _, threads = entry.partition("x")
        threads = int(threads or 1)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={int(n)}",
                       str(Path(__file__).resolve()), *passthrough, "--worker", str(out), "--threads", str(threads)]
            run = subprocess.run(command, env=env, capture_output=True, text=True)
            if run.returncode != 0:
                raise RuntimeError(f"{entry}: the workers failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
            rows.append(json.loads(out.read_text()))
    base = rows[0]
    for row in rows:
        row["speedup_updates"] = row["updates_per_second"] / base["updates_per_second"]
        row["speedup_eval"] = base["eval_seconds"] / row["eval_seconds"]
    result = {"settings": {k: v for k, v in vars(args).items() if k not in ("worker", "threads")}, "rows": rows,
              "torch": torch.__version__, "cpus": os.cpu_count()}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
