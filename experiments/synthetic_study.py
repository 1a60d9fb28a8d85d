"""The VHRNN paper's synthetic study: Table 1, the synthetic row of Table 3, and Table 7.

Trains each model with FIVO on a built-in synthetic training set (``--data synthetic``, the
default law, or ``synthetic-paper``, the paper-like law: see :mod:`pyrosequence.data.synthetic`)
and evaluates FIVO per time step on the test split and the six generalisation settings, then
writes a Markdown table beside the paper's numbers. ``--architecture compact`` (the default, the
study recorded first) or ``fivo`` (the paper's networks, as in the ``*-synthetic-*`` presets).

    python experiments/synthetic_study.py --out runs/synthetic-study [--epochs 60] [--jobs 2]
    python experiments/synthetic_study.py --data synthetic-paper --architecture fivo --out runs/study-paper
    python experiments/synthetic_study.py --tiny --out /tmp/study      # seconds, for the tests

Runs that already finished in ``--out`` are evaluated again without retraining.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pyrosequence.training.checkpoint import load_checkpoint
from pyrosequence.training.config import TrainConfig
from pyrosequence.data import load_split
from pyrosequence.data.synthetic import LAWS, SETTINGS
from pyrosequence.inference import evaluate, make_bound
from pyrosequence.training.rundir import CHECKPOINT_FILE, load_run
from pyrosequence.training.loop import train

COLUMNS = ("test",) + SETTINGS  # test, noiseless, switch, long, zero-shot, add, rand


@dataclass(frozen=True)
class Run:
    """One row: a model and its options (the paper's synthetic settings: 2 hidden layers per MLP,
    hidden size = latent size, decoder hyper MLPs of 8 units)."""

    name: str
    model: str
    z_dim: int
    options: dict = field(default_factory=dict)


RUNS = {
    run.name: run
    for run in (
        Run("VRNN z=8", "vrnn", 8, {"layers": 2}),
        Run("VRNN z=6", "vrnn", 6, {"layers": 2}),
        Run("VRNN z=4", "vrnn", 4, {"layers": 2}),
        Run("VHRNN z=4", "vhrnn", 4, {"layers": 2, "omega_dim": 8}),
        Run("VHRNN z=4, latent only", "vhrnn", 4, {"layers": 2, "omega_dim": 8, "hyper_input": "latent"}),
        Run("VHRNN z=4, hidden only", "vhrnn", 4, {"layers": 2, "omega_dim": 8, "hyper_input": "hidden"}),
        Run("VHRNN-MLP z=4", "vhrnn", 4, {"layers": 2, "omega_dim": 8, "hyper_net": "mlp"}),
    )
}

#: The paper's numbers: (parameters, FIVO per step for each of COLUMNS).
PAPER = {
    "VRNN z=8": (2612, (-5.43, -2.50, -334173, -1033348, -3.64, -3.57, -5.02)),
    "VRNN z=6": (1516, (-5.80, -3.66, -19735, -27200, -4.39, -5.09, -5.24)),
    "VRNN z=4": (716, (-7.88, -5.25, -7.85, -5777, -5.35, -8.67, -6.81)),
    "VHRNN z=4": (1568, (-4.68, -2.08, -4.27, -3005, -2.57, -2.62, -3.91)),
    "VHRNN z=4, latent only": (None, (-5.01,) + (None,) * 6),
    "VHRNN z=4, hidden only": (None, (-4.79,) + (None,) * 6),
    "VHRNN-MLP z=4": (1676, (-5.13, -2.73, -5.22, -604937, -2.94, -3.84, -4.12)),
}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def _config(run: Run, args) -> TrainConfig:
    options = dict(run.options)
    if args.architecture == "fivo":  # the paper's networks (the *-synthetic-* presets' options)
        options.update(architecture="fivo", likelihood="gaussian")
    return TrainConfig(
        data=args.data,
        model=run.model,
        z_dim=run.z_dim,
        model_options=options,
        objective="fivo",
        particles=4,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        valid_bound="fivo",
        valid_particles=4,
        eval_bound="fivo",
        eval_particles=args.particles,
        seed=args.seed,
        train_subset=args.train_subset,
        compile=args.compile,
        keep_best=args.keep_best,
    )


def run_one(run: Run, args) -> dict:
    """Train (unless already done) and evaluate one row; returns its record."""
    torch.set_num_threads(1)
    config = _config(run, args)
    out = Path(args.out) / _slug(run.name)
    start = time.perf_counter()
    done = (out / CHECKPOINT_FILE).is_file() and load_checkpoint(out / CHECKPOINT_FILE)["epoch"] >= config.epochs
    if not done:
        resume = (out / CHECKPOINT_FILE).is_file()
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out.parent / f"{out.name}.log", "a") as log:  # a per-row log beside the run, to follow a long study
            train(config, out=out, resume=resume, progress=False, log=lambda s: print(s, file=log, flush=True))
    train_seconds = time.perf_counter() - start
    _, model, _, _ = load_run(out, "test")
    bound = make_bound("fivo")
    scores = {}
    for split in COLUMNS:
        data = load_split(config.data, split, None)
        if args.eval_subset:
            data = data.subset(range(args.eval_subset))
        torch.manual_seed(args.seed)
        scores[split] = evaluate(model, data.x, data.lengths, bound, args.particles).per_timestep
    return {
        "name": run.name,
        "parameters": model.num_parameters(),
        "fivo": scores,
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(time.perf_counter() - start - train_seconds, 1),
        "run_dir": str(out),
    }


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"


def table(records: list[dict], particles: int) -> str:
    head = "| model | params (paper) | " + " | ".join(c.upper() if c != "test" else "Test" for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for r in records:
        paper_params, paper = PAPER[r["name"]]
        ours = " | ".join(f"**{_fmt(r['fivo'][c])}** ({_fmt(p)})" if p is not None else f"**{_fmt(r['fivo'][c])}**"
                          for c, p in zip(COLUMNS, paper))
        lines.append(f"| {r['name']} | {r['parameters']} ({paper_params or '-'}) | {ours} |")
    lines.append("")
    lines.append(f"Bold: ours, FIVO({particles}) per time step; in brackets: the paper's (Tables 1, 3, 7).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/synthetic-study")
    parser.add_argument("--data", default="synthetic", choices=[law.dataset for law in LAWS.values()],
                        help="the synthetic law: synthetic (default) or synthetic-paper (paper-like)")
    parser.add_argument("--architecture", default="compact", choices=["compact", "fivo"],
                        help="compact (the first study) or fivo (the paper's networks and parameter counts)")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--particles", type=int, default=128, help="particles for the evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="runs trained in parallel (one thread each)")
    parser.add_argument("--compile", action="store_true", help="train on the compiled engine (faster FIVO)")
    parser.add_argument("--keep-best", action="store_true",
                        help="evaluate the weights of the best validation epoch, not the last")
    parser.add_argument("--only", nargs="*", help="names of the rows to run (default: all)")
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--eval-subset", type=int, default=None)
    parser.add_argument("--tiny", action="store_true", help="one epoch on 32 sequences, 4 particles: a smoke run")
    args = parser.parse_args(argv)
    if args.tiny:
        args.epochs, args.train_subset, args.eval_subset, args.particles = 1, 32, 4, 4
        args.only = args.only or ["VRNN z=4", "VHRNN z=4"]
    names = args.only or list(RUNS)
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        parser.error(f"unknown run(s) {unknown}; choose from {list(RUNS)}")
    runs = [RUNS[n] for n in names]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            records = list(pool.map(run_one, runs, [args] * len(runs)))
    else:
        records = [run_one(run, args) for run in runs]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(records, indent=2))
    text = table(records, args.particles)
    (Path(args.out) / "table.md").write_text(text + "\n")
    print(text)
    return records


if __name__ == "__main__":
    main()
