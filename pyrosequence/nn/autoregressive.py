r"""Output distributions that factorise autoregressively *within* a time step.

Dai et al. ("Re-examination of the Role of Latent Variables in Sequence Modeling", NeurIPS 2019,
eq. 13-14) replace the factorised output ``prod_i p(x_{t,i} | h_t)`` by

.. math::  p(x_t | h_t) = \prod_{i=1}^{L} p(x_{t,i} | x_{t,<i}, h_t),

with the element conditionals read from low-level vectors ``g_{t,i} = f_low(x_{t,<i}, h_t)``.
:class:`AutoregressiveStep` is that distribution over one step ``x_t in R^L`` (or ``{0,1}^L``):
``event_shape = (L,)``, batch shape the features' leading shape, so it drops into any
:class:`~pyrosequence.models.core.base.SequenceModel` as an emission. ``log_prob`` is one
teacher-forced pass (for the RNN conditioner one ``nn.LSTM``/``nn.GRU`` call over the ``L``
elements with all leading dimensions flattened); ``sample`` draws element by element.

Pieces:

* element families (:class:`ElementFamily`): Bernoulli, Gaussian, or a K-component Gaussian
  mixture per element;
* conditioners (modules with ``teacher(features, x)`` and ``sample(features, draw)``):
  :class:`RNNConditioner` (the paper's low-level RNN, "hier-rnn") and :class:`MADEConditioner`
  (:class:`~pyrosequence.nn.made.MaskedMLP`, "hier-made"); RNN-flat brings its own conditioner
  (:mod:`pyrosequence.models.flat_rnn`);
* :class:`AutoregressiveHead`: ``features -> AutoregressiveStep``, built by
  :func:`pyrosequence.nn.heads.make_likelihood` with ``output="hier-rnn"`` or ``"hier-made"``.

The mean and variance of such a distribution have no closed form; the properties raise
``NotImplementedError`` and :func:`monte_carlo_moments` estimates them from samples.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import constraints

import pyro.distributions as dist
from pyro.distributions.torch_distribution import TorchDistribution

from pyrosequence.nn.cells import map_state
from pyrosequence.nn.made import MaskedMLP
from pyrosequence.nn.mlp import broadcast_shape
from pyrosequence.nn.support import check_support


def _leading(features) -> torch.Size:
    parts = features if isinstance(features, tuple) else (features,)
    return broadcast_shape(*(p.shape[:-1] for p in parts))


class ElementFamily:
    """The distribution of one element ``x_{t,i}`` given its ``num_params`` raw parameters.

    ``kind``: ``"bernoulli"`` (one logit), ``"gaussian"`` (loc, softplus scale + ``min_scale``)
    or ``"mixture"`` (``components`` logits, locs and scales: a per-element Gaussian mixture).
    """

    KINDS = ("bernoulli", "gaussian", "mixture")

    def __init__(self, kind: str, components: int = 5, min_scale: float = 1e-4) -> None:
        if kind == "dim-mixture":
            kind = "mixture"
        if kind not in self.KINDS:
            raise ValueError(
                f"unknown element likelihood {kind!r} for an autoregressive output; choose one of: "
                f"{', '.join(self.KINDS + ('dim-mixture',))}"
            )
        if components < 1:
            raise ValueError(f"a mixture needs at least one component, got {components}")
        self.kind, self.components, self.min_scale = kind, components, min_scale
        self.num_params = {"bernoulli": 1, "gaussian": 2, "mixture": 3 * components}[kind]
        self.support = constraints.boolean if kind == "bernoulli" else constraints.real

    def _mixture(self, params: torch.Tensor):
        logits, loc, raw = params.split(self.components, dim=-1)
        return logits.log_softmax(-1), loc, F.softplus(raw) + self.min_scale

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Element log-densities: ``params (..., P)``, ``x (...)`` -> ``(...)``."""
        if self.kind == "bernoulli":
            return -F.binary_cross_entropy_with_logits(params[..., 0], x, reduction="none")
        if self.kind == "gaussian":
            scale = F.softplus(params[..., 1]) + self.min_scale
            return dist.Normal(params[..., 0], scale).log_prob(x)
        log_w, loc, scale = self._mixture(params)
        return (log_w + dist.Normal(loc, scale).log_prob(x[..., None])).logsumexp(-1)

    def sample(self, params: torch.Tensor) -> torch.Tensor:
        """One draw per element: ``params (..., P)`` -> ``(...)``."""
        if self.kind == "bernoulli":
            return torch.bernoulli(torch.sigmoid(params[..., 0]))
        if self.kind == "gaussian":
            return params[..., 0] + (F.softplus(params[..., 1]) + self.min_scale) * torch.randn_like(params[..., 0])
        log_w, loc, scale = self._mixture(params)
        k = torch.distributions.Categorical(logits=log_w).sample()[..., None]
        return (loc.gather(-1, k) + scale.gather(-1, k) * torch.randn_like(k, dtype=loc.dtype)).squeeze(-1)

    def check_data(self, x: torch.Tensor, name: str = "x") -> None:
        """Reject ``x`` outside :attr:`support` (non-binary data for Bernoulli elements)."""
        check_support(x, self.support, name, what="Bernoulli elements" if self.kind == "bernoulli" else "the elements")

    def bias_from_mean(self, mean: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
        """Per-element parameter offsets ``(L, P)`` that start every conditional at the data mean
        (logit of the rate for Bernoulli, the location for Gaussians and every mixture component)."""
        bias = mean.new_zeros(mean.shape + (self.num_params,))
        if self.kind == "bernoulli":
            p = mean.clamp(eps, 1 - eps)
            bias[..., 0] = torch.log(p) - torch.log1p(-p)
        elif self.kind == "gaussian":
            bias[..., 0] = mean
        else:
            bias[..., self.components:2 * self.components] = mean[..., None]
        return bias


class AutoregressiveStep(TorchDistribution):
    """``p(x_t | features) = prod_i p(x_{t,i} | x_{t,<i}, features)`` (see the module docstring).

    Args:
        conditioner: module with ``teacher(features, x) -> (..., L, P)`` (all element parameters
            in one causal pass) and ``sample(features, draw) -> (..., L)`` (element by element,
            calling ``draw(i, params_i)`` for the value of element ``i``).
        element: the :class:`ElementFamily` of each element.
        features: a tensor ``(..., F)`` or a tuple of them (e.g. an LSTM state); their broadcast
            leading shape is the batch shape.
        dim: ``L``.
        bias: optional per-element parameter offsets ``(L, P)`` added to the conditioner's output.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, conditioner, element: ElementFamily, features, dim: int, bias: torch.Tensor | None = None,
                 validate_args=None) -> None:
        self.conditioner, self.element, self.features, self.dim, self.bias = conditioner, element, features, dim, bias
        super().__init__(_leading(features), torch.Size([dim]), validate_args=False)

    @constraints.dependent_property
    def support(self):
        return constraints.independent(self.element.support, 1)

    def _params(self, params: torch.Tensor) -> torch.Tensor:
        return params if self.bias is None else params + self.bias

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if value.shape[-1:] != self.event_shape:
            raise ValueError(f"expected values with last dimension {self.dim}, got shape {tuple(value.shape)}")
        params = self._params(self.conditioner.teacher(self.features, value))
        value = value.expand(params.shape[:-1])
        return self.element.log_prob(params, value).sum(-1)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        features = map_state(lambda f: f.expand(shape + f.shape[-1:]), self.features)
        bias = self.bias

        def draw(i: int, params_i: torch.Tensor) -> torch.Tensor:
            return self.element.sample(params_i if bias is None else params_i + bias[i])

        with torch.no_grad():
            return self.conditioner.sample(features, draw)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        features = map_state(lambda f: f.expand(batch_shape + f.shape[-1:]), self.features)
        return AutoregressiveStep(self.conditioner, self.element, features, self.dim, self.bias)

    @property
    def mean(self):
        raise NotImplementedError(
            "the mean of an autoregressive output distribution has no closed form; "
            "estimate it with pyrosequence.nn.autoregressive.monte_carlo_moments"
        )

    @property
    def variance(self):
        raise NotImplementedError(
            "the variance of an autoregressive output distribution has no closed form; "
            "estimate it with pyrosequence.nn.autoregressive.monte_carlo_moments"
        )


#: Without gradients, teacher forcing runs over at most this many (row x element x unit) hidden
#: values at a time, so evaluating long padded batches does not hold every hidden vector at once.
NO_GRAD_CHUNK = 2**23


def chunked_rows(fn: Callable, *tensors: torch.Tensor, cost_per_row: int) -> torch.Tensor:
    """``fn(*tensors)`` on row blocks concatenated (one call when gradients are recorded, where
    autograd keeps everything anyway, or when the rows are few)."""
    n = tensors[0].shape[0]
    step = max(1, NO_GRAD_CHUNK // max(1, cost_per_row))
    if torch.is_grad_enabled() or n <= step:
        return fn(*tensors)
    return torch.cat([fn(*(t[i:i + step] for t in tensors)) for i in range(0, n, step)])


def monte_carlo_moments(d: torch.distributions.Distribution, num_samples: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Estimate ``(mean, variance)`` of ``d`` from ``num_samples`` draws (standard error of the
    mean is ``sqrt(variance / num_samples)``)."""
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}")
    draws = d.sample(torch.Size([num_samples]))
    return draws.mean(0), draws.var(0)


