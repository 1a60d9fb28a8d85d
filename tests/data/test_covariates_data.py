"""Covariates in data read from a path (issue 24, item 3): tables take ``covariate_columns``, a
``.npz`` a ``u`` array; they travel as the last columns of ``x`` (``covariate_dim``), are
standardised with the rest but left out of the bound's change of units, set the model's
``covariate_dim``, and bad files get one line naming the file, column or sequence."""

import csv

import numpy as np
import pytest
import torch

from pyrosequence.data.dataset import SequenceDataset
from pyrosequence.data.from_path import load_data, load_path, unstandardize
from pyrosequence.training.config import TrainConfig

HEADER = ["sequence", "time", "sales", "price", "holiday"]


def write_table(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)


def table_rows(sequences=4, steps=5, seed=0):
    rng = np.random.default_rng(seed)
    return [[s, t, round(float(rng.normal()), 4), round(float(rng.uniform(1, 3)), 4), t % 2]
            for s in range(sequences) for t in range(steps)]


def test_table_covariates_are_the_last_columns_and_recorded(tmp_path):
    rows = table_rows()
    write_table(tmp_path / "sales.csv", rows)
    data = load_path(tmp_path / "sales.csv", {"covariate_columns": ["price", "holiday"], "split": "time", "holdout": 1})
    assert data.options["covariate_columns"] == ["price", "holiday"]
    assert data.options["value_columns"] == ["sales"]  # the covariates are no value columns
    train = data["train"]
    assert (train.covariate_dim, train.x_dim, train.x.shape[-1]) == (2, 1, 3)
    first = [r for r in rows if r[0] == 0][:3]
    np.testing.assert_allclose(train.x[0, :3].numpy(), np.array([r[2:] for r in first]), rtol=1e-6)
    assert torch.equal(train.observations, train.x[..., :1]) and torch.equal(train.covariates, train.x[..., 1:])
    reopened = load_path(tmp_path / "sales.csv", data.options)  # what evaluate/sample/resume do
    assert torch.equal(reopened["test"].x, data["test"].x) and reopened["test"].covariate_dim == 2


def test_a_missing_covariate_is_refused_naming_column_sequence_and_step(tmp_path):
    rows = table_rows()
    rows[7][3] = "nan"  # sequence 1, step 2, price
    write_table(tmp_path / "sales.csv", rows)
    with pytest.raises(ValueError, match=r"sales\.csv: covariate column 'price' is NaN in sequence '1' at step 2"):
        load_data(tmp_path / "sales.csv", covariate_columns=["price"])
    rows[7][3] = 2.0
    rows[6][2] = "nan"  # a missing observation (sequence 1, step 1) is still fine
    write_table(tmp_path / "sales.csv", rows)
    assert load_data(tmp_path / "sales.csv", covariate_columns=["price"], split="time", holdout=1)["train"].has_missing


def test_bad_covariate_columns_are_refused_in_one_line(tmp_path):
    write_table(tmp_path / "sales.csv", table_rows())
    with pytest.raises(ValueError, match=r"sales\.csv: no column 'cost' \(covariate_columns\); the columns are"):
        load_data(tmp_path / "sales.csv", covariate_columns=["cost"])
    with pytest.raises(ValueError, match=r"column\(s\) price cannot be both a value and a covariate column"):
        load_data(tmp_path / "sales.csv", covariate_columns=["price"], value_columns=["sales", "price"])
    with pytest.raises(ValueError, match=r"column\(s\) time cannot be both a covariate and an id/time/split column"):
        load_data(tmp_path / "sales.csv", covariate_columns=["time"])
    with pytest.raises(ValueError, match=r"covariate_columns must be a list of column names"):
        load_data(tmp_path / "sales.csv", covariate_columns="price")
    np.savez(tmp_path / "data.npz", x=np.zeros((3, 4, 1)))
    with pytest.raises(ValueError, match=r"option\(s\) covariate_columns are for CSV and Parquet tables"):
        load_data(tmp_path / "data.npz", covariate_columns=["price"])


