"""Predictive distributions against exact Kalman answers on the linear-Gaussian model.

Monte Carlo tolerances: every estimate is repeated over ``R`` independent filters (copies of the
same sequence in one batch); the mean over copies is compared with the exact value within
``Z`` standard errors estimated from the copies' spread, and the standard error itself must be
small, so a wrong answer cannot pass by being noisy.
"""

import math

import pyro.distributions as dist
import pytest
import torch

from pyrosequence.diagnostics.forecast import (
    Forecast,
    Predictive,
    emission_moments,
    forecast,
    one_step_predictive,
    sample_sequences,
)
from pyrosequence.models import VHRNN, VRNN, HyperLSTM, LinearGaussianSSM, SequenceModel
from pyrosequence.models.flattened import Flattened

Z = 5.0  # standard errors allowed (several dozen comparisons per test)


def _params(model):
    d = torch.float64
    return {
        "A": model.transition_matrix.detach().to(d),
        "C": model.observation_matrix.detach().to(d),
        "Q": torch.diag(model.log_transition_scale.detach().to(d).exp() ** 2),
        "R": torch.diag(model.log_observation_scale.detach().to(d).exp() ** 2),
        "P0": torch.diag(model.log_initial_scale.detach().to(d).exp() ** 2),
    }


def kalman(model, x, horizon=0):
    """Exact one-step predictive moments of ``x`` (T, D) and, after it, ``horizon`` forecast steps.

    Returns (means (T + horizon, D), variances (T + horizon, D), log p(x)).
    """
    p = _params(model)
    x = x.to(torch.float64)
    m, P = torch.zeros(model.z_dim, dtype=torch.float64), p["P0"]
    means, variances, log_p = [], [], 0.0
    for t in range(x.shape[0] + horizon):
        if t > 0:  # predict z_t from z_{t-1}
            m, P = p["A"] @ m, p["A"] @ P @ p["A"].T + p["Q"]
        S = p["C"] @ P @ p["C"].T + p["R"]
        means.append(p["C"] @ m)
        variances.append(S.diagonal())
        if t < x.shape[0]:  # update with x_t
            log_p += dist.MultivariateNormal(p["C"] @ m, S).log_prob(x[t])
            gain = P @ p["C"].T @ torch.linalg.inv(S)
            m, P = m + gain @ (x[t] - p["C"] @ m), P - gain @ p["C"] @ P
    return torch.stack(means), torch.stack(variances), log_p


def _assert_close(estimates, exact, what):
    """``estimates`` (R, ...) independent replicates; their mean must be within Z SE of ``exact``."""
    estimates = estimates.to(torch.float64)
    mean = estimates.mean(0)
    se = estimates.std(0) / math.sqrt(estimates.shape[0])
    z = (mean - exact).abs() / se
    assert bool((z < Z).all()), f"{what}: max |error| / SE = {float(z.max()):.2f}\n{mean}\n{exact}"
    return se


def _near_optimal_proposal(model):
    """Set the learned proposal to the locally optimal p(z_t | z_{t-1}, x_t) with its covariance
    replaced by an inflated diagonal (the family is diagonal): a proper, non-prior proposal."""
    p = _params(model)
    with torch.no_grad():
        for i, prior_cov in enumerate([p["P0"], p["Q"]]):
            gain = prior_cov @ p["C"].T @ torch.linalg.inv(p["C"] @ prior_cov @ p["C"].T + p["R"])
            cov = prior_cov - gain @ p["C"] @ prior_cov
            model.q_obs[i] = gain.float()
            model.q_bias[i] = 0.0
            model.q_log_scale[i] = (1.5 * cov.diagonal().sqrt()).log().float()
            if i == 1:
                model.q_state.copy_(((torch.eye(model.z_dim, dtype=p["A"].dtype) - gain @ p["C"]) @ p["A"]).float())


@pytest.fixture(params=["prior", "learned"])
def lgssm(request):
    model = LinearGaussianSSM(2, 2, proposal=request.param)
    if request.param == "learned":
        _near_optimal_proposal(model)
    return model


