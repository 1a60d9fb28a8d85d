"""Conditional distribution heads: small modules mapping features to a Pyro distribution.

Every head returns a distribution whose ``event_shape`` is ``(dim,)`` and whose batch shape is the
features' leading shape, so the same head serves one time step, a stack of time steps, or a cloud
of particles. Every head declares the support of one output element as ``support`` (a
``torch.distributions.constraints`` object: ``boolean`` or ``real``); a model's
``emission_support`` is built from these declarations (:mod:`pyrosequence.nn.support`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import pyro.distributions as dist
from torch.distributions import constraints

from pyrosequence.nn.support import check_support


class DiagNormalHead(nn.Module):
    """``features -> Normal(loc, scale)`` with a diagonal covariance (``event_shape = (dim,)``).

    The scale is ``softplus(raw + scale_offset) + min_scale``; the floor keeps log-densities finite
    when a model becomes overconfident (the FIVO reference code uses the same kind of floor), and
    the offset (the FIVO code's ``raw_sigma_bias``, 0.25 there) starts scales away from zero.
    """

    #: Element support: any real value.
    support = constraints.real

    def __init__(self, in_dim: int, dim: int, min_scale: float = 1e-4, scale_offset: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.min_scale, self.scale_offset = min_scale, scale_offset
        self.params = nn.Linear(in_dim, 2 * dim)

    @property
    def linear(self) -> nn.Linear:
        """The layer producing the raw parameters (what :meth:`distribution` reads)."""
        return self.params

    def loc_scale(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loc, scale)`` from the raw output of :attr:`linear`."""
        loc, raw_scale = raw.split(self.dim, dim=-1)
        return loc, F.softplus(raw_scale + self.scale_offset) + self.min_scale

    def distribution(self, raw: torch.Tensor) -> dist.Distribution:
        return dist.Normal(*self.loc_scale(raw)).to_event(1)

    def forward(self, features: torch.Tensor) -> dist.Distribution:
        return self.distribution(self.params(features))

    @classmethod
    def check_data(cls, x: torch.Tensor, name: str = "x") -> None:
        """Reject ``x`` outside :attr:`support` (real heads accept any finite data; finiteness is
        checked by :func:`pyrosequence.data.checks.check_sequences`)."""
        check_support(x, cls.support, name)


class BernoulliHead(nn.Module):
    """``features -> Bernoulli(logits)`` over ``dim`` binary outputs (``event_shape = (dim,)``)."""

    #: Element support: 0 or 1.
    support = constraints.boolean

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.logits = nn.Linear(in_dim, dim)

    @property
    def linear(self) -> nn.Linear:
        """The layer producing the raw parameters (what :meth:`distribution` reads)."""
        return self.logits

    def distribution(self, raw: torch.Tensor) -> dist.Distribution:
        return dist.Bernoulli(logits=raw).to_event(1)

    def forward(self, features: torch.Tensor) -> dist.Distribution:
        return self.distribution(self.logits(features))

    def init_bias_from_mean(self, mean: torch.Tensor, eps: float = 1e-5) -> None:
        """Start the output at the data's marginal rates (logit of the training mean), as FIVO does."""
        with torch.no_grad():
            p = mean.clamp(eps, 1 - eps).to(self.logits.bias)
            self.logits.bias.copy_(torch.log(p) - torch.log1p(-p))

    @classmethod
    def check_data(cls, x: torch.Tensor, name: str = "x") -> None:
        """Reject data that is not 0/1: a Bernoulli emission has no density elsewhere."""
        check_support(x, cls.support, name)


class GaussianMixtureHead(nn.Module):
    """``features -> sum_k pi_k N(mu_k, diag sigma_k^2)``: a mixture of ``components`` diagonal
    Gaussians over ``dim`` outputs (``event_shape = (dim,)``), as the HyperLSTM baseline of the
    VHRNN paper uses for stock data (appendix G)."""

    def __init__(self, in_dim: int, dim: int, components: int = 5, min_scale: float = 1e-4) -> None:
        super().__init__()
        if components < 1:
            raise ValueError(f"a mixture needs at least one component, got {components}")
        self.dim, self.components, self.min_scale = dim, components, min_scale
        self.params = nn.Linear(in_dim, components * (1 + 2 * dim))

    #: Element support: any real value.
    support = constraints.real

    @property
    def linear(self) -> nn.Linear:
        """The layer producing the raw parameters (what :meth:`distribution` reads)."""
        return self.params

    def forward(self, features: torch.Tensor) -> dist.Distribution:
        return self.distribution(self.params(features))

    def distribution(self, out: torch.Tensor) -> dist.Distribution:
        k, d = self.components, self.dim
        logits, rest = out[..., :k], out[..., k:].reshape(out.shape[:-1] + (k, 2 * d))
        loc, raw_scale = rest.split(d, dim=-1)
        component = dist.Normal(loc, F.softplus(raw_scale) + self.min_scale).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(logits=logits), component)

    check_data = DiagNormalHead.__dict__["check_data"]