def test_npz_covariates_and_their_shape(tmp_path):
    rng = np.random.default_rng(0)
    x, u, lengths = rng.normal(size=(4, 6, 2)), rng.normal(size=(4, 6, 1)), np.array([6, 4, 5, 6])
    u[1, 5] = np.nan  # padding: ignored
    np.savez(tmp_path / "data.npz", x=x, u=u, lengths=lengths)
    train = load_data(tmp_path / "data.npz", split="time", holdout=1)["train"]
    assert (train.x_dim, train.covariate_dim) == (2, 1)
    np.testing.assert_allclose(train.covariates[0, :4].numpy(), u[0, :4], rtol=1e-6)
    np.savez(tmp_path / "bad.npz", x=x, u=u[:, :3])
    with pytest.raises(ValueError, match=r"bad\.npz, array 'u' must have shape \(4, time, covariates\)"):
        load_data(tmp_path / "bad.npz")
    u[2, 1] = np.inf
    np.savez(tmp_path / "inf.npz", x=x, u=u, lengths=lengths)
    with pytest.raises(ValueError, match=r"inf\.npz: covariate column 0 \(of the covariates\) is inf in sequence 2 at step 1"):
        load_data(tmp_path / "inf.npz")


def test_standardisation_scales_covariates_but_not_the_units_of_the_bound(tmp_path):
    write_table(tmp_path / "sales.csv", table_rows(sequences=6, steps=8))
    data = load_path(tmp_path / "sales.csv", {"covariate_columns": ["price", "holiday"], "standardize": True,
                                              "split": "time", "holdout": 2})
    train = data["train"]
    valid = torch.arange(train.x.shape[1]) < train.lengths[:, None]
    assert train.x[valid].mean(0).abs().max() < 1e-5  # every column, covariates too
    assert train.scale.shape == (1,)  # the change of units: observation columns only
    assert float(train.scale[0]) == pytest.approx(data.options["scaling"]["std"][0])
    draws = torch.zeros(3, 4, 1)  # draws hold the observation columns only
    assert torch.allclose(unstandardize(draws, data.options), torch.full((3, 4, 1), data.options["scaling"]["mean"][0]))


def test_the_configuration_gives_the_model_the_data_s_covariates(tmp_path):
    write_table(tmp_path / "sales.csv", table_rows())
    options = {"covariate_columns": ["price", "holiday"]}
    for model in ("vrnn", "dmm"):
        config = TrainConfig(model=model, data=str(tmp_path / "sales.csv"), data_options=options)
        assert config.model_options["covariate_dim"] == 2
        assert config.data_options["covariate_columns"] == ["price", "holiday"]
    with pytest.raises(ValueError, match=r"2 covariate column\(s\), but model 'storn' does not read covariates"):
        TrainConfig(model="storn", data=str(tmp_path / "sales.csv"), data_options=options)


def test_a_dataset_refuses_a_missing_covariate_by_column_and_sequence():
    x = torch.zeros(2, 3, 3)
    x[1, 1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"dataset 'd': covariate column 2 is NaN at sequence 1, step 1"):
        SequenceDataset(x, torch.tensor([3, 3]), "d", covariate_dim=1)
    data = SequenceDataset(x, torch.tensor([3, 1]), "d", covariate_dim=1)  # beyond the length: padding
    assert data.x_dim == 2 and data.subset([1]).covariate_dim == 1


def test_training_with_truncated_windows_and_a_model_instance_that_disagrees(tmp_path):
    from pyrosequence.models import DMM
    from pyrosequence.training import train

    write_table(tmp_path / "sales.csv", table_rows(sequences=4, steps=9))
    options = {"covariate_columns": ["price", "holiday"], "split": "time", "holdout": 2}
    config = TrainConfig(model="dmm", data=str(tmp_path / "sales.csv"), data_options=options, epochs=1, tbptt=2,
                         z_dim=2, eval_particles=2)
    train(config, out=str(tmp_path / "run"), progress=False)  # each window continues with its own covariates
    assert (tmp_path / "run" / "results.json").exists()
    with pytest.raises(ValueError, match=r"the model instance reads 0 covariate column\(s\) but the data set .* has 2"):
        train(config, model=DMM(1, 2, likelihood="gaussian"), out=str(tmp_path / "other"), progress=False)
