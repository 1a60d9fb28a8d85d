"""A linear-Gaussian state-space model: the exact oracle every estimator is checked against."""

from __future__ import annotations

import torch
from torch.distributions import constraints
from torch import nn

import pyro.distributions as dist

from pyrosequence.data.checks import check_sequences
from pyrosequence.models.core.base import SequenceModel

PROPOSALS = ("learned", "prior")


class LinearGaussianSSM(SequenceModel):
    r"""Linear-Gaussian state-space model with learnable matrices and an exact likelihood.

    Generative story (all noise diagonal)::

        z_0 ~ N(0, diag(s0^2))
        z_t ~ N(A z_{t-1}, diag(q^2))          t >= 1
        x_t ~ N(C z_t, diag(r^2))

    ``exact_log_prob`` evaluates :math:`\log p(x_{1:T})` exactly with a Kalman filter
    (``pyro.distributions.GaussianHMM``), so bounds estimated by sampling can be compared with
    the truth (the testing strategy of Maddison et al., "Filtering Variational Objectives", 2017,
    section 6.1, which uses a Gaussian model with a known marginal likelihood).

    The proposal is either the prior (``proposal="prior"``: the bootstrap particle filter) or a
    learned linear-Gaussian ``q(z_t | z_{t-1}, x_t) = N(B z_{t-1} + D x_t + b, diag(s^2))``
    with separate ``D, b, s`` at ``t = 0``. The learned family contains the exact
    one-step-optimal proposal ``p(z_t | z_{t-1}, x_t)``.

    Args:
        proposal: ``"learned"`` (a linear-Gaussian proposal) or ``"prior"`` (the bootstrap filter).
    """

    #: Constructor options that are sizes (positive integers; see pyrosequence.models.core.options).
    size_options = ()

    #: Gaussian observations: any real value (no distribution head to declare it).
    emission_support = constraints.real

    def __init__(self, x_dim: int, z_dim: int, proposal: str = "learned", name: str | None = None,
                 mask_inputs: bool = False) -> None:
        super().__init__(x_dim, z_dim, name=name, mask_inputs=mask_inputs)
        if proposal not in PROPOSALS:
            raise ValueError(f"unknown proposal {proposal!r}; choose one of: {', '.join(PROPOSALS)}")
        self.proposal_kind = proposal
        self.transition_matrix = nn.Parameter(0.8 * torch.eye(z_dim) + 0.1 * torch.randn(z_dim, z_dim))
        self.log_transition_scale = nn.Parameter(torch.full((z_dim,), -0.5))
        self.log_initial_scale = nn.Parameter(torch.zeros(z_dim))
        self.observation_matrix = nn.Parameter(torch.randn(x_dim, z_dim) / z_dim**0.5)
        self.log_observation_scale = nn.Parameter(torch.full((x_dim,), -0.5))
        if proposal == "learned":
            self.q_state = nn.Parameter(torch.zeros(z_dim, z_dim))
            self.q_obs = nn.Parameter(torch.zeros(2, z_dim, self.input_dim))  # [t = 0, t >= 1]
            self.q_bias = nn.Parameter(torch.zeros(2, z_dim))
            self.q_log_scale = nn.Parameter(torch.zeros(2, z_dim))

    # ------------------------------------------------------------------ per-step pieces
    def initial_state(self, batch_shape: torch.Size, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(tuple(batch_shape) + (self.z_dim,))

    def transition(self, state: torch.Tensor, t: int) -> dist.Distribution:
        if t == 0:
            return dist.Normal(torch.zeros_like(state), self.log_initial_scale.exp()).to_event(1)
        return dist.Normal(state @ self.transition_matrix.T, self.log_transition_scale.exp()).to_event(1)

    def emission(self, state: torch.Tensor, z: torch.Tensor) -> dist.Distribution:
        return dist.Normal(z @ self.observation_matrix.T, self.log_observation_scale.exp()).to_event(1)

    def update(self, state: torch.Tensor, z: torch.Tensor, x_t: torch.Tensor, t: int) -> torch.Tensor:
        return z

    def proposal(self, state: torch.Tensor, t: int, x_t: torch.Tensor) -> dist.Distribution:
        if self.proposal_kind == "prior":
            return self.transition(state, t)
        i = min(t, 1)
        loc = x_t @ self.q_obs[i].T + self.q_bias[i]
        if t > 0:
            loc = loc + state @ self.q_state.T
        return dist.Normal(loc, self.q_log_scale[i].exp().expand(loc.shape)).to_event(1)

    # ------------------------------------------------------------------ exact answers
    def hmm(self, num_steps: int, observed: torch.Tensor | None = None) -> dist.GaussianHMM:
        """The model as a ``GaussianHMM`` over ``num_steps`` observations.

        Pyro's ``GaussianHMM`` starts from a state *before* the first observation; a zero first
        transition matrix whose noise is ``N(0, diag(s0^2))`` turns that into our ``z_0``.

        ``observed`` (``(batch, num_steps, x_dim)`` bool) makes a batch of HMMs in which every
        missing element is cut off from the state (its row of the observation matrix is zero):
        it is then ``N(0, r_d^2)`` whatever the state, so scoring it at 0 adds the constant
        ``log N(0; 0, r_d^2)``, which :meth:`exact_log_prob` subtracts.
        """
        z, p = self.z_dim, self.transition_matrix
        matrices = torch.cat([p.new_zeros(1, z, z), p.T.expand(num_steps - 1, z, z)])
        scales = torch.cat(
            [self.log_initial_scale.exp()[None], self.log_transition_scale.exp().expand(num_steps - 1, z)]
        )
        return dist.GaussianHMM(
            initial_dist=dist.MultivariateNormal(p.new_zeros(z), torch.eye(z, dtype=p.dtype, device=p.device)),
            transition_matrix=matrices,
            transition_dist=dist.MultivariateNormal(p.new_zeros(num_steps, z), scale_tril=torch.diag_embed(scales)),
            observation_matrix=(self.observation_matrix.T if observed is None
                                else self.observation_matrix.T * observed[..., None, :].to(p.dtype)),
            observation_dist=dist.Normal(p.new_zeros(self.x_dim), self.log_observation_scale.exp()).to_event(1),
            duration=num_steps,
        )

    def exact_log_prob(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Exact ``log p(x_b[:lengths[b]])`` for each sequence, shape ``(batch,)``; with missing
        values (NaN) the exact marginal likelihood of the observed elements.

        Sequences are grouped by length and each group is filtered with one ``GaussianHMM`` (with
        missing values, one whose observation matrix drops the missing elements: see :meth:`hmm`).
        """
        seqs = check_sequences(x, lengths, self.x_dim)
        out = seqs.x.new_empty(seqs.batch_size)
        for length in seqs.lengths.unique().tolist():
            rows = seqs.lengths == length
            values = seqs.x[rows, :length]
            if seqs.observed is None:
                out[rows] = self.hmm(length).log_prob(values)
                continue
            observed = seqs.observed[rows, :length]
            noise = dist.Normal(values.new_zeros(()), self.log_observation_scale.exp())
            cut_off = (noise.log_prob(values.new_zeros(self.x_dim)) * (~observed)).sum((-1, -2))
            out[rows] = self.hmm(length, observed).log_prob(values) - cut_off
        return out

    @torch.no_grad()
    def sample(self, num_sequences: int, num_steps: int) -> torch.Tensor:
        """Draw ``(num_sequences, num_steps, x_dim)`` observations from the model."""
        state = self.initial_state(torch.Size([num_sequences]), self.transition_matrix)
        xs = []
        for t in range(num_steps):
            state = self.transition(state, t).sample()
            xs.append(self.emission(state, state).sample())
        return torch.stack(xs, dim=1)
