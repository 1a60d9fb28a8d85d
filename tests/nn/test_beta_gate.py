"""Beta-gated layers (Multi-Rate VAE, eq. 6-8): gate formulas, standardisation, and equivalence of
gated cells with plain cells whose weight rows are scaled (eq. 6 <=> eq. 8)."""

import math

import pytest
import torch
from torch import nn

from pyrosequence.nn.beta_gate import (
    DECODER,
    ENCODER,
    BetaConditioner,
    BetaGate,
    GatedGRUCell,
    GatedHyperCell,
    GatedLinear,
    GatedLSTMCell,
    check_beta,
    check_beta_range,
)
from pyrosequence.nn.hyper import HyperCell


@pytest.fixture
def f64():
    torch.set_default_dtype(torch.float64)


def test_standardisation_of_log_beta():
    cond = BetaConditioner((0.01, 10.0))
    for beta, u in ((0.01, -math.sqrt(3)), (10.0, math.sqrt(3)), (math.sqrt(0.1), 0.0)):
        cond.set_beta(beta)
        assert cond.u == pytest.approx(u, abs=1e-12)
    # u is log beta standardised for log beta ~ U[log a, log b]: mean 0, variance 1
    logs = torch.linspace(math.log(0.01), math.log(10.0), 101, dtype=torch.float64)
    us = torch.tensor([cond.standardize(math.exp(v)) for v in logs.tolist()], dtype=torch.float64)
    assert float(us.mean()) == pytest.approx(0.0, abs=1e-9)
    assert float(us.pow(2).mean()) == pytest.approx(1.0, abs=0.03)


def test_gate_activations(f64):
    cond = BetaConditioner((0.1, 10.0), beta=3.0)
    enc, dec = BetaGate(5, ENCODER, cond), BetaGate(5, DECODER, cond)
    with torch.no_grad():
        for gate in (enc, dec):
            gate.weight.copy_(torch.linspace(-2, 2, 5))
            gate.bias.copy_(torch.linspace(-1, 1, 5))
    s = torch.linspace(-2, 2, 5) * cond.u + torch.linspace(-1, 1, 5)
    assert torch.allclose(enc(), torch.sigmoid(s))
    assert torch.allclose(dec(), torch.sqrt(torch.relu(1 - torch.exp(s))))
    assert bool((dec() == 0).any()) and bool((dec() > 0).any())  # the closed and the open regime


def test_closed_decoder_gate_has_zero_not_nan_gradient(f64):
    cond = BetaConditioner((0.1, 10.0), beta=5.0)
    gate = BetaGate(3, DECODER, cond, bias=1.0)  # 1 - e^1 < 0: closed
    gate().sum().backward()
    assert torch.equal(gate.bias.grad, torch.zeros(3)) and torch.equal(gate.weight.grad, torch.zeros(3))


def test_gated_linear_scales_the_preactivation(f64):
    cond = BetaConditioner((0.1, 10.0), beta=0.4)
    plain = nn.Linear(3, 4)
    gated = GatedLinear.wrap(plain, ENCODER, cond)
    assert gated.weight is plain.weight and gated.bias is plain.bias  # weights are kept, shared
    with torch.no_grad():
        gated.gate.weight.copy_(torch.tensor([1.0, -1.0, 0.5, 2.0]))
    x = torch.randn(2, 5, 3)
    assert torch.allclose(gated(x), gated.gate() * plain(x))
    assert set(gated.state_dict()) == {"weight", "bias", "gate.weight", "gate.bias"}


