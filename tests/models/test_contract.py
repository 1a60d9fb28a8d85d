"""The piece contract is checked on a model's first batch, and a broken piece is named."""

import pytest
import torch

import pyro.distributions as dist
from pyro.infer import Trace_ELBO

from pyrosequence import SequenceModel, VRNN
from pyrosequence.inference import FIVO


class Walk(SequenceModel):
    """z_t ~ N(z_{t-1}, 1), x_t ~ N(W z_t, 1), q(z_t | x_t) = N(V x_t, 1); ``broken`` spoils one piece."""

    def __init__(self, broken=None):
        super().__init__(x_dim=3, z_dim=2)
        self.w = torch.nn.Linear(2, 3)
        self.v = torch.nn.Linear(3, 2)
        self.broken = broken
        self.transitions = 0

    def initial_state(self, batch_shape, x):
        if self.broken == "initial_state":
            return x.new_zeros(7)
        return x.new_zeros(tuple(batch_shape) + (2,))

    def transition(self, state, t):
        self.transitions += 1
        d = dist.Normal(state, 1.0)
        return d if self.broken == "transition" else d.to_event(1)

    def proposal(self, state, t, x_t):
        d = dist.Normal(self.v(x_t), 1.0)
        return d if self.broken == "proposal" else d.to_event(1)

    def proposal_context(self, x, context, lengths):
        return context[:, :-1] if self.broken == "proposal_context" else context

    def emission(self, state, z):
        loc = self.w(z)
        if self.broken == "emission":
            loc = loc[..., :2]
        return dist.Normal(loc, 1.0).to_event(1)

    def update(self, state, z, x_t, t):
        return z.sum(-1) if self.broken == "update" else z


@pytest.mark.parametrize(
    "broken,message",
    [
        ("transition", r"transition\(state, t\) must return a distribution with event shape \(2,\).*a \.to_event\(1\) is missing"),
        ("proposal", r"proposal\(state, t, proposal_context_t\) must return .*event shape \(2,\).*\.to_event\(1\) is missing"),
        ("emission", r"emission\(state, z_features\) must return a distribution with event shape \(3,\) \(x_dim\); got event shape \(2,\)"),
        ("proposal_context", r"proposal_context\(x, context, lengths\) must return \(batch, time, \.\.\.\) = \(2, 2, \.\.\.\).*one step short"),
        ("update", r"update\(state, z_features, context_t, t\) must return a state"),
        ("initial_state", r"initial_state\(\(2,\), x\) must return a state whose tensors start with the batch shape \(2,\)"),
    ],
)
def test_a_broken_piece_is_named_under_every_entry_point(broken, message):
    x = torch.randn(4, 5, 3)
    with pytest.raises(ValueError, match=message):
        Trace_ELBO().loss(Walk(broken).model, Walk(broken).guide, x)
    model = Walk(broken)
    with pytest.raises(ValueError, match=message):
        FIVO(3).loss(model.model, model.guide, x)


def test_a_correct_model_passes_once_and_consumes_no_random_numbers():
    model = Walk()
    x = torch.randn(4, 5, 3)
    torch.manual_seed(1)
    before = torch.get_rng_state()
    model.prepare(x)
    assert torch.equal(before, torch.get_rng_state())
    checked = model.transitions
    assert checked > 0
    model.prepare(x)
    assert model.transitions == checked  # once per model


def test_the_library_models_pass():
    model = VRNN(3, 2, architecture="fivo")
    model.prepare((torch.rand(3, 4, 3) < 0.5).float())
    assert model._pieces_checked
