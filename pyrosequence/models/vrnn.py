"""The variational recurrent neural network (VRNN) of Chung et al. (2015)."""

from __future__ import annotations

import torch

import pyro.distributions as dist

from pyrosequence.models.filtering_rnn import FilteringRNN
from pyrosequence.nn import MLP, RecurrentCell, State, cat_features, make_likelihood
from pyrosequence.nn.cells import use_single_bias


class VRNN(FilteringRNN):
    r"""Variational RNN (Chung, Kastner, Dinh, Goel, Courville, Bengio, NeurIPS 2015).

    Generative story, with feature extractors :math:`\varphi_x, \varphi_z` and an LSTM (or GRU)
    recurrence whose output is :math:`h_t`, :math:`h_0 = 0`::

        z_t | h_{t-1}        ~ N(mu_prior(h_{t-1}), diag sigma_prior(h_{t-1})^2)
        x_t | z_t, h_{t-1}   ~ p(x_t | dec([phi_z(z_t), h_{t-1}]))        Bernoulli or Gaussian
        h_t                  = RNN([phi_x(x_t), phi_z(z_t)], h_{t-1})

    Proposal (the filtering posterior of the paper)::

        z_t | x_t, h_{t-1}   ~ N(mu_enc([phi_x(x_t), h_{t-1}]), diag sigma_enc(...)^2)

    or, with ``proposal="smoothing"`` (the default of ``architecture="fivo"``, the FIVO reference
    code's smoothing proposal, with its residual mean)::

        b_t                  = backward LSTM over phi_x(x_T), ..., phi_x(x_t)
        z_t | x_{t:T}, h_{t-1} ~ N(mu_prior(h_{t-1}) + mu_enc([b_t, h_{t-1}]), diag sigma_enc(...)^2)

    This follows the VRNN as described by Deng et al. (VHRNN paper, section 3 and appendix B),
    Dai et al. (supplement, "VRNN") and the FIVO reference code: the prior, encoder and decoder
    are MLPs with ``layers`` hidden layers of ``width`` units; the feature extractors are MLPs with
    ``layers`` hidden layers of ``feature_dim`` units whose last hidden layer is the feature.
    Defaults follow the VHRNN appendix: every size equals ``z_dim`` unless given. Differences
    from Chung et al.: the initial state is zero rather than learned, and scales are
    ``softplus(.) + 1e-4`` rather than ``exp`` or plain softplus.

    Args:
        x_dim: observation dimension.
        z_dim: latent dimension.
        hidden_dim: RNN state size (default ``z_dim``).
        likelihood: ``"bernoulli"`` (binary data such as piano rolls) or ``"gaussian"``.
        cell: ``"lstm"`` or ``"gru"``.
        feature_dim: size of the x and z features (default ``z_dim``).
        width: hidden units of the prior, encoder and decoder MLPs (default ``z_dim``).
        layers: hidden layers in every MLP (the papers use 1 for real data, 2 for synthetic).
        output: ``"factorized"``, or ``"hier-rnn"`` / ``"hier-made"`` for an output that is
            autoregressive within the step (Dai et al. 2019, eq. 14; see
            :func:`pyrosequence.nn.make_likelihood`).
        architecture: ``"compact"`` (default) or ``"fivo"``, the FIVO reference code's reading
            (linear output layers on the feature extractors, residual proposal mean, one bias per
            LSTM gate, smoothing proposal), which reproduces the VHRNN paper's parameter counts:
            see :class:`~pyrosequence.models.FilteringRNN`.
        proposal: ``"filtering"`` or ``"smoothing"`` (default: the architecture's).
        scale_offset, proposal_input, initial_step, dropout, covariate_dim: see
            :class:`~pyrosequence.models.FilteringRNN`.
    """

    #: Constructor options that are sizes (positive integers; see pyrosequence.models.core.options).
    size_options = ("hidden_dim", "feature_dim", "width", "layers")

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden_dim: int | None = None,
        likelihood: str = "bernoulli",
        cell: str = "lstm",
        feature_dim: int | None = None,
        width: int | None = None,
        layers: int = 1,
        output: str = "factorized",
        architecture: str = "compact",
        proposal: str | None = None,
        scale_offset: float | None = None,
        proposal_input: str = "centered",
        initial_step: bool = False,
        dropout: float = 0.0,
        mask_inputs: bool = False,
        covariate_dim: int = 0,
        name: str | None = None,
    ) -> None:
        hidden_dim = hidden_dim or z_dim
        feature_dim = feature_dim or z_dim
        width = width or z_dim
        super().__init__(x_dim, z_dim, hidden_dim, feature_dim, width, layers, name, architecture, proposal,
                         scale_offset, proposal_input, initial_step, dropout, mask_inputs, covariate_dim)
        self.likelihood = likelihood
        self.decoder_net = MLP(feature_dim + hidden_dim, [width] * layers)
        self.output = output
        self.decoder_head = make_likelihood(likelihood, width, x_dim, output=output)
        self.rnn = RecurrentCell(2 * feature_dim, hidden_dim, cell)
        if architecture == "fivo":
            use_single_bias(self.rnn)

    def hidden(self, state: State) -> torch.Tensor:
        return self.rnn.output(self.model_state(state))

    def zero_state(self, batch_shape: torch.Size, x: torch.Tensor) -> State:
        return self.rnn.initial_state(batch_shape, x)

    def advance(self, state: State, z: torch.Tensor, z_features: torch.Tensor, x_features: torch.Tensor) -> State:
        return self.rnn(cat_features(x_features, z_features), state)

    def latent_features(self, z: torch.Tensor) -> torch.Tensor:
        return self.phi_z(z)

    def emission(self, state: State, z_features: torch.Tensor) -> dist.Distribution:
        return self.decoder_head(self.decoder_net(cat_features(z_features, self.hidden(state))))

    def update(self, state: State, z_features: torch.Tensor, context_t, t: int) -> State:
        if not self.covariate_dim:
            return self.advance(state, None, z_features, context_t)
        x_features, u_next = context_t
        return self.next_state(state, self.advance(self.model_state(state), None, z_features, x_features), u_next)
