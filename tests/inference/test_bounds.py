"""Every estimator against the linear-Gaussian model's exact log-likelihood.

Monte Carlo tolerances are multiples (4 to 5) of standard errors estimated from the same draws.
"""

import math

import pytest
import torch

import pyro
from pyro.infer import RenyiELBO, Trace_ELBO, TraceMeanField_ELBO

from pyrosequence import LinearGaussianSSM
from pyrosequence.data import Sequences
from pyrosequence.inference import evaluate, log_importance_weights


@pytest.fixture
def oracle():
    m = LinearGaussianSSM(x_dim=2, z_dim=2, proposal="prior")
    x = m.sample(4, 6)
    return m, x, m.exact_log_prob(x).detach()


@pytest.fixture
def weights(oracle):
    m, x, _ = oracle
    with torch.no_grad():
        return torch.cat([log_importance_weights(m, m.prepare(x), 5000) for _ in range(4)])  # (20000, 4)


def test_elbo_is_below_exact_log_likelihood(oracle, weights):
    _, _, exact = oracle
    elbo, se = weights.mean(0), weights.std(0) / weights.shape[0] ** 0.5
    assert (elbo + 5 * se < exact).all()


@pytest.mark.parametrize("loss", [Trace_ELBO(), TraceMeanField_ELBO(), RenyiELBO(alpha=0, num_particles=8)])
def test_pyro_estimators_are_below_exact_log_likelihood(oracle, loss):
    m, x, exact = oracle
    draws = torch.tensor([-loss.loss(m.model, m.guide, x) for _ in range(300)])
    mean, se = draws.mean(), draws.std() / len(draws) ** 0.5
    assert mean + 5 * se < exact.sum()


def test_iwae_tightens_with_k(oracle, weights):
    _, _, exact = oracle
    n = weights.shape[0]
    means = []
    for k in (1, 10, 100):
        est = weights[: n // k * k].reshape(n // k, k, -1).logsumexp(1) - math.log(k)
        means.append((est.sum(-1).mean(), est.sum(-1).std() / (n // k) ** 0.5))
    for (lo, lo_se), (hi, hi_se) in zip(means, means[1:]):
        assert lo + 4 * (lo_se**2 + hi_se**2) ** 0.5 < hi
    assert means[-1][0] < exact.sum()


def test_iwae_with_large_k_matches_exact_within_monte_carlo_error(oracle, weights):
    _, _, exact = oracle
    k = weights.shape[0]
    iwae = weights.logsumexp(0) - math.log(k)
    normalized = (weights - weights.logsumexp(0)).exp()
    se = ((k * (normalized**2).sum(0) - 1) / k).sqrt()  # delta method: sd(mean w) / mean w
    assert ((iwae - exact).abs() < 5 * se + 1e-3).all(), (iwae, exact, se)


def test_importance_weights_are_unbiased_for_the_likelihood(oracle, weights):
    """E[exp(IWAE_K - log p(x))] = 1 for any K: the estimator of p(x) itself is unbiased."""
    _, _, exact = oracle
    k = 10
    est = weights.reshape(-1, k, weights.shape[-1]).logsumexp(1) - math.log(k)
    ratio = (est - exact).exp()
    mean, se = ratio.mean(0), ratio.std(0) / ratio.shape[0] ** 0.5
    assert ((mean - 1).abs() < 5 * se).all(), (mean, se)


def test_evaluate_reports_fivo_normalisation(oracle):
    m, x, _ = oracle
    lengths = torch.tensor([6, 2, 4, 5])
    result = evaluate(m, x, lengths, bound="iwae", num_particles=7)
    assert result.log_likelihood.shape == (4,)
    assert result.per_timestep == pytest.approx(float(result.log_likelihood.sum()) / 17, rel=1e-6)
    assert result.num_particles == 7 and result.bound == "iwae"


@pytest.mark.parametrize("bound", ["elbo", "iwae"])
def test_chunked_evaluation_reduces_exactly_the_weights_drawn(oracle, bound):
    """Particles in chunks of 3 and sequences in batches of 2 give the bound of all weights at once."""
    m, x, _ = oracle
    lengths = torch.tensor([6, 2, 4, 5])
    pyro.set_rng_seed(5)
    result = evaluate(m, x, lengths, bound=bound, num_particles=10, batch_size=2, particle_chunk=3)
    pyro.set_rng_seed(5)
    seqs = m.prepare(x, lengths)
    expected = []
    for rows in (slice(0, 2), slice(2, 4)):
        part = Sequences(seqs.x[rows], seqs.lengths[rows], seqs.mask[rows])
        with torch.no_grad():
            w = torch.cat([log_importance_weights(m, part, k) for k in (3, 3, 3, 1)])
        expected.append(w.logsumexp(0) - math.log(10) if bound == "iwae" else w.mean(0))
    assert torch.allclose(result.log_likelihood, torch.cat(expected), rtol=1e-6)


def test_evaluate_rejects_bad_arguments(oracle):
    m, x, _ = oracle
    with pytest.raises(ValueError, match="unknown bound 'fivo2'"):
        evaluate(m, x, bound="fivo2")
    with pytest.raises(ValueError, match="at least 1"):
        evaluate(m, x, bound="iwae", num_particles=0)
    with pytest.raises(ValueError, match="x_dim"):
        evaluate(m, torch.zeros(2, 3, 5))
