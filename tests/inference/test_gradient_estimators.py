"""DReG (iwae-dreg) and STL (elbo-stl): same bound, unbiased gradients, lower guide variance.

Monte Carlo checks use paired draws (the same seed for both estimators, so the same particles)
and a tolerance derived from the spread of the draws: ``|mean| <= 5 standard errors`` plus a
rounding floor (float64), so a biased estimator fails and a correct one passes at fixed seeds.
"""

import math
import re

import pytest
import torch

import pyro
import pyro.distributions as dist

from pyrosequence import VRNN, LinearGaussianSSM
from pyrosequence.inference import make_objective, scale_latents
from lgssm_posterior import GUIDE_PARAMS, exact_posterior_lgssm  # tests/inference/lgssm_posterior.py

PAIRS = [("iwae", "iwae-dreg"), ("elbo", "elbo-stl")]


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def _lgssm(seed=0):
    torch.manual_seed(seed)
    m = LinearGaussianSSM(2, 2)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m, m.sample(3, 4)


def _gradient(model, objective, x, seed, lengths=None, scale=None):
    """One draw of ``objective``'s gradient of the loss, flattened over all parameters."""
    pyro.set_rng_seed(seed)
    for p in model.parameters():
        p.grad = None
    fn_model, fn_guide = model.model, model.guide
    if scale is not None:
        fn_model, fn_guide = scale_latents(fn_model, scale), scale_latents(fn_guide, scale)
    objective.loss_and_grads(fn_model, fn_guide, x, lengths)
    return torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).flatten() for p in model.parameters()])


def _draws(model, name, x, num_particles, seeds, **kwargs):
    objective = make_objective(name, num_particles)
    return torch.stack([_gradient(model, objective, x, s, **kwargs) for s in seeds])


def _assert_mean_zero(diff, scale_of_gradients):
    """Every component of ``diff``'s mean is within 5 standard errors (plus float64 rounding)."""
    n = diff.shape[0]
    tolerance = 5 * diff.std(0) / math.sqrt(n) + 1e-9 * (1 + scale_of_gradients)
    excess = diff.mean(0).abs() - tolerance
    assert (excess <= 0).all(), f"mean difference beyond tolerance at components {torch.nonzero(excess > 0).flatten().tolist()}"


def _guide_mask(model):
    return torch.cat(
        [torch.full((p.numel(),), name in GUIDE_PARAMS) for name, p in model.named_parameters()]
    )


@pytest.mark.parametrize("standard, estimator", PAIRS)
def test_same_loss_value_as_the_standard_estimator(standard, estimator):
    m, x = _lgssm()
    losses = []
    for name in (standard, estimator):
        pyro.set_rng_seed(3)
        losses.append(make_objective(name, 5).loss_and_grads(m.model, m.guide, x))
        pyro.set_rng_seed(3)
        losses.append(make_objective(name, 5).loss(m.model, m.guide, x))
    assert losses == pytest.approx([losses[0]] * 4, rel=1e-10)


@pytest.mark.parametrize("scale", [None, 0.4])
@pytest.mark.parametrize("standard, estimator", PAIRS)
def test_mean_gradient_equals_the_standard_estimators(standard, estimator, scale):
    """Unbiased for every parameter (model and guide), also with scaled (KL-weighted) latents."""
    m, x = _lgssm()
    seeds = range(60)
    reference = _draws(m, standard, x, 4, seeds, scale=scale)
    ours = _draws(m, estimator, x, 4, seeds, scale=scale)
    _assert_mean_zero(ours - reference, reference.abs().max().item())
    # not the same estimator: the guide's draws differ
    assert (ours - reference)[:, _guide_mask(m)].abs().max() > 1e-3


@pytest.mark.parametrize("standard, estimator", PAIRS)
def test_mean_gradient_on_vrnn_with_ragged_sequences(standard, estimator):
    torch.manual_seed(0)
    m = VRNN(3, 2, likelihood="bernoulli").double()
    x = (torch.rand(3, 4, 3) < 0.4).double()
    lengths = torch.tensor([4, 2, 3])
    seeds = range(30)
    reference = _draws(m, standard, x, 3, seeds, lengths=lengths)
    ours = _draws(m, estimator, x, 3, seeds, lengths=lengths)
    _assert_mean_zero(ours - reference, reference.abs().max().item())


@pytest.mark.parametrize("name", ["iwae", "iwae-dreg", "elbo", "elbo-stl"])
def test_model_gradient_equals_the_exact_one_at_the_exact_posterior(name):
    """With q the exact posterior, the model parameters' expected gradient is that of log p(x)
    (Fisher's identity), which the Kalman filter gives exactly."""
    m, x = exact_posterior_lgssm()
    draws = _draws(m, name, x, 4, range(40))
    m.zero_grad()
    (-m.exact_log_prob(x).sum()).backward()
    exact = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).flatten() for p in m.parameters()])
    model = ~_guide_mask(m)
    _assert_mean_zero(draws[:, model] - exact[model], exact.abs().max().item())


