"""The FIVO-code reading of the VRNN/VHRNN (``architecture="fivo"``): the VHRNN paper's parameter
counts, one bias per LSTM gate, the residual and smoothing proposals, the hyper output layer."""

import pytest
import torch

import pyro.poutine as poutine

from pyrosequence import VHRNN, VRNN
from pyrosequence.nn.cells import use_single_bias
from pyrosequence.nn.heads import BernoulliHead
from pyrosequence.nn.hyper import HyperOutput

# Deng et al. (2020), Table 1 (synthetic: x = 2, two hidden layers, omega MLPs of 8 units) and
# Table 4 (JSB: x = 88, one hidden layer, omega MLPs of 64 units, VHRNN h = hyper = z).
TABLE_1 = [("vrnn", 4, 716), ("vrnn", 6, 1516), ("vrnn", 8, 2612), ("vhrnn", 4, 1568)]
TABLE_4_JSB = [
    ("vrnn", 64, 144e3), ("vrnn", 56, 111e3), ("vrnn", 48, 83e3), ("vrnn", 32, 39e3), ("vrnn", 28, 31e3),
    ("vrnn", 24, 23e3), ("vhrnn", 42, 135e3), ("vhrnn", 40, 125e3), ("vhrnn", 32, 88e3), ("vhrnn", 24, 58e3),
    ("vhrnn", 16, 35e3), ("vhrnn", 14, 31e3), ("vhrnn", 12, 27e3),
]


def _synthetic(kind, z, **kw):
    if kind == "vrnn":
        return VRNN(2, z, layers=2, likelihood="gaussian", architecture="fivo", **kw)
    return VHRNN(2, z, layers=2, omega_dim=8, likelihood="gaussian", architecture="fivo", **kw)


def _jsb(kind, z, **kw):
    if kind == "vrnn":
        return VRNN(88, z, likelihood="bernoulli", architecture="fivo", **kw)
    return VHRNN(88, z, omega_dim=64, likelihood="bernoulli", architecture="fivo", **kw)


@pytest.mark.parametrize("kind,z,paper", TABLE_1)
def test_table_1_parameter_counts(kind, z, paper):
    count = _synthetic(kind, z).num_parameters()
    assert abs(count - paper) <= 0.02 * paper
    if kind == "vrnn":
        # 37 z^2 + 30 z + 4: the FIVO code's VRNN, counted exactly
        assert count == paper == 37 * z * z + 30 * z + 4
    else:
        assert count == 1572  # 1568 plus the output layer's static bias (4 = 2 x_dim), kept on purpose


@pytest.mark.parametrize("kind,z,paper", TABLE_4_JSB)
def test_table_4_parameter_counts(kind, z, paper):
    count = _jsb(kind, z).num_parameters()
    assert abs(count - paper) <= 0.02 * paper, (count, paper)


def test_the_difference_to_the_compact_reading():
    z = 32
    compact = VRNN(88, z).num_parameters()
    fivo = _jsb("vrnn", z).num_parameters()
    # + linear output layers of phi_x, phi_z (2 z^2 + 2 z) + backward LSTM with one bias (8 z^2 + 4 z)
    # - the second bias of the forward LSTM (4 z)
    assert fivo - compact == 10 * z * z + 2 * z
    # the reference code builds (and counts) the backward LSTM whatever the proposal
    assert _jsb("vrnn", z, proposal="filtering").num_parameters() == fivo
    assert compact == 28792  # the old reading is still what the default builds


def test_single_bias_freezes_pytorchs_second_bias_and_keeps_state_dict_keys():
    cell = torch.nn.LSTMCell(3, 4)
    lstm = torch.nn.LSTM(3, 4, batch_first=True)
    keys = (set(cell.state_dict()), set(lstm.state_dict()))
    reference = torch.nn.LSTMCell(3, 4)
    reference.load_state_dict(cell.state_dict())
    use_single_bias(cell)
    use_single_bias(lstm)
    assert (set(cell.state_dict()), set(lstm.state_dict())) == keys
    assert "bias_hh" not in dict(cell.named_parameters()) and "bias_hh_l0" not in dict(lstm.named_parameters())
    assert torch.equal(cell.bias_hh, torch.zeros(16)) and torch.equal(lstm.bias_hh_l0, torch.zeros(16))
    # the cell computes a PyTorch LSTM step with bias_ih alone
    with torch.no_grad():
        reference.bias_hh.zero_()
    x, h, c = torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4)
    for a, b in zip(cell(x, (h, c)), reference(x, (h, c))):
        assert torch.allclose(a, b)
    out, _ = lstm(torch.randn(2, 5, 3))  # nn.LSTM still runs from its refreshed weight list
    assert out.shape == (2, 5, 4)
    model = VRNN(5, 3, architecture="fivo")
    trainable = {n for n, p in model.named_parameters()}
    assert not any("bias_hh" in n for n in trainable)
    assert any("bias_hh" in n for n in model.state_dict())


