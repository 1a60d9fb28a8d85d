"""STORN, SRNN, Z-Forcing and the simplified SRNN: exact identities, causality, the auxiliary cost."""

import functools

import pytest
import torch

import pyro
import pyro.poutine as poutine
from pyro.infer import Trace_ELBO

from pyrosequence.cli import main
from pyrosequence.inference import evaluate
from pyrosequence.inference.fivo import FIVO
from pyrosequence.models import MODELS, SequenceModel
from pyrosequence.models.simplified_srnn import SimplifiedSRNN
from pyrosequence.models.srnn import SRNN
from pyrosequence.models.storn import STORN
from pyrosequence.models.zforcing import ZForcing
from pyrosequence.nn.sequence_rnn import backward_pass, make_lstm

BUILDERS = {
    "storn": lambda: STORN(3, 2, hidden_dim=5, likelihood="gaussian"),
    "srnn": lambda: SRNN(3, 2, hidden_dim=5, likelihood="gaussian"),
    "zforcing": lambda: ZForcing(3, 2, hidden_dim=5, likelihood="gaussian", aux_alpha=0.5, aux_beta=0.5),
    "srnn-simple": lambda: SimplifiedSRNN(3, 2, hidden_dim=5, likelihood="gaussian"),
    "srnn-simple-per-step": lambda: SimplifiedSRNN(3, 2, hidden_dim=5, likelihood="gaussian", fast_path=False),
}
X = torch.randn(4, 6, 3)
LENGTHS = torch.tensor([6, 2, 5, 1])


def _log_prob_sum(trace) -> torch.Tensor:
    trace.compute_log_prob()
    return sum(site["log_prob_sum"] for site in trace.nodes.values() if site["type"] == "sample")


def test_registered_names():
    assert {"storn": STORN, "srnn": SRNN, "zforcing": ZForcing, "srnn-simple": SimplifiedSRNN}.items() <= MODELS.items()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_one_particle_fivo_equals_the_elbo(name):
    """K = 1: the particle filter over the per-step pieces gives the ELBO of model()/guide()
    for the same draws (exactly, sequence by sequence); Z-Forcing in eval mode (no aux factor)."""
    m = BUILDERS[name]().eval()
    pyro.set_rng_seed(9)
    fivo = FIVO(1).filter(m.model, m.guide, X, LENGTHS).log_z
    pyro.set_rng_seed(9)
    elbo = evaluate(m, X, LENGTHS, bound="elbo", num_particles=1).log_likelihood
    assert torch.allclose(fivo, elbo, rtol=1e-5, atol=1e-5)
    pyro.set_rng_seed(9)
    loss = Trace_ELBO().loss(m.model, m.guide, X, LENGTHS)
    assert float(fivo.detach().sum()) == pytest.approx(-loss, rel=1e-5)


@pytest.mark.parametrize("particles", [None, 3])
def test_simplified_srnn_fast_path_equals_the_per_step_path(particles):
    """Same latent draws -> the same log q, log p(x, z), per site, and the same final state."""
    m = SimplifiedSRNN(3, 2, hidden_dim=5, likelihood="gaussian")
    generic_model = functools.partial(SequenceModel.model, m)
    generic_guide = functools.partial(SequenceModel.guide, m)

    def run(guide, model, *args):
        guide_trace = poutine.trace(guide).get_trace(X, LENGTHS, *args)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(X, LENGTHS, *args)
        return guide_trace, model_trace, m.final_state

    plate = pyro.plate("particles", particles, dim=-2) if particles else poutine.messenger.Messenger()
    with plate:
        fast_q, fast_p, fast_final = run(m.guide, m.model)
        slow_q = poutine.trace(poutine.replay(generic_guide, trace=fast_q)).get_trace(X, LENGTHS)
        slow_p = poutine.trace(poutine.replay(generic_model, trace=fast_q)).get_trace(X, LENGTHS)
        slow_final = m.final_state
    for fast, slow in ((fast_q, slow_q), (fast_p, slow_p)):
        fast.compute_log_prob()
        slow.compute_log_prob()
        names = [n for n, s in fast.nodes.items() if s["type"] == "sample" and n != "particles"]
        assert names == [n for n, s in slow.nodes.items() if s["type"] == "sample" and n != "particles"]
        for name in names:
            assert torch.allclose(fast.nodes[name]["log_prob"], slow.nodes[name]["log_prob"], atol=1e-5), name
    for a, b in zip(fast_final, slow_final):
        assert torch.allclose(*torch.broadcast_tensors(a, b), atol=1e-6)


