"""Checks on an InferenceData: calibration, PSIS k-hat, filter health, active units, per-step KL."""

import math

import numpy as np
import pytest
import torch

import pyro

from pyrosequence import HyperLSTM, LinearGaussianSSM
from pyrosequence.diagnostics import (
    active_units,
    calibration,
    filter_health,
    interval_coverage,
    psis_khat,
    step_curves,
    step_dynamics,
    to_inference_data,
)

A, Q, R, S0 = 0.9, 0.5, 0.5, 1.0  # a scalar LGSSM: z_t ~ N(A z_{t-1}, Q^2), x_t ~ N(z_t, R^2), z_0 ~ N(0, S0^2)


def scalar_lgssm(proposal="learned") -> LinearGaussianSSM:
    m = LinearGaussianSSM(1, 1, proposal=proposal)
    with torch.no_grad():
        m.transition_matrix.fill_(A)
        m.log_transition_scale.fill_(math.log(Q))
        m.log_initial_scale.fill_(math.log(S0))
        m.observation_matrix.fill_(1.0)
        m.log_observation_scale.fill_(math.log(R))
    return m


def test_interval_coverage_exact_on_a_constructed_case():
    draws = np.broadcast_to(np.linspace(0, 1, 101)[:, None, None, None], (101, 1, 4, 1)).copy()
    observed = np.array([[[0.5], [0.01], [0.1], [np.nan]]])  # inside both, outside both, inside 90 % only, padding
    cal = interval_coverage(draws, observed, (0.5, 0.9))
    np.testing.assert_allclose(cal.coverage, [1 / 3, 2 / 3])
    np.testing.assert_allclose(cal.per_step[:, :3], [[1, 0, 0], [1, 0, 1]])
    assert np.isnan(cal.per_step[:, 3]).all() and cal.count == 3
    with pytest.raises(ValueError, match=r"levels must be numbers in \(0, 1\)"):
        interval_coverage(draws, observed, (0.5, 1.0))
    with pytest.raises(ValueError, match="draws must be"):
        interval_coverage(draws[:, 0], observed)


def test_calibration_of_the_lgssm_on_its_own_data():
    """Under the true model the one-step PIT values of a 1-d series are i.i.d. uniform, so the
    hits of each interval are independent Bernoulli(level): coverage within 4 binomial standard
    errors (plus 0.01 for the filter's and the quantiles' Monte Carlo error). A model whose
    observation noise is a quarter of the truth must fail the same check."""
    model = scalar_lgssm(proposal="prior")
    x = model.sample(40, 25)
    pyro.set_rng_seed(1)
    cal = calibration(to_inference_data(model, x, num_samples=200, num_particles=200))
    assert cal.count == 1000
    assert np.all(np.abs(cal.coverage - cal.levels) < 4 * cal.standard_error + 0.01), cal.coverage
    assert cal.per_step.shape == (2, 25)
    with torch.no_grad():
        model.log_observation_scale.fill_(math.log(R / 4))
        model.log_transition_scale.fill_(math.log(Q / 4))
    overconfident = calibration(to_inference_data(model, x, num_samples=200, num_particles=200))
    assert np.all(overconfident.coverage < overconfident.levels - 8 * overconfident.standard_error)


def test_psis_khat_separates_a_good_guide_from_a_bad_one():
    """Good: the locally optimal proposal q(z_t | z_{t-1}, x_t) = p(z_t | z_{t-1}, x_t), set in
    closed form; its weights prod_t p(x_t | z_{t-1}) are bounded, so k-hat is small. Bad: a
    proposal five times narrower than the prior that ignores the data; p/q then has tails that
    grow like exp(c z^2) and infinite variance, i.e. k > 0.5 in theory and above 0.7 here."""
    model = scalar_lgssm()
    x = model.sample(8, 5)
    with torch.no_grad():
        for i, prior_var in ((0, S0**2), (1, Q**2)):
            var = 1 / (1 / prior_var + 1 / R**2)
            model.q_obs[i].fill_(var / R**2)
            model.q_bias[i].fill_(0.0)
            model.q_log_scale[i].fill_(0.5 * math.log(var))
        model.q_state.fill_(var * A / Q**2)
    good = psis_khat(model, x, num_particles=1000)
    assert good.khat.shape == (8,) and np.all(good.khat < 0.5), good.khat
    with torch.no_grad():
        for p in (model.q_obs, model.q_state, model.q_bias):
            p.fill_(0.0)
        model.q_log_scale.fill_(math.log(0.2))
    bad = psis_khat(model, x, num_particles=1000)
    assert np.all(bad.khat > 0.7) and bad.fraction_bad == 1.0, bad.khat
    with pytest.raises(ValueError, match="no latent variables"):
        psis_khat(HyperLSTM(1, 3, likelihood="gaussian"), x, num_particles=100)
    with pytest.raises(ValueError, match="at least 10"):
        psis_khat(model, x, num_particles=5)


