"""Learning-curve summary of a DMM run on JSB chorales: a Markdown table and a PNG.

    python experiments/dmm_jsb_curve.py /work/runs/dmm-jsb --md experiments/dmm_jsb_curve.md \
        --png docs/dmm-jsb-learning-curve.png

Reads the run's ``metrics.jsonl`` (one record per epoch: updates so far, the KL weight ``beta`` of
the epoch's last update, the mean training loss per step (with that epoch's KL weights), the
validation ELBO per step at beta = 1, and the epoch's seconds). The table lists every ``--every``-th
epoch, the best one and the last one, with the wall time so far.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pyrosequence.atomic import atomic_path


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def markdown(run: Path, rows: list[dict], every: int) -> str:
    key = next(k for k in rows[0] if k.startswith("valid_"))
    best = max(rows, key=lambda r: r[key])
    elapsed, total = [], 0.0
    for r in rows:
        total += r["seconds"]
        elapsed.append(total)
    keep = [i for i, r in enumerate(rows) if r["epoch"] % every == 0 or r is best or i == len(rows) - 1]
    lines = [
        f"`{run}`: {len(rows)} epochs, {rows[-1]['step']} updates, {total / 60:.0f} min of training "
        f"(validation included); best {key} {best[key]:.3f} at epoch {best['epoch']} (update {best['step']}).",
        "",
        "| epoch | updates | KL weight | train loss/step | valid ELBO/step | minutes |",
        "|---|---|---|---|---|---|",
    ]
    for i in keep:
        r = rows[i]
        mark = " (best)" if r is best else ""
        lines.append(f"| {r['epoch']}{mark} | {r['step']} | {r.get('beta', 1.0):.2f} | {r['train_loss_per_step']:.3f} | "
                     f"{r[key]:.3f} | {elapsed[i] / 60:.0f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = next(k for k in rows[0] if k.startswith("valid_"))
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r[key] for r in rows], label="validation ELBO per step (beta = 1)")
    ax.plot(steps, [-r["train_loss_per_step"] for r in rows], alpha=0.5, linestyle="--",
            label="minus training loss per step (annealed beta)")
    ax.set_xlabel("updates (batch 20)")
    ax.set_ylabel("nats per time step")
    ax.set_title(title)
    ax.set_ylim(bottom=max(ax.get_ylim()[0], -12))
    twin = ax.twinx()
    twin.plot(steps, [r.get("beta", 1.0) for r in rows], color="grey", linewidth=0.8)
    twin.set_ylabel("KL weight", color="grey")
    twin.set_ylim(0, 1.05)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--md", type=Path, help="Markdown file to write (else printed)")
    p.add_argument("--png", type=Path, help="PNG to write")
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--title", default="DMM on JSB chorales (one CPU thread)")
    args = p.parse_args(argv)
    rows = records(args.run)
    if not rows:
        raise SystemExit(f"{args.run}/metrics.jsonl has no epochs yet")
    text = markdown(args.run, rows, args.every)
    if args.md:
        with atomic_path(args.md) as tmp:
            Path(tmp).write_text(text)
    else:
        print(text)
    if args.png:
        plot(rows, args.png, args.title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
