"""What the VRNN and the VHRNN share: feature extractors, a conditional prior and a filtering encoder."""

from __future__ import annotations

import torch

import pyro.distributions as dist

from pyrosequence.models.base import SequenceModel
from pyrosequence.nn import MLP, DiagNormalHead, cat_features
from pyrosequence.nn.cells import use_single_bias
from pyrosequence.nn.sequence_rnn import backward_pass, make_lstm

#: Readings of the papers' architecture (see :class:`FilteringRNN`).
ARCHITECTURES = ("compact", "fivo")
PROPOSALS = ("filtering", "smoothing")


class FilteringRNN(SequenceModel):
    r"""Base of VRNN-style models (Chung et al. 2015; Deng et al. 2020, appendix B)::

        z_t | h_{t-1}       ~ N(mu_prior(h_{t-1}), diag sigma_prior(h_{t-1})^2)     prior_net, prior_head
        z_t | x_t, h_{t-1}  ~ N(mu_enc([phi_x(x_t), h_{t-1}]), ...)                 the proposal

    with feature extractors ``phi_x`` and ``phi_z`` (MLPs with ``layers`` hidden layers of
    ``feature_dim`` units, the last of which is the feature), and prior and encoder MLPs with
    ``layers`` hidden layers of ``width`` units. Subclasses build the recurrence and the decoder
    and say where ``h_{t-1}`` lives in their state (:meth:`hidden`).

    ``architecture`` chooses between two readings of the papers' networks:

    * ``"compact"``: the feature of ``phi_x``/``phi_z`` is their last hidden layer, the proposal
      mean is produced directly, scales are ``softplus(raw) + 1e-4``.
    * ``"fivo"``: the FIVO reference code's VRNN (``create_vrnn`` in tensorflow/models,
      research/fivo), on which the VHRNN paper's experiments build: ``phi_x``/``phi_z`` end in a
      linear output layer of ``feature_dim`` units after their hidden layers; the proposal mean
      is *residual*, ``mu_q = mu_prior(h_{t-1}) + net(...)`` ("res_q"); latent scales are
      ``softplus(raw + 0.25) + 1e-4``; recurrent cells have one bias vector per gate (TF's
      ``LSTMCell``, see :func:`~pyrosequence.nn.cells.use_single_bias`); and the proposal is by
      default the code's *smoothing* proposal: a backward LSTM of ``hidden_dim`` units runs over
      ``phi_x(x)`` from each sequence's end, and ``q(z_t | h_{t-1}, b_t)`` reads its output
      ``b_t`` (a summary of ``x_{t:T}``) in place of ``phi_x(x_t)``. With this reading the
      parameter counts of the VHRNN paper's Tables 1 and 4 are reproduced (see
      experiments/RESULTS.md); they are not without the backward LSTM.

    ``proposal`` (``"filtering"`` or ``"smoothing"``) overrides the proposal of either reading.
    """

    homogeneous_transition = True
    time_invariant_pieces = True  # t only names VHRNN's deterministic sites

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden_dim: int,
        feature_dim: int,
        width: int,
        layers: int,
        name: str | None,
        architecture: str = "compact",
        proposal: str | None = None,
    ) -> None:
        super().__init__(x_dim, z_dim, name=name)
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; choose one of: {', '.join(ARCHITECTURES)}")
        proposal = proposal or ("smoothing" if architecture == "fivo" else "filtering")
        if proposal not in PROPOSALS:
            raise ValueError(f"unknown proposal {proposal!r}; choose one of: {', '.join(PROPOSALS)}")
        fivo = architecture == "fivo"
        self.architecture, self.proposal_kind, self.residual_proposal = architecture, proposal, fivo
        self.hidden_dim, self.feature_dim = hidden_dim, feature_dim
        feature_out = feature_dim if fivo else None
        scale_offset = 0.25 if fivo else 0.0
        self.phi_x = MLP(x_dim, [feature_dim] * layers, feature_out)
        self.phi_z = MLP(z_dim, [feature_dim] * layers, feature_out)
        self.prior_net = MLP(hidden_dim, [width] * layers)
        self.prior_head = DiagNormalHead(width, z_dim, scale_offset=scale_offset)
        if proposal == "smoothing":
            self.backward_rnn = make_lstm(feature_dim, hidden_dim)
            if fivo:
                use_single_bias(self.backward_rnn)
            q_in = hidden_dim + hidden_dim
        else:
            q_in = feature_dim + hidden_dim
        self.encoder_net = MLP(q_in, [width] * layers)
        self.encoder_head = DiagNormalHead(width, z_dim, scale_offset=scale_offset)

    def hidden(self, state) -> torch.Tensor:
        """``h_{t-1}``: the part of the state the prior, encoder and decoder read."""
        raise NotImplementedError

    def context(self, x: torch.Tensor) -> torch.Tensor:
        return self.phi_x(self.centered(x))

    def transition(self, state, t: int | None) -> dist.Distribution:
        return self.prior_head(self.prior_net(self.hidden(state)))

    def proposal_context(self, x: torch.Tensor, context: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.proposal_kind == "smoothing":
            return backward_pass(self.backward_rnn, context, lengths)
        return context

    def proposal(self, state, t: int, q_features: torch.Tensor) -> dist.Distribution:
        h = self.hidden(state)
        raw = self.encoder_head.linear(self.encoder_net(cat_features(q_features, h)))
        if not self.residual_proposal:
            return self.encoder_head.distribution(raw)
        loc, scale = self.encoder_head.loc_scale(raw)
        prior_loc, _ = self.prior_head.loc_scale(self.prior_head.linear(self.prior_net(h)))
        return dist.Normal(prior_loc + loc, scale).to_event(1)
