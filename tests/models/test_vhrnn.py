"""VHRNN and HyperLSTM: the hyper cell, generated weights as sites, hyper inputs, exact likelihoods."""

import pytest
import torch

import pyro
import pyro.poutine as poutine

from pyrosequence import VHRNN, HyperLSTM
from pyrosequence.inference import evaluate, make_bound
from pyrosequence.nn.hyper import HyperCell


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_hyper_cell_with_unit_scales_is_the_plain_cell(cell):
    hyper = HyperCell(5, 7, cell)
    plain = (torch.nn.LSTMCell if cell == "lstm" else torch.nn.GRUCell)(5, 7)
    plain.load_state_dict({k: getattr(hyper, k).detach() for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    y, h = torch.randn(3, 5), torch.randn(3, 7)
    ones, zeros = torch.ones(3, hyper.modulation_dim), torch.zeros(3, hyper.modulation_dim)
    if cell == "lstm":
        c = torch.randn(3, 7)
        ours, expected = hyper(y, (h, c), ones, ones, zeros), plain(y, (h, c))
        assert torch.allclose(ours[0], expected[0], atol=1e-6) and torch.allclose(ours[1], expected[1], atol=1e-6)
    else:
        assert torch.allclose(hyper(y, h, ones, ones, zeros), plain(y, h), atol=1e-6)


def test_hyper_cell_scales_the_rows():
    """Doubling every input-row scale is the same as doubling the input weights."""
    hyper = HyperCell(4, 3, "lstm")
    y, h, c = torch.randn(2, 4), torch.randn(2, 3), torch.randn(2, 3)
    ones, zeros = torch.ones(2, 12), torch.zeros(2, 12)
    scaled = hyper(y, (h, c), 2 * ones, ones, zeros)
    with torch.no_grad():
        hyper.weight_ih.mul_(2)
    assert torch.allclose(scaled[0], hyper(y, (h, c), ones, ones, zeros)[0], atol=1e-6)


@pytest.mark.parametrize("hyper_net", ["rnn", "mlp"])
@pytest.mark.parametrize("hyper_input", ["latent+hidden", "latent", "hidden"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_generated_weights_are_sites_of_the_model_trace(cell, hyper_input, hyper_net):
    m = VHRNN(2, 4, hidden_dim=5, cell=cell, hyper_input=hyper_input, hyper_net=hyper_net, layers=2, omega_dim=8)
    x, lengths = torch.randn(3, 6, 2), torch.tensor([6, 2, 4])
    guide_trace = poutine.trace(m.guide).get_trace(x, lengths)
    trace = poutine.trace(poutine.replay(m.model, trace=guide_trace)).get_trace(x, lengths)
    gates = 4 if cell == "lstm" else 3
    for t in range(6):
        for name in ("theta_d_input", "theta_d_hidden", "theta_bias"):
            site = trace.nodes[f"{name}_{t}"]
            assert site["value"].shape == (3, gates * 5)
    for layer in range(2):
        assert trace.nodes[f"omega_scale_{layer}"]["value"].shape == (3, 6, 4)
        assert trace.nodes[f"omega_bias_{layer}"]["value"].shape == (3, 6, 4)
    assert not any(name.startswith("theta") for name in guide_trace.nodes)
    # the same sites when the model computes its states itself (no guide to reuse)
    recomputed = poutine.trace(poutine.replay(m.model, trace=guide_trace)).get_trace(x, lengths)
    assert torch.allclose(recomputed.nodes["theta_d_input_3"]["value"], trace.nodes["theta_d_input_3"]["value"])


@pytest.mark.parametrize("hyper_input,ignored", [("latent", "h"), ("hidden", "z")])
def test_hyper_inputs_really_ignore_what_they_leave_out(hyper_input, ignored):
    m = VHRNN(3, 4, hyper_input=hyper_input, omega_dim=8)
    z = torch.randn(2, 4, requires_grad=True)
    h = torch.randn(2, 4, requires_grad=True)
    hyper_state = m.theta.initial_state(torch.Size([2]), h)
    (d_in, d_h, b), _ = m.theta(m._condition(z, h), hyper_state)
    _, scale, bias = m.decoder[0](torch.randn(2, 8), m._condition(z, h))
    (d_in.sum() + d_h.sum() + b.sum() + scale.sum() + bias.sum()).backward()
    unused, used = (h, z) if ignored == "h" else (z, h)
    assert unused.grad is None or torch.all(unused.grad == 0)
    assert used.grad is not None and used.grad.abs().sum() > 0


def test_hyper_input_both_uses_both():
    m = VHRNN(3, 4, omega_dim=8)
    z = torch.randn(2, 4, requires_grad=True)
    h = torch.randn(2, 4, requires_grad=True)
    (d_in, _, _), _ = m.theta(m._condition(z, h), m.theta.initial_state(torch.Size([2]), h))
    d_in.sum().backward()
    assert z.grad.abs().sum() > 0 and h.grad.abs().sum() > 0


def test_bad_options():
    with pytest.raises(ValueError, match="unknown hyper_input"):
        VHRNN(2, 4, hyper_input="both")
    with pytest.raises(ValueError, match="unknown hyper network"):
        VHRNN(2, 4, hyper_net="transformer")
    with pytest.raises(ValueError, match="unknown cell"):
        VHRNN(2, 4, cell="rnn")


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "mixture"])
def test_hyper_lstm_likelihood_is_exact_under_every_bound(likelihood):
    h = HyperLSTM(3, 6, likelihood=likelihood, components=2)
    x = (torch.rand(4, 5, 3) < 0.5).float() if likelihood == "bernoulli" else torch.randn(4, 5, 3)
    lengths = torch.tensor([5, 2, 4, 1])
    # direct computation: run the recurrence and add up log p(x_t | h_{t-1})
    state = h.initial_state(torch.Size([4]), x)
    expected = torch.zeros(4)
    with torch.no_grad():
        for t in range(5):
            lp = h.emission(state, None).log_prob(x[:, t])
            expected += torch.where(t < lengths, lp, torch.zeros_like(lp))
            state = h.update(state, None, x[:, t], t)
        values = [
            evaluate(h, x, lengths, bound="elbo").log_likelihood,
            evaluate(h, x, lengths, bound="iwae", num_particles=7).log_likelihood,
            evaluate(h, x, lengths, bound=make_bound("fivo", ess_threshold=1.0), num_particles=3).log_likelihood,
        ]
    for value in values:
        assert torch.allclose(value, expected, rtol=1e-5, atol=1e-5)
    assert not any(site for site in poutine.trace(h.guide).get_trace(x).nodes.values() if site["type"] == "sample")


def test_hyper_lstm_trains():
    h = HyperLSTM(2, 8, likelihood="gaussian")
    x = torch.randn(8, 10, 2).cumsum(1)
    svi = pyro.infer.SVI(h.model, h.guide, pyro.optim.Adam({"lr": 0.01}), pyro.infer.Trace_ELBO())
    losses = [svi.step(x) for _ in range(60)]
    assert losses[-1] < losses[0]
