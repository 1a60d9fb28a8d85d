"""Missing values: emission log-densities masked per element.

NaN in the observations means "not observed" (:func:`pyrosequence.data.checks.check_sequences`
zero-fills those elements and records :attr:`~pyrosequence.data.checks.Sequences.observed`).
Every log-density of ``x`` in the library, the Pyro ``model``'s observation site and the weight
increments of the particle filter (FIVO, and the compiled IWAE/ELBO), goes through
:func:`mask_elements`, so a missing element contributes nothing, whatever value stands in for
it, and the bound is one of the observed elements only:

* a factorised emission (``Independent`` over one distribution per element: Bernoulli,
  Gaussian, the per-dimension mixture) has its per-element log-densities summed over the
  observed elements only (the exact marginal of the observed elements);
* a Gaussian mixture over the whole vector (``MixtureSameFamily`` whose components are
  factorised) is marginalised exactly: ``log sum_k pi_k prod_{d observed} N(x_d; mu_kd, s_kd)``;
* a distribution may provide ``mask_elements(observed)`` itself (a user's emission);
* anything else (the autoregressive outputs ``hier-rnn``, ``hier-made``, the flat RNN, where an
  element conditions the next ones) can only drop whole steps: a step with some but not all of
  its elements observed is refused by :meth:`SequenceModel.prepare
  <pyrosequence.models.core.base.SequenceModel.prepare>` with a message naming it
  (:func:`can_mask_elements` tells which is which).
"""

from __future__ import annotations

import torch
import torch.distributions as tdist

import pyro.distributions as dist
from pyro.distributions.util import broadcast_shape


def _independent_elements(d) -> bool:
    return isinstance(d, tdist.Independent) and d.reinterpreted_batch_ndims == 1 and not d.base_dist.event_shape


def _factorised_mixture(d) -> bool:
    return (isinstance(d, tdist.MixtureSameFamily) and len(d.event_shape) == 1
            and _independent_elements(d.component_distribution))


def can_mask_elements(d) -> bool:
    """Whether :func:`mask_elements` can score ``d`` on part of a step's elements."""
    return callable(getattr(d, "mask_elements", None)) or _independent_elements(d) or _factorised_mixture(d)


class ObservedMixture(dist.TorchDistribution):
    """A mixture of factorised components scored on the observed elements only: the exact
    marginal ``log sum_k pi_k prod_{d: observed} p_k(x_d)``. Sampling draws every element."""

    arg_constraints = {}

    def __init__(self, mixture: tdist.MixtureSameFamily, observed: torch.Tensor) -> None:
        self.mixture = mixture
        self.observed = observed
        batch_shape = torch.Size(broadcast_shape(mixture.batch_shape, observed.shape[:-1]))
        super().__init__(batch_shape, mixture.event_shape, validate_args=False)

    @property
    def support(self):
        return self.mixture.support

    def sample(self, sample_shape=torch.Size()):
        return self.mixture.sample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        components = self.mixture.component_distribution.base_dist
        elements = components.log_prob(value.unsqueeze(-2))  # (..., K, D)
        elements = torch.where(self.observed.unsqueeze(-2), elements, elements.new_zeros(()))
        mixing = self.mixture.mixture_distribution.logits.log_softmax(-1)
        return (elements.sum(-1) + mixing).logsumexp(-1)


def mask_elements(d: tdist.Distribution, observed: torch.Tensor | None) -> tdist.Distribution:
    """``d`` (event shape ``(x_dim,)``) scoring only the elements where ``observed`` is True.

    ``observed`` broadcasts to ``d``'s batch shape plus the event, e.g. ``(B, T, x_dim)`` against a
    batch ``(K, B, T)``; ``None`` returns ``d`` unchanged (nothing missing: today's path). The
    missing elements' log-densities are replaced by zero with ``torch.where``, so neither their
    values nor their gradients reach the result (the values must still be finite: the data
    check zero-fills them). A distribution :func:`can_mask_elements` refuses is scored on the
    whole steps that are entirely observed (``prepare`` has already refused partial steps).
    """
    if observed is None:
        return d
    own = getattr(d, "mask_elements", None)
    if callable(own):
        return own(observed)
    if _independent_elements(d):
        return dist.Independent(dist.MaskedDistribution(d.base_dist, observed), 1)
    if _factorised_mixture(d):
        return ObservedMixture(d, observed)
    return dist.MaskedDistribution(d, observed.all(-1))


def partial_step(observed: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[int, int] | None:
    """``(sequence, step)`` of the first step with some but not all elements observed (within the
    lengths when ``mask`` is given), or ``None``."""
    partial = observed.any(-1) & ~observed.all(-1)
    if mask is not None:
        partial = partial & mask
    if not bool(partial.any()):
        return None
    b, t = (int(i) for i in partial.nonzero()[0])
    return b, t