def test_simplified_srnn_fast_path_continues_a_window_like_the_per_step_path():
    m = SimplifiedSRNN(3, 2, hidden_dim=5, likelihood="gaussian")
    initial = tuple(torch.randn(4, 5) for _ in range(4))
    guide_trace = poutine.trace(m.guide).get_trace(X, LENGTHS, initial, 6)
    fast = _log_prob_sum(poutine.trace(poutine.replay(m.model, trace=guide_trace)).get_trace(X, LENGTHS, initial, 6))
    fast_final = m.final_state
    generic = functools.partial(SequenceModel.model, m)
    slow = _log_prob_sum(poutine.trace(poutine.replay(generic, trace=guide_trace)).get_trace(X, LENGTHS, initial, 6))
    assert torch.allclose(fast, slow, atol=1e-4)
    for a, b in zip(fast_final, m.final_state):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("name", ["storn", "srnn", "zforcing", "srnn-simple", "srnn-simple-per-step"])
def test_the_model_is_causal(name):
    """With the latents held fixed, log p(x_t | ...) and log p(z_t | ...) for t < 3 do not move when
    x_3.. changes; the guide of the backward-RNN models may (and does) move."""
    m = BUILDERS[name]().eval()
    x = torch.randn(2, 6, 3)
    future = x.clone()
    future[:, 3:] = torch.randn(2, 3, 3)
    z = {f"z_{t}": torch.randn(2, 2) for t in range(6)}

    def per_step(data):
        trace = poutine.trace(poutine.condition(m.model, data=z)).get_trace(data)
        obs = trace.nodes["x"]["fn"]
        while hasattr(obs, "base_dist"):
            obs = obs.base_dist
        latent = torch.stack([trace.nodes[k]["fn"].log_prob(v) for k, v in z.items()], -1)
        return obs.log_prob(data), latent

    (obs_a, lat_a), (obs_b, lat_b) = per_step(x), per_step(future)
    assert torch.allclose(obs_a[:, :3], obs_b[:, :3], rtol=0, atol=1e-6)
    assert torch.allclose(lat_a[:, :4], lat_b[:, :4], rtol=0, atol=1e-6)
    assert (obs_a[:, 3:] - obs_b[:, 3:]).abs().min() > 1e-6
    q = lambda data: poutine.trace(poutine.condition(m.guide, data=z)).get_trace(data).nodes["z_2"]["fn"].log_prob(z["z_2"])
    change = (q(x) - q(future)).abs().max()
    assert change == 0 if name == "storn" else change > 1e-5  # q(z_2) reads x_3.. through the backward RNN


def test_backward_pass_ignores_padding():
    lstm = make_lstm(3, 4)
    x = torch.randn(2, 5, 3)
    x[1, 3:] = 0.0
    out = backward_pass(lstm, x, torch.tensor([5, 3]))
    alone = backward_pass(lstm, x[1:, :3], None)
    assert torch.allclose(out[1, :3], alone[0], atol=1e-6)


def _zforcing_traces(alpha, beta):
    m = ZForcing(3, 2, hidden_dim=5, likelihood="gaussian", aux_alpha=alpha, aux_beta=beta)
    guide_trace = poutine.trace(m.guide).get_trace(X, LENGTHS)
    model_trace = poutine.trace(poutine.replay(m.model, trace=guide_trace)).get_trace(X, LENGTHS)
    return m, guide_trace, model_trace


def _grads(m, value):
    m.zero_grad()
    value.sum().backward()
    return {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in m.named_parameters()}


def test_zforcing_aux_reconstruction_does_not_train_the_backward_network():
    """eq. 9 and section 3.4: grad of alpha * log p(b_t | z_t) reaches z's posterior MLP, the
    forward LSTM and f_a, but not the backward LSTM; its value is the plain formula."""
    m, guide_trace, model_trace = _zforcing_traces(1.0, 0.0)
    factor = model_trace.nodes["aux"]["fn"].log_prob(model_trace.nodes["aux"]["value"])
    z = torch.stack([guide_trace.nodes[f"z_{t}"]["value"] for t in range(6)], -2)
    b = backward_pass(m.backward_rnn, X, LENGTHS)
    mask = torch.arange(6) < LENGTHS[:, None]
    expected = (m.aux_b_head(m.aux_b_net(z)).log_prob(b) * mask).sum(-1)
    assert torch.allclose(factor, expected, atol=1e-4)
    grads = _grads(m, factor)
    assert all(bool((g == 0).all()) for n, g in grads.items() if n.startswith("backward_rnn"))
    for prefix in ("encoder_net", "aux_b_net", "rnn."):
        assert any(bool((g != 0).any()) for n, g in grads.items() if n.startswith(prefix)), prefix


