"""Piano-roll pictures (matplotlib, headless): sampled or forecast music next to its prefix."""

from __future__ import annotations

from pyrosequence.atomic import atomic_path

from pathlib import Path

import numpy as np

from pyrosequence.data.music import MIDI_LOW, NUM_KEYS
from pyrosequence.diagnostics.plots import _pyplot


def plot_pianorolls(
    rolls: dict[str, object],
    path: str | Path,
    prefix_len: int = 0,
    title: str = "",
) -> Path:
    """One panel per ``(T, 88)`` roll (time across, MIDI pitch up), written as a PNG to ``path``.

    Values are drawn in grey levels on [0, 1], so 0/1 rolls and note probabilities both show.
    ``prefix_len > 0`` draws a red line where a forecast starts (after the conditioning prefix).
    Returns the path.
    """
    if not rolls:
        raise ValueError("plot_pianorolls needs at least one piano roll")
    arrays = {}
    for name, roll in rolls.items():
        roll = np.asarray(roll.detach().cpu() if hasattr(roll, "detach") else roll, dtype=float)
        if roll.ndim != 2 or roll.shape[1] != NUM_KEYS or roll.shape[0] == 0:
            raise ValueError(f"piano roll {name!r} must have shape (time, {NUM_KEYS}), got {roll.shape}")
        arrays[name] = roll
    plt = _pyplot()
    longest = max(r.shape[0] for r in arrays.values())
    fig, axes = plt.subplots(len(arrays), 1, figsize=(min(4 + longest / 8, 24), 2.4 * len(arrays)), squeeze=False)
    for ax, (name, roll) in zip(axes[:, 0], arrays.items()):
        ax.imshow(
            roll.T, origin="lower", aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest",
            extent=(-0.5, roll.shape[0] - 0.5, MIDI_LOW - 0.5, MIDI_LOW + NUM_KEYS - 0.5),
        )
        active = np.flatnonzero(roll.max(0) > 0)
        if len(active):  # zoom on the sounding range, with a margin
            ax.set_ylim(MIDI_LOW + max(active[0] - 3, 0) - 0.5, MIDI_LOW + min(active[-1] + 3, NUM_KEYS - 1) + 0.5)
        if prefix_len > 0:
            ax.axvline(prefix_len - 0.5, color="red", linewidth=1)
        ax.set_xlim(-0.5, longest - 0.5)
        ax.set_ylabel("MIDI pitch")
        ax.set_title(name, fontsize=9)
    axes[-1, 0].set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