class DimMixtureHead(nn.Module):
    """``features -> prod_i sum_k pi_{ik} N(mu_{ik}, sigma_{ik}^2)``: every dimension its own
    ``components``-component Gaussian mixture, independent across dimensions given the features
    (``event_shape = (dim,)``), the factorised output F-RNN uses on speech (Dai et al. 2019,
    section 4)."""

    def __init__(self, in_dim: int, dim: int, components: int = 5, min_scale: float = 1e-4) -> None:
        super().__init__()
        if components < 1:
            raise ValueError(f"a mixture needs at least one component, got {components}")
        self.dim, self.components, self.min_scale = dim, components, min_scale
        self.params = nn.Linear(in_dim, dim * 3 * components)

    #: Element support: any real value.
    support = constraints.real

    @property
    def linear(self) -> nn.Linear:
        """The layer producing the raw parameters (what :meth:`distribution` reads)."""
        return self.params

    def forward(self, features: torch.Tensor) -> dist.Distribution:
        return self.distribution(self.params(features))

    def distribution(self, raw: torch.Tensor) -> dist.Distribution:
        k = self.components
        out = raw.reshape(raw.shape[:-1] + (self.dim, 3 * k))
        logits, loc, raw_scale = out.split(k, dim=-1)
        component = dist.Normal(loc, F.softplus(raw_scale) + self.min_scale)
        return dist.MixtureSameFamily(dist.Categorical(logits=logits), component).to_event(1)

    check_data = DiagNormalHead.__dict__["check_data"]


LIKELIHOODS: dict[str, type[nn.Module]] = {
    "bernoulli": BernoulliHead,
    "gaussian": DiagNormalHead,
    "mixture": GaussianMixtureHead,
    "dim-mixture": DimMixtureHead,
}

#: Output structures: ``"factorized"`` uses :data:`LIKELIHOODS` directly; the others generate a
#: step's elements in turn (:mod:`pyrosequence.nn.autoregressive`, Dai et al. 2019, eq. 13-14)
#: with a low-level RNN or a causally masked MLP, each element from the named likelihood family.
OUTPUTS: dict[str, str | None] = {"factorized": None, "hier-rnn": "rnn", "hier-made": "made"}


def make_likelihood(name: str, in_dim: int, x_dim: int, output: str = "factorized", **options) -> nn.Module:
    """Build the emission head called ``name`` (one of :data:`LIKELIHOODS`); ``options`` (such as
    ``components`` for the mixture) go to its constructor.

    ``output`` (one of :data:`OUTPUTS`) chooses the structure: ``"factorized"`` (the default) or
    an autoregressive head (``"hier-rnn"``, ``"hier-made"``) whose elements each follow ``name``
    (``"mixture"`` and ``"dim-mixture"`` become a per-element mixture); ``options`` then go to
    :class:`~pyrosequence.nn.autoregressive.AutoregressiveHead` (``hidden``, ``components``,
    ``cell``, ``position_dim``, ``layers``, ``order``, ``seed``).
    """
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; choose one of: {', '.join(OUTPUTS)}")
    if OUTPUTS[output] is not None:
        from pyrosequence.nn.autoregressive import AutoregressiveHead

        if name not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {name!r}; choose one of: {', '.join(sorted(LIKELIHOODS))}")
        return AutoregressiveHead(in_dim, x_dim, name, OUTPUTS[output], **options)
    try:
        cls = LIKELIHOODS[name]
    except KeyError:
        raise ValueError(
            f"unknown likelihood {name!r}; choose one of: {', '.join(sorted(LIKELIHOODS))}"
        ) from None
    return cls(in_dim, x_dim, **options)
