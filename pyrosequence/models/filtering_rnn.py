"""What the VRNN and the VHRNN share: feature extractors, a conditional prior and a filtering encoder."""

from __future__ import annotations

import torch

import pyro.distributions as dist

from pyrosequence.models.core.base import SequenceModel
from pyrosequence.nn import MLP, DiagNormalHead, cat_features
from pyrosequence.nn.cells import use_single_bias
from pyrosequence.nn.sequence_rnn import backward_pass, make_lstm

#: Readings of the papers' architecture (see :class:`FilteringRNN`).
ARCHITECTURES = ("compact", "fivo")
PROPOSALS = ("filtering", "smoothing")
#: What the proposal's data features are computed from (see :class:`FilteringRNN`).
PROPOSAL_INPUTS = ("centered", "raw")


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
      ``LSTMCell``, see :func:`~pyrosequence.nn.cells.use_single_bias`); and a backward LSTM of
      ``hidden_dim`` units over ``phi_x(x)`` is built. With this reading the parameter counts of
      the VHRNN paper's Tables 1 and 4 are reproduced (see experiments/RESULTS.md); they are not
      without the backward LSTM. The proposal is by default the *smoothing* one that reads it:
      ``q(z_t | h_{t-1}, b_t)`` reads the backward LSTM's output ``b_t`` (a summary of
      ``x_{t:T}``) in place of ``phi_x(x_t)``. (This default is kept because the first shipped
      JSB models were trained with it; the reference code's own default, and the JSB presets',
      is the filtering proposal: see below.)

    ``proposal`` (``"filtering"`` or ``"smoothing"``) overrides the proposal of either reading.

    Three details of the FIVO reference code's runner are options (the ``*-jsb-*`` presets set
    them): ``scale_offset``, the offset inside the latent scales' softplus (default 0.25 for
    ``"fivo"``, 0 for ``"compact"``; the runner passes 0.5); ``proposal_input``: with
    ``"centered"`` (default) the proposal (and the smoothing proposal's backward LSTM) reads
    ``phi_x`` of the mean-centred data like the recurrence, with ``"raw"`` it reads ``phi_x`` of the
    raw data, as the reference code does (only the recurrence input is centred there); and
    ``initial_step``: the reference code's recurrence reads ``x_{t-1}`` and ``z_{t-1}`` with zeros
    before the first step, so its first prior, proposal and emission read the state after one
    recurrence step on a zero input (a learned initial state) rather than a zero state.

    ``covariate_dim``: the number of covariate columns (known inputs ``u_t``, the last columns of
    ``x``; :mod:`pyrosequence.models.core.covariates`). With covariates the recurrence and the
    proposal read them through ``phi_x([x_t, u_t])`` and the prior reads ``[h_{t-1}, u_t]``; the
    decoder reads ``u_t`` only through ``z_t`` and ``h_{t-1}``. 0 (default): today's model.

    ``dropout``: a rate for dropout after every hidden layer of the feature extractors ``phi_x``
    and ``phi_z`` (default 0: none), the regulariser Dai et al. (2019) use; active only in training
    mode, so every bound a run reports (validation, test, ``evaluate``) reads the full network.
    The FIVO reference code has none.

    Args:
        scale_offset: offset inside the latent scales' softplus (default 0.25 for ``"fivo"``, 0
            for ``"compact"``; the FIVO runner passes 0.5).
        proposal_input: ``"centered"`` (the proposal reads the mean-centred data) or ``"raw"``
            (as the FIVO reference code).
        initial_step: start from one recurrence step on zeros, as the FIVO reference code.
        dropout: dropout rate after every hidden layer of the feature extractors (default 0).
        covariate_dim: the number of covariate columns, the last of ``x`` (known inputs the
            recurrence, prior and proposal read; default 0: none).

    A note on the backward LSTM: the reference code builds and runs it whatever the proposal
    (its smoothing path cannot run as published), so its parameters are in the paper's counts
    even though its default, and the paper's eq. 5, is the filtering proposal. ``"fivo"`` builds
    it with either proposal too (a filtering proposal never runs it: it gets no gradient).
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
        scale_offset: float | None = None,
        proposal_input: str = "centered",
        initial_step: bool = False,
        dropout: float = 0.0,
        mask_inputs: bool = False,
        covariate_dim: int = 0,
    ) -> None:
        super().__init__(x_dim, z_dim, name=name, mask_inputs=mask_inputs, covariate_dim=covariate_dim)
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; choose one of: {', '.join(ARCHITECTURES)}")
        proposal = proposal or ("smoothing" if architecture == "fivo" else "filtering")
        if proposal not in PROPOSALS:
            raise ValueError(f"unknown proposal {proposal!r}; choose one of: {', '.join(PROPOSALS)}")
        if proposal_input not in PROPOSAL_INPUTS:
            raise ValueError(f"unknown proposal_input {proposal_input!r}; choose one of: {', '.join(PROPOSAL_INPUTS)}")
        if not isinstance(initial_step, bool):
            raise ValueError(f"initial_step must be true or false, got {initial_step!r}")
        fivo = architecture == "fivo"
        self.architecture, self.proposal_kind, self.residual_proposal = architecture, proposal, fivo
        self.proposal_input, self.initial_step = proposal_input, initial_step
        self.hidden_dim, self.feature_dim = hidden_dim, feature_dim
        feature_out = feature_dim if fivo else None
        if scale_offset is None:
            scale_offset = 0.25 if fivo else 0.0
        if isinstance(scale_offset, bool) or not isinstance(scale_offset, (int, float)) or not abs(scale_offset) < float("inf"):
            raise ValueError(f"scale_offset must be a finite number, got {scale_offset!r}")
        scale_offset = float(scale_offset)
        self.phi_x = MLP(self.input_dim, [feature_dim] * layers, feature_out, dropout=dropout)  # checks the rate
        self.phi_z = MLP(z_dim, [feature_dim] * layers, feature_out, dropout=dropout)
        self.prior_net = MLP(hidden_dim + self.covariate_dim, [width] * layers)  # [h_{t-1}, u_t]
        self.prior_head = DiagNormalHead(width, z_dim, scale_offset=scale_offset)
        if proposal == "smoothing" or fivo:  # the reference code builds it whatever the proposal (see above)
            self.backward_rnn = make_lstm(feature_dim, hidden_dim)
            if fivo:
                use_single_bias(self.backward_rnn)
        if proposal == "smoothing":
            q_in = hidden_dim + hidden_dim
        else:
            q_in = feature_dim + hidden_dim
        self.encoder_net = MLP(q_in, [width] * layers)
        self.encoder_head = DiagNormalHead(width, z_dim, scale_offset=scale_offset)

    def hidden(self, state) -> torch.Tensor:
        """``h_{t-1}``: the part of the state the prior, encoder and decoder read."""
        raise NotImplementedError

    def zero_state(self, batch_shape: torch.Size, x: torch.Tensor):
        """The all-zero recurrent state."""
        raise NotImplementedError

    def advance(self, state, z: torch.Tensor, z_features, x_features: torch.Tensor):
        """The recurrence itself, without recording anything (``update`` records what it needs)."""
        raise NotImplementedError

    def initial_state(self, batch_shape: torch.Size, x: torch.Tensor):
        """The zero state, or with ``initial_step`` the state after one recurrence step from it on
        a zero data input and a zero latent (computed once and broadcast to ``batch_shape``);
        with covariates, ``u_0`` attached (:meth:`with_covariates`)."""
        return self.with_covariates(self.own_initial_state(batch_shape, x), x, batch_shape)

    def own_initial_state(self, batch_shape: torch.Size, x: torch.Tensor):
        """:meth:`initial_state` without the covariates."""
        if not self.initial_step:
            return self.zero_state(batch_shape, x)
        one = torch.Size([1] * len(batch_shape))
        zeros_x = x.new_zeros(tuple(one) + (self.input_dim,))
        z = x.new_zeros(tuple(one) + (self.z_dim,))
        z_features = self.zero_latent_features(z)
        state = self.advance(self.zero_state(one, x), z, z_features, self.phi_x(zeros_x))
        from pyrosequence.nn.cells import map_state

        return map_state(lambda s: s.expand(tuple(batch_shape) + s.shape[-1:]), state)

    def zero_latent_features(self, z: torch.Tensor):
        """The latent features the reference code feeds its first recurrence step: zeros (not
        ``phi_z(0)``), shaped as :meth:`latent_features` returns them."""
        return torch.zeros_like(z[..., :1]).expand(z.shape[:-1] + (self.feature_dim,))

    def context(self, x: torch.Tensor):
        """``phi_x`` of the centred input; with covariates the pair ``(phi_x(...), u_{t+1})``."""
        features = self.phi_x(self.centered(x))
        return (features, self.next_covariates(x)) if self.covariate_dim else features

    def prior_input(self, state) -> torch.Tensor:
        """What the prior network reads: ``h_{t-1}``, with covariates ``[h_{t-1}, u_t]``."""
        h = self.hidden(state)
        return cat_features(h, self.state_covariates(state)) if self.covariate_dim else h

    def transition(self, state, t: int | None) -> dist.Distribution:
        return self.prior_head(self.prior_net(self.prior_input(state)))

    def proposal_context(self, x: torch.Tensor, context, lengths: torch.Tensor) -> torch.Tensor:
        if self.covariate_dim:
            context = context[0]  # the features; the next covariates are for the update
        if self.proposal_input == "raw":
            context = self.phi_x(x)
        if self.proposal_kind == "smoothing":
            return backward_pass(self.backward_rnn, context, lengths)
        return context

    def proposal(self, state, t: int, q_features: torch.Tensor) -> dist.Distribution:
        h = self.hidden(state)
        raw = self.encoder_head.linear(self.encoder_net(cat_features(q_features, h)))
        if not self.residual_proposal:
            return self.encoder_head.distribution(raw)
        loc, scale = self.encoder_head.loc_scale(raw)
        prior_loc, _ = self.prior_head.loc_scale(self.prior_head.linear(self.prior_net(self.prior_input(state))))
        return dist.Normal(prior_loc + loc, scale).to_event(1)
