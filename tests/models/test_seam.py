"""The SequenceModel seam: sites, shapes, masking, state reuse, and a user-written model."""

import pytest
import torch

import pyro
import pyro.poutine as poutine
from pyro.poutine.util import site_is_subsample
from pyro.infer import SVI, Trace_ELBO

from pyrosequence import VRNN, LinearGaussianSSM, SequenceModel
from pyrosequence.inference import make_objective


def _models():
    return [
        ("vrnn-bernoulli-lstm", VRNN(4, 3, likelihood="bernoulli"), True),
        ("vrnn-gaussian-gru", VRNN(4, 3, likelihood="gaussian", cell="gru", layers=2), False),
        ("lgssm", LinearGaussianSSM(4, 3), False),
    ]


def _x(binary, batch=5, steps=6):
    return (torch.rand(batch, steps, 4) < 0.3).float() if binary else torch.randn(batch, steps, 4)


@pytest.mark.parametrize("name,model,binary", _models(), ids=[m[0] for m in _models()])
def test_sites_and_shapes(name, model, binary):
    x = _x(binary)
    guide_trace = poutine.trace(model.guide).get_trace(x)
    trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x)
    latents = [
        n for n, s in trace.nodes.items() if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)
    ]
    assert latents == model.latent_sites(6)
    for site in latents:
        assert trace.nodes[site]["fn"].batch_shape == (5,)
        assert trace.nodes[site]["fn"].event_shape == (3,)
        assert trace.nodes[site]["value"] is guide_trace.nodes[site]["value"]
    obs = trace.nodes["x"]
    assert obs["is_observed"] and obs["fn"].batch_shape == (5,) and obs["fn"].event_shape == (6, 4)


@pytest.mark.parametrize("name,model,binary", _models(), ids=[m[0] for m in _models()])
def test_vectorized_particles_shapes(name, model, binary):
    x = _x(binary)
    with pyro.plate("particles", 7, dim=-2):
        guide_trace = poutine.trace(model.guide).get_trace(x)
        trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x)
    trace.compute_log_prob()
    for site in model.latent_sites(6) + ["x"]:
        assert trace.nodes[site]["log_prob"].shape == (7, 5)


@pytest.mark.parametrize("name,model,binary", _models(), ids=[m[0] for m in _models()])
def test_reused_recurrence_equals_recomputed(name, model, binary):
    """The model's reuse of the guide's states changes nothing: same log-densities as recomputing."""
    x = _x(binary)
    lengths = torch.tensor([6, 2, 5, 1, 6])
    guide_trace = poutine.trace(model.guide).get_trace(x, lengths)
    reused = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x, lengths)
    assert model._recurrence is None  # consumed
    recomputed = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x, lengths)
    assert torch.allclose(reused.log_prob_sum(), recomputed.log_prob_sum(), rtol=1e-6)


def test_stale_recurrence_is_not_reused_after_a_parameter_update():
    model = VRNN(4, 3, likelihood="gaussian")
    x = torch.randn(3, 5, 4)
    guide_trace = poutine.trace(model.guide).get_trace(x)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    after = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x)
    fresh = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x)
    assert torch.allclose(after.log_prob_sum(), fresh.log_prob_sum(), rtol=1e-6)


