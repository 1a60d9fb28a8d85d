"""delta-RNN: an RNN whose output is split in a leaked and a predicted subset (Dai et al. 2019, eq. 10-12)."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import constraints

import pyro.distributions as dist
from pyro.distributions.torch_distribution import TorchDistribution

from pyrosequence.models.core.base import SequenceModel
from pyrosequence.nn import MLP, RecurrentCell, State, cat_features, make_likelihood

SPLITS = ("stride", "random")


def split_indices(dim: int, split: str, leak: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)``: the leaked elements ``x^a`` and the rest ``x^b`` of a ``dim``-vector.

    ``split="stride"``: every ``leak``-th element, ``a = {0, U, 2U, ...}`` with ``U = leak``
    (``U = 1`` leaks everything). ``split="random"``: ``V = leak`` elements drawn once with ``seed``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    name = "U (the stride)" if split == "stride" else "V (the number of leaked elements)"
    if not isinstance(leak, int) or not 1 <= leak <= dim:
        raise ValueError(f"{name} must be an integer between 1 and x_dim = {dim}, got {leak!r}")
    if split == "stride":
        leaked = torch.zeros(dim, dtype=torch.bool)
        leaked[::leak] = True
    else:
        perm = torch.randperm(dim, generator=torch.Generator().manual_seed(int(seed)))
        leaked = torch.zeros(dim, dtype=torch.bool)
        leaked[perm[:leak]] = True
    idx = torch.arange(dim)
    return idx[leaked], idx[~leaked]


class DeltaSplitStep(TorchDistribution):
    """``p(x_t | h) = p(x^a | h) p(x^b | x^a, h)``, each factor factorised over its elements
    (eq. 12); ``event_shape = (L,)``, batch shape ``h.shape[:-1]``."""

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, head: "DeltaHead", h: torch.Tensor, validate_args=None) -> None:
        self.head, self.h = head, h
        super().__init__(h.shape[:-1], torch.Size([head.dim]), validate_args=False)

    @constraints.dependent_property
    def support(self):
        return self.head.head_a(self.h).support

    def _second(self, xa: torch.Tensor) -> dist.Distribution:
        return self.head.head_b(self.head.net_b(cat_features(self.h, xa)))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        xa = value[..., self.head.a]
        lp = self.head.head_a(self.h).log_prob(xa)
        if self.head.head_b is not None:
            lp = lp + self._second(xa).log_prob(value[..., self.head.b])
        return lp

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            xa = self.head.head_a(self.h).sample(sample_shape)
            x = xa.new_zeros(xa.shape[:-1] + (self.head.dim,))
            x[..., self.head.a] = xa
            if self.head.head_b is not None:
                x[..., self.head.b] = self._second(xa).sample()
            return x

    def expand(self, batch_shape, _instance=None):
        return DeltaSplitStep(self.head, self.h.expand(torch.Size(batch_shape) + self.h.shape[-1:]))

    @property
    def mean(self):
        raise NotImplementedError("the mean of x^b mixes over x^a and has no closed form; use monte_carlo_moments")

    @property
    def variance(self):
        raise NotImplementedError("the variance of x^b mixes over x^a and has no closed form; use monte_carlo_moments")


class DeltaHead(nn.Module):
    """``h -> DeltaSplitStep``: a factorised head for ``x^a`` from ``h``, and one for ``x^b`` from
    ``MLP([h, x^a])``; the split ``(a, b)`` is fixed and stored as buffers."""

    def __init__(self, in_dim: int, dim: int, a: torch.Tensor, b: torch.Tensor, likelihood: str,
                 mix_hidden: int, **options) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("a", a)
        self.register_buffer("b", b)
        self.head_a = make_likelihood(likelihood, in_dim, len(a), **options)
        self.net_b = MLP(in_dim + len(a), [mix_hidden]) if len(b) else None
        self.head_b = make_likelihood(likelihood, mix_hidden, len(b), **options) if len(b) else None

    def forward(self, h: torch.Tensor) -> DeltaSplitStep:
        return DeltaSplitStep(self, h)

    @property
    def support(self):
        """The element support both factors' heads declare (they share one likelihood family)."""
        return self.head_a.support

    def check_data(self, x: torch.Tensor, name: str = "x") -> None:
        if hasattr(self.head_a, "check_data"):
            self.head_a.check_data(x, name)

    def init_bias_from_mean(self, mean: torch.Tensor) -> None:
        for head, idx in ((self.head_a, self.a), (self.head_b, self.b)):
            if head is not None and hasattr(head, "init_bias_from_mean"):
                head.init_bias_from_mean(mean[idx])