class RNNConditioner(nn.Module):
    r"""The low-level RNN of the hierarchical model (Dai et al., section 5.1)::

        d_{t,0}  = tanh(W h_t)  (initial state; the LSTM cell starts at 0)
        d_{t,i}  = RNN([x_{t,i-1}, e_i], d_{t,i-1}),    x_{t,0} = 0
        g_{t,i}  = d_{t,i},    params_i = V g_{t,i} + (U h_t)_i

    The paper's ``g_{t,i} = f_low(x_{t,<i}, h_t)`` takes ``h_t`` as an input of every element; here
    it reaches element ``i`` twice: through the initial state, and directly through the skip term
    ``(U h_t)_i`` (one output row per element, as the factorised head has), so the hierarchical
    output contains the factorised one (``V = 0``) and the high-level state does not have to
    survive ``L`` low-level steps (without the skip, RNN-hier trained far slower than F-RNN on JSB).
    ``e_i`` is a learned embedding of the element's position (``position_dim`` units, 0 to drop
    it); it is our addition: the paper's low-level RNN would have to count the elements to know
    which one it emits, e.g. which of the 88 piano keys. Teacher forcing is one ``nn.LSTM`` (or
    ``nn.GRU``) call over the ``L`` elements with every leading dimension flattened into the batch.
    """

    def __init__(self, cond_dim: int, dim: int, hidden: int, out_dim: int, cell: str = "lstm",
                 position_dim: int = 8) -> None:
        super().__init__()
        rnns = {"lstm": nn.LSTM, "gru": nn.GRU}
        if cell not in rnns:
            raise ValueError(f"unknown cell {cell!r}; choose one of: {', '.join(sorted(rnns))}")
        if hidden < 1 or position_dim < 0:
            raise ValueError(f"hidden must be positive and position_dim non-negative, got {hidden}, {position_dim}")
        self.dim, self.hidden, self.kind = dim, hidden, cell
        self.init = nn.Linear(cond_dim, hidden)
        self.position = nn.Parameter(0.1 * torch.randn(dim, position_dim)) if position_dim else None
        self.rnn = rnns[cell](1 + position_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, out_dim)
        self.skip = nn.Linear(cond_dim, dim * out_dim, bias=False)  # (U h_t)_i

    def _skip(self, h: torch.Tensor) -> torch.Tensor:
        """``(U h_t)_i`` for every element: ``(..., L, out_dim)``."""
        return self.skip(h).reshape(h.shape[:-1] + (self.dim, -1))

    def _start(self, h: torch.Tensor):
        d0 = torch.tanh(self.init(h))[None]
        return (d0, torch.zeros_like(d0)) if self.kind == "lstm" else d0

    def _inputs(self, prev: torch.Tensor, positions: slice) -> torch.Tensor:
        if self.position is None:
            return prev[..., None]
        pos = self.position[positions].expand(prev.shape + (self.position.shape[-1],))
        return torch.cat([prev[..., None], pos], -1)

    def teacher(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        batch = broadcast_shape(h.shape[:-1], x.shape[:-1])
        h = h.expand(batch + h.shape[-1:]).reshape(-1, h.shape[-1])
        x = x.expand(batch + x.shape[-1:]).reshape(-1, self.dim)

        def rows(h_rows: torch.Tensor, x_rows: torch.Tensor) -> torch.Tensor:
            prev = F.pad(x_rows[:, :-1], (1, 0))
            out, _ = self.rnn(self._inputs(prev, slice(None)), self._start(h_rows))
            return self.out(out) + self._skip(h_rows)

        return chunked_rows(rows, h, x, cost_per_row=self.dim * self.hidden).reshape(batch + (self.dim, -1))

    def sample(self, h: torch.Tensor, draw: Callable) -> torch.Tensor:
        batch = h.shape[:-1]
        flat = h.reshape(-1, h.shape[-1])
        state, prev = self._start(flat), flat.new_zeros(flat.shape[0], 1)
        skip = self._skip(flat)
        values = []
        for i in range(self.dim):
            out, state = self.rnn(self._inputs(prev, slice(i, i + 1)), state)
            prev = draw(i, self.out(out[:, 0]) + skip[:, i])[:, None]
            values.append(prev)
        return torch.cat(values, -1).reshape(batch + (self.dim,))


class MADEConditioner(nn.Module):
    """``params_i = MLP_i(x_{t,<i}, h_t)`` through :class:`~pyrosequence.nn.made.MaskedMLP`
    (one masked MLP per element, no parameter sharing, natural or random order)."""

    def __init__(self, cond_dim: int, dim: int, hidden: int, out_dim: int, layers: int = 1,
                 order: str = "natural", seed: int = 0) -> None:
        super().__init__()
        self.dim = dim
        self.made = MaskedMLP(dim, cond_dim, hidden, out_dim, layers, order, seed)

    def teacher(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.made(x, h)

    def sample(self, h: torch.Tensor, draw: Callable) -> torch.Tensor:
        x = h.new_zeros(h.shape[:-1] + (self.dim,))
        for i in self.made.order.tolist():  # each pass recomputes all outputs; only element i is used
            x[..., i] = draw(i, self.made(x, h)[..., i, :])
        return x


class AutoregressiveHead(nn.Module):
    """``features -> AutoregressiveStep``: an emission head whose elements are generated in turn.

    Args:
        in_dim: size of the high-level features ``h_t``.
        dim: ``L``, the observation dimension.
        likelihood: element family, ``"bernoulli"``, ``"gaussian"`` or ``"mixture"``/``"dim-mixture"``.
        conditioner: ``"rnn"`` (:class:`RNNConditioner`) or ``"made"`` (:class:`MADEConditioner`).
        hidden: low-level units (default 32).
        components: mixture components per element.
        options: passed to the conditioner (``cell``, ``position_dim`` for the RNN; ``layers``,
            ``order``, ``seed`` for MADE).
    """

    def __init__(self, in_dim: int, dim: int, likelihood: str = "bernoulli", conditioner: str = "rnn",
                 hidden: int = 32, components: int = 5, min_scale: float = 1e-4, **options) -> None:
        super().__init__()
        self.dim = dim
        self.element = ElementFamily(likelihood, components, min_scale)
        builders = {"rnn": RNNConditioner, "made": MADEConditioner}
        if conditioner not in builders:
            raise ValueError(f"unknown conditioner {conditioner!r}; choose one of: {', '.join(builders)}")
        self.conditioner = builders[conditioner](in_dim, dim, hidden, self.element.num_params, **options)
        self.bias = nn.Parameter(torch.zeros(dim, self.element.num_params))

    @property
    def support(self):
        """Element support declared by the element family (``boolean`` or ``real``)."""
        return self.element.support

    def forward(self, features: torch.Tensor) -> AutoregressiveStep:
        return AutoregressiveStep(self.conditioner, self.element, features, self.dim, self.bias)

    def check_data(self, x: torch.Tensor, name: str = "x") -> None:
        """Reject data outside the elements' support (non-binary data for Bernoulli elements)."""
        self.element.check_data(x, name)

    def init_bias_from_mean(self, mean: torch.Tensor) -> None:
        """Start every element's conditional at the training mean (as the factorised heads do)."""
        with torch.no_grad():
            self.bias.copy_(self.element.bias_from_mean(mean.to(self.bias)))
