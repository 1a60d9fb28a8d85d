"""FIVO against the linear-Gaussian model's exact likelihood, and its identities with ELBO and IWAE."""


import pytest
import torch

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
from pyro.infer import SVI, Trace_ELBO

from pyrosequence import VHRNN, VRNN, LinearGaussianSSM
from pyrosequence.data import synthetic_dataset
from pyrosequence.inference import FIVO, evaluate, make_bound, particle_filter, get_resampler, scale_latents


@pytest.fixture
def oracle():
    m = LinearGaussianSSM(x_dim=2, z_dim=2, proposal="prior")
    x = m.sample(1, 10)
    return m, x, float(m.exact_log_prob(x).detach())


def _filter(m, x, k, replicas, ess_threshold=0.5, resampler="multinomial", lengths=None):
    """``replicas`` independent filters on the same sequence (one per copy in the batch)."""
    x = x.expand(replicas, -1, -1)
    with torch.no_grad():
        return particle_filter(m, m.prepare(x, lengths), k, get_resampler(resampler), ess_threshold)


@pytest.mark.parametrize("resampler", ["multinomial", "systematic", "stratified", "residual"])
def test_likelihood_estimate_is_unbiased(oracle, resampler):
    """E[exp(log Z_hat - log Z)] = 1: the SMC estimate of p(x) is unbiased for every resampler."""
    m, x, exact = oracle
    ratio = (_filter(m, x, 32, 3000, resampler=resampler).log_z.double() - exact).exp()
    mean, se = ratio.mean(), ratio.std() / len(ratio) ** 0.5
    assert abs(mean - 1) < 5 * se, (float(mean), float(se))


def test_expected_bound_is_below_exact_log_likelihood(oracle):
    m, x, exact = oracle
    log_z = _filter(m, x, 4, 3000).log_z
    assert log_z.mean() + 5 * log_z.std() / len(log_z) ** 0.5 < exact


def test_large_k_is_within_monte_carlo_error_of_exact(oracle):
    m, x, exact = oracle
    log_z = _filter(m, x, 1000, 40).log_z.double()
    mean, se = log_z.mean(), log_z.std() / len(log_z) ** 0.5
    # log Z_hat is biased down by about var/2 (tiny here); allow 5 standard errors plus that
    assert abs(mean - exact) < 5 * se + log_z.var() / 2, (float(mean), exact, float(se))


def test_fivo_beats_iwae_on_long_sequences(oracle):
    m, _, _ = oracle
    x = m.sample(1, 40)
    fivo = _filter(m, x, 16, 200, ess_threshold=0.5).log_z.mean()
    iwae = _filter(m, x, 16, 200, ess_threshold=0.0).log_z.mean()
    assert fivo > iwae + 1.0


ONE_PARTICLE_MODELS = {
    "lgssm": lambda: LinearGaussianSSM(3, 2),
    "vrnn": lambda: VRNN(3, 2, likelihood="gaussian"),
    # the FIVO code's reading: smoothing and residual proposals, hyper output layer
    "vrnn-fivo": lambda: VRNN(3, 2, likelihood="gaussian", architecture="fivo"),
    "vhrnn-fivo": lambda: VHRNN(3, 2, likelihood="gaussian", omega_dim=4, architecture="fivo"),
}


@pytest.mark.parametrize("kind", sorted(ONE_PARTICLE_MODELS))
def test_one_particle_equals_the_elbo(kind):
    m = ONE_PARTICLE_MODELS[kind]()
    x = torch.randn(4, 6, 3)
    lengths = torch.tensor([6, 2, 5, 1])
    pyro.set_rng_seed(9)
    fivo = FIVO(1).filter(m.model, m.guide, x, lengths).log_z
    pyro.set_rng_seed(9)
    elbo = evaluate(m, x, lengths, bound="elbo", num_particles=1).log_likelihood
    assert torch.allclose(fivo, elbo, rtol=1e-6)
    pyro.set_rng_seed(9)
    loss = Trace_ELBO().loss(m.model, m.guide, x, lengths)
    assert float(fivo.detach().sum()) == pytest.approx(-loss, rel=1e-6)