class DeltaRNN(SequenceModel):
    r"""delta-RNN (Dai, Dai, Zhang & Jiang, NeurIPS 2019, section 4.4, eq. 10-12): the ELBO of an
    SRNN whose posterior is a delta on a leaked subset ``x_t^a`` of ``x_t`` reduces to the exact
    likelihood of this RNN::

        h_0 = 0,   h_t = RNN(x_t, h_{t-1})
        x_t^a | x_{<t}         ~ prod_{i in a} p(x_{t,i} | h_{t-1})
        x_t^b | x_t^a, x_{<t}  ~ prod_{i in b} p(x_{t,i} | MLP([h_{t-1}, x_t^a]))

    The split interleaves with stride ``U`` (``split="stride"``, ``leak=U``: ``a = {1, 1+U, ...}``)
    or leaks ``V`` random elements (``split="random"``, ``leak=V``, drawn once with ``seed``).
    With ``U = 1`` every element is leaked, nothing is predicted from the leak, and the model is
    F-RNN (:class:`~pyrosequence.models.autoregressive_rnn.FRNN`) with a factorised output.
    No latents: every bound is the exact log-likelihood.

    Differences from the paper: one recurrent layer; ``x^b`` is read from a one-hidden-layer MLP
    of ``[h_{t-1}, x_t^a]`` (the paper leaves the parameterisation to its code); the leaked
    values enter that MLP uncentred.

    Args:
        x_dim: ``L``.
        hidden_dim: recurrent units (default 64).
        split: ``"stride"`` or ``"random"``.
        leak: ``U`` for the stride split (default 2), ``V`` for the random one (default ``L // 2``).
        seed: seed of the random split.
        likelihood: ``"bernoulli"``, ``"gaussian"``, ``"mixture"`` or ``"dim-mixture"`` for both subsets.
        components: mixture components.
        mix_hidden: hidden units of the MLP of ``[h_{t-1}, x^a]`` (default ``hidden_dim``).
        cell: ``"lstm"`` or ``"gru"``.
    """

    #: Constructor options that are sizes (positive integers; see pyrosequence.models.core.options).
    size_options = ("hidden_dim", "leak", "components", "mix_hidden")

    def __init__(
        self,
        x_dim: int,
        hidden_dim: int = 64,
        split: str = "stride",
        leak: int | None = None,
        seed: int = 0,
        likelihood: str = "bernoulli",
        components: int = 5,
        mix_hidden: int | None = None,
        cell: str = "lstm",
        name: str | None = None,
        mask_inputs: bool = False,
    ) -> None:
        super().__init__(x_dim, 0, name=name, mask_inputs=mask_inputs)
        if leak is None:
            leak = 2 if split == "stride" else max(1, x_dim // 2)
        a, b = split_indices(x_dim, split, leak, seed)
        self.hidden_dim, self.likelihood, self.split, self.leak = hidden_dim, likelihood, split, leak
        self.rnn = RecurrentCell(self.input_dim, hidden_dim, cell)
        options = {"components": components} if likelihood in ("mixture", "dim-mixture") else {}
        self.decoder_head = DeltaHead(hidden_dim, x_dim, a, b, likelihood, mix_hidden or hidden_dim, **options)

    def initial_state(self, batch_shape: torch.Size, x: torch.Tensor) -> State:
        return self.rnn.initial_state(batch_shape, x)

    def emission(self, state: State, z_features: torch.Tensor) -> DeltaSplitStep:
        return self.decoder_head(self.rnn.output(state))

    def update(self, state: State, z_features: torch.Tensor, x_t: torch.Tensor, t: int) -> State:
        return self.rnn(x_t, state)


class DeltaRNNRandom(DeltaRNN):
    """delta-RNN-random: :class:`DeltaRNN` leaking ``V`` random elements (default ``L // 2``)."""

    def __init__(self, x_dim: int, hidden_dim: int = 64, split: str = "random", leak: int | None = None,
                 seed: int = 0, likelihood: str = "bernoulli", components: int = 5, mix_hidden: int | None = None,
                 cell: str = "lstm", mask_inputs: bool = False, name: str | None = None) -> None:
        super().__init__(x_dim, hidden_dim, split, leak, seed, likelihood, components, mix_hidden, cell, name,
                         mask_inputs)
