"""Forecasts of a model with covariates (issue 24, item 3): the future covariates are required and
read at their own step; a horizon beyond them is refused naming how many steps are missing; the
one-step predictive, unconditional draws and the backtest condition on the data's covariates."""

import numpy as np
import pytest
import torch

from pyrosequence.diagnostics.backtest import backtest
from pyrosequence.diagnostics.forecast import forecast, one_step_predictive, sample_sequences
from pyrosequence.models import DMM, VRNN


@pytest.fixture
def model():
    torch.manual_seed(0)
    return DMM(2, 2, likelihood="gaussian", covariate_dim=1, hidden_dim=4).eval()


def _prefix(batch=2, steps=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, steps, 3, generator=gen)  # 2 observation columns, then u


def test_a_forecast_needs_the_future_covariates_and_says_how_many_are_missing(model):
    prefix = _prefix()
    with pytest.raises(ValueError, match=r"DMM reads 1 covariate\(s\): the 4 step\(s\) to draw need their future values"):
        forecast(model, prefix, horizon=4, num_samples=3, num_particles=4)
    with pytest.raises(ValueError, match=r"known for 2 step\(s\) ahead but 4 are to be drawn: 2 step\(s\) of covariates are missing"):
        forecast(model, prefix, horizon=4, num_samples=3, num_particles=4, future_covariates=torch.zeros(2, 2, 1))
    with pytest.raises(ValueError, match=r"future covariates: covariate column 0 is NaN at sequence 1, step 0"):
        forecast(model, prefix, horizon=1, num_samples=3, num_particles=4,
                 future_covariates=torch.tensor([[[0.0]], [[float("nan")]]]))
    with pytest.raises(ValueError, match=r"reads no covariates, but future covariates were given"):
        forecast(DMM(2, 2, likelihood="gaussian"), prefix[..., :2], horizon=1, future_covariates=torch.zeros(2, 1, 1))


def test_the_draw_of_step_h_reads_the_covariate_of_step_h(model):
    prefix, lengths = _prefix(), torch.tensor([5, 3])
    future = torch.randn(2, 4, 1, generator=torch.Generator().manual_seed(1))
    changed = future.clone()
    changed[:, 2] += 5.0

    def draws(u):
        torch.manual_seed(7)
        return forecast(model, prefix, lengths, horizon=4, num_samples=5, num_particles=6, future_covariates=u).samples

    first, again, other = draws(future), draws(future), draws(changed)
    assert first.shape == (5, 2, 4, 2)  # observation columns only
    assert torch.equal(first, again)
    assert torch.equal(first[:, :, :2], other[:, :, :2])  # steps before the changed covariate
    assert not torch.allclose(first[:, :, 2], other[:, :, 2])


def test_one_step_predictive_and_unconditional_draws_with_covariates():
    torch.manual_seed(0)
    model = VRNN(2, 2, likelihood="gaussian", covariate_dim=1).eval()
    predictive = one_step_predictive(model, _prefix(), torch.tensor([5, 4]), num_samples=3, num_particles=4)
    assert predictive.samples.shape == (3, 2, 5, 2) and predictive.mean.shape == (2, 5, 2)
    with pytest.raises(ValueError, match=r"the 6 step\(s\) to draw need their future values"):
        sample_sequences(model, 3, 6)
    assert sample_sequences(model, 3, 6, torch.zeros(3, 6, 1)).shape == (3, 6, 2)


def test_a_backtest_reads_the_covariates_of_its_windows(model):
    rng = np.random.default_rng(0)
    series = rng.normal(size=(2, 12, 3))  # the last column is the covariate
    result = backtest(model, series, horizon=2, windows=2, heldout=4, num_samples=8, num_particles=4, baselines="none")
    assert result.truth.shape == (2, 2, 2, 2)  # windows, series, steps, observation columns
    assert result.series.covariates[0].shape == (12, 1)
    np.testing.assert_allclose(result.truth[0, 1], series[1, 8:10, :2])


def test_inference_data_forecasts_with_the_covariates_of_the_batch(model):
    from pyrosequence.diagnostics import to_inference_data

    x, lengths = _prefix(steps=6), torch.tensor([6, 5])
    data = to_inference_data(model, x, lengths, num_samples=3, num_particles=4, bound="iwae", prefix_len=3, horizon=2)
    assert data.posterior_predictive["x_forecast"].shape == (1, 3, 2, 2, 2)
    assert data.observed_data["x"].shape == (2, 6, 2)  # observation columns only
    with pytest.raises(ValueError, match=r"known for 2 step\(s\) ahead but 3 are to be drawn"):
        to_inference_data(model, x, lengths, num_samples=3, num_particles=4, bound="iwae", prefix_len=3, horizon=3)
