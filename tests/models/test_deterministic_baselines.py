"""F-RNN, RNN-hier, RNN-flat and delta-RNN (Dai et al. 2019): exact, normalised likelihoods."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from pyrosequence.training.config import TrainConfig
from pyrosequence.inference import evaluate
from pyrosequence.models import MODELS, VRNN
from pyrosequence.models.autoregressive_rnn import FRNN, RNNHier
from pyrosequence.models.delta_rnn import DeltaRNN, DeltaRNNRandom, split_indices
from pyrosequence.models.flat_rnn import RNNFlat

BUILDERS = {
    "frnn": lambda L: FRNN(L, 6),
    "rnn-hier": lambda L: RNNHier(L, 6, low_hidden=5),
    "rnn-hier-made": lambda L: RNNHier(L, 6, output="hier-made", order="random", low_hidden=5),
    "rnn-flat": lambda L: RNNFlat(L, 6),
    "rnn-flat-gru": lambda L: RNNFlat(L, 6, cell="gru"),
    "delta-rnn": lambda L: DeltaRNN(L, 6, leak=2),
    "delta-rnn-random": lambda L: DeltaRNNRandom(L, 6, leak=2, seed=3),
}


def exact_log_likelihood(model, x, lengths):
    """sum_t log p(x_t | x_<t) stepping the model's own pieces, padding masked out."""
    state = model.initial_state(torch.Size([x.shape[0]]), x)
    ctx = model.context(x)
    total = x.new_zeros(x.shape[0])
    for t in range(x.shape[1]):
        lp = model.emission(state, None).log_prob(x[:, t])
        total = total + torch.where(t < lengths, lp, torch.zeros_like(lp))
        state = model.update(state, None, ctx[:, t], t)
    return total


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_bound_is_the_exact_log_likelihood(name):
    model = BUILDERS[name](5)
    x = (torch.rand(4, 6, 5) < 0.4).float()
    lengths = torch.tensor([6, 3, 1, 5])
    model.init_from_data(x, lengths, center=True)
    with torch.no_grad():
        exact = exact_log_likelihood(model, x, lengths)
        for bound in ("elbo", "iwae", "fivo"):
            result = evaluate(model, x, lengths, bound=bound, num_particles=3)
            torch.testing.assert_close(result.log_likelihood, exact, atol=1e-4, rtol=1e-5)
        # padding beyond a sequence's length does not count
        short = evaluate(model, x[1:2, :3], None, bound="elbo").log_likelihood
        torch.testing.assert_close(short, exact[1:2], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_two_step_binary_sequences_have_total_probability_one(name):
    L, T = 3, 2
    model = BUILDERS[name](L)
    outcomes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=T * L))).reshape(-1, T, L)
    with torch.no_grad():
        log_p = evaluate(model, outcomes, None, bound="elbo").log_likelihood
        one_step = evaluate(model, outcomes[: 2 ** L, 1:], None, bound="elbo").log_likelihood
    assert log_p.shape == (2 ** (T * L),)
    torch.testing.assert_close(log_p.logsumexp(0), torch.tensor(0.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(one_step.logsumexp(0), torch.tensor(0.0), atol=1e-5, rtol=0)


def test_delta_rnn_with_stride_one_is_f_rnn():
    frnn = FRNN(5, 7)
    delta = DeltaRNN(5, 7, leak=1)
    assert delta.decoder_head.a.tolist() == [0, 1, 2, 3, 4] and delta.decoder_head.b.numel() == 0
    assert delta.decoder_head.head_b is None  # nothing is predicted from a leak
    delta.rnn.load_state_dict(frnn.rnn.state_dict())
    delta.decoder_head.head_a.load_state_dict(frnn.decoder_head.state_dict())
    x = (torch.rand(3, 5, 5) < 0.5).float()
    lengths = torch.tensor([5, 2, 4])
    with torch.no_grad():
        a = evaluate(frnn, x, lengths, bound="elbo").log_likelihood
        b = evaluate(delta, x, lengths, bound="fivo", num_particles=2).log_likelihood
    torch.testing.assert_close(a, b)


def test_delta_rnn_predicts_the_rest_from_the_leak():
    a, b = split_indices(7, "stride", 3)
    assert a.tolist() == [0, 3, 6] and b.tolist() == [1, 2, 4, 5]
    a1, _ = split_indices(7, "random", 3, seed=1)
    a2, _ = split_indices(7, "random", 3, seed=1)
    assert torch.equal(a1, a2) and a1.numel() == 3
    model = DeltaRNN(4, 5, leak=2)
    h = torch.randn(1, 5)
    d = model.decoder_head(h)
    x = torch.zeros(1, 4)
    moved = x.clone()
    moved[0, 0] = 1.0  # a leaked element changes the conditional of the others
    first = model.decoder_head.head_b(model.decoder_head.net_b(torch.cat([h, x[:, [0, 2]]], -1)))
    second = model.decoder_head.head_b(model.decoder_head.net_b(torch.cat([h, moved[:, [0, 2]]], -1)))
    assert not torch.allclose(first.base_dist.logits, second.base_dist.logits)
    assert "decoder_head.a" in model.state_dict()
    draws = d.sample(torch.Size([5]))
    assert draws.shape == (5, 1, 4)


def test_rnn_flat_is_one_rnn_over_the_flattened_elements():
    """log p from the step-wise model equals one nn.LSTM run over the T*L univariate sequence."""
    T, L = 4, 3
    model = RNNFlat(L, 6)
    x = (torch.rand(2, T, L) < 0.5).float()
    flat = x.reshape(2, T * L)
    head = model.decoder_head
    with torch.no_grad():
        out, _ = model.rnn(flat[:, :-1, None])
        g = torch.cat([torch.zeros(2, 1, 6), out], 1)
        logits = head.out(g)[..., 0] + head.bias[:, 0].repeat(T)
        reference = -F.binary_cross_entropy_with_logits(logits, flat, reduction="none").sum(-1)
        got = evaluate(model, x, None, bound="iwae", num_particles=2).log_likelihood
    torch.testing.assert_close(got, reference, atol=1e-5, rtol=1e-5)


def test_rnn_flat_step_samples_match_log_prob():
    L = 3
    model = RNNFlat(L, 6)
    with torch.no_grad():
        model.decoder_head.bias.copy_(torch.randn(L, 1))
        state = (torch.randn(6), torch.randn(6))
        d = model.emission(state, None)
        n = 20000
        draws = d.sample(torch.Size([n]))
        outcomes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=L)))
        p = d.log_prob(outcomes).exp().double()
    codes = (draws * torch.tensor([4.0, 2.0, 1.0])).sum(-1).long()
    freq = torch.bincount(codes, minlength=8).double() / n
    assert torch.all((freq - p).abs() <= 5 * (p * (1 - p) / n).sqrt() + 1e-3)
    torch.testing.assert_close(p.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="U \\(the stride\\) must be an integer between 1 and x_dim = 5, got 0"):
        DeltaRNN(5, leak=0)
    with pytest.raises(ValueError, match="between 1 and x_dim = 5, got 6"):
        DeltaRNN(5, leak=6)
    with pytest.raises(ValueError, match="V \\(the number of leaked elements\\)"):
        DeltaRNNRandom(5, leak=9)
    with pytest.raises(ValueError, match="unknown split"):
        DeltaRNN(5, split="blocks")
    with pytest.raises(ValueError, match="unknown output"):
        FRNN(5, output="hier")
    with pytest.raises(ValueError, match="unknown output"):
        VRNN(5, 3, output="flat")
    with pytest.raises(ValueError, match="unknown cell"):
        RNNFlat(5, cell="rnn")
    for build in BUILDERS.values():
        with pytest.raises(ValueError, match="binary"):
            build(3).prepare(torch.full((1, 2, 3), 0.5))


