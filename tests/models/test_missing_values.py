"""Missing values (NaN = not observed): masking per element, the mask-aware network input, the
exact Kalman marginal of the observed elements, the estimators against it, forecasts filling gaps."""

import json

import numpy as np
import pyro
import pytest
import torch

import pyro.distributions as dist

from pyrosequence import VRNN, LinearGaussianSSM
from pyrosequence.training.config import TrainConfig
from pyrosequence.data.checks import Sequences, check_sequences
from pyrosequence.diagnostics.forecast import forecast
from pyrosequence.inference import evaluate
from pyrosequence.inference.particle_filter import run_filter
from pyrosequence.inference.resamplers import get_resampler
from pyrosequence.models import FRNN, RNNHier
from pyrosequence.models.core.missing import mask_elements
from pyrosequence.nn.heads import GaussianMixtureHead


def _gappy(batch=3, steps=6, dim=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, dim, generator=g)
    x[0, 1, 2] = float("nan")
    x[1, 2] = float("nan")  # a whole step missing
    x[2, 4, :2] = float("nan")
    return x


def _filter_with(model, seqs, k=4, ess=0.5, seed=1):
    pyro.set_rng_seed(seed)
    result, _ = run_filter(model, seqs, k, get_resampler("multinomial"), ess)
    loss = -result.log_z.sum()
    grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad], allow_unused=True)
    return result.log_z.detach(), [None if g is None else g.detach() for g in grads]


@pytest.mark.parametrize("ess", [0.0, 0.5])
def test_a_missing_element_changes_nothing_whatever_value_stands_in_for_it(ess):
    torch.manual_seed(0)
    model = VRNN(3, 2, likelihood="gaussian", mask_inputs=True)
    seqs = check_sequences(_gappy(), torch.tensor([6, 5, 6]))
    assert seqs.observed is not None
    other = Sequences(seqs.x.masked_fill(~seqs.observed, 123.0), seqs.lengths, seqs.mask, seqs.observed)
    bound, grads = _filter_with(model, seqs, ess=ess)
    bound2, grads2 = _filter_with(model, other, ess=ess)
    assert torch.equal(bound, bound2)
    for g, g2 in zip(grads, grads2):
        assert (g is None and g2 is None) or torch.equal(g, g2)
    # the distributions themselves: value and gradient at a masked element are ignored
    loc = torch.zeros(2, 3, requires_grad=True)
    d = dist.Normal(loc, 1.0).to_event(1)
    observed = torch.tensor([[True, False, True], [False, False, True]])
    for value in (0.0, 5.0):
        target = torch.tensor([[0.5, value, -1.0], [value, value, 2.0]])
        lp = mask_elements(d, observed).log_prob(target)
        (grad,) = torch.autograd.grad(lp.sum(), loc)
        expected = dist.Normal(0.0, 1.0).log_prob(target).masked_fill(~observed, 0.0).sum(-1)
        assert torch.allclose(lp, expected) and torch.equal(grad[~observed], torch.zeros(3))


def test_the_pyro_programs_score_observed_elements_only():
    torch.manual_seed(0)
    model = VRNN(3, 2, likelihood="gaussian", mask_inputs=True)
    x = _gappy()
    pyro.set_rng_seed(3)
    with_gaps = evaluate(model, x, bound="iwae", num_particles=3)
    assert torch.isfinite(with_gaps.log_likelihood).all()
    observed = ~torch.isnan(x)
    assert with_gaps.num_observed.tolist() == observed.sum((1, 2)).tolist()
    assert with_gaps.per_element == pytest.approx(float(with_gaps.log_likelihood.sum() / observed.sum()))
    assert with_gaps.per_timestep == pytest.approx(float(with_gaps.log_likelihood.sum() / 18))


def test_with_everything_observed_the_masked_path_equals_todays():
    torch.manual_seed(0)
    model = VRNN(3, 2, likelihood="gaussian")
    seqs = check_sequences(torch.randn(3, 6, 3), torch.tensor([6, 4, 6]))
    assert seqs.observed is None  # no gaps: no mask at all, today's path literally
    forced = Sequences(seqs.x, seqs.lengths, seqs.mask, torch.ones_like(seqs.x, dtype=torch.bool))
    for ess in (0.0, 0.5):
        bound, grads = _filter_with(model, seqs, ess=ess)
        bound2, grads2 = _filter_with(model, forced, ess=ess)
        assert torch.allclose(bound, bound2, atol=1e-6, rtol=0)
        for g, g2 in zip(grads, grads2):
            assert (g is None and g2 is None) or torch.allclose(g, g2, atol=1e-6, rtol=0)
    # every kind of emission the heads return, masked with nothing missing
    head = GaussianMixtureHead(4, 3, components=2)
    features, value = torch.randn(5, 4), torch.randn(5, 3)
    for d in (head(features), dist.Bernoulli(logits=torch.randn(5, 3)).to_event(1), dist.Normal(torch.randn(5, 3), 1.0).to_event(1)):
        target = value if not isinstance(d.base_dist if hasattr(d, "base_dist") else d, dist.Bernoulli) else (value > 0).float()
        assert torch.allclose(mask_elements(d, torch.ones(5, 3, dtype=torch.bool)).log_prob(target), d.log_prob(target), atol=1e-6)