@pytest.mark.parametrize("kind", ["lgssm", "vrnn"])
def test_never_resampling_equals_iwae(kind):
    m = LinearGaussianSSM(3, 2) if kind == "lgssm" else VRNN(3, 2, likelihood="gaussian")
    x = torch.randn(4, 6, 3)
    lengths = torch.tensor([6, 2, 5, 1])
    pyro.set_rng_seed(4)
    fivo = evaluate(m, x, lengths, bound=make_bound("fivo", ess_threshold=0.0), num_particles=8).log_likelihood
    pyro.set_rng_seed(4)
    iwae = evaluate(m, x, lengths, bound="iwae", num_particles=8, particle_chunk=8).log_likelihood
    assert torch.allclose(fivo, iwae, rtol=1e-6)


def test_result_structure_and_ragged_sequences(oracle):
    m, _, _ = oracle
    x = m.sample(3, 8)
    lengths = torch.tensor([8, 3, 5])
    with torch.no_grad():
        result = particle_filter(m, m.prepare(x, lengths), 16, get_resampler("systematic"), 1.0)
    assert result.log_z.shape == (3,) and result.log_increments.shape == (8, 3)
    assert result.ess.shape == (8, 3) and result.resampled.shape == (8, 3)
    assert torch.allclose(result.log_increments.sum(0), result.log_z, atol=1e-4)
    steps = torch.arange(8)[:, None]
    assert torch.all(result.log_increments[steps >= lengths] == 0)  # ended sequences add nothing
    # threshold 1: resample after every step but a sequence's last
    assert torch.equal(result.resampled, steps < lengths - 1)
    assert torch.all((result.ess >= 1 - 1e-4) & (result.ess <= 16 + 1e-4))
    with torch.no_grad():
        never = particle_filter(m, m.prepare(x, lengths), 16, get_resampler("systematic"), 0.0)
    assert not never.resampled.any()


def test_padding_is_ignored():
    m = VRNN(3, 2, likelihood="gaussian")
    x = torch.randn(3, 6, 3)
    lengths = torch.tensor([6, 2, 4])
    other = x.clone()
    other[1, 2:] = 50.0
    other[2, 4:] = float("nan")
    values = []
    for data in (x, other):
        pyro.set_rng_seed(1)
        m.zero_grad()
        loss = FIVO(5).loss_and_grads(m.model, m.guide, data, lengths)
        values.append((loss, [p.grad.clone() for p in m.parameters()]))
    assert values[0][0] == pytest.approx(values[1][0], rel=1e-6)
    assert all(torch.allclose(a, b) for a, b in zip(values[0][1], values[1][1]))


def test_training_loss_is_the_length_normalised_mean():
    m = LinearGaussianSSM(2, 2)
    x = m.sample(3, 6)
    lengths = torch.tensor([6, 3, 2])
    pyro.set_rng_seed(2)
    loss = FIVO(4).loss(m.model, m.guide, x, lengths)
    pyro.set_rng_seed(2)
    log_z = FIVO(4).filter(m.model, m.guide, x, lengths).log_z
    assert loss == pytest.approx(float(-(log_z / lengths).mean().detach()), rel=1e-6)


def test_svi_with_fivo_lowers_the_vrnn_loss_on_synthetic_data():
    data = synthetic_dataset("train").subset(range(64))
    m = VRNN(2, 4, likelihood="gaussian")
    svi = SVI(m.model, m.guide, pyro.optim.Adam({"lr": 3e-3}), FIVO(4))
    losses = []
    for step in range(40):
        x, lengths = data.x[(step % 4) * 16 : (step % 4 + 1) * 16], data.lengths[:16]
        losses.append(svi.step(x, lengths))
        assert all(torch.isfinite(p).all() for p in m.parameters())
    assert sum(losses[-8:]) / 8 < sum(losses[:8]) / 8


def test_elbo_module_interface():
    m = VRNN(3, 2, likelihood="gaussian")
    loss_fn = FIVO(3)(m.model, m.guide)
    assert isinstance(loss_fn, torch.nn.Module)
    loss = loss_fn(torch.randn(2, 4, 3))
    loss.backward()
    assert loss.requires_grad and m.rnn.cell.weight_hh.grad is not None


