"""FIVO's cost: a training step against IWAE with the same K, and evaluation with K = 1024.

Part 1 times one Adam update of a VRNN (x_dim 88, z and h 32, batch 16, 100 steps) under
IWAE(K=4) (``RenyiELBO``, vectorized) and FIVO(K=4) with resampling at ESS < K/2, never, and
always, in alternating rounds in one process; ratios are of medians.

Part 2 evaluates FIVO(K=1024) and IWAE(K=1024) on the synthetic test split (100 sequences of 100
steps) with a VRNN (z = 8), each in a fresh subprocess so that its peak resident memory can be
read (``ru_maxrss``), next to the same process's peak after loading the model and data only;
on a GPU (``--device cuda``) also the peak GPU memory allocated (``max_memory_allocated``).

    python benchmarks/bench_fivo.py [--rounds 10] [--steps 3] [--eval-particles 1024] [--skip-eval]
        [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

import pyro

from pyrosequence.models import VRNN
from pyrosequence.inference import evaluate, make_bound, make_objective


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_step_ratios(rounds: int, steps: int, batch: int, length: int, x_dim: int, dim: int,
                         device: torch.device = torch.device("cpu")) -> dict:
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    model = VRNN(x_dim, dim, dim).to(device)
    x = (torch.rand(batch, length, x_dim) < 0.1).float().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    objectives = {
        "iwae": make_objective("iwae", 4),
        "fivo": make_objective("fivo", 4, ess_threshold=0.5),
        "fivo_never_resample": make_objective("fivo", 4, ess_threshold=0.0),
        "fivo_always_resample": make_objective("fivo", 4, ess_threshold=1.0),
    }

    def step(objective) -> None:
        optimizer.zero_grad()
        objective.loss_and_grads(model.model, model.guide, x)
        optimizer.step()

    for objective in objectives.values():
        step(objective)
        step(objective)
    times = {name: [] for name in objectives}
    for _ in range(rounds):
        for name, objective in objectives.items():
            _sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                step(objective)
            _sync(device)
            times[name].append((time.perf_counter() - start) / steps)
    ms = {name: statistics.median(t) * 1000 for name, t in times.items()}
    return {
        "ms_per_step": {k: round(v, 1) for k, v in ms.items()},
        "ratio_fivo_vs_iwae": round(ms["fivo"] / ms["iwae"], 3),
        "ratio_fivo_never_vs_iwae": round(ms["fivo_never_resample"] / ms["iwae"], 3),
        "ratio_fivo_vs_fivo_never": round(ms["fivo"] / ms["fivo_never_resample"], 3),
        "ratio_fivo_always_vs_iwae": round(ms["fivo_always_resample"] / ms["iwae"], 3),
    }


def _evaluation_child(bound: str, particles: int, device: torch.device = torch.device("cpu")) -> None:
    from pyrosequence.data import synthetic_dataset

    torch.manual_seed(0)
    data = synthetic_dataset("test").to(device)
    model = VRNN(2, 8, likelihood="gaussian").to(device)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pyro.validation_enabled(False):
        _sync(device)
        start = time.perf_counter()
        result = evaluate(model, data.x, data.lengths, make_bound(bound), particles) if bound != "none" else None
        _sync(device)
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    row = {
        "bound": bound,
        "particles": particles,
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak / 1024, 1),
        "rss_before_mib": round(baseline / 1024, 1),
        "per_timestep": None if result is None else round(result.per_timestep, 4),
    }
    if device.type == "cuda":
        row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    print(json.dumps(row))


def evaluation_costs(particles: int, device: torch.device = torch.device("cpu")) -> list[dict]:
    out = []
    for bound in ("fivo", "iwae"):
        child = subprocess.run(
            [sys.executable, __file__, "--eval-child", bound, "--eval-particles", str(particles), "--device", str(device)],
            capture_output=True, text=True, check=True,
        )
        out.append(json.loads(child.stdout.strip().splitlines()[-1]))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--time", type=int, default=100)
    parser.add_argument("--x-dim", type=int, default=88)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--eval-particles", type=int, default=1024)
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--eval-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.eval_child:
        _evaluation_child(args.eval_child, args.eval_particles, device)
        return {}
    pyro.enable_validation(False)
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, {device}"
    if device.type == "cuda":
        machine += f" ({torch.cuda.get_device_name(device)})"
    result = {
        "machine": machine,
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "training": training_step_ratios(args.rounds, args.steps, args.batch, args.time, args.x_dim, args.dim, device),
    }
    if not args.skip_eval:
        result["evaluation"] = evaluation_costs(args.eval_particles, device)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
