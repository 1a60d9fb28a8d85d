"""Two costs introduced with the SRNN family and the Multi-Rate VAE, as ratios measured in one run.

1. ``SimplifiedSRNN``'s batched fast path (one ``nn.LSTM`` call per RNN, all latents drawn from one
   batched posterior) against the same model's generic per-step path (``fast_path=False``, the
   same weights): one Adam update of the Trace_ELBO, and ``evaluate`` with IWAE(8).
2. The Multi-Rate VAE's gates: one Adam update of a VRNN against its ``multi_rate`` version (same
   base weights), and the parameter overhead of the gates.

The runners alternate in ``--rounds`` rounds of ``--steps`` updates; figures are medians.

    python benchmarks/bench_new_models.py [--rounds 7] [--steps 3] [--batch 16] [--time 100]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time

import torch

import pyro
from pyro.infer import Trace_ELBO

from pyrosequence.inference import evaluate
from pyrosequence.models import VRNN, SimplifiedSRNN
from pyrosequence.models.multi_rate import gate_parameter_count, multi_rate, set_beta


def _median_times(runners: dict, rounds: int, steps: int) -> dict:
    for run in runners.values():  # warm-up
        run()
    times = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            for _ in range(steps):
                run()
            times[name].append((time.perf_counter() - start) / steps)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def _update(model, x):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss = Trace_ELBO()

    def run() -> None:
        optimizer.zero_grad()
        loss.loss_and_grads(model.model, model.guide, x)
        optimizer.step()

    return run


def fast_path(args) -> dict:
    torch.manual_seed(0)
    x = (torch.rand(args.batch, args.time, args.x_dim) < 0.1).float()
    fast = SimplifiedSRNN(args.x_dim, args.z_dim, hidden_dim=args.hidden)
    slow = copy.deepcopy(fast)
    slow.fast_path = False
    updates = _median_times({"fast": _update(fast, x), "per_step": _update(slow, x)}, args.rounds, args.steps)
    evals = _median_times(
        {
            "fast": lambda: evaluate(fast, x, bound="iwae", num_particles=8),
            "per_step": lambda: evaluate(slow, x, bound="iwae", num_particles=8),
        },
        args.rounds,
        1,
    )
    return {
        "update_ms": updates,
        "evaluate_iwae8_ms": evals,
        "update_ratio_per_step_vs_fast": updates["per_step"] / updates["fast"],
        "evaluate_ratio_per_step_vs_fast": evals["per_step"] / evals["fast"],
    }


def gate_overhead(args) -> dict:
    torch.manual_seed(0)
    x = (torch.rand(args.batch, args.time, args.x_dim) < 0.1).float()
    base = VRNN(args.x_dim, args.z_dim, hidden_dim=args.hidden)
    gated = multi_rate(copy.deepcopy(base), beta_range=(0.01, 10.0))
    set_beta(gated, 0.5)
    times = _median_times({"base": _update(base, x), "multi_rate": _update(gated, x)}, args.rounds, args.steps)
    return {
        "update_ms": times,
        "time_overhead": times["multi_rate"] / times["base"] - 1,
        "parameters": base.num_parameters(),
        "gate_parameters": gate_parameter_count(gated),
        "parameter_overhead": gate_parameter_count(gated) / base.num_parameters(),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--time", type=int, default=100)
    parser.add_argument("--x-dim", dest="x_dim", type=int, default=88)
    parser.add_argument("--z-dim", dest="z_dim", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args(argv)
    pyro.set_rng_seed(0)
    result = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "sizes": {k: getattr(args, k) for k in ("batch", "time", "x_dim", "z_dim", "hidden")},
        "simplified_srnn": fast_path(args),
        "multi_rate_vrnn": gate_overhead(args),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
