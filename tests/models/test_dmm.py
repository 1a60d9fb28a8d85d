"""The Deep Markov Model (Krishnan et al. 2017): shapes, every objective, the K=1 FIVO/ELBO identity,
a guide that reads the future while the model stays causal, the flow guide's cached density, bad
options, and training from the command line."""

import json
import math

import pytest
import torch

import pyro
import pyro.poutine as poutine
from pyro.infer import SVI, Trace_ELBO

from pyrosequence.cli import main
from pyrosequence.training.config import TrainConfig
from pyrosequence.inference import OBJECTIVES, evaluate, make_objective
from pyrosequence.inference.fivo import FIVO
from pyrosequence.models import DMM, MODELS, model_class
from pyrosequence.models.dmm import FlowPosterior


def _binary(batch=4, steps=6, x_dim=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, steps, x_dim, generator=g) < 0.3).float()


def test_registered_as_dmm_with_pyro_sizes_relative_to_z_dim():
    assert MODELS["dmm"] is DMM and model_class("dmm") is DMM
    m = DMM(88, 100)
    # Pyro's example: z 100, transition 200, emission 100, rnn 600, a ReLU RNN
    assert (m.hidden_dim, m.transition_dim, m.emission_dim, m.iaf_dim) == (600, 200, 100, 100)
    assert isinstance(m.backward_rnn, torch.nn.RNN) and m.backward_rnn.nonlinearity == "relu"
    # the linear part of the gated transition starts as the identity
    assert torch.equal(m.trans.linear_mean.weight, torch.eye(100))
    config = TrainConfig(model="dmm", model_options={"transition_dim": 7, "iafs": 1})
    assert config.z_dim == 8 and config.model_options["likelihood"] == "gaussian"  # the synthetic data's


def test_piece_and_site_shapes():
    m = DMM(5, 3, hidden_dim=7, transition_dim=6, emission_dim=4)
    x, lengths = _binary(), torch.tensor([6, 4, 1, 5])
    seqs = m.prepare(x, lengths)
    h = m.proposal_context(seqs.x, m.context(seqs.x), seqs.lengths)
    assert h.shape == (4, 6, 7)
    state = m.initial_state(torch.Size([4]), x)
    assert [s.shape for s in state] == [(4, 3), (4, 3)]
    prior, q = m.transition(state, 0), m.proposal(state, 0, h[:, 0])
    assert (prior.batch_shape, prior.event_shape, q.batch_shape, q.event_shape) == ((4,), (3,), (4,), (3,))
    z = q.rsample(torch.Size([2]))  # a particle dimension on the left
    assert z.shape == (2, 4, 3)
    new = m.update(state, z, None, 0)
    assert new[0] is z and new[1] is z
    assert m.transition(new, 1).batch_shape == (2, 4)
    assert m.emission(new, z).event_shape == (5,) and m.emission(new, z).batch_shape == (2, 4)
    guide = poutine.trace(m.guide).get_trace(x, lengths)
    model = poutine.trace(poutine.replay(m.model, trace=guide)).get_trace(x, lengths)
    assert [n for n in guide.nodes if n.startswith("z_")] == [f"z_{t}" for t in range(6)]
    assert all(guide.nodes[f"z_{t}"]["value"].shape == (4, 3) for t in range(6))
    assert model.nodes["x"]["fn"].event_shape == (6, 5) and model.nodes["x"]["fn"].batch_shape == (4,)


@pytest.mark.parametrize("iafs", [0, 1])
@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_every_objective_gives_a_finite_loss_and_a_step(objective, vectorize, iafs):
    pyro.set_rng_seed(1)
    m = DMM(5, 3, hidden_dim=6, iafs=iafs)
    x, lengths = _binary(), torch.tensor([6, 4, 1, 5])
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    svi = SVI(m.model, m.guide, pyro.optim.Adam({"lr": 0.01}), make_objective(objective, 3, vectorize))
    assert math.isfinite(svi.step(x, lengths))
    moved = {n for n, p in m.named_parameters() if not torch.equal(before[n], p)}
    # the model and the guide both learn: transition, emitter, combiner, backward RNN (and the flow)
    for prefix in ["trans.", "decoder_head.", "combiner.", "backward_rnn."] + (["flows."] if iafs else []):
        assert any(n.startswith(prefix) for n in moved), (prefix, sorted(moved))


