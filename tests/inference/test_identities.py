"""Identities between estimators under the same randomness (rtol 1e-6)."""

import pytest
import torch

import pyro
import pyro.poutine as poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import kl_divergence

from pyrosequence import VRNN, LinearGaussianSSM
from pyrosequence.inference import ConstantBeta, KLAnnealing, evaluate, make_objective, scale_latents


def _data(model_kind):
    if model_kind == "lgssm":
        m = LinearGaussianSSM(3, 2)
        return m, m.sample(5, 7), torch.tensor([7, 3, 7, 1, 5])
    m = VRNN(4, 3, likelihood="bernoulli")
    return m, (torch.rand(5, 7, 4) < 0.4).float(), torch.tensor([7, 3, 7, 1, 5])


@pytest.mark.parametrize("kind", ["lgssm", "vrnn"])
def test_evaluate_with_one_particle_equals_the_elbo_estimate(kind):
    m, x, lengths = _data(kind)
    pyro.set_rng_seed(123)
    result = evaluate(m, x, lengths, bound="elbo", num_particles=1)
    pyro.set_rng_seed(123)
    loss = Trace_ELBO().loss(m.model, m.guide, x, lengths)
    assert result.total == pytest.approx(-loss, rel=1e-6)
    pyro.set_rng_seed(123)
    iwae = evaluate(m, x, lengths, bound="iwae", num_particles=1)
    assert torch.allclose(iwae.log_likelihood, result.log_likelihood, rtol=1e-6)


@pytest.mark.parametrize("objective", ["elbo", "mean-field", "iwae"])
def test_beta_of_one_equals_the_unscaled_loss(objective):
    m, x, lengths = _data("vrnn")
    loss = make_objective(objective, num_particles=3)
    pyro.set_rng_seed(7)
    plain = loss.loss(m.model, m.guide, x, lengths)
    pyro.set_rng_seed(7)
    scaled = loss.loss(scale_latents(m.model, 1.0), scale_latents(m.guide, 1.0), x, lengths)
    assert scaled == pytest.approx(plain, rel=1e-6)


@pytest.mark.parametrize("beta", [0.3, 2.5])
def test_beta_scaled_mean_field_loss_is_distortion_plus_beta_times_rate(beta):
    """-ELBO_beta = -E[log p(x|z)] + beta * sum_t KL(q_t || p_t), the parts computed independently."""
    m, x, lengths = _data("vrnn")
    pyro.set_rng_seed(11)
    loss = TraceMeanField_ELBO(max_plate_nesting=1).loss(
        scale_latents(m.model, beta), scale_latents(m.guide, beta), x, lengths
    )
    pyro.set_rng_seed(11)
    guide_trace = poutine.trace(m.guide).get_trace(x, lengths)
    model_trace = poutine.trace(poutine.replay(m.model, trace=guide_trace)).get_trace(x, lengths)
    model_trace.compute_log_prob()
    distortion = -model_trace.nodes["x"]["log_prob_sum"].detach()
    mask = torch.arange(7) < lengths[:, None]
    rate = sum(
        (kl_divergence(guide_trace.nodes[f"z_{t}"]["fn"], model_trace.nodes[f"z_{t}"]["fn"]) * mask[:, t]).sum()
        for t in range(7)
    ).detach()
    assert loss == pytest.approx(float(distortion + beta * rate), rel=1e-6)


def test_scaling_touches_latent_sites_only():
    m, x, lengths = _data("vrnn")
    trace = poutine.trace(scale_latents(m.model, 0.25)).get_trace(x, lengths)
    assert trace.nodes["x"]["scale"] == 1.0
    assert all(trace.nodes[f"z_{t}"]["scale"] == 0.25 for t in range(7))


def test_schedules():
    anneal = KLAnnealing()
    assert anneal(0) == pytest.approx(0.2)
    assert anneal(8000) == pytest.approx(0.6)
    assert anneal(16000) == pytest.approx(1.0) and anneal(10**6) == 1.0
    assert ConstantBeta(0.5)(123) == 0.5
    with pytest.raises(ValueError, match="positive"):
        ConstantBeta(0.0)
    with pytest.raises(ValueError, match="start"):
        KLAnnealing(start=0.0)
    with pytest.raises(ValueError, match="positive"):
        scale_latents(m_fn := (lambda: None), -1.0)
    assert m_fn() is None


def test_unknown_objective_and_bad_particles():
    with pytest.raises(ValueError, match="unknown objective 'vi'.*elbo, elbo-stl, fivo, iwae, iwae-dreg, mean-field"):
        make_objective("vi")
    with pytest.raises(ValueError, match="at least 1"):
        make_objective("iwae", num_particles=0)
