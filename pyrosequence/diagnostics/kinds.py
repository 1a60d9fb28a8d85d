"""The diagnostics of one run directory, computed once and shared by the plot kinds.

:data:`PLOT_KINDS` maps a kind name to a function ``(RunDiagnostics, path) -> path``; the
``pyrosequence plot --kind`` and ``pyrosequence report`` commands dispatch through it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import pyro

from pyrosequence.diagnostics import run_plots
from pyrosequence.diagnostics.binary import binary_emission
from pyrosequence.diagnostics.filter_health import filter_health
from pyrosequence.diagnostics.inference_data import to_inference_data
from pyrosequence.diagnostics.step_kl import step_curves


@dataclass
class RunDiagnostics:
    """Lazily computed diagnostics of the run in ``run_dir`` on the first ``sequences`` sequences
    of ``split``: an InferenceData with ``draws`` predictive draws from a ``particles``-particle
    filter (bound ``"fivo"``), and per-step KL curves averaged over ``samples`` posterior draws.
    Draws are seeded by ``seed`` before each computation."""

    run_dir: Path
    split: str = "test"
    draws: int = 100
    particles: int = 100
    sequences: int = 16
    samples: int = 16
    index: int = 0
    seed: int = 0
    #: read the data from here instead of the folder the run recorded
    data_root: str | None = None
    #: use data whose fingerprint differs from the run's (pyrosequence.training.rundir.check_data)
    accept_data_change: bool = False

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        if not self.run_dir.is_dir():
            raise FileNotFoundError(f"no run directory at {self.run_dir}")
        for name in ("draws", "particles", "sequences", "samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @cached_property
    def loaded(self):
        from pyrosequence.training.rundir import load_run

        config, model, data, checkpoint = load_run(self.run_dir, self.split, data_root=self.data_root,
                                                   accept_data_change=self.accept_data_change)
        if not 0 <= self.index < min(len(data), self.sequences):
            raise ValueError(f"--index {self.index} is out of range: {min(len(data), self.sequences)} sequences are used")
        return config, model, data, checkpoint

    @property
    def config(self):
        return self.loaded[0]

    @property
    def model(self):
        return self.loaded[1]

    @property
    def batch(self):
        data = self.loaded[2]
        n = min(len(data), self.sequences)
        lengths = data.lengths[:n]
        return data.x[:n, : int(lengths.max())], lengths

    @cached_property
    def idata(self):
        config, model = self.config, self.model  # load first: building the model draws random numbers
        pyro.set_rng_seed(self.seed)
        return to_inference_data(
            model, *self.batch, num_samples=self.draws, num_particles=self.particles, bound="fivo",
            resampler=config.resampler, ess_threshold=config.ess_threshold,
        )

    @cached_property
    def curves(self):
        model, batch = self.model, self.batch
        pyro.set_rng_seed(self.seed)
        return step_curves(model, *batch, num_samples=self.samples)

    @cached_property
    def history(self) -> list[dict]:
        path = self.run_dir / "metrics.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"no metrics.jsonl in {self.run_dir}")
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    @cached_property
    def results(self) -> dict | None:
        path = self.run_dir / "results.json"
        return json.loads(path.read_text()) if path.is_file() else None

    @cached_property
    def title(self) -> str:
        config = json.loads((self.run_dir / "config.json").read_text()) if (self.run_dir / "config.json").is_file() else {}
        return f"{config.get('model', '?')} on {config.get('data', '?')} ({self.run_dir.name})"

    @property
    def binary(self) -> bool:
        """Whether the model's emission is binary (Bernoulli rolls): the checks of predicted
        probabilities (Brier score, reliability diagram) then replace those of intervals."""
        return binary_emission(self.model)

    def evaluation(self, which: str = "filter") -> str:
        """Which evaluation a figure comes from: the data it read, and ``"filter"``: the one
        particle-filter pass behind the InferenceData; ``"posterior"``: the posterior draws of the
        per-step curves; ``"both"``."""
        data = f"{self.split} split, first {min(self.sequences, len(self.loaded[2]))} sequences"
        filtered = f"one FIVO particle-filter pass, K = {self.particles}, {self.draws} predictive draws"
        posterior = f"{self.samples} posterior draws per sequence"
        parts = {"filter": [filtered], "posterior": [posterior], "both": [filtered, posterior]}[which]
        return f"{data}; {'; '.join(parts)}; seed {self.seed}"

    def subtitle(self, which: str = "filter") -> str:
        return f"{self.title}\n{self.evaluation(which)}"


PLOT_KINDS: dict[str, Callable[[RunDiagnostics, Path], Path]] = {
    "kl": lambda d, out: run_plots.plot_kl(d.curves, out, d.subtitle("posterior")),
    "variance": lambda d, out: run_plots.plot_variance(d.idata, d.curves if d.model.z_dim else None, out,
                                                       d.subtitle("both" if d.model.z_dim else "filter")),
    "ppc": lambda d, out: run_plots.plot_ppc(d.idata, out, index=d.index, title=d.subtitle(), seed=d.seed),
    "ess": lambda d, out: run_plots.plot_ess(filter_health(d.idata), out, d.config.ess_threshold, d.subtitle()),
    # binary data: the predicted probabilities (Brier score, reliability diagram), not intervals
    "calibration": lambda d, out: (run_plots.plot_reliability if d.binary else run_plots.plot_calibration)(
        d.idata, out, title=d.subtitle()),
    "training": lambda d, out: run_plots.plot_training(d.history, out, d.results, d.title),
}


def plot_kind(kind: str, diagnostics: RunDiagnostics, out: str | Path, force: bool = False) -> Path:
    """Write the plot ``kind`` of a run to ``out`` (a PNG; never over an existing file without ``force``)."""
    if kind not in PLOT_KINDS:
        raise ValueError(f"unknown plot kind {kind!r}; choose one of: {', '.join(['dynamics', *PLOT_KINDS])}")
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to overwrite it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"no directory {out.parent} to write {out.name} into")
    return PLOT_KINDS[kind](diagnostics, out)


def plot_run(kind: str, runs: list, out: str | Path, force: bool = False, **options) -> Path:
    """``pyrosequence plot RUN_DIR --kind KIND``: check the arguments, then :func:`plot_kind`.
    ``options`` are :class:`RunDiagnostics` fields (split, draws, particles, sequences, samples, index, seed)."""
    if kind not in PLOT_KINDS:
        raise ValueError(f"unknown plot kind {kind!r}; choose one of: {', '.join(['dynamics', *PLOT_KINDS])}")
    if len(runs) != 1:
        raise ValueError(f"--kind {kind} plots one run; got {len(runs)} run directories (only --kind dynamics compares runs)")
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to overwrite it")
    return plot_kind(kind, RunDiagnostics(runs[0], **options), out, force=force)