def test_zforcing_reverse_prediction_trains_the_backward_network():
    """eq. 10: beta * log p(x_{t-1} | b_t) is what gives the backward LSTM its own training signal."""
    m, _, model_trace = _zforcing_traces(0.0, 1.0)
    factor = model_trace.nodes["aux"]["fn"].log_prob(model_trace.nodes["aux"]["value"])
    b = backward_pass(m.backward_rnn, X, LENGTHS)
    mask = torch.arange(1, 6) < LENGTHS[:, None]
    expected = (m.aux_x_head(b[:, 1:]).log_prob(X[:, :-1]) * mask).sum(-1)
    assert torch.allclose(factor, expected, atol=1e-4)
    grads = _grads(m, factor)
    assert all(bool((g != 0).any()) for n, g in grads.items() if n.startswith("backward_rnn.weight"))
    assert all(bool((g == 0).all()) for n, g in grads.items() if n.startswith(("encoder", "prior", "aux_b")))


def test_zforcing_aux_factor_only_in_training_and_never_in_evaluate():
    m, _, model_trace = _zforcing_traces(0.5, 0.5)
    aux = float(model_trace.nodes["aux"]["fn"].log_prob(model_trace.nodes["aux"]["value"]).sum().detach())
    assert aux != 0.0
    pyro.set_rng_seed(3)
    train_loss = Trace_ELBO().loss(m.model, m.guide, X, LENGTHS)
    pyro.set_rng_seed(3)
    bound = evaluate(m, X, LENGTHS, bound="elbo", num_particles=1).total
    assert m.training  # evaluate restored the mode
    m.eval()
    assert "aux" not in poutine.trace(m.model).get_trace(X, LENGTHS).nodes
    pyro.set_rng_seed(3)
    eval_loss = Trace_ELBO().loss(m.model, m.guide, X, LENGTHS)
    assert bound == pytest.approx(-eval_loss, rel=1e-5)
    # the training loss differs from the bound by exactly the auxiliary factor of those draws
    pyro.set_rng_seed(3)
    m.train()
    guide_trace = poutine.trace(m.guide).get_trace(X, LENGTHS)
    trace = poutine.trace(poutine.replay(m.model, trace=guide_trace)).get_trace(X, LENGTHS)
    aux_same_draws = float(trace.nodes["aux"]["fn"].log_prob(trace.nodes["aux"]["value"]).sum().detach())
    assert train_loss == pytest.approx(eval_loss - aux_same_draws, rel=1e-5)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: STORN(3, 2, posterior="smoothing"), "unknown STORN posterior 'smoothing'"),
        (lambda: ZForcing(3, 2, aux_alpha=-1.0), "aux_alpha must be a finite number >= 0"),
        (lambda: ZForcing(3, 2, aux_beta=float("nan")), "aux_beta must be a finite number >= 0"),
        (lambda: SRNN(3, 0), "z_dim must be at least 1"),
        (lambda: SimplifiedSRNN(3, 2, layers=0), "layers must be at least 1"),
        (lambda: STORN(3, 2, output="flat"), "unknown output 'flat'"),
        (lambda: SRNN(3, 2, likelihood="poisson"), "unknown likelihood 'poisson'"),
    ],
)
def test_bad_options_are_rejected(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("model", ["storn", "srnn", "zforcing", "srnn-simple"])
def test_trains_from_the_command_line(model, tmp_path, capsys):
    extra = ["--aux-alpha", "0.01", "--aux-beta", "0.01", "--kl-anneal"] if model == "zforcing" else []
    argv = ["train", "--model", model, "--z-dim", "2", "--hidden-dim", "4", "--epochs", "1", "--train-subset", "16",
            "--batch-size", "16", "--eval-particles", "2", "--tbptt", "30", "--no-progress", "--out", str(tmp_path / model),
            *extra]
    assert main(argv) == 0
    assert "test iwae(2) per time step:" in capsys.readouterr().out
