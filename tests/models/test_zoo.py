"""Model-zoo matrix: every model x every objective gives a finite loss and a gradient step."""

import math

import pytest
import torch

import pyro
from pyro.infer import SVI

from pyrosequence import VHRNN, VRNN, HyperLSTM, LinearGaussianSSM
from pyrosequence.inference import OBJECTIVES, make_objective

MODELS = {
    "vrnn-bernoulli": (lambda: VRNN(5, 3, likelihood="bernoulli"), True),
    "vrnn-gaussian-gru": (lambda: VRNN(5, 3, likelihood="gaussian", cell="gru"), False),
    "lgssm-learned": (lambda: LinearGaussianSSM(5, 3), False),
    "lgssm-prior": (lambda: LinearGaussianSSM(5, 3, proposal="prior"), False),
    "vhrnn-lstm": (lambda: VHRNN(5, 3, likelihood="bernoulli", omega_dim=4), True),
    "vhrnn-gru-mlp-latent": (lambda: VHRNN(5, 3, cell="gru", hyper_net="mlp", hyper_input="latent", omega_dim=4), False),
    "hyperlstm-mixture": (lambda: HyperLSTM(5, 4, likelihood="mixture", components=2), False),
}


@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_objective_matrix(name, objective, vectorize):
    build, binary = MODELS[name]
    model = build()
    x = (torch.rand(4, 6, 5) < 0.3).float() if binary else torch.randn(4, 6, 5)
    lengths = torch.tensor([6, 4, 1, 5])
    before = [p.detach().clone() for p in model.parameters()]
    svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": 0.01}), make_objective(objective, 3, vectorize))
    loss = svi.step(x, lengths)
    assert math.isfinite(loss)
    moved = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
    assert any(moved)
