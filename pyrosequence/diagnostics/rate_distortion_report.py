"""Tables and plots of rate-distortion points: CSV, Markdown and JSON tables, and the two-panel
figure (distortion against rate; ``D + beta R`` against beta).

The points themselves (:class:`~pyrosequence.inference.rate_distortion.RDPoint`) are measured by
:func:`~pyrosequence.inference.rate_distortion.rd_curve`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

from pyrosequence.atomic import atomic_path
from pyrosequence.inference.rate_distortion import RDPoint

COLUMNS = ("label", "kind", "beta", "rate", "distortion", "loss", "neg_elbo", "num_steps", "num_samples", "analytic_kl")


def _rows(points: list[RDPoint]) -> list[dict]:
    return [{**asdict(p), "loss": p.loss, "neg_elbo": p.neg_elbo} for p in points]


def to_csv(points: list[RDPoint]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in _rows(points):
        writer.writerow({k: row[k] for k in COLUMNS})
    return buffer.getvalue()


def to_markdown(points: list[RDPoint]) -> str:
    lines = [
        "| run | kind | beta | rate R (nats/step) | distortion D (nats/step) | D + beta R | D + R (-ELBO) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        lines.append(
            f"| {p.label} | {p.kind} | {p.beta:.4g} | {p.rate:.4f} | {p.distortion:.4f} | {p.loss:.4f} | {p.neg_elbo:.4f} |"
        )
    return "\n".join(lines) + "\n"


def to_json(points: list[RDPoint]) -> str:
    return json.dumps(_rows(points), indent=2)


def plot_rd(points: list[RDPoint], path: str | Path, title: str = "", group_by_label: bool = False) -> None:
    """Two panels: distortion against rate, and ``D + beta R`` against beta (log scale).

    Each multi-rate model is one curve; beta-VAE points form one curve ("beta-VAEs"), or one per
    label with ``group_by_label`` (e.g. with and without KL annealing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rd, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    groups: dict[tuple[str, str], list[RDPoint]] = {}
    for p in points:
        key = (p.label, p.kind) if p.kind == "multi-rate" or group_by_label else ("beta-VAEs", p.kind)
        groups.setdefault(key, []).append(p)
    for (label, kind), group in groups.items():
        group = sorted(group, key=lambda p: p.beta)
        style = dict(marker="o", linestyle="-") if kind == "multi-rate" else dict(marker="s", linestyle="--")
        name = f"MR-VAE {label}" if kind == "multi-rate" else label
        ax_rd.plot([p.rate for p in group], [p.distortion for p in group], label=name, **style)
        ax_loss.plot([p.beta for p in group], [p.loss for p in group], label=name, **style)
    ax_rd.set_xlabel("rate R (nats / step)")
    ax_rd.set_ylabel("distortion D (nats / step)")
    ax_loss.set_xscale("log")
    ax_loss.set_xlabel("beta")
    ax_loss.set_ylabel("D + beta R (nats / step)")
    ax_rd.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
