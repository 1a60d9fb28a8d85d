"""Data by path through runs and the CLI: the split and scaling recorded in config.json are what
evaluate, sample and --resume reopen; bad files are one line and a non-zero exit; user files are
never written. And register_dataset / the pyrosequence.datasets entry points."""

import csv
import hashlib
import json

import numpy as np
import pytest
import torch

from pyrosequence.cli import main
from pyrosequence.training.config import TrainConfig
from pyrosequence.data import registry as registry_module
from pyrosequence.data.dataset import SequenceDataset
from pyrosequence.data.registry import data_source, load_split, register_dataset, unregister_dataset

FAST = ["--epochs", "1", "--z-dim", "2", "--hidden-dim", "4", "--batch-size", "64", "--eval-particles", "2", "--no-progress"]


def write_sales(path, n=8, steps=12, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["store", "week", "units", "price"])
        for store in range(n):
            for week in range(steps - store % 3):
                writer.writerow([f"s{store}", week, round(100 + 10 * rng.normal(), 3), round(5 + rng.normal(), 3)])


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_csv_run_records_its_split_and_reopens_it(tmp_path, capsys, monkeypatch):
    data = tmp_path / "sales.csv"
    write_sales(data)
    before = digest(data)
    out = tmp_path / "run"
    argv = ["train", *FAST, "--data", str(data), "--data-option", "id_column=store", "--data-option", "time_column=week",
            "--data-option", "split=time", "--data-option", "holdout=2", "--standardize", "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["data"] == str(data.resolve())
    options = config["data_options"]
    assert options["split"] == "time" and options["holdout"] == 2 and options["value_columns"] == ["units", "price"]
    assert options["likelihood"] == "gaussian" and config["model_options"]["likelihood"] == "gaussian"
    assert len(options["scaling"]["mean"]) == 2 and options["scaling"]["mean"][0] > 50  # the training statistics
    recorded = json.loads((out / "data.json").read_text())["splits"]
    assert recorded["train"]["shape"] == [8, 8, 2] and recorded["test"]["shape"] == [8, 2, 2]
    # evaluate and sample from another folder reopen the same split (the fingerprints agree)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--particles", "2", "--split", "valid"]) == 0
    printed = capsys.readouterr().out
    assert "valid elbo(2) per time step" in printed and "in the data's units (standardisation undone)" in printed
    # nothing is missing, so every step moves by -sum(log std) in the data's units
    evaluation = json.loads((out / "evaluations.jsonl").read_text().splitlines()[-1])
    jacobian = -np.log(options["scaling"]["std"]).sum()
    assert evaluation["per_timestep_data_units"] == pytest.approx(evaluation["per_timestep"] + jacobian, abs=1e-4)
    results = json.loads((out / "results.json").read_text())
    assert results["per_timestep_data_units"] == pytest.approx(results["per_timestep"] + jacobian, abs=1e-4)
    assert main(["sample", str(out), "--num", "2", "--prefix-len", "1", "--index", "0", "--split", "valid", "--out", str(tmp_path / "s")]) == 0
    samples = np.load(tmp_path / "s" / "samples.npz")
    raw = TrainConfig(data=str(data), data_options={k: v for k, v in options.items() if k not in ("standardize", "scaling")})
    valid_raw = load_split(raw.data, "valid", None, raw.data_options)
    assert np.allclose(samples["prefix"][0], valid_raw.x[0, :1].numpy(), atol=1e-3)  # in the data's units again
    assert np.allclose(samples["truth"][0], valid_raw.x[0, 1:2].numpy(), atol=1e-3)
    # resume keeps the data: the same options again are fine, other ones are refused
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert main(["train", "--out", str(out), "--resume", "--epochs", "3", "--data-option", "holdout=3"]) == 1
    assert "keeps how its data is read and split" in capsys.readouterr().err
    assert digest(data) == before  # the user's file is never written


def test_a_changed_file_is_refused_on_reopening(tmp_path, capsys):
    data = tmp_path / "list.npz"
    sequences = [np.random.default_rng(i).normal(size=(6 + i, 2)) for i in range(6)]
    np.savez(data, *sequences)
    out = tmp_path / "run"
    assert main(["train", *FAST, "--data", str(data), "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["data_options"]["split"] == "sequence"
    np.savez(data, *[s + 1 for s in sequences])
    capsys.readouterr()
    assert main(["evaluate", str(out), "--particles", "2"]) == 1
    err = capsys.readouterr().err
    assert "is not what the run used" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "content,message",
    [
        ("sequence,time,a\n0,0,1\n0,1,2,3\n", "line 3: 4 fields, but the header has 3 columns"),
        ("sequence,time,a\n0,0,1\n0,1,x\n", "line 3, column 'a': 'x' is not a number"),
        ("sequence,time,a\n0,0,1\n0,1,inf\n", "line 3, column 'a': infinite value"),
        ("sequence,time,a\n0,0,1\n1,0,NaN\n", "sequence '1' has no observed value"),
        ("", "bad.csv is empty"),
    ],
)
def test_the_cli_refuses_a_bad_file_in_one_line_and_writes_nothing(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    out = tmp_path / "run"
    assert main(["train", *FAST, "--data", str(bad), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert message in err and str(bad) in err and err.count("\n") == 1
    assert not out.exists() and bad.read_text() == content


def test_the_cli_names_a_missing_file_and_an_unknown_column(tmp_path, capsys):
    assert main(["train", *FAST, "--data", str(tmp_path / "nope.csv")]) == 1
    assert f"no data file or folder at {tmp_path / 'nope.csv'}" in capsys.readouterr().err
    (tmp_path / "d.csv").write_text("sequence,time,a\n0,0,1\n0,1,2\n")
    assert main(["train", *FAST, "--data", str(tmp_path / "d.csv"), "--data-option", "value_columns=[\"b\"]"]) == 1
    assert "no column 'b' (value_columns)" in capsys.readouterr().err
    assert main(["data", "describe", str(tmp_path / "d.csv"), "--data-option", "split=time", "--data-option", "holdout=1"]) == 1
    assert "too short to hold out" in capsys.readouterr().err


# ------------------------------------------------------------------------------ register_dataset


def load_walks(split: str, root=None) -> SequenceDataset:
    """A module-level loader (importable, so a run can record it)."""
    generator = torch.Generator().manual_seed({"train": 0, "valid": 1, "test": 2}[split])
    return SequenceDataset(torch.randn(5, 7, 2, generator=generator).cumsum(1), torch.full((5,), 7), f"walks/{split}")


def load_coins(split: str, root=None) -> SequenceDataset:
    generator = torch.Generator().manual_seed(3)
    return SequenceDataset(torch.randint(0, 2, (4, 6, 3), generator=generator).float(), torch.full((4,), 6), "coins")


@pytest.fixture
def registered():
    register_dataset("walks", load_walks, description="random walks")
    yield
    unregister_dataset("walks")


def test_a_registered_data_set_trains_and_records_its_loader(registered, tmp_path):
    config = TrainConfig(data="walks", epochs=1)
    assert config.data == f"{__name__}:load_walks"  # a new process finds it by import path
    assert config.model_options["likelihood"] == "gaussian"  # inferred from the training split
    assert torch.equal(load_split(config.data, "valid").x, load_walks("valid").x)
    assert main(["train", *FAST, "--data", "walks", "--out", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"] == f"{__name__}:load_walks"
    assert main(["evaluate", str(tmp_path / "run"), "--particles", "2"]) == 0


def test_registration_refusals(registered):
    with pytest.raises(ValueError, match="'synthetic' is a built-in data set"):
        register_dataset("synthetic", load_walks)
    with pytest.raises(ValueError, match="already registered; pass replace=True"):
        register_dataset("walks", load_coins)
    register_dataset("walks", load_coins, replace=True)
    assert data_source("walks").natural_likelihood() == "bernoulli"
    with pytest.raises(TypeError, match="needs a loader"):
        register_dataset("other", 42)
    with pytest.raises(ValueError, match="not importable"):
        register_dataset("lambda", lambda split, root: load_walks(split))
        try:
            TrainConfig(data="lambda")
        finally:
            unregister_dataset("lambda")
    with pytest.raises(ValueError, match="data_options are for data read from a path"):
        TrainConfig(data="synthetic", data_options={"split": "time"})
    with pytest.raises(ValueError, match=r"unknown dataset 'nothing'; choose one of: synthetic.*or give a path"):
        TrainConfig(data="nothing")


def test_an_entry_point_is_found_by_name(monkeypatch):
    from importlib.metadata import EntryPoint

    entry = EntryPoint(name="coins", value=f"{__name__}:load_coins", group="pyrosequence.datasets")
    monkeypatch.setattr(registry_module, "_entry_points", lambda: [entry])
    config = TrainConfig(data="coins")
    assert config.data == "coins" and config.model_options["likelihood"] == "bernoulli"
    assert "coins" in registry_module.REGISTRY.names()
    assert load_split("coins", "test").x.shape == (4, 6, 3)


def test_the_sweep_command_line_of_a_path_run_reads_back_to_its_config(tmp_path):
    import shlex

    from pyrosequence.cli import build_parser
    from pyrosequence.cli.train import config_from_args
    from pyrosequence.sweep.report import train_command

    (tmp_path / "d.csv").write_text("7,time,a\n" + "".join(f"{i % 4},{i // 4},{i * 0.5}\n" for i in range(40)))
    config = TrainConfig(data=str(tmp_path / "d.csv"), data_options={"id_column": 7, "standardize": True}, epochs=1)
    assert config.data_options["id_column"] == "7"
    argv = shlex.split(train_command(config))[1:]
    assert config_from_args(build_parser().parse_args(argv)) == config


def test_evaluate_reads_a_moved_file_through_data_root(tmp_path, capsys):
    data = tmp_path / "walks.npz"
    np.savez(data, *[np.random.default_rng(i).normal(size=(5 + i, 2)) for i in range(5)])
    out = tmp_path / "run"
    assert main(["train", *FAST, "--data", str(data), "--out", str(out)]) == 0
    moved = tmp_path / "moved.npz"
    data.rename(moved)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--particles", "2"]) == 1
    assert f"no data file or folder at {data}" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--particles", "2", "--data-root", str(moved)]) == 0


def test_a_run_with_covariates_reopens_them_and_forecasts_with_the_data_s_future_values(tmp_path, capsys):
    from pyrosequence.diagnostics.backtest import backtest

    data = tmp_path / "sales.csv"
    write_sales(data)
    out = tmp_path / "run"
    argv = ["train", *FAST, "--data", str(data), "--data-option", "id_column=store", "--data-option", "time_column=week",
            "--data-option", "split=time", "--data-option", "holdout=2", "--data-option", 'covariate_columns=["price"]',
            "--standardize", "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["data_options"]["covariate_columns"] == ["price"] and config["data_options"]["value_columns"] == ["units"]
    assert config["model_options"]["covariate_dim"] == 1
    assert main(["evaluate", str(out), "--particles", "2", "--split", "valid"]) == 0
    # the valid split has 2 steps per sequence: 1 of prefix leaves covariates for 1 step
    sample = ["sample", str(out), "--num", "2", "--prefix-len", "1", "--index", "0", "--split", "valid"]
    assert main([*sample, "--out", str(tmp_path / "s")]) == 0
    samples = np.load(tmp_path / "s" / "samples.npz")
    assert samples["samples"].shape == (2, 1, 1, 1) and samples["prefix"].shape == (1, 1, 1)
    capsys.readouterr()
    assert main([*sample, "--steps", "3", "--out", str(tmp_path / "s3")]) == 1
    assert "known for 1 step(s) ahead but 3 are to be drawn: 2 step(s) of covariates are missing" in capsys.readouterr().err
    result = backtest(str(out), horizon=1, windows=2, num_samples=4, num_particles=2, baselines="none")
    assert result.truth.shape[-1] == 1 and result.series.covariates is not None
