"""Every test starts from a fixed seed, an empty param store, and Pyro's validation on."""

from pathlib import Path

import pytest
import torch

import pyro
import pyro.distributions as dist

from pyrosequence import SequenceModel

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True)
def _fresh_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    torch.set_default_dtype(torch.float32)
    with pyro.validation_enabled(True):
        yield
    pyro.clear_param_store()


@pytest.fixture
def shared_data() -> Path:
    """The shared real data sets; tests that need them skip (saying why) when they are absent."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} is absent (tests reading real data need ../shared/data)")
    return path


class RandomWalk(SequenceModel):
    """A user's model on the base class: z_t ~ N(z_{t-1}, s), x_t ~ N(z_t, 1), q(z_t) = N(a x_t, b).

    Its proposal ignores the state, so its batch shape lacks any particle dimension.
    """

    def __init__(self):
        super().__init__(x_dim=1, z_dim=1)
        self.log_s = torch.nn.Parameter(torch.zeros(1))
        self.a = torch.nn.Parameter(torch.ones(1))
        self.log_b = torch.nn.Parameter(torch.zeros(1))

    def initial_state(self, batch_shape, x):
        return x.new_zeros(tuple(batch_shape) + (1,))

    def transition(self, state, t):
        return dist.Normal(state, self.log_s.exp()).to_event(1)

    def emission(self, state, z):
        return dist.Normal(z, 1.0).to_event(1)

    def update(self, state, z, x_t, t):
        return z

    def proposal(self, state, t, x_t):
        return dist.Normal(x_t * self.a, self.log_b.exp()).to_event(1)


@pytest.fixture
def random_walk() -> RandomWalk:
    """A fresh user-written model (see :class:`RandomWalk`)."""
    return RandomWalk()
