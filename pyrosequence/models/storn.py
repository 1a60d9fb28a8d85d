"""STORN, the stochastic recurrent network of Bayer & Osendorfer (2014)."""

from __future__ import annotations

import torch

import pyro.distributions as dist

from pyrosequence.models.latent_input_rnn import LatentInputRNN
from pyrosequence.nn import MLP, DiagNormalHead
from pyrosequence.nn.sequence_rnn import lstm_pass, make_lstm, shift_right

POSTERIORS = ("filtering", "lagged")


class STORN(LatentInputRNN):
    r"""STORN (Bayer & Osendorfer, "Learning Stochastic Recurrent Networks", 2014), parameterised
    as in the supplement of Dai et al. (2019, appendix B, "STORN")::

        z_t             ~ N(0, I)                              context-free prior
        h_t             = LSTM([x_{t-1}, z_t], h_{t-1})
        x_t | h_t       ~ p(x_t | dec(h_t))

    Proposal: an encoder LSTM over the data, ``e_t = LSTM_e(x_t, e_{t-1})``, and
    ``q(z_t | x) = N(mu(e_t), diag sigma(e_t)^2)``, the same for all steps given ``x``.

    ``posterior="filtering"`` (the default) conditions ``z_t`` on ``x_{<=t}``, as Bayer &
    Osendorfer's recognition RNN does. ``posterior="lagged"`` conditions it on ``x_{<t}`` only
    (``e_{t-1}``), which is what Dai et al.'s supplement writes (``q(z_t | x_{<t})``); then ``z_t``
    can carry no information about ``x_t`` that ``h_{t-1}`` lacks, so it is kept for fidelity to
    that text rather than as a useful model.

    Differences from the papers: LSTMs throughout (Bayer & Osendorfer use plain RNNs with fast
    dropout); scales are ``softplus(.) + 1e-4``; ``mu`` and ``sigma`` come from an MLP with
    ``layers`` hidden layers of ``width`` units (default ``hidden_dim``). The encoder runs over the
    batch in one ``nn.LSTM`` call; under truncated backpropagation through time it restarts at
    each window (the model's own LSTM state is carried over).

    Args:
        x_dim, z_dim: data and latent sizes.
        hidden_dim: units of the generative LSTM (default ``4 * z_dim``).
        encoder_dim: units of the encoder LSTM (default ``hidden_dim``).
        likelihood: output family (``bernoulli``, ``gaussian``, ...); output: ``factorized``,
            ``hier-rnn`` or ``hier-made`` (see :func:`pyrosequence.nn.make_likelihood`).
        posterior: ``"filtering"`` or ``"lagged"`` (above).
        width, layers: the MLPs of the decoder and the encoder.
    """

    #: Constructor options that are sizes (positive integers; see pyrosequence.models.core.options).
    size_options = ("hidden_dim", "encoder_dim", "width", "layers")

    homogeneous_transition = True

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden_dim: int | None = None,
        encoder_dim: int | None = None,
        likelihood: str = "bernoulli",
        output: str = "factorized",
        posterior: str = "filtering",
        width: int | None = None,
        layers: int = 1,
        mask_inputs: bool = False,
        name: str | None = None,
    ) -> None:
        if posterior not in POSTERIORS:
            raise ValueError(f"unknown STORN posterior {posterior!r}; choose one of: {', '.join(POSTERIORS)}")
        hidden_dim = hidden_dim or 4 * z_dim
        width = width or hidden_dim
        super().__init__(x_dim, z_dim, hidden_dim, likelihood, output, width, layers, name, mask_inputs)
        encoder_dim = encoder_dim or hidden_dim
        self.posterior = posterior
        self.encoder_rnn = make_lstm(self.input_dim, encoder_dim)
        self.encoder_net = MLP(encoder_dim, [width] * layers)
        self.encoder_head = DiagNormalHead(width, z_dim)

    def transition(self, state, t: int | None) -> dist.Distribution:
        loc = state[0].new_zeros(state[0].shape[:-1] + (self.z_dim,))
        return dist.Normal(loc, torch.ones_like(loc)).to_event(1)

    def proposal_context(self, x: torch.Tensor, context: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        encoded, _ = lstm_pass(self.encoder_rnn, context)  # e_t summarises x_{<=t}
        return encoded if self.posterior == "filtering" else shift_right(encoded)

    def proposal(self, state, t: int, encoded_t: torch.Tensor) -> dist.Distribution:
        return self.encoder_head(self.encoder_net(encoded_t))
