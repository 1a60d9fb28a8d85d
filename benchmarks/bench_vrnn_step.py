"""Time one VRNN training step: pyrosequence + Pyro against a hand-written plain-PyTorch loop.

Both sides train the same ``VRNN`` modules (x_dim 88, z and h 32, batch 16, 100 steps) with
the single-sample ELBO and Adam; the plain side is :func:`plain_vrnn.plain_vrnn_loss`. The two
are timed in alternating rounds in one process and the ratio of medians is reported, so machine
load affects both alike.

    python benchmarks/bench_vrnn_step.py [--rounds 15] [--steps 10] [--device cpu|cuda] [--validate]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import pyro
from pyro.infer import SVI, Trace_ELBO

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_vrnn import plain_vrnn_loss  # noqa: E402

from pyrosequence.models import VRNN  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="alternating timing rounds")
    parser.add_argument("--steps", type=int, default=10, help="training steps per round")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--time", type=int, default=100)
    parser.add_argument("--x-dim", type=int, default=88)
    parser.add_argument("--dim", type=int, default=32, help="z and h size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--validate", action="store_true", help="keep Pyro's distribution validation on")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    pyro.enable_validation(args.validate)
    model = VRNN(args.x_dim, args.dim, args.dim).to(device)
    x = (torch.rand(args.batch, args.time, args.x_dim, device=device) < 0.1).float()

    plain_opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def plain_step() -> None:
        plain_opt.zero_grad()
        plain_vrnn_loss(model, x).backward()
        plain_opt.step()

    elbo = Trace_ELBO(max_plate_nesting=1)
    ours_opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def ours_step() -> None:  # what pyrosequence.training.loop does
        ours_opt.zero_grad()
        elbo.loss_and_grads(model.model, model.guide, x)
        ours_opt.step()

    class RecomputingVRNN(VRNN):
        """The same model with the guide-to-model state reuse switched off (the naive layout)."""

        def _take_recurrence(self, *key):
            self._recurrence = None
            return None

    naive = RecomputingVRNN(args.x_dim, args.dim, args.dim).to(device)
    naive.load_state_dict(model.state_dict())
    naive_opt = torch.optim.Adam(naive.parameters(), lr=1e-4)

    def naive_step() -> None:
        naive_opt.zero_grad()
        elbo.loss_and_grads(naive.model, naive.guide, x)
        naive_opt.step()

    svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": 1e-4}), elbo)

    def svi_step() -> None:  # Pyro's own SVI with its optimizer wrapper
        svi.step(x)

    runners = {"plain": plain_step, "pyrosequence": ours_step, "pyro_svi": svi_step, "no_state_reuse": naive_step}
    times: dict[str, list[float]] = {name: [] for name in runners}
    for step in runners.values():  # warm up
        for _ in range(3):
            step()
    for _ in range(args.rounds):
        for name, step in runners.items():
            _sync(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            _sync(device)
            times[name].append((time.perf_counter() - start) / args.steps)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {device}",
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "validation": args.validate,
        "ms_per_step": {k: round(v * 1000, 2) for k, v in medians.items()},
        "ratio_pyrosequence_vs_plain": round(medians["pyrosequence"] / medians["plain"], 3),
        "ratio_pyro_svi_vs_plain": round(medians["pyro_svi"] / medians["plain"], 3),
        "ratio_no_state_reuse_vs_plain": round(medians["no_state_reuse"] / medians["plain"], 3),
    }
    for key, value in result.items():
        print(f"{key}: {value}")
    return result


if __name__ == "__main__":
    main()
