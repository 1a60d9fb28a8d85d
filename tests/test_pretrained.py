"""The shipped models (pretrained/): each reproduces its recorded test bound through the CLI.

A checkpoint evaluated with the same seed on the same torch build gives the recorded number
exactly; on another CPU, rounding can change a resampling decision and with it the draw, so the
tolerance is 4 standard deviations of the estimate's spread over evaluation seeds, measured when
the model was shipped (``verification.json``; experiments/ship_pretrained.py). Each run is scored
with the bound, particles and weights its paper's figure was measured with (FIVO(128) with the
best validation epoch's weights for the VHRNN paper's rows, ELBO(1) with the last epoch's for Pyro's
DMM).
"""

import json
import re
import shutil
from pathlib import Path

import pytest

from pyrosequence.cli import main
from pyrosequence.data import load_split
from pyrosequence.training.presets import PRESETS
from pyrosequence.training.rundir import build_model

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"
RUNS = sorted(p for p in PRETRAINED.iterdir() if (p / "verification.json").is_file()) if PRETRAINED.is_dir() else []


def test_the_repository_ships_pretrained_models():
    assert RUNS, f"no shipped run directories with verification.json under {PRETRAINED}"
    table = (PRETRAINED / "README.md").read_text()
    for run in RUNS:
        assert f"`{run.name}`" in table, f"{run.name} is missing from pretrained/README.md"


@pytest.mark.parametrize("run", RUNS, ids=lambda p: p.name)
def test_shipped_checkpoint_reproduces_its_recorded_bound(run, shared_data, tmp_path, capsys):
    shipped = json.loads((run / "verification.json").read_text())
    # a headline bound too slow for CI (FIVO(1024) on stock) comes with a cheaper check of the same weights
    record = {**shipped, **shipped.get("ci_check", {})}
    sd = record["spread_sd"]
    assert sd is not None and len(record["spread_values"]) >= 4
    config = json.loads((run / "config.json").read_text())
    if config["z_dim"] is None:  # no latents (HyperLSTM): the bound is the exact likelihood, the same for every seed
        assert sd == 0 and set(record["spread_values"]) == {record["per_timestep"]}
        tolerance = 1e-3  # float rounding on another CPU
    else:
        assert sd > 0
        tolerance = 4 * sd
    # the recorded seed-0 figure is itself a draw from the measured spread
    assert abs(record["per_timestep"] - record["spread_mean"]) <= tolerance
    copy = tmp_path / run.name  # evaluate appends to the run's evaluations.jsonl: never touch the shipped files
    shutil.copytree(run, copy)
    bound, weights = record["bound"], record["weights"]
    argv = ["evaluate", str(copy), "--bound", bound, "--particles", str(record["particles"]), "--weights", weights,
            "--split", "test", "--data-root", str(shared_data)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    value = float(re.search(rf"test {bound}\(\d+\) per time step: (\S+)", printed).group(1))
    assert abs(value - record["per_timestep"]) <= tolerance, (value, record["per_timestep"], tolerance)
    if "data_units_offset" in shipped:  # standardised data: the same figure in the raw data's units
        raw = float(re.search(r"per time step in the data's units \(standardisation undone\): (\S+)", printed).group(1))
        assert raw == pytest.approx(value + shipped["data_units_offset"], rel=1e-6, abs=1e-3)  # float32 figures
        assert shipped["per_timestep_data_units"] == pytest.approx(shipped["per_timestep"] + shipped["data_units_offset"])
    if weights == "best":  # scored with the best validation epoch's weights, as trained
        assert config["keep_best"] and record["scored_epoch"] == record["selected_epoch"]
    else:  # the last epoch's, as a paper without model selection reports
        assert record["scored_epoch"] == record["epochs"]
    # the shipped model is its preset's model: the same size, beside the same paper figure (how that size compares
    # with the paper's count is tests/training/test_presets.py's business)
    preset = PRESETS[shipped["preset"]]
    x_dim = load_split(config["data"], "test", str(shared_data)).x.shape[-1]
    assert record["parameters"] == build_model(preset.config(), x_dim).num_parameters()
    assert record["paper_parameters"] == preset.reported.get("parameters")
