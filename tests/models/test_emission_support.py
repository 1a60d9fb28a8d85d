"""The emission's support is declared (by heads, the emission distribution, or the model), not
found by attribute name: data outside it is rejected, init_from_data finds the heads."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributions import constraints

import pyro.distributions as dist

from pyrosequence.inference import evaluate
from pyrosequence.models import MODELS, Flattened, SequenceModel
from pyrosequence.nn import BernoulliHead, DiagNormalHead
from pyrosequence.nn.support import AllOf, check_support

X_DIM, Z_DIM, H = 3, 2, 5


class Tiny(SequenceModel):
    """A small latent model whose emission head lives under ``self.out`` (not ``decoder_head``)."""

    def __init__(self, x_dim=X_DIM, z_dim=Z_DIM, likelihood="bernoulli"):
        super().__init__(x_dim, z_dim)
        self.prior = DiagNormalHead(H, z_dim)
        self.post = DiagNormalHead(H + x_dim, z_dim)
        self.out = BernoulliHead(H + z_dim, x_dim) if likelihood == "bernoulli" else DiagNormalHead(H + z_dim, x_dim)
        self.step = nn.Linear(H + z_dim + x_dim, H)

    def initial_state(self, batch_shape, x):
        return x.new_zeros(tuple(batch_shape) + (H,))

    def transition(self, state, t):
        return self.prior(state)

    def proposal(self, state, t, x_t):
        return self.post(torch.cat([state, x_t.expand(state.shape[:-1] + x_t.shape[-1:])], -1))

    def emission(self, state, z):
        return self.out(torch.cat([state.expand(z.shape[:-1] + state.shape[-1:]), z], -1))

    def update(self, state, z, x_t, t):
        return torch.tanh(self.step(torch.cat([state.expand(z.shape[:-1] + (H,)), z, x_t.expand(z.shape[:-1] + x_t.shape[-1:])], -1)))


class AuxBernoulli(Tiny):
    """A Gaussian emission plus a Bernoulli head that scores something other than x (e.g. a binary
    flag of a user's own auxiliary loss): by default every declared support must hold."""

    def __init__(self):
        super().__init__(likelihood="gaussian")
        self.flag = BernoulliHead(H, 1)


class RealDeclared(AuxBernoulli):
    """The same model declaring its emission's support itself."""

    emission_support = constraints.real


class RawBernoulli(Tiny):
    """No declaring head for x: the emission is a bare ``dist.Bernoulli`` over a linear layer."""

    def __init__(self):
        super().__init__()
        self.out = nn.Linear(H + Z_DIM, X_DIM)

    def emission(self, state, z):
        return dist.Bernoulli(logits=self.out(torch.cat([state.expand(z.shape[:-1] + (H,)), z], -1))).to_event(1)


class PoissonHead(nn.Module):
    """A user head declaring a count support."""

    support = constraints.nonnegative_integer

    def __init__(self, in_dim, dim):
        super().__init__()
        self.dim = dim
        self.rate = nn.Linear(in_dim, dim)

    def forward(self, features):
        return dist.Poisson(nn.functional.softplus(self.rate(features)) + 1e-3).to_event(1)


class Counts(Tiny):
    def __init__(self):
        super().__init__(likelihood="gaussian")
        self.counts = PoissonHead(H + Z_DIM, X_DIM)

    def emission(self, state, z):
        return self.counts(torch.cat([state.expand(z.shape[:-1] + (H,)), z], -1))


def _binary(batch=4, steps=5):
    return (torch.rand(batch, steps, X_DIM, generator=torch.Generator().manual_seed(0)) < 0.4).float()


def test_bernoulli_head_under_another_name_rejects_half_valued_data():
    model = Tiny()
    assert [name for name, _ in model.declaring_heads()] == ["prior", "post", "out"]
    assert model.emission_support is constraints.boolean
    x = _binary()
    x[1, 2, 0] = 0.5
    with pytest.raises(ValueError, match=r"x must be binary \(0/1\) for a Bernoulli emission \(declared by "
                                         r"BernoulliHead 'out' of Tiny\); found the value 0.5 at index \(1, 2, 0\)"):
        model.prepare(x)
    with pytest.raises(ValueError, match="BernoulliHead 'out'"):
        evaluate(model, x, bound="elbo", num_particles=2)
    model.prepare(_binary())  # binary data passes


def test_padding_is_not_checked():
    x = _binary()
    x[0, 4] = 0.5  # beyond sequence 0's length: zeroed before the check
    Tiny().prepare(x, torch.tensor([4, 5, 5, 5]))


def test_a_model_declaring_real_support_accepts_half_valued_data():
    x = torch.full((2, 3, X_DIM), 0.5)
    with pytest.raises(ValueError, match="BernoulliHead 'flag' of AuxBernoulli"):
        AuxBernoulli().prepare(x)  # without the declaration the Bernoulli head's support counts
    model = RealDeclared()
    assert model.emission_support is constraints.real
    model.prepare(x)
    bound = evaluate(model, x, bound="elbo", num_particles=2)
    assert bound.log_likelihood.shape == (2,) and torch.isfinite(bound.log_likelihood).all()


def test_gaussian_head_accepts_real_data():
    model = Tiny(likelihood="gaussian")
    assert model.emission_support is constraints.real
    model.prepare(torch.randn(2, 3, X_DIM))


def test_a_bare_bernoulli_emission_declares_its_support_through_the_distribution():
    model = RawBernoulli()
    assert model.emission_support is constraints.real  # only the Normal heads before the first batch
    x = _binary()
    x[3, 0, 2] = 0.25
    with pytest.raises(ValueError, match=r"binary \(0/1\) for a Bernoulli emission \(the support of the distribution "
                                         r"RawBernoulli.emission returns\); found the value 0.25 at index \(3, 0, 2\)"):
        model.prepare(x)
    assert model.emission_support is constraints.boolean
    model.prepare(_binary())


def test_a_user_head_with_its_own_support():
    model = Counts()
    x = torch.randint(0, 4, (2, 3, X_DIM)).float()
    model.prepare(x)
    x[0, 1, 1] = 1.5
    with pytest.raises(ValueError, match=r"x must lie in the support IntegerGreaterThan\(lower_bound=0\) of the "
                                         r"emission \(declared by PoissonHead 'counts' of Counts\); found the value 1.5"):
        model.prepare(x)


def test_init_from_data_finds_a_differently_named_head():
    model = Tiny()
    x = _binary(batch=6, steps=7)
    lengths = torch.tensor([7, 3, 5, 7, 1, 2])
    model.init_from_data(x, lengths)
    mask = torch.arange(7)[None, :] < lengths[:, None]
    p = x[mask].mean(0)
    assert torch.allclose(model.out.logits.bias, torch.log(p) - torch.log1p(-p), atol=1e-6)


def test_init_from_data_leaves_heads_of_other_sizes_alone():
    class Extra(Tiny):
        def __init__(self):
            super().__init__()
            self.aux = BernoulliHead(H, X_DIM + 1)  # not an x_dim emission

    model = Extra()
    before = model.aux.logits.bias.clone()
    model.init_from_data(_binary())
    assert torch.equal(model.aux.logits.bias, before)
    assert not torch.equal(model.out.logits.bias, torch.zeros(X_DIM))


def test_check_support_combines_and_locates():
    support = AllOf(constraints.boolean, constraints.real)
    check_support(torch.tensor([[0.0, 1.0]]), support)
    with pytest.raises(ValueError, match=r"y must be binary \(0/1\) for a Bernoulli emission; found the value 2 at index \(1, 0\)"):
        check_support(torch.tensor([[0.0, 1.0], [2.0, 1.0]]), support, name="y")
    check_support(torch.tensor([0.3]), None)
    check_support(torch.tensor([0.3]), constraints.independent(constraints.real, 1))
    with pytest.raises(ValueError, match="found the value -1"):
        check_support(torch.tensor([[0.5, -1.0]]), constraints.independent(constraints.unit_interval, 1))


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_built_in_models_declare_their_likelihood(name, likelihood):
    cls = MODELS[name]
    if name in ("lgssm", "linear-vae"):  # Gaussian observations only
        model, likelihood = cls(4, 2), "gaussian"
    else:
        model = cls(4, 2, likelihood=likelihood)
    expected = constraints.boolean if likelihood == "bernoulli" else constraints.real
    assert model.emission_support is expected
    model.prepare((torch.rand(2, 3, 4) < 0.5).float())
    assert model.emission_support is expected  # the emission's distribution agrees with the heads
    if expected is constraints.boolean:
        with pytest.raises(ValueError, match="must be binary"):
            model.prepare(torch.full((2, 3, 4), 0.5))


def test_flattened_uses_the_inner_models_support():
    inner = Tiny(x_dim=1)
    model = Flattened(inner, 4)
    assert model.emission_support is constraints.boolean
    with pytest.raises(ValueError, match="BernoulliHead 'out' of Tiny"):
        model.prepare(torch.full((2, 3, 4), 0.5))