@pytest.mark.parametrize("standard, estimator", PAIRS)
def test_guide_gradient_is_exactly_zero_at_the_exact_posterior(standard, estimator):
    """Sticking the landing: zero variance at the optimum, where the standard estimator is noisy."""
    m, x = exact_posterior_lgssm()
    guide = _guide_mask(m)
    ours = _draws(m, estimator, x, 4, range(5))[:, guide]
    reference = _draws(m, standard, x, 4, range(5))[:, guide]
    assert ours.abs().max() < 1e-8
    assert reference.abs().max() > 1e-2


@pytest.mark.parametrize("standard, estimator", PAIRS)
def test_lower_guide_gradient_variance_at_16_particles(standard, estimator):
    m, x = exact_posterior_lgssm(perturb=0.15)
    guide = _guide_mask(m)
    seeds = range(40)
    reference = _draws(m, standard, x, 16, seeds)[:, guide]
    ours = _draws(m, estimator, x, 16, seeds)[:, guide]
    assert ours.var(0).sum() < 0.5 * reference.var(0).sum()


def _plain_model(x):
    pyro.sample("z", dist.Normal(0.0, 1.0))
    pyro.sample("c", dist.Bernoulli(0.5))
    pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)


def _discrete_guide(x):
    loc = pyro.param("loc", torch.tensor(0.0))
    pyro.sample("z", dist.Normal(loc, 1.0))
    pyro.sample("c", dist.Bernoulli(0.3))


def _score_function_guide(x):
    loc = pyro.param("loc", torch.tensor(0.0))
    pyro.sample("z", dist.Normal(loc, 1.0).has_rsample_(False))
    pyro.sample("c", dist.Normal(0.0, 1.0))


@pytest.mark.parametrize("name", ["iwae-dreg", "elbo-stl"])
@pytest.mark.parametrize("guide, site", [(_discrete_guide, "'c' is discrete"), (_score_function_guide, "'z' (Normal) has no rsample")])
def test_refuses_latents_that_are_not_reparameterised(name, guide, site):
    with pytest.raises(ValueError, match=re.escape(f"{name} needs reparameterised latents, but guide site {site}")):
        make_objective(name, 2).loss_and_grads(_plain_model, guide, torch.tensor(0.5))


@pytest.mark.filterwarnings("ignore:Found vars in model but not guide")
@pytest.mark.parametrize("name", ["iwae-dreg", "elbo-stl"])
def test_refuses_a_model_latent_the_guide_lacks(name):
    def guide(x):
        pyro.sample("z", dist.Normal(pyro.param("loc", torch.tensor(0.0)), 1.0))

    def model(x):
        pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("u", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)

    with pytest.raises(ValueError, match="model site 'u' is not sampled by the guide"):
        make_objective(name, 2).loss_and_grads(model, guide, torch.tensor(0.5))


@pytest.mark.parametrize("name", ["iwae-dreg", "elbo-stl"])
def test_particles_in_a_loop_give_the_vectorised_bound(name):
    m, x = _lgssm()
    pyro.set_rng_seed(0)
    looped = make_objective(name, 3, vectorize_particles=False)
    values = torch.tensor([looped.loss_and_grads(m.model, m.guide, x) for _ in range(80)])
    pyro.set_rng_seed(1)
    vectorised = make_objective(name, 3)
    other = torch.tensor([vectorised.loss(m.model, m.guide, x) for _ in range(80)])
    se = (values.var() / 80 + other.var() / 80).sqrt()
    assert abs(values.mean() - other.mean()) < 5 * se


def _walk_model(x, lengths):
    s = pyro.param("s", torch.tensor(0.7), constraint=dist.constraints.positive)
    z = None
    with pyro.plate("sequences", x.shape[0], dim=-1):
        for t in pyro.markov(range(x.shape[1])):
            with pyro.poutine.mask(mask=t < lengths):
                z = pyro.sample(f"z_{t}", dist.Normal(x.new_zeros(x.shape[0], 1) if z is None else z, s).to_event(1))
                pyro.sample(f"x_{t}", dist.Normal(z, 1.0).to_event(1), obs=x[:, t])


def _walk_guide(x, lengths):
    a = pyro.param("a", torch.tensor(0.3))
    scale = pyro.param("scale", torch.tensor(0.9), constraint=dist.constraints.positive)
    with pyro.plate("sequences", x.shape[0], dim=-1):
        for t in pyro.markov(range(x.shape[1])):
            with pyro.poutine.mask(mask=t < lengths):
                pyro.sample(f"z_{t}", dist.Normal(a * x[:, t], scale).to_event(1))


@pytest.mark.parametrize("standard, estimator", PAIRS)
def test_mean_gradient_on_a_plain_pyro_program(standard, estimator):
    """PyroProgram: pyro.param sites (constrained ones included) get the same expected gradient."""
    from pyrosequence import PyroProgram

    program = PyroProgram(_walk_model, _walk_guide, x_dim=1)
    torch.manual_seed(0)
    x, lengths = torch.randn(3, 4, 1).cumsum(1), torch.tensor([4, 2, 3])
    program.prepare(x, lengths)
    seeds = range(40)
    reference = _draws(program, standard, x, 4, seeds, lengths=lengths)
    ours = _draws(program, estimator, x, 4, seeds, lengths=lengths)
    assert reference.shape[1] == 3  # s, a, scale
    _assert_mean_zero(ours - reference, reference.abs().max().item())
    assert (ours - reference).abs().max() > 1e-3