def test_the_mixture_of_vectors_is_marginalised_exactly():
    head = GaussianMixtureHead(4, 3, components=2)
    d = head(torch.randn(4))
    observed = torch.tensor([True, False, True])
    value = torch.tensor([0.3, 0.0, -0.7])
    comp = d.component_distribution.base_dist
    per_k = comp.log_prob(value)[..., [0, 2]].sum(-1) + d.mixture_distribution.logits.log_softmax(-1)
    assert torch.allclose(mask_elements(d, observed).log_prob(value), per_k.logsumexp(-1), atol=1e-6)


def test_the_network_input_is_zero_filled_values_and_the_mask():
    model = VRNN(3, 2, likelihood="gaussian", mask_inputs=True)
    assert model.input_dim == 6 and model.phi_x.net[0].in_features == 6 if hasattr(model.phi_x, "net") else True
    seqs = check_sequences(_gappy())
    inputs = model.network_input(seqs)
    assert inputs.shape == (3, 6, 6)
    assert torch.equal(inputs[..., 3:], seqs.observed.float()) and bool((inputs[..., :3][~seqs.observed] == 0).all())
    model.input_offset.fill_(1.0)  # centring keeps a missing value at zero (the mean), the mask unchanged
    centred = model.centered(inputs)
    assert bool((centred[..., :3][~seqs.observed] == 0).all()) and torch.equal(centred[..., 3:], inputs[..., 3:])
    plain = VRNN(3, 2, likelihood="gaussian")
    assert plain.input_dim == 3 and plain.num_parameters() < model.num_parameters()
    assert torch.equal(plain.network_input(seqs), seqs.x)


def test_autoregressive_outputs_take_whole_missing_steps_but_refuse_partial_ones():
    x = torch.randn(2, 5, 4).gt(0).float()
    x[0, 2] = float("nan")  # a whole step: fine
    result = evaluate(RNNHier(4, hidden_dim=8), x, bound="elbo")
    assert torch.isfinite(result.log_likelihood).all()
    x[1, 3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"step 3 of sequence 1 is partly observed, but the emission of RNNHier"):
        evaluate(RNNHier(4, hidden_dim=8), x, bound="elbo")
    assert torch.isfinite(evaluate(FRNN(4, hidden_dim=8), x, bound="elbo").log_likelihood).all()


def test_a_bernoulli_model_checks_only_the_observed_values():
    x = torch.zeros(2, 4, 3)
    x[0, 1, 1] = float("nan")
    VRNN(3, 2).prepare(x)
    x[1, 2, 0] = 0.5
    with pytest.raises(ValueError, match=r"binary .* 0\.5 at index \(1, 2, 0\)"):
        VRNN(3, 2).prepare(x)


# ------------------------------------------------------------------------ the exact oracle
def _dense_marginal(model: LinearGaussianSSM, x: torch.Tensor) -> torch.Tensor:
    """log p(observed elements) from the joint Gaussian of all x (small T only)."""
    steps, z = x.shape[1], model.z_dim
    with torch.no_grad():
        a, c = model.transition_matrix, model.observation_matrix
        noise = torch.cat([model.log_initial_scale.exp()] + [model.log_transition_scale.exp()] * (steps - 1))
        m = torch.zeros(steps * z, steps * z, dtype=x.dtype)
        for t in range(steps):
            for k in range(t + 1):
                m[t * z:(t + 1) * z, k * z:(k + 1) * z] = torch.linalg.matrix_power(a, t - k)
        cb = torch.block_diag(*[c] * steps)
        cov = cb @ m @ torch.diag(noise**2) @ m.T @ cb.T + torch.diag(torch.cat([model.log_observation_scale.exp()] * steps) ** 2)
        out = []
        for seq in x:
            v = seq.reshape(-1)
            o = ~torch.isnan(v)
            out.append(dist.MultivariateNormal(torch.zeros(int(o.sum()), dtype=x.dtype), cov[o][:, o]).log_prob(v[o]))
    return torch.stack(out)