def test_kalman_oracle_matches_gaussian_hmm(lgssm):
    x = lgssm.sample(1, 7)
    assert abs(float(kalman(lgssm, x[0])[2]) - float(lgssm.exact_log_prob(x)[0].detach())) < 1e-3


def test_one_step_predictive_matches_kalman(lgssm):
    replicates, steps = 24, 8
    x = lgssm.sample(1, steps)
    exact_mean, exact_var, _ = kalman(lgssm, x[0])
    pred = one_step_predictive(lgssm, x.expand(replicates, -1, -1), num_samples=2, num_particles=400)
    assert isinstance(pred, Predictive)
    se = _assert_close(pred.mean, exact_mean, "predictive mean")
    assert bool((se < 0.05 * exact_var.sqrt()).all())  # precise enough that an error would show
    se = _assert_close(pred.variance, exact_var, "predictive variance")
    assert bool((se < 0.05 * exact_var).all())
    # the filter's increments are log p_hat(x_t | x_<t); exp of their sum is unbiased for p(x)
    assert pred.log_increments.shape == (replicates, steps)
    ratio = (pred.log_increments.sum(1).double() - float(lgssm.exact_log_prob(x)[0].detach())).exp()
    _assert_close(ratio, torch.tensor(1.0, dtype=torch.float64), "p_hat(x) / p(x)")
    assert pred.ess.shape == pred.resampled.shape == (replicates, steps)
    assert bool(((pred.ess >= 1 - 1e-4) & (pred.ess <= 400 + 1e-3)).all())


def test_predictive_intervals_are_calibrated_on_data_from_the_model():
    model = LinearGaussianSSM(1, 2, proposal="prior")
    x = model.sample(64, 12)
    pred = one_step_predictive(model, x, num_samples=199, num_particles=300)
    ordered = pred.samples.sort(0).values
    n = x.numel()
    # with 199 exact draws, P(x in [X_(a), X_(b)]) = (b - a) / 200 (1-based order statistics)
    for a, b, level in [(10, 190, 0.9), (50, 150, 0.5)]:
        covered = ((x >= ordered[a - 1]) & (x <= ordered[b - 1])).float().mean()
        tolerance = 4 * math.sqrt(level * (1 - level) / n)  # binomial: PIT values are iid under the model
        assert abs(float(covered) - level) < tolerance, (level, float(covered))


def test_ragged_predictive_is_zero_beyond_each_length():
    model = LinearGaussianSSM(2, 3)
    x = model.sample(3, 5)
    lengths = torch.tensor([5, 2, 4])
    pred = one_step_predictive(model, x, lengths, num_samples=4, num_particles=8)
    assert pred.samples.shape == (4, 3, 5, 2) and pred.latents.shape == (4, 3, 5, 3)
    pad = torch.arange(5)[None] >= lengths[:, None]  # (B, T)
    assert bool((pred.samples[:, pad] == 0).all() and (pred.mean[pad] == 0).all() and (pred.variance[pad] == 0).all())
    assert bool((pred.variance[~pad] > 0).all() and (pred.log_increments[pad] == 0).all())
    assert torch.equal(pred.lengths, lengths)


