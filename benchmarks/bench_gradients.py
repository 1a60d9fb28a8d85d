"""Gradient signal-to-noise ratio of each objective's estimator, per parameter group, against K.

For a fixed model, data batch and parameters, each objective's gradient of the loss is drawn
``--draws`` times (fresh particles each time); per parameter component the SNR is
``|mean| / std`` over the draws, and a group's figure is the mean over its components (the
measure of Rainforth et al. 2018, "Tighter variational bounds are not necessarily better",
section 3), measured after ``--warmup`` ELBO updates on the batch (a guide that is not random).
Groups: ``model``, every parameter the generative model's density uses (VRNN's
shared feature extractors and recurrence included), and ``guide``, the parameters only the
proposal uses. Also the median time of one ``loss_and_grads`` (forward and backward).

Cases: VRNN on a batch of JSB chorales (``--data-root``; skipped in one line when absent) and the
linear-Gaussian state-space model on data sampled from itself. Objectives: elbo, elbo-stl, iwae,
iwae-dreg, fivo at K = 1, 4, 16, 64. Writes one JSON and one plot (matplotlib).

    python benchmarks/bench_gradients.py [--data-root ../shared/data] [--draws 16] [--particles 1 4 16 64]
        [--batch 4] [--steps 16] [--z-dim 8] [--warmup 100] [--json bench_gradients.json] [--plot bench_gradients.png]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import pyro
from pyro import poutine

from pyrosequence.inference import make_objective
from pyrosequence.models import VRNN, LinearGaussianSSM

OBJECTIVES = ("elbo", "elbo-stl", "iwae", "iwae-dreg", "fivo")


def parameter_groups(model, x, lengths=None) -> dict[str, list[str]]:
    """``model``: parameters the model's density reaches (gradient not None) with the guide's
    sample held fixed; ``guide``: the others (used by the proposal only)."""
    model.zero_grad(set_to_none=True)
    with torch.no_grad():  # a guide run without gradients leaves no recurrence for the model to reuse
        guide_trace = poutine.trace(model.guide).get_trace(x, lengths)
    model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x, lengths)
    model_trace.log_prob_sum().backward()
    groups = {"model": [], "guide": []}
    for name, p in model.named_parameters():
        groups["model" if p.grad is not None else "guide"].append(name)
    model.zero_grad(set_to_none=True)
    return groups


def gradient_draws(model, objective, x, lengths, draws: int, seed: int = 0):
    """``draws`` gradients (flattened per parameter) and the time of each update in ms."""
    grads, times = {n: [] for n, _ in model.named_parameters()}, []
    for i in range(draws):
        pyro.set_rng_seed(seed + i)
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        objective.loss_and_grads(model.model, model.guide, x, lengths)
        times.append(1000 * (time.perf_counter() - start))
        for n, p in model.named_parameters():
            grads[n].append(torch.zeros_like(p).flatten() if p.grad is None else p.grad.detach().flatten().clone())
    return {n: torch.stack(g) for n, g in grads.items()}, times


def snr(draws: torch.Tensor) -> float:
    """Mean over components of ``|mean| / std`` (components with zero spread left out)."""
    mean, std = draws.mean(0), draws.std(0)
    keep = std > 1e-12 * (1 + mean.abs())
    return float((mean[keep].abs() / std[keep]).mean()) if keep.any() else float("nan")


def warm_up(model, x, lengths, updates: int, lr: float) -> None:
    """``updates`` Adam steps of the ELBO (K = 4) on the batch, so the guide is not a random one."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    objective = make_objective("elbo", 4)
    for i in range(updates):
        pyro.set_rng_seed(10_000 + i)
        optimizer.zero_grad()
        objective.loss_and_grads(model.model, model.guide, x, lengths)
        optimizer.step()


