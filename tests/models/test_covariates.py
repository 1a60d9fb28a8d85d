"""Covariates (known inputs u_t, the last columns of x) in VRNN, DMM, SRNN and VHRNN: without covariates the
models are exactly what they were; with them zeroed out they score like the model without; a
model whose likelihood depends only on u learns it; bad batches are refused in one line."""

import math

import pytest
import torch

import pyro

from pyrosequence.inference.particle_filter import particle_filter
from pyrosequence.inference.resamplers import get_resampler
from pyrosequence.models import DMM, SRNN, VHRNN, VRNN

BUILDERS = {
    "vrnn": lambda **kw: VRNN(3, 2, likelihood="gaussian", **kw),
    "vrnn_fivo": lambda **kw: VRNN(3, 2, likelihood="gaussian", architecture="fivo", initial_step=True, **kw),
    "dmm": lambda **kw: DMM(3, 2, likelihood="gaussian", **kw),
    "srnn": lambda **kw: SRNN(3, 2, likelihood="gaussian", **kw),
    "vhrnn": lambda **kw: VHRNN(3, 2, likelihood="gaussian", **kw),
    "vhrnn_fivo": lambda **kw: VHRNN(3, 2, likelihood="gaussian", architecture="fivo", **kw),
}

#: Fingerprints of the models built before covariates existed (state-dict sum, FIVO log Z of two
#: sequences, the Trace_ELBO loss), taken from the code at 3ee5455 with the recipe of _fingerprint.
BEFORE = {
    "vrnn": (-2.501226408407092, [-43.09370803833008, -23.747207641601562], 77.75238037109375),
    "vrnn_fivo": (-7.162441729567945, [-21.660751342773438, -16.32530975341797], 47.39458084106445),
    "dmm": (-0.9540159707830753, [-35.972251892089844, -20.07071304321289], 58.24965286254883),
    "srnn": (-4.739969798712991, [-35.33622741699219, -25.569656372070312], 63.85481643676758),
    "vhrnn": (-4.570019705390678, [-33.297035217285156, -28.823543548583984], 73.21595764160156),
    "vhrnn_fivo": (-11.263125558106367, [-20.753421783447266, -17.72168731689453], 47.93153762817383),
}


def _fingerprint(build):
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    model = build()
    total = float(sum(v.double().sum() for v in model.state_dict().values()))
    torch.manual_seed(1)
    x, lengths = torch.randn(2, 5, 3), torch.tensor([5, 3])
    seqs = model.prepare(x, lengths)
    torch.manual_seed(2)
    log_z = particle_filter(model, seqs, 4, get_resampler("multinomial"), 0.5).log_z.tolist()
    torch.manual_seed(3)
    elbo = float(pyro.infer.Trace_ELBO().differentiable_loss(model.model, model.guide, x, lengths).detach())
    return total, log_z, elbo


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_without_covariates_the_model_is_unchanged(name):
    total, log_z, elbo = _fingerprint(BUILDERS[name])
    expected_total, expected_log_z, expected_elbo = BEFORE[name]
    assert total == pytest.approx(expected_total, rel=1e-6, abs=1e-6)
    assert log_z == pytest.approx(expected_log_z, rel=1e-6)
    assert elbo == pytest.approx(expected_elbo, rel=1e-6)
    assert BUILDERS[name]().covariate_dim == 0