def _scaled_copy(cell, gate, names):
    """A plain copy of ``cell`` whose weight rows and biases are multiplied by ``gate`` (eq. 6)."""
    copy = type(cell)(cell.input_size, cell.hidden_size) if isinstance(cell, nn.RNNCellBase) else None
    with torch.no_grad():
        for name in names:
            param = getattr(cell, name)
            scaled = param * (gate[:, None] if param.dim() == 2 else gate)
            getattr(copy, name).copy_(scaled)
    return copy


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gated_cells_equal_cells_with_scaled_rows(f64, kind):
    cond = BetaConditioner((0.01, 10.0), beta=0.05)
    plain = (nn.LSTMCell if kind == "lstm" else nn.GRUCell)(3, 4)
    gated = (GatedLSTMCell if kind == "lstm" else GatedGRUCell).wrap(plain, DECODER, cond)
    with torch.no_grad():
        gated.gate.weight.normal_()
        gated.gate.bias.uniform_(-3, -0.5)
    g = gated.gate().detach()
    reference = _scaled_copy(plain, g, ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    x, h = torch.randn(6, 3), torch.randn(6, 4)
    state = (h, torch.randn(6, 4)) if kind == "lstm" else h
    out, expected = gated(x, state), reference(x, state)
    for a, b in zip(out if kind == "lstm" else (out,), expected if kind == "lstm" else (expected,)):
        assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_open_gated_cells_equal_the_plain_cells(f64, kind):
    cond = BetaConditioner((0.01, 10.0), beta=2.0)
    plain = (nn.LSTMCell if kind == "lstm" else nn.GRUCell)(3, 4)
    gated = (GatedLSTMCell if kind == "lstm" else GatedGRUCell).wrap(plain, ENCODER, cond)
    with torch.no_grad():
        gated.gate.bias.fill_(40.0)
    assert torch.equal(gated.gate(), torch.ones(gated.gate.features))
    x = torch.randn(5, 3)
    for a, b in zip(*(((o,) if kind == "gru" else o) for o in (gated(x), plain(x)))):
        assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gated_hyper_cell(f64, kind):
    cond = BetaConditioner((0.01, 10.0), beta=0.3)
    plain = HyperCell(3, 4, kind)
    gated = GatedHyperCell.wrap(plain, DECODER, cond)
    m = plain.modulation_dim
    y, h = torch.randn(2, 5, 3), torch.randn(2, 5, 4)
    state = (h, torch.randn(2, 5, 4)) if kind == "lstm" else h
    d_in, d_h, b = 1 + 0.1 * torch.randn(2, 5, m), 1 + 0.1 * torch.randn(2, 5, m), 0.1 * torch.randn(2, 5, m)
    with torch.no_grad():
        gated.gate.bias.fill_(-200.0)  # open: exactly the plain cell
    for a, c in zip(*(((o,) if kind == "gru" else o) for o in (gated(y, state, d_in, d_h, b), plain(y, state, d_in, d_h, b)))):
        assert torch.allclose(a, c, atol=1e-12)
    with torch.no_grad():  # a partly closed gate changes the output
        gated.gate.bias.fill_(-0.5)
    out = gated(y, state, d_in, d_h, b)
    ref = plain(y, state, d_in, d_h, b)
    assert not torch.allclose(out[0] if kind == "lstm" else out, ref[0] if kind == "lstm" else ref)


def test_conditioner_state_dict_carries_the_range():
    a = BetaConditioner((0.1, 10.0), beta=1.0)
    b = BetaConditioner((0.01, 100.0), beta=1.0)
    b.load_state_dict(a.state_dict())
    b.set_beta(10.0)
    assert b.u == pytest.approx(math.sqrt(3))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "x", None])
def test_bad_beta(bad):
    with pytest.raises(ValueError, match="positive finite"):
        check_beta(bad)
    with pytest.raises(ValueError, match="positive finite"):
        BetaConditioner().set_beta(bad)


def test_bad_beta_range():
    with pytest.raises(ValueError, match="a < b"):
        check_beta_range((10.0, 0.1))
    with pytest.raises(ValueError, match="zero width"):
        check_beta_range((1.0, 1.0))
    for bad in ((0.0, 1.0), (-1.0, 1.0), (0.1, float("inf")), (True, 2.0)):
        with pytest.raises(ValueError, match="positive finite"):
            check_beta_range(bad)
    with pytest.raises(ValueError, match="two numbers"):
        check_beta_range((1.0,))
    with pytest.raises(ValueError, match="role"):
        BetaGate(2, "middle", BetaConditioner())


def test_gated_sequence_lstm_agrees_with_its_step_form_and_scaled_rows(f64):
    """A one-layer nn.LSTM run in one call, and step by step through its weight attributes (as
    sequence_rnn.lstm_step does), both use the gated weights, and equal an nn.LSTM whose rows
    are scaled (eq. 6)."""
    from pyrosequence.nn.beta_gate import GatedLSTM
    from pyrosequence.nn.sequence_rnn import lstm_pass, lstm_step

    cond = BetaConditioner((0.01, 10.0), beta=0.2)
    plain = nn.LSTM(3, 4, batch_first=True)
    gated = GatedLSTM.wrap(plain, ENCODER, cond)
    with torch.no_grad():
        gated.gate.weight.normal_()
        gated.gate.bias.normal_()
    g = gated.gate().detach()
    reference = nn.LSTM(3, 4, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            raw = plain._parameters[name]
            getattr(reference, name).copy_(raw * (g[:, None] if raw.dim() == 2 else g))
    x = torch.randn(2, 5, 3)
    out, (h, c) = lstm_pass(gated, x)
    assert torch.allclose(out, reference(x)[0], atol=1e-12)
    assert not torch.allclose(out, plain(x)[0], atol=1e-3)  # the gate is really applied
    state = (torch.zeros(2, 4), torch.zeros(2, 4))
    for t in range(5):
        state = lstm_step(gated, x[:, t], state)
        assert torch.allclose(state[0], out[:, t], atol=1e-12)
    assert set(gated.state_dict()) == {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "gate.weight", "gate.bias"}
    out.sum().backward()
    assert bool(gated.gate.bias.grad.abs().sum() > 0) and plain.weight_ih_l0.grad is not None
    with pytest.raises(ValueError, match="one-layer"):
        GatedLSTM.wrap(nn.LSTM(3, 4, num_layers=2), ENCODER, cond)


def test_cache_follows_casts_and_loaded_weights():
    cond = BetaConditioner((0.1, 10.0), beta=3.0)
    gated = GatedLinear.wrap(nn.Linear(3, 2), DECODER, cond)
    x = torch.randn(4, 3)
    gated(x)  # fills the cache in float32
    gated.double()
    assert gated(x.double()).dtype == torch.float64
    other = GatedLinear.wrap(nn.Linear(3, 2), DECODER, cond).double()
    with torch.no_grad():
        other.gate.weight.fill_(0.7)
    gated.load_state_dict(other.state_dict())  # copied in place: the cache must see it
    assert torch.allclose(gated(x.double()), other(x.double()))
