"""What the VRNN and the VHRNN share: feature extractors, a conditional prior and a filtering encoder."""

from __future__ import annotations

import torch

import pyro.distributions as dist

from pyrosequence.models.base import SequenceModel
from pyrosequence.nn import MLP, DiagNormalHead, cat_features


class FilteringRNN(SequenceModel):
    r"""Base of VRNN-style models (Chung et al. 2015; Deng et al. 2020, appendix B)::

        z_t | h_{t-1}       ~ N(mu_prior(h_{t-1}), diag sigma_prior(h_{t-1})^2)     prior_net, prior_head
        z_t | x_t, h_{t-1}  ~ N(mu_enc([phi_x(x_t), h_{t-1}]), ...)                 the proposal

    with feature extractors ``phi_x`` and ``phi_z`` (MLPs with ``layers`` hidden layers of
    ``feature_dim`` units, the last of which is the feature), and prior and encoder MLPs with
    ``layers`` hidden layers of ``width`` units. Subclasses build the recurrence and the decoder
    and say where ``h_{t-1}`` lives in their state (:meth:`hidden`).
    """

    homogeneous_transition = True

    def __init__(
        self, x_dim: int, z_dim: int, hidden_dim: int, feature_dim: int, width: int, layers: int, name: str | None
    ) -> None:
        super().__init__(x_dim, z_dim, name=name)
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        self.hidden_dim, self.feature_dim = hidden_dim, feature_dim
        self.phi_x = MLP(x_dim, [feature_dim] * layers)
        self.phi_z = MLP(z_dim, [feature_dim] * layers)
        self.prior_net = MLP(hidden_dim, [width] * layers)
        self.prior_head = DiagNormalHead(width, z_dim)
        self.encoder_net = MLP(feature_dim + hidden_dim, [width] * layers)
        self.encoder_head = DiagNormalHead(width, z_dim)

    def hidden(self, state) -> torch.Tensor:
        """``h_{t-1}``: the part of the state the prior, encoder and decoder read."""
        raise NotImplementedError

    def context(self, x: torch.Tensor) -> torch.Tensor:
        return self.phi_x(self.centered(x))

    def transition(self, state, t: int | None) -> dist.Distribution:
        return self.prior_head(self.prior_net(self.hidden(state)))

    def proposal(self, state, t: int, x_features: torch.Tensor) -> dist.Distribution:
        return self.encoder_head(self.encoder_net(cat_features(x_features, self.hidden(state))))
