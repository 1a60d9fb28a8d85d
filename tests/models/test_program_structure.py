"""Reliability, round two (issue 25): a plain Pyro program's guide may sample only the model's
latents (or variables it marks auxiliary), and ``pyro.infer.SVI`` trains every program.

Both failed before their fix: a guide site the model lacks was accepted and its "bound" exceeded
the exact log p(x); ``SVI`` on a program with an unconstrained ``pyro.param`` raised
``AttributeError: 'Parameter' object has no attribute 'unconstrained'``.
"""

import math

import pytest
import torch
from torch import nn
from torch.distributions import constraints

import pyro
import pyro.distributions as dist
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyrosequence import PyroProgram
from pyrosequence.inference import evaluate


def _data():
    torch.manual_seed(0)
    x = torch.randn(5, 4, 1)
    lengths = torch.tensor([4, 3, 4, 2, 1])
    return x * (torch.arange(4) < lengths.unsqueeze(-1)).unsqueeze(-1), lengths


def _model(x, lengths):
    """z ~ N(0, 1) per sequence, x_t ~ N(z, 1) for t < length: log p(x) has a closed form."""
    steps = (torch.arange(x.shape[1]) < lengths.unsqueeze(-1)).unsqueeze(-1)
    with pyro.plate("sequences", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z[..., None, None].expand(z.shape + x.shape[1:]), 1.0).mask(steps).to_event(2), obs=x)


def _guide_with(extra_infer: dict | None):
    def guide(x, lengths):
        with pyro.plate("sequences", x.shape[0]):
            pyro.sample("z", dist.Normal(0.0, 1.0))
            if extra_infer is not None:
                pyro.sample("extra", dist.Normal(0.0, 0.01), infer=extra_infer)

    return guide


def _exact_log_p(x, lengths) -> torch.Tensor:
    """log N(x_1..n; 0, I + 11^T) per sequence."""
    out = []
    for row, n in zip(x[..., 0], lengths.tolist()):
        cov = torch.eye(n) + torch.ones(n, n)
        out.append(torch.distributions.MultivariateNormal(torch.zeros(n), cov).log_prob(row[:n]))
    return torch.stack(out)


def test_a_guide_site_the_model_lacks_is_an_error_naming_it():
    x, lengths = _data()
    program = PyroProgram(_model, _guide_with({}), x_dim=1)
    with pytest.raises(ValueError, match="the guide samples site.s. extra that the model does not have"):
        evaluate(program, x, lengths, bound="iwae", num_particles=8)
    # without it the program is fine, and its bound estimates the exact log p(x)
    fine = PyroProgram(_model, _guide_with(None), x_dim=1)
    estimate = evaluate(fine, x, lengths, bound="iwae", num_particles=2000).total
    assert abs(estimate - float(_exact_log_p(x, lengths).sum())) < 0.5


def test_an_auxiliary_guide_variable_is_accepted_when_marked():
    x, lengths = _data()
    program = PyroProgram(_model, _guide_with({"is_auxiliary": True}), x_dim=1)
    value = evaluate(program, x, lengths, bound="elbo").total
    assert math.isfinite(value) and program.latent_names == ("z",)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)


def _programs():
    """Programs with an unconstrained pyro.param, a constrained one, and a pyro.module net."""
    net = _Net()

    def model(x, lengths):
        shift = pyro.param("shift", torch.tensor(0.3))  # unconstrained
        scale = pyro.param("scale", torch.tensor(1.5), constraint=constraints.positive)
        steps = (torch.arange(x.shape[1]) < lengths.unsqueeze(-1)).unsqueeze(-1)
        with pyro.plate("sequences", x.shape[0]):
            z = pyro.sample("z", dist.Normal(shift, 1.0))
            loc = z[..., None, None].expand(z.shape + x.shape[1:])
            pyro.sample("x", dist.Normal(loc, scale).mask(steps).to_event(2), obs=x)

    def guide(x, lengths):
        pyro.module("net", net)
        w = pyro.param("w", torch.tensor(0.1))  # unconstrained
        s = pyro.param("s", torch.tensor(0.8), constraint=constraints.positive)
        with pyro.plate("sequences", x.shape[0]):
            pyro.sample("z", dist.Normal(net.linear(x[:, :1, :]).reshape(-1) + w * x.sum((1, 2)), s))

    return PyroProgram(model, guide, x_dim=1)


def test_svi_trains_every_program():
    x, lengths = _data()
    program = _programs()
    program.init_from_data(x, lengths)
    before = {name: p.detach().clone() for name, p in program.named_parameters()}
    assert {"param:shift", "param:scale", "param:w", "param:s"} <= set(before)
    pyro.clear_param_store()
    svi = SVI(program.model, program.guide, Adam({"lr": 0.05}), Trace_ELBO())
    losses = [svi.step(x, lengths) for _ in range(5)]
    assert all(math.isfinite(v) for v in losses)
    after = dict(program.named_parameters())
    unchanged = [name for name, value in before.items() if torch.equal(value, after[name].detach())]
    assert not unchanged, unchanged  # SVI updated every parameter: unconstrained, constrained and the net's
    assert all(isinstance(p, nn.Parameter) and p.is_leaf for p in program.parameters())