@pytest.mark.parametrize("iafs", [0, 2])
def test_one_particle_fivo_equals_the_elbo_per_sequence(iafs):
    m = DMM(3, 4, hidden_dim=5, likelihood="gaussian", iafs=iafs)
    x, lengths = torch.randn(4, 6, 3), torch.tensor([6, 2, 5, 1])
    pyro.set_rng_seed(9)
    fivo = FIVO(1).filter(m.model, m.guide, x, lengths).log_z
    pyro.set_rng_seed(9)
    elbo = evaluate(m, x, lengths, bound="elbo", num_particles=1).log_likelihood
    assert fivo.shape == (4,)
    assert torch.allclose(fivo, elbo, rtol=1e-6, atol=1e-6)
    pyro.set_rng_seed(9)
    loss = Trace_ELBO().loss(m.model, m.guide, x, lengths)
    assert float(fivo.detach().sum()) == pytest.approx(-loss, rel=1e-6)


def test_the_guide_reads_the_future_and_starts_at_each_sequence_end():
    m = DMM(3, 2, hidden_dim=5, likelihood="gaussian", cell="gru")
    x = torch.randn(2, 5, 3)
    full = torch.tensor([5, 5])
    h = m.proposal_context(x, m.context(x), full)
    later = x.clone()
    later[:, 4] += 1.0  # change only the last observation
    h_later = m.proposal_context(later, m.context(later), full)
    assert not torch.allclose(h[:, 0], h_later[:, 0])  # h_0 summarises x_{0:T}: it sees x_4
    earlier = x.clone()
    earlier[:, 0] += 1.0
    h_earlier = m.proposal_context(earlier, m.context(earlier), full)
    assert torch.equal(h[:, 1:], h_earlier[:, 1:])  # h_t reads x_{t:T} only
    # a sequence of length 3 padded to 5 gives the same summaries as the sequence alone
    ragged = m.proposal_context(x, m.context(x), torch.tensor([3, 5]))
    alone = m.proposal_context(x[:1, :3], m.context(x[:1, :3]), torch.tensor([3]))
    assert torch.allclose(ragged[0, :3], alone[0], atol=1e-6)
    # so q(z_0 | ...) moves with x_4
    q = m.proposal(m.initial_state(torch.Size([2]), x), 0, h[:, 0]).base_dist
    q_later = m.proposal(m.initial_state(torch.Size([2]), x), 0, h_later[:, 0]).base_dist
    assert not torch.allclose(q.loc, q_later.loc)


def test_the_model_density_is_causal():
    m = DMM(3, 2, hidden_dim=5, likelihood="gaussian")
    x = torch.randn(2, 5, 3)
    guide = poutine.trace(m.guide).get_trace(x)
    z = {n: s["value"].detach() for n, s in guide.nodes.items() if n.startswith("z_")}

    def per_step(data):
        trace = poutine.trace(poutine.condition(m.model, data=z)).get_trace(data)
        latent = torch.stack([trace.nodes[f"z_{t}"]["fn"].log_prob(z[f"z_{t}"]) for t in range(5)], -1)
        return latent, trace.nodes["x"]["fn"].base_dist.log_prob(data)  # (batch, T) each

    latent, observed = per_step(x)
    changed = x.clone()
    changed[:, 3:] = torch.randn(2, 2, 3)
    latent2, observed2 = per_step(changed)
    assert torch.equal(latent, latent2)  # p(z_t | z_{t-1}) does not look at x at all
    assert torch.equal(observed[:, :3], observed2[:, :3])  # p(x_t | z_t) for t < 3 is untouched
    assert not torch.allclose(observed[:, 3:], observed2[:, 3:])