def test_latent_scale_applies_to_the_latent_terms():
    """With one particle, log Z(beta) = log p(x|z) + beta (log p(z) - log q(z)) under the same draws."""
    m = LinearGaussianSSM(2, 2)
    x = m.sample(3, 5)
    results = {}
    with torch.no_grad():
        for beta in (1.0, 0.5):
            pyro.set_rng_seed(0)
            results[beta] = FIVO(1).filter(scale_latents(m.model, beta), scale_latents(m.guide, beta), x).log_z
        pyro.set_rng_seed(0)
        assert torch.allclose(results[1.0], FIVO(1).filter(m.model, m.guide, x).log_z, rtol=1e-6)
        pyro.set_rng_seed(0)
        guide_trace = poutine.trace(m.guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(m.model, trace=guide_trace)).get_trace(x)
    model_trace.compute_log_prob()
    log_likelihood = model_trace.nodes["x"]["log_prob"]
    assert torch.allclose(2 * results[0.5] - results[1.0], log_likelihood, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="same latent scale"):
        FIVO(2).loss(scale_latents(m.model, 0.5), m.guide, x)


class _DeltaEmission(LinearGaussianSSM):
    """x_t ~ Delta(0): zero likelihood for any non-zero observation."""

    def emission(self, state, z):
        return dist.Delta(torch.zeros(z.shape[:-1] + (self.x_dim,)), event_dim=1)


def test_all_zero_weights_name_the_step_and_sequence():
    m = _DeltaEmission(2, 2)
    x = torch.zeros(3, 5, 2)
    x[1, 2, 0] = 1.0
    with pytest.raises(ValueError, match="sequence 1 are -inf: every particle has zero weight at step 2"):
        FIVO(4).loss(m.model, m.guide, x)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(num_particles=0), "at least 1"),
        (dict(num_particles=2.5), "integer"),
        (dict(ess_threshold=1.5), r"\[0, 1\]"),
        (dict(ess_threshold=-0.1), r"\[0, 1\]"),
        (dict(resampler="bootstrap"), "unknown resampler"),
    ],
)
def test_bad_options_are_rejected_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FIVO(**kwargs)


def test_callables_it_cannot_drive():
    m = LinearGaussianSSM(2, 2)
    x = m.sample(2, 3)
    with pytest.raises(TypeError, match="needs its bound methods"):
        FIVO().loss(lambda x: None, lambda x: None, x)
    with pytest.raises(TypeError, match="needs its bound methods"):
        FIVO().loss(m.guide, m.model, x)

    class Custom(LinearGaussianSSM):
        def model(self, x, lengths=None):
            return super().model(x, lengths)

    c = Custom(2, 2)
    with pytest.raises(TypeError, match="overrides model"):
        FIVO().loss(c.model, c.guide, x)


def test_evaluate_fivo_with_k_1024_in_batches():
    pyro.set_rng_seed(0)
    m = LinearGaussianSSM(2, 2, proposal="prior")
    x = m.sample(6, 12)
    result = evaluate(m, x, bound="fivo", num_particles=1024, batch_size=2)
    exact = m.exact_log_prob(x).detach()
    assert result.log_likelihood.shape == (6,)
    # With the prior as proposal, log Z_hat - log Z has a standard deviation of about 0.25 per
    # sequence here (measured over 120 filters): within 5 of them; the mean of 6 within 5 / sqrt(6).
    error = result.log_likelihood - exact
    assert torch.all(error.abs() < 1.25) and abs(float(error.mean())) < 0.51
    assert result.per_timestep == pytest.approx(float(result.log_likelihood.sum()) / 72, rel=1e-6)


def test_a_user_model_trains_with_fivo(random_walk):
    model = random_walk
    with torch.no_grad():
        model.log_s.fill_(2.0)  # start far from the data's step size (1)
    x = torch.randn(8, 12, 1).cumsum(1)
    svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": 0.05}), FIVO(8, resampler="stratified"))
    losses = [svi.step(x) for _ in range(80)]
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10
    with torch.no_grad():
        result = FIVO(8).filter(model.model, model.guide, x)
    assert result.log_z.shape == (8,) and torch.isfinite(result.log_z).all()
