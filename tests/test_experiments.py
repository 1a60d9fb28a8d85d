"""Every experiment entry point runs end to end with tiny sizes."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import synthetic_study  # noqa: E402


def test_synthetic_study_tiny(tmp_path):
    records = synthetic_study.main(["--tiny", "--out", str(tmp_path)])
    assert [r["name"] for r in records] == ["VRNN z=4", "VHRNN z=4"]
    for r in records:
        assert set(r["fivo"]) == set(synthetic_study.COLUMNS)
        assert all(isinstance(v, float) for v in r["fivo"].values())
    table = (tmp_path / "table.md").read_text()
    assert "| VHRNN z=4 | 1292 (1568) |" in table
    assert json.loads((tmp_path / "results.json").read_text())[0]["parameters"] == records[0]["parameters"]
    # a second call reuses the finished runs
    again = synthetic_study.main(["--tiny", "--out", str(tmp_path), "--only", "VRNN z=4"])
    assert again[0]["train_seconds"] < records[0]["train_seconds"] + 1


def test_synthetic_study_paper_law_with_the_paper_architecture(tmp_path):
    """--data synthetic-paper --architecture fivo: the paper's parameter counts, scored on the
    paper-like law's own settings (switch is three full sequences)."""
    records = synthetic_study.main(
        ["--tiny", "--out", str(tmp_path), "--data", "synthetic-paper", "--architecture", "fivo", "--only", "VHRNN z=4"]
    )
    assert records[0]["parameters"] == 1572  # Table 1: 1568, plus the static output bias kept on purpose
    config = json.loads((tmp_path / "vhrnn-z-4" / "config.json").read_text())
    assert config["data"] == "synthetic-paper" and config["model_options"]["architecture"] == "fivo"
    assert all(isinstance(v, float) for v in records[0]["fivo"].values())


def test_dai_table4_plan_matches_parameter_budgets():
    """Dai et al. Table 8's rule: every RNN row has at most its SRNN counterpart's parameters,
    and the largest width that fits (no training: only the plan and the table are built)."""
    import argparse

    import dai_table4

    args = argparse.Namespace(
        datasets=["jsb"], rows=None, data_root=None, epochs=1, train_subset=2, lr=1e-3, seed=0, z_dim=4,
        srnn_hidden=8, low_hidden=4, flat_group=8, leak_fraction=0.375, param_budget=5000, srnn_particles=1,
        no_kl_anneal=False, tbptt=None, anneal_increment=5e-5,
    )
    jobs = dai_table4.plan(args)
    rows = {job["row"]: job for job in jobs}
    assert [job["row"] for job in jobs] == [row.name for row in dai_table4.ROWS if row.model in dai_table4.MODELS]
    for row in dai_table4.ROWS:
        if row.name in rows and not row.stochastic:
            budget = rows[row.budget_from]["params"] if row.budget_from in rows else args.param_budget
            assert rows[row.name]["params"] <= budget
            wider = dai_table4.make_config(row, "jsb", args, rows[row.name]["config"].model_options["hidden_dim"] + 1)
            assert dai_table4.count_parameters(wider, 88) > budget
    assert rows["delta-RNN-random"]["config"].model_options["leak"] == 33
    record = {"row": "F-RNN", "dataset": "jsb", "params": 1234, "per_timestep": -8.5, "bound": "elbo",
              "particles": 1, "seconds": 3.0}
    assert "| F-RNN | -8.500 (elbo1; 1.2k; 3 s) | -3.4 | -6.991 |" in dai_table4.table([record], ["jsb"])