@pytest.mark.parametrize("objective", ["elbo", "mean-field", "iwae", "iwae-dreg", "elbo-stl"])
@pytest.mark.parametrize("name,model,binary", _models(), ids=[m[0] for m in _models()])
def test_padding_changes_neither_loss_nor_gradient(name, model, binary, objective):
    x = _x(binary)
    lengths = torch.tensor([6, 2, 5, 1, 3])
    x_other = x.clone()
    pad = torch.arange(6) >= lengths[:, None]
    x_other[pad] = (torch.rand_like(x_other[pad]) < 0.5).float() if binary else 100 * torch.randn_like(x_other[pad])
    loss = make_objective(objective, num_particles=2)
    results = []
    for data in (x, x_other):
        pyro.set_rng_seed(3)
        model.zero_grad()
        value = loss.loss_and_grads(model.model, model.guide, data, lengths)
        results.append((value, [p.grad.clone() for p in model.parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    for g0, g1 in zip(results[0][1], results[1][1]):
        assert torch.allclose(g0, g1, rtol=1e-5, atol=1e-7)


def test_padding_matters_when_it_is_not_padding():
    """Control for the test above: the same change inside the lengths does change the loss."""
    model = VRNN(4, 3, likelihood="gaussian")
    x = torch.randn(2, 6, 4)
    pyro.set_rng_seed(3)
    full = Trace_ELBO().loss(model.model, model.guide, x)
    x[:, -1] += 10
    pyro.set_rng_seed(3)
    assert Trace_ELBO().loss(model.model, model.guide, x) != pytest.approx(full, rel=1e-3)


def test_a_user_model_trains_with_svi(random_walk):
    model = random_walk
    x = torch.randn(8, 10, 1).cumsum(1)
    svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    losses = [svi.step(x) for _ in range(150)]
    assert sum(losses[-20:]) / 20 < sum(losses[:20]) / 20
    assert all(p.grad is not None for p in model.parameters())


def test_unimplemented_pieces_fail_loudly():
    class Empty(SequenceModel):
        pass

    with pytest.raises(NotImplementedError):
        Empty(1, 1).guide(torch.zeros(1, 2, 1))


def test_two_instances_do_not_share_parameters():
    a, b = VRNN(4, 3), VRNN(4, 3)
    x = (torch.rand(2, 3, 4) < 0.5).float()
    trace = poutine.trace(a.guide, param_only=True).get_trace(x)
    trace_b = poutine.trace(b.guide, param_only=True).get_trace(x)
    assert {id(s["value"]) for s in trace.nodes.values()}.isdisjoint({id(s["value"]) for s in trace_b.nodes.values()})
    assert {id(p) for p in a.parameters()} == {id(s["value"].unconstrained()) for s in trace.nodes.values()}


@pytest.mark.parametrize("objective", ["elbo", "mean-field", "iwae"])
def test_objectives_run_the_recurrence_once(objective, monkeypatch):
    """Under every objective the model reuses the guide's states: T updates per particle, not 2T."""
    model = VRNN(4, 3, likelihood="gaussian")
    x = torch.randn(2, 5, 4)
    model.prepare(x)  # the one-off check of the pieces' shapes runs on the first batch: not counted here
    calls = []
    original = model.update
    monkeypatch.setattr(model, "update", lambda *a: calls.append(1) or original(*a))
    make_objective(objective, num_particles=3).loss(model.model, model.guide, x)
    assert len(calls) == 5  # vectorized particles: one pass of the recurrence for all three


def test_models_can_be_copied_after_a_guide_run():
    import copy

    model = VRNN(4, 3, likelihood="gaussian")
    model.guide(torch.randn(2, 5, 4))
    assert model._recurrence is not None
    clone = copy.deepcopy(model)
    assert clone._recurrence is None and model._recurrence is not None


def test_mean_centred_inputs_feed_the_networks_but_not_the_likelihood():
    model = VRNN(4, 3, likelihood="bernoulli")
    x = (torch.rand(6, 5, 4) < 0.3).float()
    model.init_from_data(x, center=True)
    mean = x.reshape(-1, 4).mean(0)
    assert torch.allclose(model.input_offset, mean)
    assert torch.allclose(model.context(x), model.phi_x(x - mean))
    trace = poutine.trace(model.model).get_trace(x)
    assert torch.equal(trace.nodes["x"]["value"], x)  # the target is the raw binary data
    restored = VRNN(4, 3, likelihood="bernoulli")
    restored.load_state_dict(model.state_dict())
    assert torch.equal(restored.input_offset, model.input_offset)


def test_checkpoints_without_the_offset_still_load():
    model = VRNN(4, 3)
    from collections import OrderedDict

    old = OrderedDict((k, v) for k, v in model.state_dict().items() if k != "input_offset")
    old._metadata = {"": {"version": 1}}  # what torch stored before the buffer existed
    fresh = VRNN(4, 3)
    fresh.load_state_dict(old)
    assert torch.all(fresh.input_offset == 0)