@pytest.mark.parametrize("name", ["frnn", "rnn-hier", "rnn-flat", "delta-rnn", "delta-rnn-random"])
def test_registered_and_configurable(name):
    assert name in MODELS
    config = TrainConfig(model=name, data="synthetic", model_options={"hidden_dim": 4})
    assert config.z_dim is None
    with pytest.raises(ValueError, match="no latent variables"):
        TrainConfig(model=name, z_dim=3)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_site_shapes(name):
    import pyro.poutine as poutine

    model = BUILDERS[name](5)
    x = (torch.rand(3, 4, 5) < 0.5).float()
    trace = poutine.trace(model.model).get_trace(x, torch.tensor([4, 2, 3]))
    samples = {n: s for n, s in trace.nodes.items() if s["type"] == "sample" and n != "sequences"}
    assert list(samples) == ["x"]  # no latent sites
    assert samples["x"]["fn"].event_shape == (4, 5) and samples["x"]["fn"].batch_shape == (3,)
    assert poutine.trace(model.guide).get_trace(x).stochastic_nodes == []


def test_delta_rnn_step_samples_match_log_prob():
    L = 3
    model = DeltaRNN(L, 6, leak=2)  # a = {0, 2}, b = {1}
    with torch.no_grad():
        d = model.emission((torch.randn(6), torch.randn(6)), None)
        n = 20000
        draws = d.sample(torch.Size([n]))
        outcomes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=L)))
        p = d.log_prob(outcomes).exp().double()
    codes = (draws * torch.tensor([4.0, 2.0, 1.0])).sum(-1).long()
    freq = torch.bincount(codes, minlength=8).double() / n
    torch.testing.assert_close(p.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.all((freq - p).abs() <= 5 * (p * (1 - p) / n).sqrt() + 1e-3)