def test_residual_proposal_mean_is_the_prior_mean_plus_the_network():
    model = VRNN(4, 3, likelihood="gaussian", architecture="fivo", proposal="filtering")
    with torch.no_grad():
        model.encoder_head.params.weight.zero_()
        model.encoder_head.params.bias.zero_()
    state = (torch.randn(2, 3), torch.randn(2, 3))
    q = model.proposal(state, 0, torch.randn(2, 3))
    p = model.transition(state, 0)
    assert torch.allclose(q.base_dist.loc, p.base_dist.loc)
    # raw scale 0 gives softplus(0 + 0.25) + 1e-4 (the FIVO code's raw_sigma_bias)
    expected = torch.nn.functional.softplus(torch.tensor(0.25)) + 1e-4
    assert torch.allclose(q.base_dist.scale, expected.expand(2, 3))


def test_compact_proposal_is_not_residual():
    model = VRNN(4, 3, likelihood="gaussian")
    with torch.no_grad():
        model.encoder_head.params.weight.zero_()
        model.encoder_head.params.bias.zero_()
    q = model.proposal((torch.randn(2, 3), torch.randn(2, 3)), 0, torch.randn(2, 3))
    assert torch.equal(q.base_dist.loc, torch.zeros(2, 3))


@pytest.mark.parametrize("kind", ["vrnn", "vhrnn"])
def test_smoothing_proposal_reads_the_future_and_not_the_past(kind):
    model = _synthetic(kind, 16)  # wide enough that no input leaves every ReLU of phi_x off
    x = torch.randn(2, 6, 2, requires_grad=True)
    lengths = torch.tensor([6, 4])
    q_ctx = model.proposal_context(x, model.context(x), lengths)
    t = 2
    (grad,) = torch.autograd.grad(q_ctx[:, t].sum(), x)
    assert torch.all(grad[:, :t] == 0)  # nothing from x_<t
    assert torch.all(grad[0, t:].abs().sum(-1) > 0)  # everything from x_t .. x_T
    assert torch.all(grad[1, 4:] == 0) and torch.all(grad[1, t:4].abs().sum(-1) > 0)  # not the padding
    # the second sequence's summary equals that of the same sequence given alone, unpadded
    alone = model.proposal_context(x[1:, :4], model.context(x[1:, :4]), torch.tensor([4]))
    assert torch.allclose(alone[0], q_ctx[1, :4], atol=1e-6)


def test_filtering_proposal_reads_x_t_only():
    model = _synthetic("vrnn", 3, proposal="filtering")
    x = torch.randn(1, 5, 2, requires_grad=True)
    q_ctx = model.proposal_context(x, model.context(x), torch.tensor([5]))
    (grad,) = torch.autograd.grad(q_ctx[:, 2].sum(), x)
    assert torch.all(grad[:, [0, 1, 3, 4]] == 0) and grad[:, 2].abs().sum() > 0


def test_hyper_output_layer_starts_as_the_plain_head_and_is_recorded():
    head = BernoulliHead(5, 7)
    hyper = HyperOutput(head, cond_dim=3, hyper_hidden=4)
    with torch.no_grad():
        hyper.generator[-1].weight.zero_()
    a, c = torch.randn(2, 5), torch.randn(2, 3)
    d, scale, shift = hyper(a, c)
    assert torch.equal(scale, torch.ones(2, 7)) and torch.equal(shift, torch.zeros(2, 7))
    assert torch.allclose(d.base_dist.logits, head(a).base_dist.logits)
    with torch.no_grad():
        hyper.generator[-1].bias.copy_(torch.cat([torch.full((7,), 1.0), torch.zeros(7)]))  # scale 2
    d2, _, _ = hyper(a, c)
    assert torch.allclose(d2.base_dist.logits, 2 * (a @ head.logits.weight.T) + head.logits.bias)  # the bias is not scaled
    with pytest.raises(ValueError, match="factorised head"):
        HyperOutput(torch.nn.Linear(2, 2), 3, 4)

    model = VHRNN(4, 3, likelihood="bernoulli", omega_dim=4, architecture="fivo")
    x = (torch.rand(2, 5, 4) < 0.5).float()
    trace = poutine.trace(model.model).get_trace(x)
    assert trace.nodes["omega_scale_out"]["value"].shape == (2, 5, 4)
    assert trace.nodes["omega_bias_out"]["value"].shape == (2, 5, 4)
    with pytest.raises(ValueError, match="must be binary"):
        model.prepare(torch.full((1, 2, 4), 0.5))  # the wrapped head still checks the data


