"""The Deep Markov Model (DMM) of Krishnan, Shalit & Sontag (2017) with its structured guide."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import pyro.distributions as dist
from pyro.distributions.transforms import affine_autoregressive

from pyrosequence.models.core.base import SequenceModel
from pyrosequence.nn import MLP, cat_features, make_likelihood
from pyrosequence.nn.sequence_rnn import reverse_padded

#: Backward RNNs of the guide: Pyro's example uses a ReLU ``nn.RNN``.
CELLS = ("rnn", "gru", "lstm")


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"DMM: {name} must be a positive integer, got {value!r}")
    return value


class GatedTransition(nn.Module):
    r"""``p(z_t | z_{t-1})`` of the DMM (Krishnan et al. 2017, section 5, "gated transition
    function")::

        g_t     = sigmoid(W_g2 relu(W_g1 z_{t-1} + b_g1) + b_g2)          gate, in (0, 1)^z
        m_t     = W_m2 relu(W_m1 z_{t-1} + b_m1) + b_m2                   proposed (non-linear) mean
        mu_t    = (1 - g_t) * (A z_{t-1} + a) + g_t * m_t                 A = I, a = 0 at the start
        sigma_t = softplus(W_s relu(m_t) + b_s) + min_scale

    The gate chooses, per coordinate, between a linear (initially identity) and a non-linear
    transition. Broadcasts over any leading dimensions of ``z_{t-1}``. With ``covariate_dim``
    covariates the gate and the non-linear mean read ``[z_{t-1}, u_t]`` (the linear path stays
    ``A z_{t-1} + a``), so the covariates move the transition wherever the gate opens.
    """

    def __init__(self, z_dim: int, transition_dim: int, min_scale: float = 1e-4, covariate_dim: int = 0) -> None:
        super().__init__()
        self.min_scale = min_scale
        self.gate = MLP(z_dim + covariate_dim, [transition_dim], z_dim)
        self.proposed_mean = MLP(z_dim + covariate_dim, [transition_dim], z_dim)
        self.linear_mean = nn.Linear(z_dim, z_dim)
        self.scale = nn.Linear(z_dim, z_dim)
        with torch.no_grad():  # start as the identity map, as the paper and Pyro's example do
            self.linear_mean.weight.copy_(torch.eye(z_dim))
            self.linear_mean.bias.zero_()
        self.linear_mean.keeps_initialisation = True  # also under --init xavier/fivo (pyrosequence.optim.init)

    def forward(self, z_prev: torch.Tensor, u: torch.Tensor | None = None) -> dist.Distribution:
        inputs = z_prev if u is None else cat_features(z_prev, u)
        gate = torch.sigmoid(self.gate(inputs))
        proposed = self.proposed_mean(inputs)
        loc = (1 - gate) * self.linear_mean(z_prev) + gate * proposed
        scale = F.softplus(self.scale(torch.relu(proposed))) + self.min_scale
        return dist.Normal(loc, scale).to_event(1)


class Combiner(nn.Module):
    r"""``q(z_t | z_{t-1}, h_t)`` of the structured guide (Krishnan et al. 2017, section 4,
    "combiner function"), with ``h_t`` the backward RNN's summary of ``x_{t:T}``::

        c_t     = (tanh(W_c z_{t-1} + b_c) + h_t) / 2
        mu_t    = W_mu c_t + b_mu
        sigma_t = softplus(W_sigma c_t + b_sigma) + min_scale
    """

    def __init__(self, z_dim: int, hidden_dim: int, min_scale: float = 1e-4) -> None:
        super().__init__()
        self.z_dim, self.min_scale = z_dim, min_scale
        self.z_to_hidden = nn.Linear(z_dim, hidden_dim)
        self.params = nn.Linear(hidden_dim, 2 * z_dim)

    def forward(self, z_prev: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        combined = 0.5 * (torch.tanh(self.z_to_hidden(z_prev)) + h)
        loc, raw_scale = self.params(combined).split(self.z_dim, dim=-1)
        return loc, F.softplus(raw_scale) + self.min_scale


class FlowPosterior(dist.TransformedDistribution):
    """A base distribution pushed through (inverse) autoregressive flows, which remembers the
    log-density of the last value it drew.

    An IAF computes ``log q(z)`` of its own draw in the forward pass, but ``log q`` of any other
    value needs an inversion that is sequential over the ``z_dim`` coordinates; Pyro's transforms
    cache only their most recent call, so with one set of flows shared by every time step, the
    guide's log-densities (computed after the whole sequence was drawn) would each be inverted.
    Here the density is kept with the draw: :meth:`log_prob` of that very tensor returns it, and
    any other value falls back to the exact inversion. Reparameterised like its base.
    """

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        x = self.base_dist.rsample(sample_shape)
        log_q = self.base_dist.log_prob(x)
        for transform in self.transforms:
            y = transform(x)
            log_q = log_q - transform.log_abs_det_jacobian(x, y)  # summed over the event already
            x = y
        self._drawn = (x, log_q)
        return x

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        drawn = getattr(self, "_drawn", None)
        if drawn is not None and value is drawn[0]:
            return drawn[1]
        return super().log_prob(value)


class DMM(SequenceModel):
    r"""Deep Markov Model (Krishnan, Shalit, Sontag, "Structured Inference Networks for Nonlinear
    State Space Models", AAAI 2017), the model of Pyro's ``examples/dmm.py``.

    Generative story, for ``t = 1..T`` with a learned ``z_0``::

        z_t | z_{t-1} ~ N(mu_trans(z_{t-1}), diag sigma_trans(z_{t-1})^2)    gated transition
        x_t | z_t     ~ Bernoulli(sigmoid(f_emit(z_t)))                       piano rolls
                        (or N(mu_emit(z_t), diag sigma_emit(z_t)^2) with likelihood="gaussian")

    (:class:`GatedTransition`; ``f_emit`` is an MLP with two ReLU layers of ``emission_dim``
    units). The model's density is causal and Markov: ``x_t`` depends on the past only through
    ``z_t``.

    Guide (the paper's structured "ST-R" inference network; the exact posterior factorises as
    ``prod_t p(z_t | z_{t-1}, x_{t:T})``, and the guide respects that)::

        h_t           = RNN_backward(x_t, h_{t+1})       h_{T+1} learned; starts at each sequence's end
        z_t | z_{t-1}, x_{t:T} ~ N(mu_comb(z_{t-1}, h_t), diag sigma_comb(z_{t-1}, h_t)^2)

    with the :class:`Combiner` and a learned ``z_0^q``; with ``iafs=k`` the Gaussian is pushed
    through ``k`` inverse autoregressive flows (Kingma et al. 2016; Pyro's ``affine_autoregressive``,
    one hidden layer of ``iaf_dim`` units) shared by all steps, as in Pyro's example. The guide
    stays reparameterised, so every objective (elbo, mean-field, iwae, fivo) applies; the
    mean-field objective has no closed-form KL for a flow and falls back to sampling.

    As :class:`SequenceModel` pieces, the state before step ``t`` is the pair
    ``(z_{t-1}, z_{t-1})`` (the first entry feeds the transition, the second the combiner; they
    differ only at the start, ``(z_0, z_0^q)``), ``proposal_context`` is the backward RNN's output
    ``h_t``, ``emission`` ignores the state, and ``update`` returns ``(z_t, z_t)``.

    Differences from the paper and from Pyro's example: the sizes default to Pyro's ratios
    (``z_dim`` 100, ``transition_dim`` 200, ``emission_dim`` 100, ``hidden_dim`` 600) relative to
    ``z_dim``; every scale has a floor of ``1e-4``; the Bernoulli emission outputs logits (the
    same model as Pyro's sigmoid probabilities, numerically safer); the backward RNN has one
    layer and no dropout (Pyro: ``rnn_dropout_rate=0.1``, which with one layer has no effect);
    the network inputs are ``x - input_offset`` (zero unless ``--center-inputs``);
    ``init_from_data`` starts the Bernoulli output at the data's rates. The paper evaluates its
    KL terms analytically; here, as in Pyro's example, the estimators sample them (except the
    mean-field objective without flows). The paper's sections 5-6 also study other guides
    (MF-LR, ST-L, DKS): only ST-R, the one of Pyro's example, is built here.

    :func:`~pyrosequence.models.multi_rate.multi_rate` (and so ``--multi-rate``) refuses the DMM as
    it is: the learned start vectors ``z_0``, ``z_0^q``, ``h_{T+1}`` and a plain ``nn.RNN`` have no
    beta-gated form; ``multi_rate(DMM(...), allow_ungated=True)`` leaves them ungated.

    Args:
        x_dim: observation dimension.
        z_dim: latent dimension.
        hidden_dim: units of the guide's backward RNN (Pyro's ``rnn_dim``; default ``6 * z_dim``).
        transition_dim: hidden units of the gated transition (default ``2 * z_dim``).
        emission_dim: hidden units of the emitter's two layers (default ``z_dim``).
        likelihood: ``"bernoulli"`` (binary data) or ``"gaussian"`` (any family of
            :func:`pyrosequence.nn.make_likelihood`).
        cell: the backward RNN: ``"rnn"`` (ReLU, as Pyro's example), ``"gru"`` or ``"lstm"``.
        iafs: number of inverse autoregressive flows in the guide (default 0).
        iaf_dim: hidden units of each flow's autoregressive network (default ``z_dim``).
        covariate_dim: the number of covariate columns, the last of ``x`` (known inputs the
            gated transition and the guide's backward RNN read; default 0: none). The gated
            transition reads ``[z_{t-1}, u_t]``, the backward RNN ``[x_t, u_t]``; the emission
            reads them only through ``z_t`` (:mod:`pyrosequence.models.core.covariates`).
    """

    #: Constructor options that are sizes (positive integers; see pyrosequence.models.core.options).
    size_options = ("hidden_dim", "transition_dim", "emission_dim", "iaf_dim")

    homogeneous_transition = True
    time_invariant_pieces = True  # no piece reads t: a compiled filter compiles one step for all t

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden_dim: int | None = None,
        transition_dim: int | None = None,
        emission_dim: int | None = None,
        likelihood: str = "bernoulli",
        cell: str = "rnn",
        iafs: int = 0,
        iaf_dim: int | None = None,
        mask_inputs: bool = False,
        covariate_dim: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(x_dim, z_dim, name=name, mask_inputs=mask_inputs, covariate_dim=covariate_dim)
        if self.z_dim < 1:
            raise ValueError(f"DMM needs latents: z_dim must be at least 1, got {z_dim}")
        if cell not in CELLS:
            raise ValueError(f"DMM: unknown cell {cell!r}; choose one of: {', '.join(CELLS)}")
        if isinstance(iafs, bool) or not isinstance(iafs, int) or iafs < 0:
            raise ValueError(f"DMM: iafs (the number of flows) must be an integer >= 0, got {iafs!r}")
        if iafs and self.z_dim < 2:
            raise ValueError(f"DMM: an autoregressive flow needs z_dim >= 2, got z_dim={z_dim}")
        self.hidden_dim = _positive("hidden_dim", 6 * self.z_dim if hidden_dim is None else hidden_dim)
        self.transition_dim = _positive("transition_dim", 2 * self.z_dim if transition_dim is None else transition_dim)
        self.emission_dim = _positive("emission_dim", self.z_dim if emission_dim is None else emission_dim)
        self.iaf_dim = _positive("iaf_dim", self.z_dim if iaf_dim is None else iaf_dim)
        self.likelihood, self.cell, self.iafs = likelihood, cell, iafs

        self.trans = GatedTransition(self.z_dim, self.transition_dim, covariate_dim=self.covariate_dim)
        self.emitter = MLP(self.z_dim, [self.emission_dim, self.emission_dim])
        self.decoder_head = make_likelihood(likelihood, self.emission_dim, x_dim)
        self.combiner = Combiner(self.z_dim, self.hidden_dim)
        rnn_class = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
        rnn_options = {"nonlinearity": "relu"} if cell == "rnn" else {}
        self.backward_rnn = rnn_class(self.input_dim, self.hidden_dim, batch_first=True, **rnn_options)
        self.rnn_h0 = nn.Parameter(torch.zeros(self.hidden_dim))
        self.z_0 = nn.Parameter(torch.zeros(self.z_dim))
        self.z_q_0 = nn.Parameter(torch.zeros(self.z_dim))
        self.flows = nn.ModuleList(affine_autoregressive(self.z_dim, hidden_dims=[self.iaf_dim]) for _ in range(iafs))

    # ------------------------------------------------------------------ pieces
    def initial_state(self, batch_shape: torch.Size, x: torch.Tensor):
        shape = tuple(batch_shape) + (self.z_dim,)
        return self.with_covariates((self.z_0.expand(shape), self.z_q_0.expand(shape)), x, batch_shape)

    def context(self, x: torch.Tensor):
        """The centred input; with covariates only ``u_{t+1}``, which the update attaches to the
        state for the next transition (the backward RNN reads the input itself)."""
        return self.next_covariates(x) if self.covariate_dim else super().context(x)

    def transition(self, state, t: int | None) -> dist.Distribution:
        return self.trans(self.model_state(state)[0], self.state_covariates(state))

    def emission(self, state, z: torch.Tensor) -> dist.Distribution:
        return self.decoder_head(self.emitter(z))

    def update(self, state, z: torch.Tensor, context_t, t: int):
        return self.next_state(state, (z, z), context_t)

    def proposal_context(self, x: torch.Tensor, context: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``h_t`` for every step, ``(batch, T, hidden_dim)``: the backward RNN over
        ``x_T, ..., x_t`` of each sequence (with covariates, ``[x_t, u_t]``), started at its own
        last step."""
        if self.covariate_dim:
            context = self.centered(x)
        batch = context.shape[0]
        h0 = self.rnn_h0.expand(1, batch, self.hidden_dim).contiguous()
        if self.cell == "lstm":
            h0 = (h0, torch.zeros_like(h0))
        out, _ = self.backward_rnn(reverse_padded(context, lengths), h0)
        return reverse_padded(out, lengths)

    def proposal(self, state, t: int, h_t: torch.Tensor) -> dist.Distribution:
        loc, scale = self.combiner(self.model_state(state)[1], h_t)
        base = dist.Normal(loc, scale).to_event(1)
        if not self.iafs:
            return base
        return FlowPosterior(base, list(self.flows))
