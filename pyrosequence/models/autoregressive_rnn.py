"""F-RNN and RNN-hier: deterministic RNNs with an exact likelihood (Dai et al. 2019, sections 2 and 5)."""

from __future__ import annotations

import torch

import pyro.distributions as dist

from pyrosequence.models.core.base import SequenceModel
from pyrosequence.nn import RecurrentCell, State, make_likelihood


class FRNN(SequenceModel):
    r"""An autoregressive RNN, F-RNN of Dai, Dai, Zhang & Jiang ("Re-examination of the Role of
    Latent Variables in Sequence Modeling", NeurIPS 2019, eq. 2 and Table 4). No latent variables::

        h_0 = 0,        h_t = RNN(x_t, h_{t-1})                          LSTM or GRU
        x_t | x_{<t}   ~ p(x_t | h_{t-1})

    With ``output="factorized"`` the emission factorises over the ``L`` elements of ``x_t``
    (Bernoulli, Gaussian, or ``"dim-mixture"``: a Gaussian mixture per dimension, as F-RNN uses on
    speech); ``output="hier-rnn"`` / ``"hier-made"`` makes it autoregressive within the step
    (eq. 13), which is RNN-hier (:class:`RNNHier`). Every bound of
    :func:`pyrosequence.inference.evaluate` is the exact log-likelihood.

    Differences from the paper: one recurrent layer and no MLP between ``h_{t-1}`` and the output
    (the paper's code stacks layers and sizes them per dataset); the initial state is zero.

    Args:
        x_dim: ``L``, the observation dimension.
        hidden_dim: recurrent units (default 64).
        likelihood: ``"bernoulli"``, ``"gaussian"``, ``"mixture"`` or ``"dim-mixture"`` (the element
            family for autoregressive outputs).
        components: mixture components.
        cell: ``"lstm"`` or ``"gru"``.
        output: ``"factorized"``, ``"hier-rnn"`` or ``"hier-made"``.
        low_hidden: units of the low-level RNN / of each element's masked MLP (autoregressive outputs).
        order: element order of ``"hier-made"`` (``"natural"`` or ``"random"``).
    """

    #: Constructor options that are sizes (positive integers; see pyrosequence.models.core.options).
    size_options = ("hidden_dim", "components", "low_hidden")

    def __init__(
        self,
        x_dim: int,
        hidden_dim: int = 64,
        likelihood: str = "bernoulli",
        components: int = 5,
        cell: str = "lstm",
        output: str = "factorized",
        low_hidden: int = 32,
        order: str = "natural",
        mask_inputs: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(x_dim, 0, name=name, mask_inputs=mask_inputs)
        if hidden_dim < 1:
            raise ValueError(f"hidden_dim must be positive, got {hidden_dim}")
        self.hidden_dim, self.likelihood, self.output = hidden_dim, likelihood, output
        self.rnn = RecurrentCell(self.input_dim, hidden_dim, cell)
        options = {"components": components} if likelihood in ("mixture", "dim-mixture") else {}
        if output != "factorized":
            options["hidden"] = low_hidden
            if output == "hier-made":
                options["order"] = order
        self.decoder_head = make_likelihood(likelihood, hidden_dim, x_dim, output=output, **options)

    def initial_state(self, batch_shape: torch.Size, x: torch.Tensor) -> State:
        return self.rnn.initial_state(batch_shape, x)

    def emission(self, state: State, z_features: torch.Tensor) -> dist.Distribution:
        return self.decoder_head(self.rnn.output(state))

    def update(self, state: State, z_features: torch.Tensor, x_t: torch.Tensor, t: int) -> State:
        return self.rnn(x_t, state)


class RNNHier(FRNN):
    """RNN-hier (Dai et al. 2019, section 5.1): :class:`FRNN` whose output is autoregressive within
    the step through a low-level RNN (``output="hier-rnn"``, the default here) or a causally
    masked MLP without parameter sharing (``output="hier-made"``, as for Perm-TIMIT)."""

    def __init__(
        self,
        x_dim: int,
        hidden_dim: int = 64,
        likelihood: str = "bernoulli",
        components: int = 5,
        cell: str = "lstm",
        output: str = "hier-rnn",
        low_hidden: int = 32,
        order: str = "natural",
        mask_inputs: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(x_dim, hidden_dim, likelihood, components, cell, output, low_hidden, order, mask_inputs,
                         name)