def test_vhrnn_bias_shift_has_no_bias_of_its_own():
    model = VHRNN(4, 3, architecture="fivo")
    assert model.theta.shift is not None and model.theta.shift.bias is None
    assert model.theta.project.out_features == 2 * model.cell.modulation_dim


def test_bad_readings_are_rejected_by_name():
    with pytest.raises(ValueError, match="unknown architecture 'tf'.*compact, fivo"):
        VRNN(3, 2, architecture="tf")
    with pytest.raises(ValueError, match="unknown proposal 'future'.*filtering, smoothing"):
        VHRNN(3, 2, proposal="future")


def test_filtering_proposal_builds_but_never_runs_the_backward_lstm():
    model = _jsb("vrnn", 4, proposal="filtering")
    x = (torch.rand(2, 6, 88) < 0.2).float()
    lengths = torch.tensor([6, 3])
    ctx = model.context(x)
    assert model.proposal_context(x, ctx, lengths) is ctx  # phi_x of the data, no backward pass
    assert all(p.grad is None for p in model.backward_rnn.parameters())


def test_scale_offset_option_sets_the_softplus_offset():
    model = VRNN(4, 3, likelihood="gaussian", architecture="fivo", proposal="filtering", scale_offset=0.5)
    with torch.no_grad():
        model.encoder_head.params.weight.zero_()
        model.encoder_head.params.bias.zero_()
    q = model.proposal((torch.randn(2, 3), torch.randn(2, 3)), 0, torch.randn(2, 3))
    expected = torch.nn.functional.softplus(torch.tensor(0.5)) + 1e-4
    assert torch.allclose(q.base_dist.scale, expected.expand(2, 3))
    assert VRNN(4, 3, architecture="compact").prior_head.scale_offset == 0.0
    assert VRNN(4, 3, architecture="fivo").prior_head.scale_offset == 0.25
    with pytest.raises(ValueError, match="scale_offset must be a finite number"):
        VRNN(4, 3, scale_offset=float("nan"))


def test_raw_proposal_input_reads_phi_x_of_the_uncentred_data():
    x = (torch.rand(3, 5, 6) < 0.4).float()
    lengths = torch.tensor([5, 4, 2])
    for kind in ("filtering", "smoothing"):
        raw = VRNN(6, 3, architecture="fivo", proposal=kind, proposal_input="raw")
        raw.init_from_data(x, lengths, center=True)
        assert raw.input_offset.abs().sum() > 0
        ctx = raw.context(x)
        assert torch.allclose(ctx, raw.phi_x(x - raw.input_offset))  # the recurrence reads the centred data
        centred = VRNN(6, 3, architecture="fivo", proposal=kind)
        centred.load_state_dict(raw.state_dict())
        expected = raw.phi_x(x)
        if kind == "smoothing":
            from pyrosequence.nn.sequence_rnn import backward_pass

            expected = backward_pass(raw.backward_rnn, expected, lengths)
            assert not torch.allclose(centred.proposal_context(x, centred.context(x), lengths), expected)
        assert torch.allclose(raw.proposal_context(x, ctx, lengths), expected)
    with pytest.raises(ValueError, match="unknown proposal_input 'scaled'"):
        VRNN(6, 3, proposal_input="scaled")


@pytest.mark.parametrize("cls", [VRNN, VHRNN])
def test_initial_step_is_one_recurrence_step_on_zeros(cls):
    model = cls(5, 3, likelihood="bernoulli", architecture="fivo", initial_step=True)
    x = torch.zeros(2, 4, 5)
    state = model.initial_state(torch.Size([7, 2]), x)
    zero = model.zero_state(torch.Size([1]), x)
    z = torch.zeros(1, 3)
    expected = model.advance(zero, z, model.zero_latent_features(z), model.phi_x(torch.zeros(1, 5)))
    flat = state if isinstance(state, tuple) else (state,)
    for got, want in zip(flat, expected if isinstance(expected, tuple) else (expected,)):
        assert got.shape == (7, 2, want.shape[-1])
        assert torch.allclose(got, want.expand_as(got))
    # gradients reach the recurrence through the initial state
    got = model.hidden(state).sum()
    got.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.phi_x.parameters())
    plain = cls(5, 3, likelihood="bernoulli", architecture="fivo")
    assert all(bool((s == 0).all()) for s in plain.initial_state(torch.Size([2]), x))
