"""Learning curves of training runs: validation bound per epoch, as a PNG and a Markdown table.

    python experiments/jsb_curves.py pretrained/vrnn-jsb-z32 pretrained/vhrnn-jsb-z14 --out docs/jsb-learning-curves.png

Reads each run's ``metrics.jsonl`` (one record per epoch); the table lists every ``--every``-th
epoch and the best one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pyrosequence.atomic import atomic_path


def curves(runs: list[Path]) -> dict[str, list[dict]]:
    return {run.name: [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line] for run in runs}


def valid_key(records: list[dict]) -> str:
    return next(k for k in records[0] if k.startswith("valid_"))


def markdown(all_curves: dict[str, list[dict]], every: int) -> str:
    lines = []
    for name, records in all_curves.items():
        key = valid_key(records)
        best = max(records, key=lambda r: r[key])
        shown = [r for r in records if r["epoch"] % every == 0 or r["epoch"] == records[-1]["epoch"]]
        lines.append(f"**{name}** ({key}; best {best[key]:.3f} at epoch {best['epoch']}, update {best['step']})\n")
        lines.append("| epoch | " + " | ".join(str(r["epoch"]) for r in shown) + " |")
        lines.append("|---|" + "---|" * len(shown))
        lines.append("| valid | " + " | ".join(f"{r[key]:.2f}" for r in shown) + " |")
        lines.append("| train loss | " + " | ".join(f"{r['train_loss_per_step']:.2f}" for r in shown) + " |\n")
    return "\n".join(lines)


def plot(all_curves: dict[str, list[dict]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    top = -float("inf")
    for name, records in all_curves.items():
        key = valid_key(records)
        line, = ax.plot([r["step"] for r in records], [r[key] for r in records], label=f"{name} (validation)")
        ax.plot([r["step"] for r in records], [-r["train_loss_per_step"] for r in records], color=line.get_color(),
                alpha=0.4, linestyle="--")
        top = max(top, *(r[key] for r in records), *(-r["train_loss_per_step"] for r in records))
    ax.set_xlabel("updates")
    keys = sorted({valid_key(records).removeprefix("valid_").removesuffix("_per_step") for records in all_curves.values()})
    ax.set_ylabel(f"validation {' / '.join(keys)} per time step (dashed: minus the training loss)", fontsize=8)
    ax.set_title(title)
    # the view ends 10 below its highest point: a diverged curve (bounds of -1e6) runs off the bottom
    ax.set_ylim(max(ax.get_ylim()[0], -10, top - 10), top + 0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--every", type=int, default=25)
    p.add_argument("--title", default="JSB chorales")
    args = p.parse_args(argv)
    data = curves(args.runs)
    plot(data, args.out, args.title)
    print(markdown(data, args.every))
    return 0


if __name__ == "__main__":
    sys.exit(main())