def test_active_units_counts_a_dead_unit_as_inactive():
    model = LinearGaussianSSM(2, 2)
    x = model.sample(6, 10)
    with torch.no_grad():  # q(z_t) = N((x_t[0], 0), 0.05^2): unit 0 follows the data, unit 1 is dead
        model.q_state.zero_()
        model.q_bias.zero_()
        model.q_obs.zero_()
        model.q_obs[:, 0, 0] = 1.0
        model.q_log_scale.fill_(math.log(0.05))
    idata = to_inference_data(model, x, num_samples=50, num_particles=2)
    units = active_units(idata)
    assert units.active.tolist() == [True, False] and units.num_active == 1
    # A_0 is the variance of x[..., 0] over (sequence, step) up to the draws' MC noise (0.05^2 / 50)
    assert abs(units.activity[0] - x[..., 0].var().item()) < 0.01
    assert units.activity[1] < 1e-3
    no_latents = to_inference_data(HyperLSTM(2, 3, likelihood="gaussian"), x, num_samples=2, num_particles=1)
    with pytest.raises(ValueError, match="no latent variables"):
        active_units(no_latents)


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_filter_health_follows_the_resampling_rule(threshold):
    model = LinearGaussianSSM(2, 2)
    x, lengths = model.sample(3, 6), torch.tensor([6, 4, 2])
    health = filter_health(to_inference_data(model, x, lengths, num_samples=2, num_particles=8, ess_threshold=threshold))
    valid = np.arange(6)[None] < lengths.numpy()[:, None]
    assert np.all((health.ess[valid] > 0) & (health.ess[valid] <= 8 + 1e-6)) and np.isnan(health.ess[~valid]).all()
    # threshold 1 resamples after every step but a sequence's last, threshold 0 never
    expected = (lengths.numpy() - 1) if threshold == 1.0 else np.zeros(3)
    np.testing.assert_array_equal(health.resamples_per_sequence, expected)
    assert health.num_particles == 8 and health.mean_ess.shape == (6,)


def test_filter_health_of_a_deterministic_model_is_perfect():
    health = filter_health(to_inference_data(HyperLSTM(2, 3, likelihood="gaussian"), torch.randn(2, 4, 2), num_samples=2, num_particles=5))
    np.testing.assert_allclose(health.ess, 5.0, rtol=1e-5)
    assert health.resamples_per_sequence.tolist() == [0, 0]


def test_step_curves_reuse_step_dynamics_per_sequence():
    model = LinearGaussianSSM(2, 2)
    x, lengths = model.sample(2, 5), torch.tensor([5, 3])
    pyro.set_rng_seed(4)
    curves = step_curves(model, x, lengths, num_samples=3)
    pyro.set_rng_seed(4)
    first = step_dynamics(model, x[0], num_samples=3)
    second = step_dynamics(model, x[1, :3], num_samples=3)
    np.testing.assert_allclose(curves.kl[0], first.kl.numpy(), rtol=1e-5)
    np.testing.assert_allclose(curves.kl[1, :3], second.kl.numpy(), rtol=1e-5)
    np.testing.assert_allclose(curves.log_variance[1, :3], second.log_variance.mean(-1).numpy(), rtol=1e-5)
    assert np.isnan(curves.kl[1, 3:]).all() and (curves.kl[:, :3] >= 0).all()


def test_brier_score_and_reliability_on_a_constructed_case():
    from pyrosequence.diagnostics import reliability

    p = np.array([[[0.05], [0.05], [0.95], [0.95], [np.nan]]])
    x = np.array([[[0.0], [1.0], [1.0], [1.0], [np.nan]]])
    r = reliability(p, x, bins=2)
    assert r.count == 4 and r.base_rate == 0.75
    assert r.brier == pytest.approx((0.05**2 + 0.95**2 + 0.05**2 + 0.05**2) / 4)
    assert r.reference_brier == pytest.approx(0.1875) and r.skill == pytest.approx(1 - r.brier / 0.1875)
    assert r.bin_count.tolist() == [2, 2]
    assert r.mean_probability == pytest.approx([0.05, 0.95]) and r.frequency == pytest.approx([0.5, 1.0])
    assert r.per_step[:4] == pytest.approx([0.05**2, 0.95**2, 0.05**2, 0.05**2]) and np.isnan(r.per_step[4])
    with pytest.raises(ValueError, match="not binary"):
        reliability(p, x + 0.5)


def test_a_calibrated_forecast_is_reliable_and_the_base_rate_has_no_skill():
    from pyrosequence.diagnostics import reliability

    rng = np.random.default_rng(0)
    p = rng.random((50, 40, 8))
    x = (rng.random(p.shape) < p).astype(float)
    r = reliability(p, x)
    assert np.max(np.abs(r.frequency - r.mean_probability)) < 0.03
    assert r.brier == pytest.approx(1 / 6, abs=0.005)  # E[p (1 - p)] for p ~ U(0, 1)
    flat = reliability(np.full(p.shape, x.mean()), x)
    assert flat.skill == pytest.approx(0.0, abs=1e-12)