def test_dmm_jsb_curve_summarises_a_run(tmp_path):
    """The learning-curve script lists every --every-th epoch, the best and the last, with the
    running wall time, and draws the PNG."""
    import dmm_jsb_curve

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"epoch": e, "step": 12 * e, "train_loss_per_step": 9.0 - e / 10, "valid_elbo_per_step": v,
             "beta": min(1.0, 0.2 + e / 10), "seconds": 3.0} for e, v in zip(range(1, 8), [-9, -8.5, -8, -7.9, -7.7, -7.8, -7.95])]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    md, png = tmp_path / "curve.md", tmp_path / "curve.png"
    assert dmm_jsb_curve.main([str(run), "--md", str(md), "--png", str(png), "--every", "3"]) == 0
    text = md.read_text()
    assert "best valid_elbo_per_step -7.700 at epoch 5 (update 60)" in text
    table = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert table == ["3", "5 (best)", "6", "7"]  # every 3rd, the best and the last
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_statsmodels_walkthrough_exports_and_its_commands_parse(tmp_path):
    """The walk-through's CSV files (skipped without statsmodels), its twelve commands (every flag
    one the CLI knows) and the summary of backtest.json files."""
    import shlex

    import pytest

    import statsmodels_walkthrough as walk
    from pyrosequence.cli import build_parser

    lines = walk.commands(tmp_path / "data", tmp_path / "runs")
    assert len(lines) == 12 and sum(line.startswith("pyrosequence backtest") for line in lines) == 6
    parser = build_parser()
    for line in lines:
        args = parser.parse_args(shlex.split(line)[1:])
        assert args.command is not None
    run = tmp_path / "runs" / "sunspots-vrnn" / "backtest"
    run.mkdir(parents=True)
    row = {"method": "vrnn (ours)", "step": "all", "feature": "all", "crps": 1.0, "mae": 2.0, "rmse": 3.0,
           "coverage_50": 0.5, "coverage_80": 0.8, "coverage_95": 0.95, "count": 10}
    (run / "backtest.json").write_text(json.dumps({"scores_all_steps": [row, {**row, "method": "naive"}],
                                                   "methods": {"vrnn (ours)": "a run", "naive": "naive"}}))
    table = walk.summary(tmp_path / "runs")
    assert "| vrnn (ours) | 1.000 | 2.000 | 3.000 | 0.500 | 0.800 | 0.950 | a run |" in table and "macrodata" not in table
    pytest.importorskip("statsmodels", reason="statsmodels is not installed (pip install 'pyrosequence[baselines]')")
    sun, macro, co2 = walk.export(tmp_path / "data")
    assert sun.read_text().splitlines()[0] == "time,sunactivity" and len(sun.read_text().splitlines()) == 310
    assert macro.read_text().splitlines()[0] == "time,gdp_growth,inflation,unemp" and len(macro.read_text().splitlines()) == 203
    co2_lines = co2.read_text().splitlines()  # the weekly series with its 59 missing weeks, read back as gaps
    assert co2_lines[0] == "time,co2" and len(co2_lines) == 2285 and sum(line.endswith(",nan") for line in co2_lines) == 59
    from pyrosequence.data import load_data

    train = load_data(co2, split="time", holdout=52)["train"]
    assert train.has_missing and train.x.shape == (1, 2284 - 104, 1)


def test_ship_pretrained_records_standardised_data_in_the_raw_units_and_a_ci_check(tmp_path):
    """A run on standardised data ships with its figure in the data's own units (the bound plus
    -sum(log std) per step when nothing is missing), a cheaper CI check of the same weights, and
    the results table compares a ``units="data"`` preset's paper figure in those units."""
    import numpy as np

    import results_table
    import ship_pretrained
    from pyrosequence.cli import main

    rng = np.random.default_rng(0)
    data = tmp_path / "series.npz"
    np.savez(data, *[100 + 20 * rng.normal(size=(12, 2)) for _ in range(10)])
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--standardize", "--epochs", "2", "--z-dim", "2", "--hidden-dim", "4",
                 "--keep-best", "--eval-particles", "2", "--no-progress", "--out", str(run)]) == 0
    shipped = tmp_path / "pretrained"
    assert ship_pretrained.main([str(run), "demo", "--preset", "vhrnn-stock-z14", "--data-root", str(data),
                                 "--bound", "fivo", "--particles", "4", "--ci-particles", "2", "--seeds", "4",
                                 "--out", str(shipped)]) == 0
    record = json.loads((shipped / "demo" / "verification.json").read_text())
    std = json.loads((run / "config.json").read_text())["data_options"]["scaling"]["std"]
    assert record["paper_units"] == "data"
    assert abs(record["data_units_offset"] + np.log(std).sum()) < 1e-5
    assert abs(record["per_timestep_data_units"] - record["per_timestep"] - record["data_units_offset"]) < 1e-9
    check = record["ci_check"]
    assert check["particles"] == 2 and check["bound"] == "fivo" and len(check["spread_values"]) == 4
    assert check["per_timestep"] != record["per_timestep"]  # another estimate, with its own spread
    row = results_table.rows(shipped)[-1]
    gap = 9.34 - record["per_timestep_data_units"]
    assert "in the raw data's units" in row and f"| {gap:.2f} |" in row
