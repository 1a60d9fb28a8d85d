"""Multi-Rate VAE vs retrained beta-VAEs with VRNN (Bae et al., ICLR 2023, section 5.2 / Fig. 5).

For each data set, trains one multi-rate VRNN (beta ~ logU[a, b] per update) and, at ``--betas``
log-spaced KL weights over the same range, one beta-VAE VRNN per beta with a constant weight and
one with KL annealing (the weight rises linearly from 0.2 beta to beta over the first
``--anneal-fraction`` of the updates). Every run has the same architecture, epochs and data.
Then, on the test split, it measures rate R and distortion D per time step (analytic KL, one
guide draw per sequence) of the multi-rate model at every beta and of each beta-VAE at its beta,
and writes per data set ``rd_curve.{md,csv,json,png}`` and a summary (``summary.md``,
``summary.json``) with:

* the area between the curves: ``A = 1 / (log b - log a) * integral (L_MR(beta) - L_beta-VAE(beta)) d log beta``
  with ``L = D + beta R`` per step, by the trapezoid rule over the grid of betas: the mean gap in
  nats per step between the multi-rate model and the retrained models across the range (> 0:
  the multi-rate model is worse), for the beta-VAEs with and without annealing;
* the gate overhead: extra parameters in percent, and extra time per training update in percent
  (CPU time of the process, the fastest of interleaved timed rounds of updates on the same batch,
  base vs multi-rate, one thread).

Run (about 20-30 minutes on 2 CPU cores with the defaults)::

    python experiments/multi_rate_study.py --out runs/multi-rate-study --data synthetic jsb \\
        --data-root ../shared/data --jobs 2
    python experiments/multi_rate_study.py --tiny --out /tmp/mr-study     # seconds: a smoke run

Budget flags: ``--epochs``, ``--train-subset``, ``--betas`` (how many), ``--z-dim``, ``--jobs``.
Runs that already finished in ``--out`` are reused.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

import pyro

from pyrosequence.training.checkpoint import load_checkpoint
from pyrosequence.training.config import TrainConfig
from pyrosequence.data.registry import load_split
from pyrosequence.diagnostics.rate_distortion_report import plot_rd, to_csv, to_json, to_markdown
from pyrosequence.inference.objectives import make_objective
from pyrosequence.inference.rate_distortion import rd_curve
from pyrosequence.inference.scaling import scale_latents
from pyrosequence.models.multi_rate import gate_parameter_count, multi_rate, set_beta
from pyrosequence.training.rundir import CHECKPOINT_FILE, build_model, load_run
from pyrosequence.training.loop import train


def log_betas(a: float, b: float, n: int) -> list[float]:
    return [math.exp(math.log(a) + (math.log(b) - math.log(a)) * i / (n - 1)) for i in range(n)] if n > 1 else [math.sqrt(a * b)]


def _config(args, data: str, **extra) -> TrainConfig:
    return TrainConfig(
        model="vrnn",
        data=data,
        data_root=args.data_root,
        z_dim=args.z_dim,
        model_options={"layers": 2} if data == "synthetic" else {},
        objective="elbo",
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        valid_bound="elbo",
        eval_bound="elbo",
        eval_particles=1,
        seed=args.seed,
        train_subset=args.train_subset,
        **extra,
    )


def _updates(args, data: str) -> int:
    n = len(load_split(data, "train", args.data_root))
    n = min(n, args.train_subset) if args.train_subset else n
    return args.epochs * math.ceil(n / args.batch_size)


def run_specs(args, data: str) -> list[tuple[str, dict]]:
    """(run name, TrainConfig overrides) for the multi-rate run and both beta-VAE families."""
    increment = 0.8 / max(1.0, args.anneal_fraction * _updates(args, data))
    specs = [("mr", {"multi_rate": True, "beta_range": [args.a, args.b]})]
    for i, beta in enumerate(log_betas(args.a, args.b, args.betas)):
        specs.append((f"beta{i:02d}", {"beta": beta}))
        specs.append((f"beta{i:02d}-anneal", {"beta": beta, "kl_anneal": True, "anneal_increment": increment}))
    return specs


def train_one(job) -> dict:
    args, data, name, extra = job
    torch.set_num_threads(1)
    config = _config(args, data, **extra)
    out = Path(args.out) / data / name
    start = time.perf_counter()
    done = (out / CHECKPOINT_FILE).is_file() and load_checkpoint(out / CHECKPOINT_FILE)["epoch"] >= config.epochs
    if not done:
        train(config, out=out, resume=(out / CHECKPOINT_FILE).is_file(), progress=False, log=lambda s: None)
    return {"data": data, "name": name, "run_dir": str(out), "train_seconds": round(time.perf_counter() - start, 1)}


def gate_overhead(args, data: str, repeats: int = 7, updates: int = 5) -> dict:
    """Parameters and wall time per update of the multi-rate VRNN against the same base VRNN."""
    torch.set_num_threads(1)
    config = _config(args, data)
    train_set = load_split(data, "train", args.data_root)
    x, lengths = next(iter(train_set.batches(args.batch_size, shuffle=False)))
    pyro.set_rng_seed(args.seed)
    base = build_model(config, train_set.x_dim)
    mr = multi_rate(build_model(config, train_set.x_dim), (args.a, args.b))
    set_beta(mr, 0.5)
    elbo = make_objective("elbo")

    def timed(model, beta) -> float:
        fn_model, fn_guide = scale_latents(model.model, beta), scale_latents(model.guide, beta)
        begin = time.process_time()  # CPU time of this process: robust to other jobs on the machine
        for _ in range(updates):
            model.zero_grad(set_to_none=True)
            elbo.loss_and_grads(fn_model, fn_guide, x, lengths)
        return (time.process_time() - begin) / updates

    timed(base, 0.5), timed(mr, 0.5)  # warm up
    base_times, mr_times = [], []
    for _ in range(repeats):  # interleaved, so load changes hit both alike
        base_times.append(timed(base, 0.5))
        mr_times.append(timed(mr, 0.5))
    base_params, mr_params = base.num_parameters(), mr.num_parameters()
    t_base, t_mr = min(base_times), min(mr_times)
    return {
        "base_parameters": base_params,
        "mr_parameters": mr_params,
        "gate_parameters": gate_parameter_count(mr),
        "parameter_overhead_percent": 100 * (mr_params - base_params) / base_params,
        "cpu_seconds_per_update_base": t_base,
        "cpu_seconds_per_update_mr": t_mr,
        "time_overhead_percent": 100 * (t_mr - t_base) / t_base,
    }


def area_between(mr_points, vae_points, a: float, b: float) -> dict:
    """Mean gap ``L_MR - L_VAE`` over log beta (trapezoid rule on the beta-VAEs' grid)."""
    mr_loss = {round(p.beta, 12): p.loss for p in mr_points}
    grid = sorted(vae_points, key=lambda p: p.beta)
    gaps = [mr_loss[round(p.beta, 12)] - p.loss for p in grid]
    logs = [math.log(p.beta) for p in grid]
    if len(grid) == 1:
        return {"mean_gap": gaps[0], "max_gap": gaps[0]}
    integral = sum((logs[i + 1] - logs[i]) * (gaps[i] + gaps[i + 1]) / 2 for i in range(len(grid) - 1))
    return {"mean_gap": integral / (math.log(b) - math.log(a)), "max_gap": max(gaps), "min_gap": min(gaps)}


def evaluate_data(args, data: str, records: list[dict]) -> dict:
    runs = {r["name"]: r for r in records if r["data"] == data}
    betas = log_betas(args.a, args.b, args.betas)
    points = []
    for name in ["mr"] + sorted(n for n in runs if n != "mr"):
        _, model, test, _ = load_run(runs[name]["run_dir"], "test")
        if args.eval_subset:
            test = test.subset(range(min(args.eval_subset, len(test))))
        pyro.set_rng_seed(args.seed)
        if name == "mr":
            label = "VRNN"
        else:
            label = "beta-VAE (KL annealing)" if name.endswith("anneal") else "beta-VAE"
        config = json.loads((Path(runs[name]["run_dir"]) / "config.json").read_text())
        points += rd_curve(model, test.x, test.lengths, betas, num_samples=args.samples, label=label, beta=config["beta"])
    folder = Path(args.out) / data
    (folder / "rd_curve.csv").write_text(to_csv(points))
    (folder / "rd_curve.md").write_text(to_markdown(points))
    (folder / "rd_curve.json").write_text(to_json(points))
    plot_rd(points, folder / "rd_curve.png", title=f"VRNN on {data} (test): MR-VAE vs beta-VAEs", group_by_label=True)
    mr_points = [p for p in points if p.kind == "multi-rate"]
    summary = {
        "data": data,
        "betas": betas,
        "area_vs_constant": area_between(mr_points, [p for p in points if p.label == "beta-VAE"], args.a, args.b),
        "area_vs_annealed": area_between(mr_points, [p for p in points if p.label.endswith("annealing)")], args.a, args.b),
        "train_seconds": {name: r["train_seconds"] for name, r in runs.items()},
        "overhead": gate_overhead(args, data),
    }
    return summary


def summary_markdown(summaries: list[dict]) -> str:
    lines = [
        "| data | mean gap vs beta-VAE (nats/step) | vs beta-VAE + KL annealing | params +% | time/update +% | MR train s | beta-VAE train s (sum) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        o = s["overhead"]
        vae_seconds = sum(v for k, v in s["train_seconds"].items() if k != "mr")
        lines.append(
            f"| {s['data']} | {s['area_vs_constant']['mean_gap']:+.4f} | {s['area_vs_annealed']['mean_gap']:+.4f} | "
            f"{o['parameter_overhead_percent']:.1f} | {o['time_overhead_percent']:.1f} | {s['train_seconds']['mr']:.0f} | {vae_seconds:.0f} |"
        )
    lines.append("")
    lines.append("Mean gap: (1 / log(b/a)) * integral of (D + beta R)_MR - (D + beta R)_beta-VAE over log beta (trapezoid "
                 "rule on the beta grid), test split, per time step; > 0 means the single multi-rate run is worse.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/multi-rate-study")
    parser.add_argument("--data", nargs="+", default=["synthetic", "jsb"], help="data sets (synthetic, jsb, nottingham, ...)")
    parser.add_argument("--data-root", default=None, help="folder of the music data (e.g. ../shared/data)")
    parser.add_argument("--a", type=float, default=0.01, help="smallest beta")
    parser.add_argument("--b", type=float, default=10.0, help="largest beta")
    parser.add_argument("--betas", type=int, default=10, help="number of log-spaced betas for the beta-VAEs")
    parser.add_argument("--z-dim", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--train-subset", type=int, default=200)
    parser.add_argument("--eval-subset", type=int, default=None)
    parser.add_argument("--anneal-fraction", type=float, default=0.5, help="share of the updates the KL annealing takes")
    parser.add_argument("--samples", type=int, default=1, help="guide draws per test sequence")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="runs trained in parallel (one thread each)")
    parser.add_argument("--tiny", action="store_true", help="synthetic only, 3 betas, 1 epoch on 16 sequences")
    args = parser.parse_args(argv)
    if args.tiny:
        args.data, args.betas, args.epochs, args.train_subset, args.eval_subset, args.z_dim = ["synthetic"], 3, 1, 16, 8, 4
    jobs = [(args, data, name, extra) for data in args.data for name, extra in run_specs(args, data)]
    start = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            records = list(pool.map(train_one, jobs))
    else:
        records = [train_one(job) for job in jobs]
    summaries = [evaluate_data(args, data, records) for data in args.data]
    out = Path(args.out)
    (out / "summary.json").write_text(json.dumps({"summaries": summaries, "wall_seconds": time.perf_counter() - start,
                                                   "arguments": {k: v for k, v in vars(args).items()}}, indent=2))
    text = summary_markdown(summaries)
    (out / "summary.md").write_text(text)
    print(text)
    for s in summaries:
        print((out / s["data"] / "rd_curve.md").read_text())
    return summaries


if __name__ == "__main__":
    main()
