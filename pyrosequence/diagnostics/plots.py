"""Plots (matplotlib, headless). Install with ``pip install "pyrosequence[plots]"``."""

from __future__ import annotations

from pyrosequence.atomic import atomic_path

from pathlib import Path
from typing import Sequence

from pyrosequence.diagnostics.dynamics import StepDynamics


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError('plotting needs matplotlib: pip install "pyrosequence[plots]"') from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, title: str = "") -> Path:
    """Give ``fig`` its title, lay it out, write it to ``path`` (PNG at 110 dpi) and close it."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    _pyplot().close(fig)
    return path


def plot_dynamics(
    curves: dict[str, StepDynamics],
    path: str | Path,
    title: str = "",
    change_points: Sequence[int] = (),
) -> Path:
    """The layout of the VHRNN paper's Figures 3-7 for one sequence and several models:
    (a) the data, (b) per-step KL between posterior and prior, (c) L2 distance of the predicted
    mean to the target, (d) predicted log-variance (mean over dimensions). Vertical red lines mark
    ``change_points`` (regime switches). Writes a PNG to ``path`` and returns it.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    first = next(iter(curves.values()))
    for d in range(first.x.shape[-1]):
        axes[0, 0].plot(first.x[:, d].numpy(), label=f"x[{d}]")
    axes[0, 0].set_title("(a) data")
    for name, c in curves.items():
        axes[0, 1].plot(c.kl.numpy(), label=name)
        axes[1, 0].plot(c.l2.numpy(), label=name)
        axes[1, 1].plot(c.log_variance.mean(-1).numpy(), label=name)
    axes[0, 1].set_title("(b) KL(q(z_t) || p(z_t)) per step")
    axes[1, 0].set_title("(c) L2 distance of predicted mean to target")
    axes[1, 1].set_title("(d) predicted log-variance")
    for ax in axes.flat:
        for t in change_points:
            ax.axvline(t, color="red", linewidth=0.8)
        ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("time step")
    return save_figure(fig, path, title)
