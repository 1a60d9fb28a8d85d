"""SRNN, the stochastic recurrent neural network of Fraccaro, Sonderby, Paquet & Winther (2016)."""

from __future__ import annotations

import torch

import pyro.distributions as dist

from pyrosequence.models.core.base import SequenceModel
from pyrosequence.nn import MLP, DiagNormalHead, cat_features, make_likelihood
from pyrosequence.nn.sequence_rnn import backward_pass, lstm_pass, lstm_step, make_lstm, shift_right


class SRNN(SequenceModel):
    r"""SRNN (Fraccaro et al., "Sequential Neural Models with Stochastic Layers", NeurIPS 2016), as
    Dai et al.'s supplement (appendix B, "SRNN") writes it::

        d_t             = LSTM_d(x_{t-1}, d_{t-1})                 (d_0 = 0: d_t summarises x_{<t})
        z_t | z_{t-1}   ~ N(mu_p([z_{t-1}, d_t]), diag sigma_p(...)^2)     (z_{-1} = 0)
        x_t | z_t, d_t  ~ p(x_t | dec([z_t, d_t]))

    A deterministic forward LSTM over the data and a Markov chain of latents that reads it. The
    posterior factorises the same way, from a backward LSTM over ``[d_t, x_t]``::

        a_t             = LSTM_a([d_t, x_t], a_{t+1})              (started at each sequence's end)
        z_t | z_{t-1}, x ~ N(mu_q([z_{t-1}, a_t]), diag sigma_q(...)^2)

    The per-step state is ``(d_t, z_{t-1})`` (``d`` lives in the state, updated from ``x_t`` by
    :meth:`update`, so the particle filter and truncated backpropagation carry it). The guide's
    backward LSTM reads a ``d`` recomputed over the batch in one ``nn.LSTM`` call with the same
    weights; the two agree except under truncated backpropagation through time, where the guide's
    copy restarts at each window (any proposal gives a valid bound; it is only a weaker one).

    Differences from Fraccaro et al.: LSTMs rather than GRUs; no residual parameterisation of the
    posterior mean (``mu_q = mu_p + ...``); scales ``softplus(.) + 1e-4``; every MLP has ``layers``
    hidden layers of ``width`` units (default ``hidden_dim``).

    Args:
        hidden_dim: forward LSTM units (default ``4 * z_dim``).
        backward_dim: units of the backward (posterior) LSTM (default ``hidden_dim``).
        likelihood, output: the output head (see :func:`pyrosequence.nn.make_likelihood`).
        width, layers: hidden units and hidden layers of the MLPs.
        covariate_dim: the number of covariate columns, the last of ``x`` (known inputs the
            forward and backward LSTMs and the prior read; default 0: none). The forward LSTM
            reads ``[x_{t-1}, u_{t-1}]``, the prior ``[z_{t-1}, d_t, u_t]`` and the backward LSTM
            ``[d_t, x_t, u_t]`` (:mod:`pyrosequence.models.core.covariates`).
    """

    #: Constructor options that are sizes (positive integers; see pyrosequence.models.core.options).
    size_options = ("hidden_dim", "backward_dim", "width", "layers")

    homogeneous_transition = True
    time_invariant_pieces = True

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden_dim: int | None = None,
        backward_dim: int | None = None,
        likelihood: str = "bernoulli",
        output: str = "factorized",
        width: int | None = None,
        layers: int = 1,
        mask_inputs: bool = False,
        covariate_dim: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(x_dim, z_dim, name=name, mask_inputs=mask_inputs, covariate_dim=covariate_dim)
        if z_dim < 1:
            raise ValueError(f"SRNN needs latents: z_dim must be at least 1, got {z_dim}")
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        hidden_dim = hidden_dim or 4 * z_dim
        backward_dim = backward_dim or hidden_dim
        width = width or hidden_dim
        self.hidden_dim, self.likelihood, self.output = hidden_dim, likelihood, output
        self.forward_rnn = make_lstm(self.input_dim, hidden_dim)
        self.backward_rnn = make_lstm(hidden_dim + self.input_dim, backward_dim)
        self.prior_net = MLP(z_dim + hidden_dim + self.covariate_dim, [width] * layers)
        self.prior_head = DiagNormalHead(width, z_dim)
        self.encoder_net = MLP(z_dim + backward_dim, [width] * layers)
        self.encoder_head = DiagNormalHead(width, z_dim)
        self.decoder_net = MLP(z_dim + hidden_dim, [width] * layers)
        self.decoder_head = make_likelihood(likelihood, width, x_dim, output=output)

    def initial_state(self, batch_shape: torch.Size, x: torch.Tensor):
        d = x.new_zeros(tuple(batch_shape) + (self.hidden_dim,))
        return self.with_covariates((d, d, x.new_zeros(tuple(batch_shape) + (self.z_dim,))), x, batch_shape)

    def context(self, x: torch.Tensor):
        """The centred input; with covariates the pair ``(input, u_{t+1})``."""
        return (self.centered(x), self.next_covariates(x)) if self.covariate_dim else self.centered(x)

    def forward_states(self, context: torch.Tensor) -> torch.Tensor:
        """``d_t`` for every step, ``(batch, T, hidden)``, in one LSTM call from ``d_0 = 0``."""
        out, _ = lstm_pass(self.forward_rnn, context)
        return shift_right(out)

    def proposal_context(self, x: torch.Tensor, context, lengths: torch.Tensor) -> torch.Tensor:
        if self.covariate_dim:
            context = context[0]
        d = self.forward_states(context)
        return backward_pass(self.backward_rnn, torch.cat([d, context], -1), lengths)  # a_t

    def transition(self, state, t: int | None) -> dist.Distribution:
        d, _, z_prev = self.model_state(state)
        if self.covariate_dim:
            return self.prior_head(self.prior_net(cat_features(z_prev, d, self.state_covariates(state))))
        return self.prior_head(self.prior_net(cat_features(z_prev, d)))

    def proposal(self, state, t: int, a_t: torch.Tensor) -> dist.Distribution:
        return self.encoder_head(self.encoder_net(cat_features(self.model_state(state)[2], a_t)))

    def emission(self, state, z: torch.Tensor) -> dist.Distribution:
        return self.decoder_head(self.decoder_net(cat_features(z, self.model_state(state)[0])))

    def update(self, state, z: torch.Tensor, context_t, t: int):
        x_t, u_next = context_t if self.covariate_dim else (context_t, None)
        d, c, _ = self.model_state(state)
        d, c = lstm_step(self.forward_rnn, x_t, (d, c))  # d_{t+1}: depends on x only, no particle dims needed
        return self.next_state(state, (d, c, z), u_next)
