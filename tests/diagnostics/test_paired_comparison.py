"""The paired comparison of two bounds (pyrosequence.diagnostics.paired_comparison) and
`pyrosequence compare`: hand-computed differences and standard errors, a run against itself is
exactly level, the bootstrap interval behaves as a sampling interval should, bad inputs refused."""

import math

import numpy as np
import pytest
import torch

from pyrosequence.cli import main
from pyrosequence.diagnostics import compare_bounds
from pyrosequence.diagnostics.paired_comparison import seed_spread
from pyrosequence.inference.evaluate import EvaluationResult


def result(values, steps, bound="fivo"):
    return EvaluationResult(bound, 4, torch.tensor(values, dtype=torch.float64), torch.tensor(steps))


def test_difference_and_standard_error_by_hand():
    a = result([-10.0, -20.0, -30.0, -41.0], [10, 20, 30, 40])
    b = result([-12.0, -18.0, -33.0, -40.0], [10, 20, 30, 40])
    c = compare_bounds(a, b)
    d = np.array([2.0, -2.0, 3.0, -1.0])
    steps = np.array([10, 20, 30, 40.0])
    assert c.difference == pytest.approx(2.0 / 100)
    assert (c.a_per_timestep, c.b_per_timestep) == (pytest.approx(-101 / 100), pytest.approx(-103 / 100))
    residuals = d - 0.02 * steps  # the ratio estimator's linearisation
    assert c.standard_error == pytest.approx(math.sqrt(4 / 3 * (residuals ** 2).sum()) / 100)
    assert c.a_higher == 2 and c.num_sequences == 4
    assert c.largest(2) == [(2, pytest.approx(0.1)), (0, pytest.approx(0.2))]
    assert c.without_largest(1) == pytest.approx((2 - 2 - 1) / 70)


def test_equal_lengths_give_the_standard_error_of_the_mean_per_step_difference():
    rng = np.random.default_rng(3)
    d = rng.normal(size=30)
    a = result((d - 5.0).tolist(), [25] * 30)
    b = result([-5.0] * 30, [25] * 30)
    c = compare_bounds(a, b)
    assert c.difference == pytest.approx(d.mean() / 25)
    assert c.standard_error == pytest.approx((d / 25).std(ddof=1) / math.sqrt(30))


def test_a_model_against_itself_is_exactly_level():
    a = result([-3.0, -7.5, -1.25], [3, 5, 2])
    c = compare_bounds(a, a)
    assert (c.difference, c.standard_error, c.interval, c.a_higher) == (0.0, 0.0, (0.0, 0.0), 0)


def test_the_bootstrap_interval_covers_the_difference_and_scales_like_the_standard_error():
    rng = np.random.default_rng(0)
    n = 400
    d = rng.normal(0.3, 2.0, size=n)
    a, b = result((d - 10).tolist(), [10] * n), result([-10.0] * n, [10] * n)
    c = compare_bounds(a, b, level=0.95, bootstrap=4000, seed=1)
    low, high = c.interval
    assert low < c.difference < high
    # for a near-normal mean the 95% percentile interval is about +-1.96 standard errors; the
    # bootstrap's own error at 4000 resamples is a few per cent of its width
    assert (high - low) / (2 * 1.96 * c.standard_error) == pytest.approx(1.0, abs=0.08)
    assert compare_bounds(a, b, seed=1).interval == c.interval  # seeded
    narrower = compare_bounds(a, b, level=0.5, seed=1).interval
    assert low < narrower[0] < narrower[1] < high


def test_different_sequences_and_bad_settings_are_refused():
    a = result([-1.0, -2.0], [3, 4])
    with pytest.raises(ValueError, match="different sequences: 2 and 3 sequences"):
        compare_bounds(a, result([-1.0, -2.0, -3.0], [3, 4, 5]))
    with pytest.raises(ValueError, match="sequence 1 has 4 steps in A and 5 in B"):
        compare_bounds(a, result([-1.0, -2.0], [3, 5]))
    with pytest.raises(ValueError, match="non-finite bound \\(sequence 0\\)"):
        compare_bounds(result([-math.inf, -2.0], [3, 4]), a)
    with pytest.raises(ValueError, match="level must lie strictly between 0 and 1"):
        compare_bounds(a, a, level=1.0)
    with pytest.raises(ValueError, match="bootstrap must be a positive number"):
        compare_bounds(a, a, bootstrap=0)


def test_seed_spread():
    assert seed_spread([0.1]) == 0.0
    assert seed_spread([0.1, 0.3, 0.2]) == pytest.approx(np.std([0.1, 0.3, 0.2], ddof=1) / math.sqrt(3))


FAST = ["--epochs", "1", "--z-dim", "2", "--hidden-dim", "8", "--batch-size", "16", "--train-subset", "32",
        "--eval-particles", "2", "--no-progress"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", *FAST, "--seed", "0", "--out", str(folder / "a")]) == 0
        assert main(["train", *FAST, "--seed", "1", "--out", str(folder / "b")]) == 0
        assert main(["train", *FAST, "--data", "synthetic-paper", "--out", str(folder / "other")]) == 0
    finally:
        torch.set_num_threads(threads)
    return folder


def test_cli_compare_a_run_with_itself_and_with_another(two_runs, capsys):
    a, b = two_runs / "a", two_runs / "b"
    before = sorted(p.name for p in a.iterdir())
    capsys.readouterr()
    assert main(["compare", str(a), str(a), "--bound", "fivo", "--particles", "2", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "A - B: +0.0000 per time step over 100 sequences" in out and "A's bound is higher on 0 of them" in out
    assert "standard error 0.0000" in out and "over evaluation seeds: standard error 0.0000" in out
    assert main(["compare", str(a), str(b), "--bound", "iwae", "--particles", "2", "--split", "valid"]) == 0
    out = capsys.readouterr().out
    assert "valid iwae(2) per time step, evaluation seed 0:" in out and "bootstrap interval" in out
    assert sorted(p.name for p in a.iterdir()) == before  # nothing is written into the runs


@pytest.mark.parametrize("argv,message", [
    (["--seeds", "0"], "--seeds must be at least 1, got 0"),
    (["--level", "95"], "--level must lie strictly between 0 and 1, got 95.0"),
])
def test_cli_compare_refuses_bad_settings_in_one_line(two_runs, capsys, argv, message):
    assert main(["compare", str(two_runs / "a"), str(two_runs / "b"), *argv]) != 0
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_cli_compare_refuses_runs_on_different_data_and_a_missing_run(two_runs, capsys):
    assert main(["compare", str(two_runs / "a"), str(two_runs / "other")]) != 0
    err = capsys.readouterr().err
    assert "do not read the same 'test' split" in err and err.count("\n") == 1, err
    assert main(["compare", str(two_runs / "a"), str(two_runs / "missing")]) != 0
    err = capsys.readouterr().err
    assert "no run directory at" in err and err.count("\n") == 1, err