def test_flow_posterior_remembers_the_density_of_its_own_draw():
    pyro.set_rng_seed(3)
    m = DMM(3, 4, hidden_dim=5, iafs=2)
    x = torch.randn(2, 6, 3)
    h = m.proposal_context(x, m.context(x), torch.tensor([6, 6]))
    q = m.proposal(m.initial_state(torch.Size([2]), x), 0, h[:, 0])
    assert isinstance(q, FlowPosterior) and q.has_rsample and q.event_shape == (4,)
    z = q.rsample()
    remembered = q.log_prob(z)
    exact = q.log_prob(z.detach().clone())  # another tensor: inverted through both flows
    assert torch.allclose(remembered, exact, atol=1e-4)
    assert remembered.requires_grad  # the reparameterised density carries the gradient
    expanded = q.expand(torch.Size([3, 2]))  # as the particle filter does
    draws = expanded.rsample()
    assert draws.shape == (3, 2, 4) and expanded.log_prob(draws).shape == (3, 2)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"z_dim": 0}, "DMM needs latents: z_dim must be at least 1"),
        ({"cell": "transformer"}, "unknown cell 'transformer'; choose one of: rnn, gru, lstm"),
        ({"iafs": -1}, "iafs (the number of flows) must be an integer >= 0, got -1"),
        ({"iafs": 1.5}, "iafs (the number of flows) must be an integer >= 0, got 1.5"),
        ({"z_dim": 1, "iafs": 1}, "an autoregressive flow needs z_dim >= 2"),
        ({"hidden_dim": 0}, "hidden_dim must be a positive integer, got 0"),
        ({"transition_dim": 2.5}, "transition_dim must be a positive integer, got 2.5"),
        ({"emission_dim": -3}, "emission_dim must be a positive integer, got -3"),
        ({"iaf_dim": 0}, "iaf_dim must be a positive integer, got 0"),
        ({"likelihood": "poisson"}, "unknown likelihood 'poisson'"),
    ],
)
def test_bad_options_are_rejected(options, message):
    options = {"z_dim": 3, **options}
    with pytest.raises(ValueError) as error:
        DMM(5, **options)
    assert message in str(error.value)


def test_bad_options_and_data_through_the_config_and_the_model():
    with pytest.raises(ValueError, match="emission_dim must be a positive integer, got 0"):
        TrainConfig(model="dmm", model_options={"emission_dim": 0})
    with pytest.raises(ValueError, match="does not take option\\(s\\) rnn_dim"):
        TrainConfig(model="dmm", model_options={"rnn_dim": 600})
    m = DMM(5, 3)
    with pytest.raises(ValueError, match="0.5"):
        m.guide(torch.full((2, 3, 5), 0.5))  # not binary: no Bernoulli density there


def test_cli_trains_evaluates_and_resumes_a_dmm(tmp_path, capsys):
    out = tmp_path / "dmm"
    argv = ["train", "--model", "dmm", "--z-dim", "3", "--hidden-dim", "6", "--model-option", "transition_dim=5",
            "--model-option", "iafs=1", "--epochs", "1", "--batch-size", "64", "--train-subset", "16",
            "--eval-particles", "2", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    assert "test iwae(2) per time step:" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "dmm"
    assert config["model_options"] == {"hidden_dim": 6, "transition_dim": 5, "iafs": 1, "likelihood": "gaussian"}
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and math.isfinite(metrics[0]["train_loss_per_step"])
    assert main(["evaluate", str(out), "--bound", "fivo", "--particles", "4"]) == 0
    assert "fivo(4) per time step:" in capsys.readouterr().out
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert "epoch 2/2" in capsys.readouterr().out