def test_forecast_matches_kalman_multi_step_predictive(lgssm):
    replicates, steps, horizon = 32, 7, 4
    x = lgssm.sample(1, steps).expand(replicates, -1, -1)
    lengths = torch.tensor([steps, 3]).repeat(replicates // 2)  # two prefix lengths in one batch
    fc = forecast(lgssm, x, lengths, horizon=horizon, num_samples=200, num_particles=400)
    assert isinstance(fc, Forecast) and fc.samples.shape == (200, replicates, horizon, 2)
    assert fc.latents.shape == (200, replicates, horizon, 2) and torch.equal(fc.prefix_lengths, lengths)
    assert torch.allclose(fc.mean, fc.samples.mean(0))
    for p in (steps, 3):
        rows = lengths == p
        exact_mean, exact_var, _ = kalman(lgssm, x[0, :p], horizon)
        draws = fc.samples[:, rows]  # (S, R', H, D)
        se = _assert_close(draws.mean(0), exact_mean[p:], f"forecast mean after {p} steps")
        assert bool((se < 0.05 * exact_var[p:].sqrt()).all())
        _assert_close(draws.var(0), exact_var[p:], f"forecast variance after {p} steps")


def test_unconditional_samples_have_the_prior_moments():
    model = LinearGaussianSSM(2, 2)
    draws = sample_sequences(model, 4000, 5)
    assert draws.shape == (4000, 5, 2)
    _, exact_var, _ = kalman(model, torch.zeros(0, 2), horizon=5)
    n = draws.shape[0]
    assert bool((draws.mean(0).abs() < Z * (exact_var / n).sqrt()).all())
    # the sample variance of Gaussian draws has standard error var * sqrt(2 / (n - 1))
    assert bool(((draws.var(0) - exact_var).abs() < Z * exact_var * math.sqrt(2 / (n - 1))).all())


class Echo(SequenceModel):
    """x_t ~ Bernoulli(0.1 + 0.8 x_{t-1}) per key: a deterministic model whose state is the last
    step's context, so a forecast is right only if each drawn step is fed back."""

    def __init__(self):
        super().__init__(3, 0)

    def initial_state(self, batch_shape, x):
        return x.new_full(tuple(batch_shape) + (3,), 0.5)

    def emission(self, state, z_features):
        return dist.Bernoulli(probs=0.1 + 0.8 * state).to_event(1)

    def update(self, state, z_features, context_t, t):
        return context_t.expand(state.shape)


def test_forecast_feeds_drawn_steps_back_through_the_context():
    model = Echo()
    prefix = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]])
    fc = forecast(model, prefix, horizon=4, num_samples=500, num_particles=3)
    assert fc.latents is None and fc.samples.shape == (500, 1, 4, 3)
    previous = torch.cat([prefix[:, -1:].expand(500, 1, 1, 3), fc.samples[:, :, :-1]], 2)
    same = (fc.samples == previous).float()  # iid Bernoulli(0.9) under the model
    assert abs(float(same.mean()) - 0.9) < 4 * math.sqrt(0.09 / same.numel())
    pred = one_step_predictive(model, prefix, num_samples=5, num_particles=2)
    assert torch.allclose(pred.mean[0, 1], 0.1 + 0.8 * prefix[0, 0]) and pred.latents is None
    assert torch.allclose(pred.variance[0, 1], pred.mean[0, 1] * (1 - pred.mean[0, 1]))


@pytest.mark.parametrize(
    "build",
    [
        lambda: VRNN(5, 3, likelihood="bernoulli"),
        lambda: VHRNN(5, 3, likelihood="bernoulli", omega_dim=4),
        lambda: HyperLSTM(5, 4, likelihood="bernoulli"),
    ],
    ids=["vrnn", "vhrnn", "hyperlstm"],
)
def test_recurrent_models_forecast_and_sample_binary_steps(build):
    model = build()
    x = (torch.rand(3, 6, 5) < 0.3).float()
    lengths = torch.tensor([6, 2, 4])
    pred = one_step_predictive(model, x, lengths, num_samples=4, num_particles=5)
    valid = torch.arange(6)[None] < lengths[:, None]
    assert bool(((pred.mean[valid] > 0) & (pred.mean[valid] < 1)).all())
    assert bool(((pred.variance >= 0) & (pred.variance <= 0.25 + 1e-6)).all())
    fc = forecast(model, x, lengths, horizon=3, num_samples=4, num_particles=5)
    draws = sample_sequences(model, 2, 7)
    for d in (pred.samples, fc.samples, draws):
        assert bool(((d == 0) | (d == 1)).all())
    assert fc.samples.shape == (4, 3, 3, 5) and draws.shape == (2, 7, 5)


