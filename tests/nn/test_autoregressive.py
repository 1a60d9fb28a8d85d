"""Autoregressive-within-a-step outputs (Dai et al. 2019, eq. 13-14) and the output registry."""

import itertools
import math

import pytest
import torch

import pyro.distributions as dist

from pyrosequence.nn.autoregressive import AutoregressiveStep, ElementFamily, monte_carlo_moments
from pyrosequence.nn.heads import LIKELIHOODS, OUTPUTS, DimMixtureHead, make_likelihood

L = 4
OUTCOMES = torch.tensor(list(itertools.product([0.0, 1.0], repeat=L)))  # (2^L, L)
AR_OUTPUTS = [("hier-rnn", {}), ("hier-rnn", {"cell": "gru", "position_dim": 0}),
              ("hier-made", {}), ("hier-made", {"order": "random", "seed": 5, "layers": 2})]


@pytest.mark.parametrize("output,options", AR_OUTPUTS)
def test_binary_step_distribution_is_normalised(output, options):
    head = make_likelihood("bernoulli", 3, L, output=output, hidden=8, **options)
    features = torch.randn(2, 3, 3)  # batch (2, 3)
    d = head(features)
    assert isinstance(d, AutoregressiveStep)
    assert d.batch_shape == (2, 3) and d.event_shape == (L,)
    log_p = d.log_prob(OUTCOMES[:, None, None, :])  # (2^L, 2, 3)
    assert log_p.shape == (2 ** L, 2, 3)
    torch.testing.assert_close(log_p.logsumexp(0), torch.zeros(2, 3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("output,options", AR_OUTPUTS)
def test_sample_frequencies_match_log_prob(output, options):
    """Empirical frequencies of the 2^L outcomes within 5 binomial standard errors of exp(log p)."""
    torch.manual_seed(0)
    head = make_likelihood("bernoulli", 3, L, output=output, hidden=8, **options)
    with torch.no_grad():
        head.bias.copy_(torch.randn(L, 1))  # make the distribution far from uniform
    d = head(torch.randn(3))
    n = 20000
    draws = d.sample(torch.Size([n]))
    assert draws.shape == (n, L) and set(draws.unique().tolist()) <= {0.0, 1.0}
    codes = (draws * 2 ** torch.arange(L - 1, -1, -1)).sum(-1).long()
    freq = torch.bincount(codes, minlength=2 ** L).double() / n
    p = d.log_prob(OUTCOMES).exp().double().detach()
    tolerance = 5 * (p * (1 - p) / n).sqrt() + 1e-3
    assert torch.all((freq - p).abs() <= tolerance), (freq, p)


def test_element_i_does_not_see_elements_i_to_L():
    """Changing x_{t,j} leaves the conditionals of elements 1..j unchanged (teacher forcing is causal)."""
    for output in ("hier-rnn", "hier-made"):
        head = make_likelihood("gaussian", 3, L, output=output, hidden=8)
        h, x = torch.randn(3), torch.randn(L)
        base = head.conditioner.teacher(h, x)
        for j in range(L):
            moved = x.clone()
            moved[j] += 1.0
            changed = (head.conditioner.teacher(h, moved) - base).abs().sum(-1) > 0
            assert not changed[: j + 1].any() and (j == L - 1 or changed[j + 1:].any())


def test_gaussian_and_mixture_elements_integrate_to_one():
    """A 2-element step with continuous elements: a grid sum of the density over R^2 is 1."""
    grid = torch.linspace(-12, 12, 401)
    dx = float(grid[1] - grid[0])
    points = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    for likelihood in ("gaussian", "mixture"):
        torch.manual_seed(1)
        head = make_likelihood(likelihood, 3, 2, output="hier-rnn", hidden=8, components=3, min_scale=0.3)
        with torch.no_grad():
            log_p = head(torch.randn(3)).log_prob(points)
        assert abs(float(log_p.exp().sum()) * dx * dx - 1) < 1e-3


def test_mixture_element_matches_a_mixture_of_normals():
    family = ElementFamily("mixture", components=3)
    params, x = torch.randn(5, 9), torch.randn(5)
    logits, loc, raw = params.split(3, -1)
    reference = dist.MixtureSameFamily(
        dist.Categorical(logits=logits), dist.Normal(loc, torch.nn.functional.softplus(raw) + 1e-4)
    ).log_prob(x)
    torch.testing.assert_close(family.log_prob(params, x), reference)


def test_log_prob_broadcasts_and_expand_keeps_values():
    head = make_likelihood("bernoulli", 3, L, output="hier-rnn", hidden=8)
    d = head(torch.randn(5, 3))
    x = (torch.rand(7, 1, L) < 0.5).float()
    joint = d.log_prob(x)
    assert joint.shape == (7, 5)
    one = head(d.features[2]).log_prob(x[3, 0])
    torch.testing.assert_close(joint[3, 2], one)
    expanded = d.expand(torch.Size([2, 5]))
    assert expanded.batch_shape == (2, 5)
    torch.testing.assert_close(expanded.log_prob(x[0]), joint[0].expand(2, 5))


def test_moments_are_not_invented():
    d = make_likelihood("gaussian", 3, L, output="hier-made", hidden=8)(torch.randn(2, 3))
    with pytest.raises(NotImplementedError, match="monte_carlo_moments"):
        _ = d.mean
    with pytest.raises(NotImplementedError, match="no closed form"):
        _ = d.variance
    mean, var = monte_carlo_moments(d, 64)
    assert mean.shape == var.shape == (2, L) and torch.all(var > 0)


def test_dim_mixture_is_a_product_of_per_dimension_mixtures():
    head = DimMixtureHead(3, 2, components=4)
    features, x = torch.randn(6, 3), torch.randn(6, 2)
    d = head(features)
    assert d.event_shape == (2,) and d.batch_shape == (6,)
    out = head.params(features).reshape(6, 2, 12)
    expected = 0.0
    for i in range(2):
        logits, loc, raw = out[:, i].split(4, -1)
        scale = torch.nn.functional.softplus(raw) + 1e-4
        expected = expected + (logits.log_softmax(-1) + dist.Normal(loc, scale).log_prob(x[:, i:i + 1])).logsumexp(-1)
    torch.testing.assert_close(d.log_prob(x), expected)
    assert "dim-mixture" in LIKELIHOODS and d.mean.shape == (6, 2)


def test_init_bias_from_mean_starts_every_element_at_the_data_rate():
    mean = torch.tensor([0.1, 0.5, 0.9, 0.2])
    head = make_likelihood("bernoulli", 3, L, output="hier-made", hidden=8)
    head.init_bias_from_mean(mean)
    torch.testing.assert_close(head.bias[:, 0], torch.log(mean / (1 - mean)))


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="unknown output 'hier-lstm'; choose one of: factorized, hier-rnn, hier-made"):
        make_likelihood("bernoulli", 3, L, output="hier-lstm")
    with pytest.raises(ValueError, match="unknown likelihood"):
        make_likelihood("poisson", 3, L, output="hier-rnn")
    assert set(OUTPUTS) == {"factorized", "hier-rnn", "hier-made"}
    head = make_likelihood("bernoulli", 3, L, output="hier-rnn")
    with pytest.raises(ValueError, match="binary"):
        head.check_data(torch.tensor([[0.0, 1.0, 0.5, 1.0]]))
    make_likelihood("gaussian", 3, L, output="hier-rnn").check_data(torch.tensor([[0.0, 1.0, 0.5, 1.0]]))
    with pytest.raises(ValueError, match="last dimension 4"):
        head(torch.randn(3)).log_prob(torch.zeros(3))
    with pytest.raises(ValueError, match="unknown cell"):
        make_likelihood("bernoulli", 3, L, output="hier-rnn", cell="rnn")
    # the factorised heads keep their old signature and behaviour
    assert isinstance(make_likelihood("bernoulli", 3, L).forward(torch.randn(3)), dist.Independent)
    assert math.isfinite(float(make_likelihood("mixture", 3, L, components=2)(torch.randn(3)).log_prob(torch.randn(L)).detach()))


def test_no_grad_teacher_forcing_in_row_chunks_matches_one_pass(monkeypatch):
    import pyrosequence.nn.autoregressive as ar
    from pyrosequence.models.flat_rnn import RNNFlat

    head = make_likelihood("bernoulli", 3, L, output="hier-rnn", hidden=8)
    flat = RNNFlat(L, 6)
    features, x = torch.randn(7, 3), (torch.rand(7, L) < 0.5).float()
    state = (torch.randn(7, 6), torch.randn(7, 6))
    one_pass = [head(features).log_prob(x).detach(), flat.emission(state, None).log_prob(x).detach()]
    monkeypatch.setattr(ar, "NO_GRAD_CHUNK", 2 * L * 8)  # blocks of 2 rows (1 for the flat model)
    with torch.no_grad():
        chunked = [head(features).log_prob(x), flat.emission(state, None).log_prob(x)]
    for a, b in zip(one_pass, chunked):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_every_factorised_head_checks_data_with_a_name(name):
    head = make_likelihood(name, 3, L)
    x = torch.tensor([[0.0, 1.0, 0.5, 1.0]])
    if name == "bernoulli":
        with pytest.raises(ValueError, match="y must be binary"):
            head.check_data(x, "y")
    else:
        head.check_data(x, "y")  # real-valued heads accept any finite data
