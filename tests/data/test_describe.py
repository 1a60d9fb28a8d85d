"""``describe``: a table of splits, sequence counts, steps, lengths and x_dim for any data set."""

import json

import pytest

from pyrosequence.data import DATASETS, describe


def test_synthetic():
    text = describe("synthetic")
    lines = text.splitlines()
    assert lines[0].startswith("synthetic: VHRNN paper section 4")
    assert lines[1] == "likelihood: gaussian"
    assert lines[2].split() == ["split", "sequences", "steps", "min_len", "max_len", "x_dim"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:]}
    assert list(rows) == list(DATASETS["synthetic"].splits)
    assert rows["train"] == ["800", "80000", "100", "100", "2"]
    assert rows["long"] == ["100", "20000", "200", "200", "2"]


def test_a_music_file(tmp_path):
    seq = [[60, 64], [], [62]]
    (tmp_path / "jsb-chorales-quarter.json").write_text(json.dumps({"train": [seq, seq[:2]], "valid": [seq], "test": [seq[:1]]}))
    text = describe("jsb", str(tmp_path))
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[3:]}
    assert rows == {"train": ["2", "5", "2", "3", "88"], "valid": ["1", "3", "3", "3", "88"], "test": ["1", "1", "1", "1", "88"]}
    assert "likelihood: bernoulli" in text


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        describe("nope")
    with pytest.raises(FileNotFoundError, match="JSB Chorales.pickle"):
        describe("jsb", str(tmp_path))


def test_real_jsb(shared_data):
    rows = {line.split()[0]: line.split()[1:] for line in describe("jsb", str(shared_data)).splitlines()[3:]}
    assert rows["train"] == ["229", "13807", "25", "129", "88"]
    assert rows["valid"][:2] == ["76", "4602"] and rows["test"][:2] == ["77", "4725"]


def test_every_registered_name_and_likelihood():
    expected = {
        "synthetic": "gaussian", "synthetic-paper": "gaussian", "jsb": "bernoulli", "piano": "bernoulli", "nottingham": "bernoulli",
        "muse": "bernoulli", "bach": "bernoulli", "stock": "gaussian", "htsensor": "gaussian",
        "speech": "gaussian", "speech-perm": "gaussian", "speech-stride50": "gaussian", "speech-stride200": "gaussian",
    }
    assert {name: source.likelihood for name, source in DATASETS.items()} == expected
    for name, source in DATASETS.items():
        assert source.name == name and source.description
