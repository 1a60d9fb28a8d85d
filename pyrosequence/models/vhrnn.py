"""The variational hyper RNN (VHRNN) of Deng et al. (AISTATS 2020)."""

from __future__ import annotations

import torch
from torch import nn

import pyro
import pyro.distributions as dist

from pyrosequence.models.filtering_rnn import FilteringRNN
from pyrosequence.nn import cat_features, make_likelihood
from pyrosequence.nn.cells import use_single_bias
from pyrosequence.nn.hyper import HyperCell, HyperGenerator, HyperLinear, HyperOutput

HYPER_INPUTS = ("latent+hidden", "latent", "hidden")


class VHRNN(FilteringRNN):
    r"""Variational hyper RNN (Deng, Cao, Chang, Sigal, Mori, Brubaker, AISTATS 2020).

    A VRNN whose recurrence and decoder weights are modulated at every step by hyper networks
    that read the latent ``z_t`` and the previous state ``h_{t-1}`` (section 3, eq. 1-5)::

        z_t | h_{t-1}        ~ N(mu_prior(h_{t-1}), diag sigma_prior(h_{t-1})^2)         (eq. 3)
        (d_in, d_h, b)_t     = theta(c_t),  c_t = [z_t, h_{t-1}]                         (eq. 1, 6)
        h_t                  = HyperCell([phi_x(x_t), phi_z(z_t)], h_{t-1}; d_in, d_h, b)
        x_t | z_t, h_{t-1}   ~ p(x_t | phi_dec_{omega(c_t)}([phi_z(z_t), h_{t-1}]))       (eq. 2)

    with proposal ``q(z_t | x_t, h_{t-1}) = N(mu_enc([phi_x(x_t), h_{t-1}]), ...)`` (eq. 5).
    ``theta`` is an LSTM of ``hyper_dim`` units mapped linearly to the row scales of the input and
    recurrent weights and to a bias shift (``hyper_net="rnn"``), or a 3-layer MLP
    (``hyper_net="mlp"``, appendix H). Each hidden layer of the decoder is a :class:`HyperLinear`
    whose scales and bias come from a two-layer MLP of ``c_t`` with ``omega_dim`` hidden units
    (8 for the paper's synthetic data, 64 for real data). ``hyper_input`` chooses ``c_t``:
    ``[z_t, h_{t-1}]``, ``z_t`` alone or ``h_{t-1}`` alone (the ablation of Table 3).

    Feature networks, prior and encoder follow appendix B: MLPs with ``layers`` hidden layers of
    ``z_dim`` units (2 for synthetic data, 1 for real data). Sizes default to ``z_dim``; the paper
    uses ``hidden_dim = hyper_dim = z_dim``. The generated vectors are recorded as deterministic
    sites: ``theta_d_input_t``, ``theta_d_hidden_t``, ``theta_bias_t`` (shape ``(..., G * H)``,
    ``G`` = 4 gates for LSTM, 3 for GRU) where the recurrence is computed, and
    ``omega_scale_l`` / ``omega_bias_l`` for decoder layer ``l``, shape ``(..., batch, time, units)``
    with time in the event (the model evaluates the decoder for all steps at once).

    Differences from the paper, where it leaves details open: with ``architecture="compact"``
    the decoder's output layer (producing the emission parameters) is an ordinary linear layer;
    with ``architecture="fivo"`` it is a hyper layer too (:class:`~pyrosequence.nn.hyper.HyperOutput`,
    its own two-layer MLP of ``omega_dim`` units; recorded as ``omega_scale_out`` /
    ``omega_bias_out``), the hyper LSTM's bias shift has no bias of its own, and the rest follows
    the FIVO code's reading of :class:`~pyrosequence.models.FilteringRNN` (one bias per gate,
    linear feature outputs, residual proposal, smoothing proposal): the reading that reproduces
    the paper's parameter counts (Tables 1 and 4). Generated scales are parameterised as
    ``1 + output`` with a small initial output, so training starts near a VRNN.
    ``output="hier-rnn"`` or ``"hier-made"`` makes the emission autoregressive within the step
    (Dai et al. 2019, eq. 14), reading the decoder's last hidden layer as its features.
    ``scale_offset``, ``proposal_input``, ``initial_step`` (the FIVO reference code's details) and
    ``dropout`` (on the feature extractors) are :class:`~pyrosequence.models.FilteringRNN`'s.

    Args:
        hyper_dim: units of the hyper network's LSTM (default ``hidden_dim``).
        hyper_input: what the hyper networks read: ``"latent+hidden"``, ``"latent"`` or ``"hidden"``.
        hyper_net: ``"rnn"`` (an LSTM) or ``"mlp"`` (appendix H).
        omega_dim: hidden units of the decoder's hyper MLPs (8 for synthetic data, 64 for real).
        hidden_dim, likelihood, cell, layers, output, architecture, proposal: as in
            :class:`~pyrosequence.models.VRNN`.
        covariate_dim: the number of covariate columns, the last of ``x`` (known inputs the
            recurrence, the prior, the proposal and the hyper network that generates the
            recurrence's weights read; default 0: none). The hyper network reads ``[c_t, u_t]``;
            the decoder's hyper layers keep ``c_t`` (:mod:`pyrosequence.models.core.covariates`).
    """

    #: Constructor options that are sizes (positive integers; see pyrosequence.models.core.options).
    size_options = ("hidden_dim", "hyper_dim", "layers", "omega_dim")

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden_dim: int | None = None,
        hyper_dim: int | None = None,
        cell: str = "lstm",
        hyper_input: str = "latent+hidden",
        hyper_net: str = "rnn",
        likelihood: str = "gaussian",
        layers: int = 1,
        omega_dim: int = 64,
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
        if hyper_input not in HYPER_INPUTS:
            raise ValueError(f"unknown hyper_input {hyper_input!r}; choose one of: {', '.join(HYPER_INPUTS)}")
        h = hidden_dim or z_dim
        super().__init__(x_dim, z_dim, h, z_dim, z_dim, layers, name, architecture, proposal,
                         scale_offset, proposal_input, initial_step, dropout, mask_inputs, covariate_dim)
        fivo = architecture == "fivo"
        hyper_dim = hyper_dim or z_dim
        self.hyper_input, self.likelihood = hyper_input, likelihood
        cond_dim = {"latent+hidden": z_dim + h, "latent": z_dim, "hidden": h}[hyper_input]
        self.cell = HyperCell(2 * z_dim, h, cell)
        self.theta = HyperGenerator(
            cond_dim + self.covariate_dim, hyper_dim, self.cell.modulation_dim, hyper_net, shift_bias=not (fivo and hyper_net == "rnn")
        )
        widths = [z_dim] * layers
        self.decoder = nn.ModuleList(
            HyperLinear(i, o, cond_dim, omega_dim) for i, o in zip([z_dim + h] + widths[:-1], widths)
        )
        # An autoregressive ``output`` (Dai et al. 2019, eq. 14) reads the decoder's last hidden
        # layer as its high-level features h_t; the HyperLinear layers stay as they are.
        self.output = output
        head = make_likelihood(likelihood, z_dim, x_dim, output=output)
        if fivo and output == "factorized":
            head = HyperOutput(head, cond_dim, omega_dim)
        self.decoder_head = head
        if fivo:
            use_single_bias(self)

    def hidden(self, state: tuple) -> torch.Tensor:
        return self.model_state(state)[0]

    def _condition(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if self.hyper_input == "latent":
            return z
        if self.hyper_input == "hidden":
            return h
        return cat_features(z, h)

    def zero_state(self, batch_shape: torch.Size, x: torch.Tensor) -> tuple:
        # (primary cell state..., hyper generator state...)
        return self.cell.join(self.cell.initial_state(batch_shape, x), self.theta.initial_state(batch_shape, x))

    def zero_latent_features(self, z: torch.Tensor) -> tuple:
        return z, super().zero_latent_features(z)

    def advance(self, state: tuple, z: torch.Tensor, z_features: tuple, x_features: torch.Tensor, weights=None,
                u: torch.Tensor | None = None) -> tuple:
        """One recurrence step of the model's own ``state`` (without covariates attached); with
        covariates the hyper network also reads ``u`` (``u_t``; zeros when not given: the
        ``initial_step`` on a zero input)."""
        z, zf = z_features
        primary, hyper = self.cell.split(state)
        condition = self._condition(z, state[0])
        if self.covariate_dim:
            u = condition.new_zeros(condition.shape[:-1] + (self.covariate_dim,)) if u is None else u
            condition = cat_features(condition, u)
        (d_in, d_h, b), hyper = self.theta(condition, hyper)
        if weights is not None:
            weights.extend((d_in, d_h, b))
        return self.cell.join(self.cell(cat_features(x_features, zf), primary, d_in, d_h, b), hyper)

    def latent_features(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z, self.phi_z(z)

    def emission(self, state: tuple, z_features: tuple) -> dist.Distribution:
        z, zf = z_features
        h = self.hidden(state)
        c = self._condition(z, h)
        a = cat_features(zf, h)
        for i, layer in enumerate(self.decoder):
            out, scale, bias = layer(a, c)
            # the model evaluates the emission for all steps at once: time is part of the event
            pyro.deterministic(f"omega_scale_{i}", scale, event_dim=2)
            pyro.deterministic(f"omega_bias_{i}", bias, event_dim=2)
            a = torch.relu(out)
        if isinstance(self.decoder_head, HyperOutput):
            emission, scale, bias = self.decoder_head(a, c)
            pyro.deterministic("omega_scale_out", scale, event_dim=2)
            pyro.deterministic("omega_bias_out", bias, event_dim=2)
            return emission
        return self.decoder_head(a)

    def update(self, state: tuple, z_features: tuple, context_t, t: int) -> tuple:
        weights: list = []
        x_features, u_next = context_t if self.covariate_dim else (context_t, None)
        new = self.advance(self.model_state(state), None, z_features, x_features, weights, self.state_covariates(state))
        d_in, d_h, b = weights
        pyro.deterministic(f"theta_d_input_{t}", d_in, event_dim=1)
        pyro.deterministic(f"theta_d_hidden_{t}", d_h, event_dim=1)
        pyro.deterministic(f"theta_bias_{t}", b, event_dim=1)
        return self.next_state(state, new, u_next)
