"""The HyperLSTM of Ha, Dai & Le (2016): a deterministic baseline with an exact likelihood."""

from __future__ import annotations

import torch

import pyro.distributions as dist

from pyrosequence.models.core.base import SequenceModel
from pyrosequence.nn import cat_features, make_likelihood
from pyrosequence.nn.hyper import HyperCell, HyperGenerator


class HyperLSTM(SequenceModel):
    r"""HyperLSTM (Ha, Dai & Le, "HyperNetworks", 2016, section 3.2), as the VHRNN paper's
    deterministic baseline (Deng et al. 2020, appendix G). No latent variables::

        x_t | h_{t-1}       ~ p(x_t | out(h_{t-1}))          Bernoulli, Gaussian or a Gaussian mixture
        (d_in, d_h, b)_t    = theta([x_t, h_{t-1}])           an LSTM of hyper_dim units, linear output
        h_t                 = HyperCell(x_t, h_{t-1}; d_in, d_h, b)

    ``HyperCell`` scales the rows of the cell's input and recurrent weights and shifts its gate
    biases, as in VHRNN's recurrence (eq. 6) but driven by the data instead of a latent. With no
    latents (``z_dim = 0``), every bound of :func:`pyrosequence.inference.evaluate` is the exact
    log-likelihood. Differences from Ha et al.: the hyper LSTM's state is mapped to the scales
    directly (no intermediate low-dimensional embedding), and there is no layer normalisation.

    Args:
        x_dim: observation dimension.
        hidden_dim: units of the main cell (default 32).
        hyper_dim: units of the hyper LSTM (default ``hidden_dim``).
        likelihood: ``"bernoulli"``, ``"gaussian"`` or ``"mixture"`` (``components`` Gaussians).
        components: mixture components.
        cell: ``"lstm"`` or ``"gru"`` for the main cell.
        output: ``"factorized"``, ``"hier-rnn"`` or ``"hier-made"`` (see :func:`pyrosequence.nn.make_likelihood`).
    """

    time_invariant_pieces = True  # no piece reads t: a compiled filter compiles one step for all t

    #: Constructor options that are sizes (positive integers; see pyrosequence.models.core.options).
    size_options = ("hidden_dim", "hyper_dim", "components")

    def __init__(
        self,
        x_dim: int,
        hidden_dim: int = 32,
        hyper_dim: int | None = None,
        likelihood: str = "bernoulli",
        components: int = 5,
        cell: str = "lstm",
        output: str = "factorized",
        mask_inputs: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(x_dim, 0, name=name, mask_inputs=mask_inputs)
        self.hidden_dim, self.likelihood = hidden_dim, likelihood
        self.cell = HyperCell(self.input_dim, hidden_dim, cell)
        self.theta = HyperGenerator(self.input_dim + hidden_dim, hyper_dim or hidden_dim, self.cell.modulation_dim, "rnn")
        options = {"components": components} if likelihood in ("mixture", "dim-mixture") else {}
        self.output = output
        self.decoder_head = make_likelihood(likelihood, hidden_dim, x_dim, output=output, **options)

    def initial_state(self, batch_shape: torch.Size, x: torch.Tensor) -> tuple:
        return self.cell.join(self.cell.initial_state(batch_shape, x), self.theta.initial_state(batch_shape, x))

    def emission(self, state: tuple, z_features: torch.Tensor) -> dist.Distribution:
        return self.decoder_head(state[0])

    def update(self, state: tuple, z_features: torch.Tensor, x_t: torch.Tensor, t: int) -> tuple:
        primary, hyper = self.cell.split(state)
        (d_in, d_h, b), hyper = self.theta(cat_features(x_t, state[0]), hyper)
        return self.cell.join(self.cell(x_t, primary, d_in, d_h, b), hyper)