def run_case(model, x, lengths, args) -> dict:
    warm_up(model, x, lengths, args.warmup, args.lr)
    groups = parameter_groups(model, x, lengths)
    out = {"groups": {g: sum(dict(model.named_parameters())[n].numel() for n in names) for g, names in groups.items()},
           "results": []}
    for name in OBJECTIVES:
        for k in args.particles:
            objective = make_objective(name, k)
            objective.loss_and_grads(model.model, model.guide, x, lengths)  # warm-up, not timed
            grads, times = gradient_draws(model, objective, x, lengths, args.draws)
            row = {"objective": name, "K": k, "ms_per_update": round(statistics.median(times), 2)}
            for group, names in groups.items():
                row[f"snr_{group}"] = snr(torch.cat([grads[n] for n in names], dim=1)) if names else float("nan")
            out["results"].append(row)
            print(f"  {name:10s} K={k:3d}  snr model {row['snr_model']:.3f}  guide {row['snr_guide']:.3f}  "
                  f"{row['ms_per_update']:.1f} ms", flush=True)
    return out


def vrnn_case(args) -> dict | None:
    root = Path(args.data_root)
    if not (root / "jsb_chorales").is_dir():
        print(f"vrnn-jsb skipped: no JSB data under {root} (pass --data-root)")
        return None
    from pyrosequence.data import load_split

    data = load_split("jsb", "train", str(root))
    x, lengths = data.x[: args.batch, : args.steps], data.lengths[: args.batch].clamp(max=args.steps)
    torch.manual_seed(0)
    model = VRNN(data.x_dim, args.z_dim, args.z_dim)
    print(f"vrnn-jsb: batch {args.batch}, {args.steps} steps, z = h = {args.z_dim}")
    return run_case(model, x, lengths, args)


def lgssm_case(args) -> dict:
    torch.manual_seed(0)
    model = LinearGaussianSSM(3, 2)
    x = model.sample(args.batch, args.steps)
    print(f"lgssm: x_dim 3, z_dim 2, batch {args.batch}, {args.steps} steps")
    return run_case(model, x, None, args)


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(result["cases"])
    fig, axes = plt.subplots(len(cases), 2, figsize=(10, 3.6 * len(cases)), squeeze=False)
    for row, case in zip(axes, cases):
        for ax, group in zip(row, ("model", "guide")):
            for name in OBJECTIVES:
                pts = [(r["K"], r[f"snr_{group}"]) for r in result["cases"][case]["results"]
                       if r["objective"] == name and r[f"snr_{group}"] > 0]  # nan (empty group) left out
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=name)
            ax.set(xscale="log", yscale="log", xlabel="K (particles)", ylabel="gradient SNR", title=f"{case}: {group} parameters")
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--draws", type=int, default=16, help="gradient draws per objective and K")
    p.add_argument("--particles", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=16, help="time steps per sequence")
    p.add_argument("--z-dim", type=int, default=8, help="VRNN latent and hidden size")
    p.add_argument("--warmup", type=int, default=100, help="ELBO (K=4) Adam updates on the batch before measuring")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate of the warm-up")
    p.add_argument("--cases", nargs="+", default=["vrnn-jsb", "lgssm"], choices=["vrnn-jsb", "lgssm"])
    p.add_argument("--json", default="bench_gradients.json")
    p.add_argument("--plot", default="bench_gradients.png", help="'' for no plot")
    args = p.parse_args(argv)
    if args.draws < 2:
        p.error("--draws must be at least 2 (a standard deviation needs two draws)")
    torch.set_num_threads(1)
    result = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "args": {k: v for k, v in vars(args).items() if k not in ("json", "plot")},
        "cases": {},
    }
    with pyro.validation_enabled(False):
        for case, build in (("vrnn-jsb", vrnn_case), ("lgssm", lgssm_case)):
            if case in args.cases:
                out = build(args)
                if out is not None:
                    result["cases"][case] = out
    Path(args.json).write_text(json.dumps(result, indent=1))
    if args.plot and result["cases"]:
        plot(result, args.plot)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
