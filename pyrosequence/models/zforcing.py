"""Z-Forcing (Goyal, Sordoni, Cote, Ke, Bengio, NeurIPS 2017)."""

from __future__ import annotations

import math

import torch
from pyro.poutine.messenger import Messenger

import pyro
import pyro.distributions as dist

from pyrosequence.models.latent_input_rnn import LatentInputRNN
from pyrosequence.models.core.missing import mask_elements
from pyrosequence.nn import MLP, DiagNormalHead, cat_features, make_likelihood
from pyrosequence.nn.sequence_rnn import backward_pass, make_lstm


class _LatentTap(Messenger):
    """Records the value of every unobserved sample site (the latents) by name."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, torch.Tensor] = {}

    def _postprocess_message(self, msg) -> None:
        if msg["type"] == "sample" and not msg["is_observed"]:
            self.values[msg["name"]] = msg["value"]


class ZForcing(LatentInputRNN):
    r"""Z-Forcing (Goyal et al. 2017, section 3), with the time index shifted so that ``z_t`` is
    the latent of the step that emits ``x_t`` (the paper's ``z_t`` and ``h_t`` predict
    ``x_{t+1}``)::

        z_t | h_{t-1}      ~ N(mu_p(h_{t-1}), diag sigma_p(h_{t-1})^2)          (eq. 5)
        h_t                = LSTM([x_{t-1}, z_t], h_{t-1})                       (eq. 4)
        x_t | h_t          ~ p(x_t | f_o(h_t))                 output from h_t only

    Posterior: a backward LSTM ``b_t = LSTM_b(x_t, b_{t+1})`` (summarising ``x_{>=t}``, started at
    each sequence's own end) and ``q(z_t | h_{t-1}, b_t) = N(mu_q([h_{t-1}, b_t]), ...)`` (eq. 6-7).

    Auxiliary costs (eq. 9-10), added to the log joint as one ``pyro.factor`` site ``"aux"`` that
    exists only while the module is in training mode (``model.train()``) and a weight is non-zero::

        aux = sum_t alpha * log N(stop_grad(b_t); mu_a(z_t), sigma_a(z_t))       (eq. 8-9)
            + sum_{t>=1} beta * log p(x_{t-1} | b_t)                             (eq. 10)

    As the paper says (section 3.4), the gradient of the ``alpha`` term does not reach the backward
    network: ``b_t`` is a fixed target, and the term sees the guide's ``z`` rebuilt by a second
    pass of the recurrence whose posterior reads ``stop_grad(b)`` (same values and noise; gradient
    to the forward LSTM, the posterior MLP and ``f_a``, none to ``LSTM_b``, not even through
    ``h_{t-1}``). This extra sequential pass is the price of following the paper exactly; only
    detaching the target would let the term train ``LSTM_b`` through ``z``. The ``beta`` term
    trains the backward network to predict the output in reverse: ``b_t`` (which has read
    ``x_t..x_T``) predicts ``x_{t-1}``, the paper's
    ``p(x_t | b_t)`` in its own indexing; its gradient does reach ``LSTM_b`` (that is its purpose).

    How estimators see the factor: any Pyro ELBO trains ``E_q[log p(x, z) + aux - log q]``, i.e.
    eq. 10; under IWAE it enters each particle's log-weight (``log mean_k exp(w_k + aux_k)``, a
    heuristic combination); the particle filter (FIVO) does not call :meth:`model`, so FIVO training
    ignores it; :func:`pyrosequence.inference.evaluate` runs in evaluation mode, so every reported
    bound excludes it. KL annealing (``--kl-anneal``) scales the latent sites only, not the factor.

    Differences from the paper: scales are ``softplus(.) + 1e-4``; the MLPs ``f`` have ``layers``
    hidden layers of ``width`` units with ReLU (the paper: leaky ReLU); ``p(x_{t-1} | b_t)`` uses
    the main output's factorised family; ``x_{-1} = 0``.

    Args:
        hidden_dim: forward LSTM units (default ``4 * z_dim``).
        backward_dim: units of the backward (posterior) LSTM (default ``hidden_dim``).
        aux_alpha: weight of the auxiliary cost ``log p(b_t | z_t)`` (eq. 9; Dai et al. search
            {0, 0.0025, 0.005}).
        aux_beta: weight of the backward network's reverse prediction ``log p(x | b)`` (eq. 10).
        likelihood, output, width, layers: as in :class:`~pyrosequence.models.STORN`.
    """

    #: Constructor options that are sizes (positive integers; see pyrosequence.models.core.options).
    size_options = ("hidden_dim", "backward_dim", "width", "layers")

    homogeneous_transition = True
    overrides_match_pieces = True

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden_dim: int | None = None,
        backward_dim: int | None = None,
        likelihood: str = "bernoulli",
        output: str = "factorized",
        aux_alpha: float = 0.0025,
        aux_beta: float = 0.0025,
        width: int | None = None,
        layers: int = 1,
        mask_inputs: bool = False,
        name: str | None = None,
    ) -> None:
        for label, value in (("aux_alpha", aux_alpha), ("aux_beta", aux_beta)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
        hidden_dim = hidden_dim or 4 * z_dim
        width = width or hidden_dim
        super().__init__(x_dim, z_dim, hidden_dim, likelihood, output, width, layers, name, mask_inputs)
        backward_dim = backward_dim or hidden_dim
        self.aux_alpha, self.aux_beta = float(aux_alpha), float(aux_beta)
        self.backward_rnn = make_lstm(self.input_dim, backward_dim)
        self.prior_net = MLP(hidden_dim, [width] * layers)
        self.prior_head = DiagNormalHead(width, z_dim)
        self.encoder_net = MLP(hidden_dim + backward_dim, [width] * layers)
        self.encoder_head = DiagNormalHead(width, z_dim)
        self.aux_b_net = MLP(z_dim, [width] * layers)  # f_a of eq. 8
        self.aux_b_head = DiagNormalHead(width, backward_dim)
        self.aux_x_head = make_likelihood(likelihood, backward_dim, x_dim)  # p(x_{t-1} | b_t), eq. 10

    def transition(self, state, t: int | None) -> dist.Distribution:
        return self.prior_head(self.prior_net(self.hidden(state)))

    def proposal_context(self, x: torch.Tensor, context: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return backward_pass(self.backward_rnn, context, lengths)  # b_t summarises x_{>=t}

    def proposal(self, state, t: int, b_t: torch.Tensor) -> dist.Distribution:
        return self.encoder_head(self.encoder_net(cat_features(self.hidden(state), b_t)))

    # ------------------------------------------------------------------ auxiliary cost
    def aux_active(self) -> bool:
        """Whether :meth:`model` adds the auxiliary factor: training mode and a non-zero weight."""
        return self.training and (self.aux_alpha > 0 or self.aux_beta > 0)

    def pieces_match_training(self) -> bool:
        return not self.aux_active()  # the pieces leave the auxiliary factor out

    def model(self, x, lengths=None, initial=None, start=0) -> None:
        record = self._recurrence
        if record is not None and record.key != self._key(x, lengths, initial, start):
            record = None
        if not self.aux_active():
            return super().model(x, lengths, initial, start)
        tap = _LatentTap()
        with tap:
            super().model(x, lengths, initial, start)
        seqs = self.prepare(x, lengths)
        latents = [tap.values[name] for name in self.latent_sites(seqs.num_steps)]
        from_guide = record is not None and all(a is b for a, b in zip(record.latents, latents))
        with pyro.plate("aux_sequences", seqs.batch_size, dim=-1):  # "sequences" is closed by now
            pyro.factor("aux", self.aux_log_factor(seqs, torch.stack(latents, -2), record.initial if from_guide else None))

    def aux_log_factor(self, seqs, z: torch.Tensor, initial=None) -> torch.Tensor:
        """``alpha * sum_t log p(b_t | z_t) + beta * sum_t log p(x_{t-1} | b_t)`` per sequence.

        ``z`` is ``(..., batch, T, z_dim)``. ``initial`` (the state before the first step) is given
        when ``z`` was drawn from this model's proposal: the ``alpha`` term then uses ``z`` rebuilt
        by a second pass of the recurrence whose posterior reads ``stop_grad(b)`` (same values,
        the same noise ``eps_t``), so that no gradient of it reaches the backward LSTM, not even
        through ``h_{t-1}`` and the earlier latents. That pass costs one more sequential loop.
        """
        inputs = self.network_input(seqs)
        ctx = self.context(inputs)
        b = self.proposal_context(inputs, ctx, seqs.lengths)
        mask = seqs.mask if seqs.mask is not None else seqs.x.new_ones(seqs.x.shape[:2], dtype=torch.bool)
        total = seqs.x.new_zeros(())
        if self.aux_alpha > 0:
            target = b.detach()
            if initial is not None:
                z = self._rebuild_latents(z, initial, ctx, target)
            log_b = self.aux_b_head(self.aux_b_net(z)).log_prob(target)  # (..., batch, T)
            total = total + self.aux_alpha * log_b.masked_fill(~mask, 0.0).sum(-1)
        if self.aux_beta > 0 and seqs.num_steps > 1:
            observed = None if seqs.observed is None else seqs.observed[:, :-1]
            log_x = mask_elements(self.aux_x_head(b[:, 1:]), observed).log_prob(seqs.x[:, :-1])  # b_t predicts x_{t-1}
            total = total + self.aux_beta * log_x.masked_fill(~mask[:, 1:], 0.0).sum(-1)
        return total

    def _rebuild_latents(self, z: torch.Tensor, initial, ctx: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``z_t = mu_q(h_{t-1}, b_t) + sigma_q(...) * eps_t`` recomputed step by step with ``b`` as
        a constant: the same values as the guide's draws, with no path back to ``LSTM_b``."""
        state, rebuilt = initial, []
        for t in range(z.shape[-2]):
            q = self.proposal(state, t, target[:, t]).base_dist
            with torch.no_grad():
                eps = (z[..., t, :] - q.loc) / q.scale
            z_t = q.loc + q.scale * eps
            rebuilt.append(z_t)
            state = self.update(state, z_t, ctx[:, t], t)
        return torch.stack(rebuilt, -2)
