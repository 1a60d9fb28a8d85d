"""Z-Forcing ablation (Goyal et al. 2017, Table 1 and Figure 2): with / without the auxiliary cost
x with / without KL annealing, on a binary piano-roll data set.

Each of the four configurations trains :class:`pyrosequence.models.ZForcing` with Trace_ELBO through
:func:`pyrosequence.training.loop.train`, then records the test IWAE bound per time step, the wall time,
the per-step KL curve (the mean over the test sequences of KL(q(z_t | x) || p(z_t | h_{t-1}))
against t, posterior draws averaged) and, as in Z-Forcing's Figure 2, the evolution of the KL term
during training (the validation KL per time step after every epoch; the run is trained epoch by
epoch, resuming exactly, and the final test IWAE(K) is evaluated once at the end). It writes ``ablation.md`` (a
Markdown table) and ``kl_per_step.png`` into ``--out``.

    python experiments/zforcing_ablation.py --out runs/zforcing-ablation                # ~15 min, 2 CPU cores
    python experiments/zforcing_ablation.py --out runs/zf --data nottingham --epochs 3  # longer
    python experiments/zforcing_ablation.py --tiny --out /tmp/zf                        # a smoke run

Data: JSB chorales by default (``--data-root ../shared/data``): Nottingham (the paper set of Dai et
al.'s Table 4) has 13x the training steps (176k vs 14k) and sequences of up to 1788 steps, so at
a 10-20 minute CPU budget a Nottingham run would see less than one epoch per configuration.

KL annealing: the paper raises the KL weight from 0.2 to 1 by 5e-5 per update (16,000 updates);
a short run would never leave ~0.2, so by default the increment is rescaled to reach 1 at half the
run's updates (``--anneal-increment 5e-5`` restores the paper's). Runs already finished in
``--out`` are not retrained.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch
from torch.distributions import kl_divergence

import pyro
import pyro.poutine as poutine

from pyrosequence.training.config import TrainConfig
from pyrosequence.data import load_split
from pyrosequence.inference import evaluate
from pyrosequence.training.rundir import load_run
from pyrosequence.training.loop import train

CONFIGS = {  # name -> (auxiliary cost, KL annealing)
    "plain": (False, False),
    "aux": (True, False),
    "kla": (False, True),
    "aux+kla": (True, True),
}


@torch.no_grad()
def kl_per_step(model, x: torch.Tensor, lengths: torch.Tensor, samples: int = 4, batch: int = 64):
    """``(curve, mean)``: ``curve[t]`` is the mean over the sequences still running at step t of
    KL(q(z_t) || p(z_t)), each averaged over ``samples`` posterior draws (the batched equivalent of
    ``step_dynamics``); ``mean`` is the KL per step averaged over every test step."""
    model.eval()
    steps = x.shape[1]
    total, count = torch.zeros(steps), torch.zeros(steps)
    for start in range(0, x.shape[0], batch):
        xb, lb = x[start : start + batch], lengths[start : start + batch]
        with pyro.plate("samples", samples, dim=-2):
            guide_trace = poutine.trace(model.guide).get_trace(xb, lb)
            model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(xb, lb)
        mask = (torch.arange(steps) < lb[:, None]).float()  # (b, T)
        for t, name in enumerate(model.latent_sites(int(lb.max()))):  # the batch is cut to its longest
            kl = kl_divergence(guide_trace.nodes[name]["fn"], model_trace.nodes[name]["fn"])  # (samples, b)
            total[t] += (kl.mean(0) * mask[:, t]).sum()
            count[t] += mask[:, t].sum()
    return total / count.clamp(min=1), float(total.sum() / count.sum())


def run_one(name: str, args) -> dict:
    torch.set_num_threads(1)
    aux, anneal = CONFIGS[name]
    run_dir = Path(args.out) / name
    train_len = len(load_split(args.data, "train", args.data_root))
    train_len = min(train_len, args.train_subset or train_len)
    updates = args.epochs * math.ceil(train_len / args.batch_size)
    increment = args.anneal_increment or 0.8 / max(1, updates // 2)
    config = TrainConfig(
        model="zforcing", data=args.data, data_root=args.data_root, z_dim=args.z_dim,
        model_options={"hidden_dim": args.hidden_dim, "aux_alpha": args.aux_weight if aux else 0.0,
                       "aux_beta": args.aux_weight if aux else 0.0},
        objective="elbo", epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, kl_anneal=anneal,
        anneal_increment=increment, eval_bound="elbo", eval_particles=1,  # IWAE(K) once, at the end
        train_subset=args.train_subset, seed=args.seed,
    )
    seconds, history_file = None, run_dir / "kl_history.json"
    if not (run_dir / "results.json").exists() or not history_file.exists():
        # epoch by epoch (resuming is exact), measuring the validation KL after each one: the
        # evolution of the KL term during training of Z-Forcing's Figure 2
        history, spent = [], 0.0
        for epoch in range(1, args.epochs + 1):
            start = time.perf_counter()
            train(replace(config, epochs=epoch), out=run_dir, resume=epoch > 1, force=epoch == 1,
                  progress=False, log=lambda line: None)
            spent += time.perf_counter() - start
            _, model, valid, checkpoint = load_run(run_dir, "valid")
            pyro.set_rng_seed(args.seed)
            history.append({"update": int(checkpoint["step"]), "kl_per_step": kl_per_step(model, valid.x, valid.lengths, samples=1)[1]})
        seconds = spent
        (run_dir / "wall_seconds.txt").write_text(f"{seconds:.1f}\n")
        history_file.write_text(json.dumps(history))
    elif (run_dir / "wall_seconds.txt").exists():
        seconds = float((run_dir / "wall_seconds.txt").read_text())
    history = json.loads(history_file.read_text())
    _, model, test, _ = load_run(run_dir, "test")
    pyro.set_rng_seed(args.seed)
    iwae = evaluate(model, test.x, test.lengths, bound="iwae", num_particles=args.eval_particles).per_timestep
    pyro.set_rng_seed(args.seed)
    kl, kl_mean = kl_per_step(model, test.x, test.lengths, samples=args.kl_samples)
    return {
        "name": name, "aux": aux, "kla": anneal, "iwae": iwae, "particles": args.eval_particles,
        "seconds": seconds, "kl": kl.tolist(), "kl_per_step": kl_mean, "kl_history": history,
        "anneal_increment": increment if anneal else None, "updates": updates,
    }


def table(records: list[dict], args) -> str:
    lines = [
        (
            f"Z-Forcing ablation on {args.data}: z={args.z_dim}, hidden={args.hidden_dim}, {args.epochs} epochs, "
            f"batch {args.batch_size}, aux alpha = beta = {args.aux_weight} when on; test IWAE(K) per time step "
            "(higher is better); mean KL(q||p) per step over the test set."
        ),
        "",
        "| config | aux | KL anneal | test IWAE/step | K | mean KL/step | updates | wall time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        wall = "-" if r["seconds"] is None else f"{r['seconds']:.0f}"
        lines.append(
            f"| {r['name']} | {'yes' if r['aux'] else 'no'} | {'yes' if r['kla'] else 'no'} | {r['iwae']:.4f} | "
            f"{r['particles']} | {r['kl_per_step']:.4f} | {r['updates']} | {wall} |"
        )
    return "\n".join(lines) + "\n"


def plot(records: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_train) = plt.subplots(1, 2, figsize=(12, 4))
    for r in records:
        ax.plot(range(len(r["kl"])), r["kl"], label=r["name"])
        history = r.get("kl_history") or []
        ax_train.plot([h["update"] for h in history], [h["kl_per_step"] for h in history], marker=".", label=r["name"])
    ax.set_xlabel("time step t")
    ax.set_ylabel("mean KL(q(z_t) || p(z_t)) [nats]")
    ax.set_title(f"{title}: per time step (test)")
    ax.legend()
    ax_train.set_xlabel("update")
    ax_train.set_ylabel("KL per time step [nats]")
    ax_train.set_title("during training (validation), as Z-Forcing Fig. 2")
    ax_train.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the runs, ablation.md and kl_per_step.png")
    parser.add_argument("--data", default="jsb", help="a binary piano-roll set: jsb (default), nottingham, muse, piano, bach")
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train-subset", type=int, default=None, help="train on the first N sequences")
    parser.add_argument("--batch-size", type=int, default=16, help="Dai et al. use 16 for the music sets")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--z-dim", type=int, default=16)
    parser.add_argument("--hidden-dim", type=int, default=64)
    parser.add_argument("--aux-weight", type=float, default=0.005, help="alpha = beta when the auxiliary cost is on")
    parser.add_argument("--anneal-increment", type=float, default=None, help="KL weight increment per update (default: reach 1 at half the run)")
    parser.add_argument("--eval-particles", type=int, default=100)
    parser.add_argument("--kl-samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="configurations trained at once (one CPU thread each)")
    parser.add_argument("--tiny", action="store_true", help="1 epoch, 8 sequences, small model: a smoke run")
    args = parser.parse_args(argv)
    if args.tiny:
        args.epochs, args.train_subset, args.z_dim, args.hidden_dim, args.eval_particles = 1, 8, 2, 8, 2
        args.kl_samples, args.batch_size = 1, 4
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(CONFIGS)
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            records = list(pool.map(run_one, names, [args] * len(names)))
    else:
        records = [run_one(name, args) for name in names]
    (out / "ablation.md").write_text(table(records, args))
    (out / "records.json").write_text(json.dumps(records, indent=1))
    plot(records, out / "kl_per_step.png", f"Z-Forcing on {args.data}")
    print(table(records, args))
    return records


if __name__ == "__main__":
    main()