def test_the_kalman_oracle_skips_missing_elements_exactly():
    torch.manual_seed(0)
    model = LinearGaussianSSM(2, 2).double()
    x = model.sample(4, 5).double()
    x[0, 1, 0] = x[1, 2, 0] = x[1, 2, 1] = x[2, 0, 1] = x[2, 4, 0] = float("nan")
    assert torch.allclose(model.exact_log_prob(x), _dense_marginal(model, x), atol=1e-9, rtol=0)
    full = model.sample(2, 5).double()
    assert torch.allclose(model.exact_log_prob(full), _dense_marginal(model, full), atol=1e-9, rtol=0)


@pytest.mark.parametrize("bound,ess", [("iwae", 0.0), ("fivo", 0.5)])
def test_fivo_and_iwae_are_unbiased_for_the_observed_marginal(bound, ess):
    """``exp(bound)`` (the filter's estimate of ``p(x_obs)``) is unbiased for both estimators, so
    over R independent runs the mean of ``exp(bound - exact)`` is 1 within its standard error,
    which is estimated from the same R runs (4 standard errors: a false alarm about once in 16,000)."""
    torch.manual_seed(1)
    model = LinearGaussianSSM(2, 2, proposal="prior").double()
    one = model.sample(1, 6).double()
    one[0, 1, 0] = one[0, 3, 1] = float("nan")
    one[0, 4] = float("nan")
    exact = model.exact_log_prob(one)
    repeats = 400
    x = one.expand(repeats, -1, -1).clone()
    pyro.set_rng_seed(2)
    seqs = model.prepare(x)
    with torch.no_grad():
        result, _ = run_filter(model, seqs, 16, get_resampler("multinomial"), ess)
    ratio = (result.log_z - exact).exp().detach()
    mean, se = float(ratio.mean()), float(ratio.std() / repeats**0.5)
    assert abs(mean - 1.0) < 4 * se + 1e-9, (mean, se)
    # and the bound itself sits below the exact value by no more than the estimator's spread
    assert float(result.log_z.mean()) <= float(exact) + 4 * float(result.log_z.std()) / repeats**0.5


def test_many_particles_reach_the_kalman_marginal_with_gaps():
    torch.manual_seed(1)
    model = LinearGaussianSSM(2, 2, proposal="prior").double()
    x = model.sample(3, 5).double()
    x[0, 1] = x[1, 2, 1] = x[2, 0, 0] = float("nan")
    exact = model.exact_log_prob(x)
    pyro.set_rng_seed(0)
    estimates = torch.stack([evaluate(model, x, bound="iwae", num_particles=4096).log_likelihood for _ in range(4)])
    spread = estimates.std(0) / 2  # the standard error of the mean of 4 runs
    assert bool(((estimates.mean(0) - exact).abs() < 4 * spread + 0.01).all()), (estimates.mean(0), exact)


# ------------------------------------------------------------------------ forecasts and training
def test_forecasts_fill_the_gaps_of_the_prefix_with_predictive_draws():
    torch.manual_seed(0)
    model = VRNN(3, 2, likelihood="gaussian", mask_inputs=True)
    prefix = _gappy()
    result = forecast(model, prefix, horizon=2, num_samples=5, num_particles=8)
    filled = result.filled_prefix
    assert filled.shape == (5, 3, 6, 3) and torch.isfinite(filled).all()
    observed = ~torch.isnan(prefix)
    assert torch.equal(filled[:, observed], prefix[observed].expand(5, -1))
    assert filled[:, ~observed].std(0).gt(0).all()  # draws, not a constant fill
    assert forecast(model, torch.randn(2, 4, 3), horizon=1, num_samples=2, num_particles=4).filled_prefix is None


def test_training_on_data_with_gaps_records_mask_inputs(tmp_path):
    rng = np.random.default_rng(0)
    sequences = [rng.normal(size=(int(n), 2)) for n in rng.integers(6, 10, size=12)]
    sequences[0][2, 1] = np.nan
    sequences[3][1] = np.nan
    np.savez(tmp_path / "gaps.npz", *sequences)
    config = TrainConfig(model="vrnn", z_dim=2, data=str(tmp_path / "gaps.npz"), epochs=1)
    assert config.model_options["mask_inputs"] is True
    assert TrainConfig.from_dict(json.loads(config.to_json())).model_options["mask_inputs"] is True
    np.savez(tmp_path / "full.npz", *[np.nan_to_num(s) for s in sequences])
    assert "mask_inputs" not in TrainConfig(model="vrnn", z_dim=2, data=str(tmp_path / "full.npz")).model_options
    explicit = TrainConfig(model="vrnn", z_dim=2, data=str(tmp_path / "gaps.npz"), model_options={"mask_inputs": False})
    assert explicit.model_options["mask_inputs"] is False