def _embed(small: torch.nn.Module, large: torch.nn.Module) -> None:
    """Copy ``small``'s parameters into ``large``, whose layers reading the covariates have extra
    trailing input columns: those get zero weights, so ``large`` ignores its covariates."""
    with torch.no_grad():
        large_state = large.state_dict()
        for key, value in small.state_dict().items():
            target = large_state[key]
            if target.shape == value.shape:
                target.copy_(value)
            else:  # the covariates are the last input features
                assert target.shape[:-1] == value.shape[:-1], key
                target.zero_()
                target[..., : value.shape[-1]] = value


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_zeroed_covariate_weights_score_like_the_model_without(name):
    torch.manual_seed(0)
    plain = BUILDERS[name]()
    with_u = BUILDERS[name](covariate_dim=2)
    _embed(plain, with_u)
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 4, 5])
    u = torch.randn(3, 6, 2)
    for model, data in ((plain, x), (with_u, torch.cat([x, u], -1))):
        torch.manual_seed(5)
        model.result = particle_filter(model, model.prepare(data, lengths), 3, get_resampler("systematic"), 0.5).log_z
        torch.manual_seed(6)
        model.loss = pyro.infer.Trace_ELBO().differentiable_loss(model.model, model.guide, data, lengths)
    torch.testing.assert_close(with_u.result, plain.result, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(with_u.loss, plain.loss, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, lr", [("vrnn", 0.015), ("dmm", 0.02)])
def test_a_likelihood_that_depends_only_on_u_is_learnt(name, lr):
    """x_t = a u_t + noise, u_t iid N(0, 1): without u the best possible model scores
    -0.5 log(2 pi e (a^2 + s^2)) per element, with u -0.5 log(2 pi e s^2): 0.5 log((a^2 + s^2) / s^2)
    = 2.31 nats better for a = 1, s = 0.1. A short training (IWAE, 8 particles, which leaves the
    collapsed start sooner than the ELBO) must reach at least half of that gap."""
    a, s = 1.0, 0.1
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(16, 6, 1, generator=gen)
    x = a * u + s * torch.randn(16, 6, 1, generator=gen)
    torch.manual_seed(0)
    model = {"vrnn": lambda: VRNN(1, 2, likelihood="gaussian", covariate_dim=1, hidden_dim=4, width=8, feature_dim=4),
             "dmm": lambda: DMM(1, 2, likelihood="gaussian", covariate_dim=1, hidden_dim=4, transition_dim=8,
                                emission_dim=8)}[name]()
    seqs = model.prepare(torch.cat([x, u], -1))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    resampler = get_resampler("multinomial")
    for _ in range(110):
        optimizer.zero_grad()
        loss = -particle_filter(model, seqs, 8, resampler, 0.0).log_z.sum() / x.numel()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        per_element = float(particle_filter(model, seqs, 32, resampler, 0.0).log_z.sum()) / x.numel()
    without_u = -0.5 * math.log(2 * math.pi * math.e * (a * a + s * s))
    gap = 0.5 * math.log((a * a + s * s) / (s * s))
    assert per_element > without_u + gap / 2, (per_element, without_u, gap)


def _with_nan(batch: torch.Tensor, *where) -> torch.Tensor:
    batch = batch.clone()
    batch[where] = float("nan")
    return batch


@pytest.mark.parametrize("batch, message", [
    (torch.zeros(2, 4, 2), r"x has 2 columns but the model expects x_dim 2 plus 1 covariate"),
    (_with_nan(torch.zeros(2, 4, 3), 1, 2, 2), r"covariate column 2 is NaN at sequence 1, step 2"),
])
def test_bad_batches_are_refused_in_one_line(batch, message):
    with pytest.raises(ValueError, match=message):
        VRNN(2, 2, likelihood="gaussian", covariate_dim=1).prepare(batch)


def test_padding_and_missing_observations_beside_covariates():
    model = VRNN(2, 2, likelihood="gaussian", covariate_dim=1)
    x = _with_nan(torch.randn(2, 4, 3), 1, 3, 2)  # beyond the length: padding, ignored
    assert model.prepare(x, torch.tensor([4, 3])).covariates[1, 3, 0] == 0
    # a missing observation is still just missing, and counts nowhere
    seqs = model.prepare(_with_nan(x, 0, 1, 0), torch.tensor([4, 3]))
    assert seqs.x.shape == (2, 4, 2) and seqs.observed.shape == (2, 4, 2)
    assert seqs.num_observed().tolist() == [7, 6]


def test_a_window_continuing_a_sequence_reads_its_own_first_covariate():
    torch.manual_seed(0)
    model = DMM(1, 2, likelihood="gaussian", covariate_dim=1)
    x = torch.randn(2, 6, 2)
    seqs = model.prepare(x)
    whole = model.start_state(seqs)
    assert torch.equal(model.state_covariates(whole), x[:, 0, 1:])
    later = model.prepare(x[:, 3:])
    carried = model.next_state(whole, model.model_state(whole), torch.zeros(2, 1))  # zero: unknown after a window
    resumed = model.start_state(later, carried)
    assert torch.equal(model.state_covariates(resumed), x[:, 3, 1:])


def test_the_hyper_network_of_vhrnn_reads_the_covariates():
    """With the covariate columns of phi_x and of the prior zeroed, only the hyper network that
    generates the recurrence's weights reads u: the bound still moves with u (and does not
    once the hyper network's covariate column is zeroed too)."""
    torch.manual_seed(0)
    model = VHRNN(3, 2, likelihood="gaussian", covariate_dim=1)
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name in ("phi_x.0.weight", "prior_net.0.weight"):
            parameters[name][:, -1:] = 0.0
    x = torch.randn(2, 4, 3)

    def bound(u):
        torch.manual_seed(1)
        seqs = model.prepare(torch.cat([x, u], -1))
        return particle_filter(model, seqs, 3, get_resampler("multinomial"), 0.0).log_z

    zeros, ones = torch.zeros(2, 4, 1), torch.ones(2, 4, 1)
    assert not torch.allclose(bound(zeros), bound(ones))
    with torch.no_grad():
        parameters["theta.rnn.weight_ih"][:, -1:] = 0.0
    torch.testing.assert_close(bound(zeros), bound(ones))


@pytest.mark.compile
def test_the_compiled_filter_reads_covariates_as_the_eager_one():
    """The covariates ride in the context and the state, which the compiled step carries as it
    carries any: the compiled filter (Inductor's random kernels those of eager) gives the eager
    bound, resampling included."""
    import warnings

    from pyrosequence.inference.engine import CompileOptions

    torch.manual_seed(0)
    model = BUILDERS["vrnn"](covariate_dim=1)
    seqs = model.prepare(torch.randn(3, 6, 4))
    options, resampler = CompileOptions(backend="aot_eager"), get_resampler("multinomial")
    with torch._inductor.config.patch(fallback_random=True), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to the eager step
        particle_filter(model, seqs, 4, resampler, 0.8, compile=options)  # compiles
        torch.manual_seed(1)
        eager = particle_filter(model, seqs, 4, resampler, 0.8)
        torch.manual_seed(1)
        compiled = particle_filter(model, seqs, 4, resampler, 0.8, compile=options)
    assert bool(eager.resampled.any())
    torch.testing.assert_close(compiled.log_z, eager.log_z, rtol=1e-5, atol=1e-5)


def test_a_multi_rate_model_with_covariates():
    from pyrosequence.models.multi_rate import multi_rate

    model = multi_rate(VRNN(2, 2, likelihood="gaussian", covariate_dim=1), (0.1, 2.0))
    loss = pyro.infer.Trace_ELBO().differentiable_loss(model.model, model.guide, torch.randn(2, 5, 3))
    assert model.covariate_dim == 1 and bool(torch.isfinite(loss))
