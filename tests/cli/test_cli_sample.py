"""``pyrosequence sample``: forecasts and samples of a tiny trained run, MIDI and piano rolls."""

import json

import numpy as np
import pytest

from pyrosequence.cli import main
from pyrosequence.data.midi import pianoroll_notes, read_midi

TINY = ["--z-dim", "2", "--hidden-dim", "8", "--epochs", "1", "--batch-size", "8", "--eval-particles", "1",
        "--no-progress"]


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "synthetic"
    assert main(["train", *TINY, "--train-subset", "16", "--out", str(out)]) == 0
    return out


def test_forecast_and_samples_of_a_gaussian_run(synthetic_run, tmp_path, capsys):
    out = tmp_path / "fc"
    argv = ["sample", str(synthetic_run), "--prefix-len", "10", "--steps", "5", "--num", "3", "--index", "1", "4",
            "--particles", "7", "--out", str(out)]
    assert main(argv) == 0
    assert "3 forecasts of 5 steps after 10" in capsys.readouterr().out
    arrays = np.load(out / "samples.npz")
    assert arrays["samples"].shape == (3, 2, 5, arrays["prefix"].shape[-1]) and arrays["prefix"].shape[:2] == (2, 10)
    assert np.allclose(arrays["mean"], arrays["samples"].mean(0), atol=1e-6)
    assert arrays["index"].tolist() == [1, 4] and (arrays["truth_steps"] == 5).all()
    info = json.loads((out / "sample.json").read_text())
    assert info["prefix_len"] == 10 and info["index"] == [1, 4] and info["steps"] == 5
    assert not list(out.glob("*.mid"))  # real-valued data: no MIDI
    # the same seed gives the same draws; --force is needed to write again
    assert main(argv) == 1 and "not empty; pass --force" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0
    assert np.array_equal(np.load(out / "samples.npz")["samples"], arrays["samples"])
    # unconditional draws
    assert main(["sample", str(synthetic_run), "--num", "2", "--steps", "6", "--out", str(tmp_path / "u")]) == 0
    assert np.load(tmp_path / "u" / "samples.npz")["samples"].shape == (2, 6, arrays["prefix"].shape[-1])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--prefix-len", "-1"], "--prefix-len must be 0"),
        (["--num", "0"], "--num must be at least 1"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--particles", "0"], "--particles must be at least 1"),
        (["--prefix-len", "5", "--index", "100000"], "--index 100000 is out of range"),
        (["--prefix-len", "100000"], "is longer than sequence 0"),
        (["--split", "nosuchsplit"], "nosuchsplit"),
        (["--tempo", "0"], "--tempo must be positive"),
        (["--step-quarters", "0.142857"], "not a whole number of MIDI ticks"),
    ],
)
def test_bad_options_give_one_line(synthetic_run, tmp_path, capsys, extra, message):
    out = tmp_path / "never"
    assert main(["sample", str(synthetic_run), "--out", str(out), *extra]) != 0
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_missing_run_gives_one_line(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 1
    assert "no run directory" in capsys.readouterr().err


def test_pianoroll_run_writes_midi_and_png(shared_data, tmp_path, capsys):
    run = tmp_path / "jsb"
    assert main(["train", "--data", "jsb", "--data-root", str(shared_data), *TINY, "--train-subset", "8",
                 "--out", str(run)]) == 0
    out = tmp_path / "music"
    assert main(["sample", str(run), "--prefix-len", "6", "--steps", "8", "--num", "2", "--particles", "5",
                 "--step-quarters", "0.5", "--out", str(out)]) == 0
    arrays = np.load(out / "samples.npz")
    png = out / "seq0_pianoroll.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    for j in range(2):  # each MIDI file reads back to the prefix followed by its draw
        roll = read_midi(out / f"seq0_sample{j}.mid", step_quarters=0.5, num_steps=14)
        expected = np.concatenate([arrays["prefix"][0], arrays["samples"][j, 0]])
        assert pianoroll_notes(roll) == pianoroll_notes(expected)
    truth = read_midi(out / "seq0_truth.mid", step_quarters=0.5, num_steps=14)
    assert np.array_equal(truth, np.concatenate([arrays["prefix"][0], arrays["truth"][0]]))
    assert main(["sample", str(run), "--num", "2", "--steps", "5", "--out", str(tmp_path / "u")]) == 0
    assert (tmp_path / "u" / "pianoroll.png").stat().st_size > 1000
    assert read_midi(tmp_path / "u" / "sample1.mid", num_steps=5).shape == (5, 88)
