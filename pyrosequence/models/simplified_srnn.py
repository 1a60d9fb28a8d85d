"""The simplified SRNN of Dai, Lai, Yang & Yoo (2019, section 3 and appendix B)."""

from __future__ import annotations

import torch

import pyro
import pyro.distributions as dist

from pyrosequence.models.core.base import SequenceModel, _masked
from pyrosequence.models.core.missing import mask_elements
from pyrosequence.models.core.time_slicing import time_slices
from pyrosequence.nn import MLP, DiagNormalHead, cat_features, make_likelihood
from pyrosequence.nn.sequence_rnn import backward_pass, lstm_pass, lstm_step, make_lstm, shift_right


class SimplifiedSRNN(SequenceModel):
    r"""The simplified SRNN of Dai et al. ("Re-examination of the Role of Latent Variables in
    Sequence Modeling", 2019; supplement appendix B, the variant after "Z-Forcing SRNN")::

        v_t^>            = LSTM_f(x_t, v_{t-1}^>)            forward RNN over the data (v_{-1}^> = 0)
        z_t | x_{<t}     ~ N(mu_p(v_{t-1}^>), diag sigma_p(v_{t-1}^>)^2)
        h_t              = LSTM_h([v_{t-1}^>, z_t], h_{t-1})
        x_t | h_t        ~ p(x_t | dec(h_t))

    Posterior, factorised over time given ``x``: ``v_t^<`` a backward LSTM over ``x_{>=t}`` (started
    at each sequence's end) and ``q(z_t | x) = N(mu_q([v_{t-1}^>, v_t^<]), ...)``.

    Because ``v^>`` and ``v^<`` depend on ``x`` only, the latents are conditionally independent
    given ``x`` and can be drawn for all steps at once. With ``fast_path=True`` (default) the
    :meth:`guide` and :meth:`model` do exactly that: each RNN runs as one ``nn.LSTM`` call
    (cuDNN on a GPU), the prior and posterior are evaluated for all steps in one batched call, and
    the per-step sites ``z_0 .. z_{T-1}`` are slices of those batched distributions (the site
    layout of every other model, so ``scale_latents``, ``evaluate``, ``step_dynamics`` and
    ``TraceMeanField_ELBO`` see nothing new). The per-step pieces below compute the same
    numbers step by step with the same weights (:func:`~pyrosequence.nn.sequence_rnn.lstm_step`)
    and serve the particle filter (FIVO) and, with ``fast_path=False``, the generic path.

    Differences from the paper: sizes (``hidden_dim`` for all three LSTMs, default ``4 * z_dim``;
    MLPs with ``layers`` hidden layers of ``width`` units) are ours; scales ``softplus(.) + 1e-4``.

    Args:
        hidden_dim: units of each of the three LSTMs (default ``4 * z_dim``).
        likelihood, output: the output head (see :func:`pyrosequence.nn.make_likelihood`).
        width, layers: hidden units and hidden layers of the MLPs.
        fast_path: compute the model and guide for all steps at once (``False``: step by step).
    """

    #: Constructor options that are sizes (positive integers; see pyrosequence.models.core.options).
    size_options = ("hidden_dim", "width", "layers")

    homogeneous_transition = True
    overrides_match_pieces = True

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden_dim: int | None = None,
        likelihood: str = "bernoulli",
        output: str = "factorized",
        width: int | None = None,
        layers: int = 1,
        fast_path: bool = True,
        mask_inputs: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(x_dim, z_dim, name=name, mask_inputs=mask_inputs)
        if z_dim < 1:
            raise ValueError(f"SimplifiedSRNN needs latents: z_dim must be at least 1, got {z_dim}")
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        hidden_dim = hidden_dim or 4 * z_dim
        width = width or hidden_dim
        self.hidden_dim, self.likelihood, self.output, self.fast_path = hidden_dim, likelihood, output, bool(fast_path)
        self.forward_rnn = make_lstm(self.input_dim, hidden_dim)
        self.backward_rnn = make_lstm(self.input_dim, hidden_dim)
        self.h_rnn = make_lstm(hidden_dim + z_dim, hidden_dim)
        self.prior_net = MLP(hidden_dim, [width] * layers)
        self.prior_head = DiagNormalHead(width, z_dim)
        self.encoder_net = MLP(2 * hidden_dim, [width] * layers)
        self.encoder_head = DiagNormalHead(width, z_dim)
        self.decoder_net = MLP(hidden_dim, [width] * layers)
        self.decoder_head = make_likelihood(likelihood, width, x_dim, output=output)

    # ------------------------------------------------------------------ per-step pieces
    # state s_{t-1} = (v_{t-1}^>, its cell, h_{t-1}, its cell)
    def initial_state(self, batch_shape: torch.Size, x: torch.Tensor):
        zero = x.new_zeros(tuple(batch_shape) + (self.hidden_dim,))
        return zero, zero, zero, zero

    def proposal_context(self, x: torch.Tensor, context: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return backward_pass(self.backward_rnn, context, lengths)  # v_t^< summarises x_{>=t}

    def transition(self, state, t: int | None) -> dist.Distribution:
        return self.prior_head(self.prior_net(state[0]))

    def proposal(self, state, t: int, backward_t: torch.Tensor) -> dist.Distribution:
        return self.encoder_head(self.encoder_net(cat_features(state[0], backward_t)))

    def _h_step(self, state, z: torch.Tensor):
        return lstm_step(self.h_rnn, cat_features(state[0], z), (state[2], state[3]))

    def emission(self, state, z: torch.Tensor) -> dist.Distribution:
        return self.decoder_head(self.decoder_net(self._h_step(state, z)[0]))

    def update(self, state, z: torch.Tensor, x_t: torch.Tensor, t: int):
        v, c = lstm_step(self.forward_rnn, x_t, (state[0], state[1]))
        h, hc = self._h_step(state, z)
        return v, c, h, hc  # v depends on x only: it carries no particle dimensions in the guide

    # ------------------------------------------------------------------ the fast path
    def _forward(self, seqs, initial):
        """Context, ``v_{t-1}^>`` for every step ``(batch, T, H)`` and the final ``(v, c)``."""
        ctx = self.context(self.network_input(seqs))
        start = None if initial is None else (initial[0], initial[1])
        out, final = lstm_pass(self.forward_rnn, ctx, start)
        return ctx, shift_right(out, None if initial is None else initial[0]), final

    def _sample_steps(self, seqs, batched: dist.Distribution) -> list[torch.Tensor]:
        """One site ``z_t`` per step, each a time slice of ``batched`` (batch shape ``(B, T)``)."""
        steps = time_slices(batched, seqs.num_steps)
        zs = []
        for t in pyro.markov(range(seqs.num_steps)):
            with _masked(seqs.step_mask(t)):
                zs.append(pyro.sample(f"{self.latent_name}_{t}", steps[t]))
        return zs

    def guide(self, x, lengths=None, initial=None, start=0) -> None:
        """Draw every ``z_t`` from one batched posterior (``fast_path``), else the generic guide."""
        if not self.fast_path:
            return super().guide(x, lengths, initial, start)
        pyro.module(self.pyro_name, self)
        seqs = self.prepare(x, lengths)
        ctx, v_prev, _ = self._forward(seqs, initial)
        posterior = self.encoder_head(self.encoder_net(torch.cat([v_prev, self.proposal_context(self.network_input(seqs), ctx, seqs.lengths)], -1)))
        with pyro.plate("sequences", seqs.batch_size, dim=-1):
            self._sample_steps(seqs, posterior)

    def model(self, x, lengths=None, initial=None, start=0) -> None:
        """Score ``x`` with the prior of all steps at once and the ``h`` LSTM as one call
        (``fast_path``), else the generic model. Leaves the last state in :attr:`final_state`."""
        if not self.fast_path:
            return super().model(x, lengths, initial, start)
        pyro.module(self.pyro_name, self)
        seqs = self.prepare(x, lengths)
        _, v_prev, (v, c) = self._forward(seqs, initial)
        with pyro.plate("sequences", seqs.batch_size, dim=-1):
            zs = self._sample_steps(seqs, self.prior_head(self.prior_net(v_prev)))
            z = torch.stack(torch.broadcast_tensors(*zs), dim=-2)  # (..., batch, T, z_dim)
            h_start = None if initial is None else (initial[2], initial[3])
            h_out, (h, hc) = lstm_pass(self.h_rnn, cat_features(v_prev, z), h_start)
            likelihood = mask_elements(self.decoder_head(self.decoder_net(h_out)), seqs.observed)
            if seqs.mask is not None:
                likelihood = likelihood.mask(seqs.mask)
            pyro.sample(self.obs_name, likelihood.to_event(1), obs=seqs.x)
        self.final_state = (v, c, h, hc)
