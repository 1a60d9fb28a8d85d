"""Padding saved by length-bucketed batches (``--length-buckets POOL``) on the ragged music sets.

    python benchmarks/bench_length_buckets.py --data-root ../shared/data [--time]

Prints JSON. For each data set's training split, batch size and pool: the mean over ``--epochs``
epochs of the time-loop iterations (``loop_steps``: the sum of each batch's longest length) and
of the steps computed padding included (``cell_steps``), and their ratio to plain shuffled
batches measured on the same epochs' seeds. These counts are exact, not timings: a training
update of a small recurrent model costs about the same per loop iteration whatever the batch
(per-operation overhead), so the ``loop_steps`` ratio is the expected ratio of epoch times.
``--time`` also times one FIVO(4) epoch of a VRNN (z = h = 32) over the first ``--subset``
sequences of each set, plain and bucketed alternately (``--rounds`` each, median), in this process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from pyrosequence.data.buckets import bucketed_order, padding_cost
from pyrosequence.data.registry import load_split


def counts(lengths: torch.Tensor, batch: int, pool: int | None, epochs: int) -> dict:
    total = {"loop_steps": 0.0, "cell_steps": 0.0}
    for epoch in range(epochs):
        generator = torch.Generator().manual_seed(epoch)
        if pool is None:
            batches = list(torch.randperm(len(lengths), generator=generator).split(batch))
        else:
            batches = bucketed_order(lengths, batch, pool, generator)
        for key, value in padding_cost(lengths, batches).items():
            if key in total:
                total[key] += value / epochs
    return {k: round(v) for k, v in total.items()}


def time_epochs(data, pool: int | None, rounds: int) -> float:
    import pyro

    from pyrosequence import VRNN
    from pyrosequence.inference import FIVO

    model = VRNN(data.x_dim, 32, architecture="fivo")
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    objective = FIVO(4)
    seconds = []
    for r in range(rounds):
        pyro.set_rng_seed(r)
        start = time.perf_counter()
        for x, lengths in data.batches(4, shuffle=True, generator=torch.Generator().manual_seed(r), bucket_pool=pool):
            optimizer.zero_grad()
            objective.loss_and_grads(model.model, model.guide, x, lengths)
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", required=True)
    p.add_argument("--datasets", nargs="+", default=["jsb", "nottingham", "muse"])
    p.add_argument("--batches", type=int, nargs="+", default=[4, 16])
    p.add_argument("--pools", type=int, nargs="+", default=[8, 64])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--time", action="store_true")
    p.add_argument("--subset", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    result = {"counts": {}, "seconds": {}}
    for name in args.datasets:
        data = load_split(name, "train", args.data_root)
        lengths = data.lengths
        for batch in args.batches:
            plain = counts(lengths, batch, None, args.epochs)
            row = {"real_steps": int(lengths.sum()), "plain": plain}
            for pool in args.pools:
                bucketed = counts(lengths, batch, pool, args.epochs)
                row[f"pool_{pool}"] = {**bucketed, "loop_ratio": round(bucketed["loop_steps"] / plain["loop_steps"], 3),
                                       "cell_ratio": round(bucketed["cell_steps"] / plain["cell_steps"], 3)}
            result["counts"][f"{name}/batch{batch}"] = row
        if args.time:
            subset = data.subset(range(min(args.subset, len(data))))
            plain_s, bucket_s = [], []
            for _ in range(args.rounds):  # alternate the runners
                plain_s.append(time_epochs(subset, None, 1))
                bucket_s.append(time_epochs(subset, max(args.pools), 1))
            result["seconds"][name] = {"plain": round(statistics.median(plain_s), 2), "bucketed": round(statistics.median(bucket_s), 2),
                                       "ratio": round(statistics.median(bucket_s) / statistics.median(plain_s), 3)}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
