"""What STORN and Z-Forcing share: an LSTM fed with ``[x_{t-1}, z_t]`` whose state alone emits ``x_t``."""

from __future__ import annotations

import torch

import pyro.distributions as dist

from pyrosequence.models.core.base import SequenceModel
from pyrosequence.nn import MLP, cat_features, make_likelihood
from pyrosequence.nn.sequence_rnn import lstm_step, make_lstm


class LatentInputRNN(SequenceModel):
    r"""Base of models whose latent is an extra input of the autoregressive LSTM::

        h_t        = LSTM([x_{t-1}, z_t], h_{t-1})          (h_0 = 0, x_{-1} = 0)
        x_t | h_t  ~ p(x_t | dec(h_t))                      output from h_t only

    (STORN, Bayer & Osendorfer 2014; Z-Forcing, Goyal et al. 2017, eq. 4; Dai et al.'s supplement,
    appendix B.) The per-step state is ``s_{t-1} = (h_{t-1}, c_{t-1}, x_{t-1})``; since ``h_t``
    depends on ``z_t``, :meth:`emission` computes the LSTM step that :meth:`update` computes again
    (for all steps at once when the model scores a sequence, so the cost is one batched cell call).
    ``dec`` is an MLP with ``layers`` hidden layers of ``width`` units followed by the output head
    (``make_likelihood(likelihood, width, x_dim, output=output)``). Subclasses define the prior and
    the proposal.
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden_dim: int,
        likelihood: str,
        output: str,
        width: int,
        layers: int,
        name: str | None,
        mask_inputs: bool = False,
    ) -> None:
        super().__init__(x_dim, z_dim, name=name, mask_inputs=mask_inputs)
        if z_dim < 1:
            raise ValueError(f"{type(self).__name__} needs latents: z_dim must be at least 1, got {z_dim}")
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        self.hidden_dim, self.likelihood, self.output = hidden_dim, likelihood, output
        self.rnn = make_lstm(self.input_dim + z_dim, hidden_dim)
        self.decoder_net = MLP(hidden_dim, [width] * layers)
        self.decoder_head = make_likelihood(likelihood, width, x_dim, output=output)

    def initial_state(self, batch_shape: torch.Size, x: torch.Tensor):
        h = x.new_zeros(tuple(batch_shape) + (self.hidden_dim,))
        return h, h, x.new_zeros(tuple(batch_shape) + (self.input_dim,))

    def hidden(self, state) -> torch.Tensor:
        """``h_{t-1}``: what the conditional prior and the proposal read."""
        return state[0]

    def step(self, state, z: torch.Tensor):
        """``(h_t, c_t) = LSTM([x_{t-1}, z_t], (h_{t-1}, c_{t-1}))``."""
        h, c, x_prev = state
        return lstm_step(self.rnn, cat_features(x_prev, z), (h, c))

    def emission(self, state, z: torch.Tensor) -> dist.Distribution:
        return self.decoder_head(self.decoder_net(self.step(state, z)[0]))

    def update(self, state, z: torch.Tensor, x_t: torch.Tensor, t: int):
        h, c = self.step(state, z)
        return h, c, x_t.expand(h.shape[:-1] + x_t.shape[-1:])