def test_emission_moments_fall_back_to_monte_carlo():
    class NoMoments(dist.Normal):
        @property
        def mean(self):
            raise NotImplementedError

    d = NoMoments(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0])).to_event(1)
    n = 20000
    mean, var = emission_moments(d, num_mc=n)
    assert bool(((mean - d.base_dist.loc).abs() < Z * d.base_dist.scale / math.sqrt(n)).all())
    assert bool(((var - d.base_dist.scale**2).abs() < Z * d.base_dist.scale**2 * math.sqrt(2 / (n - 1))).all())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x: forecast(m, x, horizon=0), "horizon"),
        (lambda m, x: forecast(m, x), "horizon"),
        (lambda m, x: forecast(m, x, horizon=True), "horizon"),
        (lambda m, x: forecast(m, x, horizon=2, num_samples=0), "num_samples"),
        (lambda m, x: forecast(m, x, horizon=2, num_particles=0), "particles"),
        (lambda m, x: one_step_predictive(m, x, num_samples=1.5), "num_samples"),
        (lambda m, x: one_step_predictive(m, x, ess_threshold=2.0), "ess_threshold"),
        (lambda m, x: one_step_predictive(m, x[..., :1]), "x_dim"),
        (lambda m, x: one_step_predictive(m, x[0]), "shape"),
        (lambda m, x: forecast(m, x, torch.tensor([3, 9]), horizon=1), "lengths"),
        (lambda m, x: one_step_predictive("model", x), "SequenceModel"),
        (lambda m, x: sample_sequences(m, 0, 3), "num"),
        (lambda m, x: sample_sequences(m, 2, 0), "num_steps"),
    ],
)
def test_bad_inputs_are_rejected(call, message):
    model = LinearGaussianSSM(2, 2)
    x = model.sample(2, 4)
    with pytest.raises((ValueError, TypeError), match=message):
        call(model, x)


def test_a_flattened_model_predicts_whole_steps():
    """Flattened(LGSSM over 1-d inner steps, x_dim=2): the filter runs on the inner model, and the
    predictive of an outer step is the inner model's one- and two-step-ahead predictive."""
    inner = LinearGaussianSSM(1, 2, proposal="prior")
    model = Flattened(inner, 2)
    replicates, steps = 24, 4
    flat = inner.sample(1, 2 * steps)
    x = flat.reshape(1, steps, 2).expand(replicates, -1, -1)
    pred = one_step_predictive(model, x, num_samples=3, num_particles=400)
    assert pred.samples.shape == (3, replicates, steps, 2) and pred.latents.shape == (3, replicates, steps, 4)
    exact = [kalman(inner, flat[0, : 2 * t], horizon=2) for t in range(steps)]
    exact_mean = torch.stack([m[-2:, 0] for m, _, _ in exact])  # (T, 2): inner steps 2t and 2t + 1
    exact_var = torch.stack([v[-2:, 0] for _, v, _ in exact])
    _assert_close(pred.mean, exact_mean, "flattened predictive mean")
    _assert_close(pred.variance, exact_var, "flattened predictive variance")
    ratio = (pred.log_increments.sum(1).double() - float(inner.exact_log_prob(flat)[0].detach())).exp()
    _assert_close(ratio, torch.tensor(1.0, dtype=torch.float64), "flattened p_hat(x) / p(x)")
    fc = forecast(model, x, torch.full((replicates,), 3), horizon=2, num_samples=100, num_particles=400)
    mean, var, _ = kalman(inner, flat[0, :6], horizon=4)
    assert fc.samples.shape == (100, replicates, 2, 2) and fc.latents.shape == (100, replicates, 2, 4)
    _assert_close(fc.samples.mean(0), mean[6:, 0].reshape(2, 2), "flattened forecast mean")
    _assert_close(fc.samples.var(0), var[6:, 0].reshape(2, 2), "flattened forecast variance")
    assert sample_sequences(model, 3, 5).shape == (3, 5, 2)
