"""Resamplers: interchangeable functions ``log_weights (..., K) -> ancestor indices (..., K)``.

Each draws, independently for every leading index (one particle filter per sequence), K ancestor
indices whose counts are unbiased for ``K * w`` with ``w = softmax(log_weights)``. They differ in
variance: multinomial > residual, stratified > systematic (Douc, Cappe & Moulines, "Comparison of
resampling schemes for particle filtering", 2005). The indices are integers: no gradient flows
through the choice itself (see :class:`pyrosequence.inference.FIVO`).
"""

from __future__ import annotations

from typing import Callable

import torch

Resampler = Callable[..., torch.Tensor]


def _check_shape(log_weights: torch.Tensor) -> None:
    if log_weights.dim() < 1 or log_weights.shape[-1] < 1:
        raise ValueError(f"log_weights must have shape (..., K) with K >= 1, got {tuple(log_weights.shape)}")


def _flat_probs(log_weights: torch.Tensor) -> torch.Tensor:
    """Normalised weights as a float64 ``(filters, K)`` matrix (float64 keeps cumsums exact)."""
    _check_shape(log_weights)
    return torch.softmax(log_weights.detach().double(), dim=-1).reshape(-1, log_weights.shape[-1])


def _from_points(probs: torch.Tensor, points: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Ancestors by inverting the CDF of ``probs`` at sorted ``points`` in [0, 1)."""
    cdf = probs.cumsum(-1)
    cdf[:, -1] = 1.0  # guard against rounding: every point must land on a particle
    ancestors = torch.searchsorted(cdf, points, right=True).clamp_(max=probs.shape[-1] - 1)
    return ancestors.reshape(shape)


def multinomial(log_weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """K independent draws from the categorical distribution of the weights."""
    _check_shape(log_weights)
    probs = torch.softmax(log_weights.detach(), dim=-1).reshape(-1, log_weights.shape[-1])
    draws = torch.multinomial(probs, probs.shape[-1], replacement=True, generator=generator)
    return draws.reshape(log_weights.shape)


def stratified(log_weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One uniform draw in each of the K strata ``[k/K, (k+1)/K)``."""
    probs = _flat_probs(log_weights)
    n, k = probs.shape
    u = torch.rand(n, k, dtype=probs.dtype, device=probs.device, generator=generator)
    points = (torch.arange(k, dtype=probs.dtype, device=probs.device) + u) / k
    return _from_points(probs, points, log_weights.shape)


def systematic(log_weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One uniform draw shared by the K strata: points ``(k + u) / K``."""
    probs = _flat_probs(log_weights)
    n, k = probs.shape
    u = torch.rand(n, 1, dtype=probs.dtype, device=probs.device, generator=generator)
    points = (torch.arange(k, dtype=probs.dtype, device=probs.device) + u) / k
    return _from_points(probs, points, log_weights.shape)


def residual(log_weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``floor(K w_i)`` copies of each particle, the remaining ``R`` drawn multinomially.

    The remainder is drawn from the residual weights ``K w_i - floor(K w_i)`` (normalised).
    """
    probs = _flat_probs(log_weights)
    n, k = probs.shape
    expected = k * probs
    # The 1e-9 keeps an exact integer that rounding pushed just below itself (4 * 0.25 computed as
    # 0.99999999) at its value; the copies still sum to at most K since the expected counts sum to K.
    copies = (expected + 1e-9).floor().long()
    deterministic = copies.sum(-1, keepdim=True)
    slot = torch.arange(k, device=probs.device).repeat(n, 1)
    fixed = torch.searchsorted(copies.cumsum(-1), slot, right=True).clamp_(max=k - 1)
    rest = (expected - copies.to(expected.dtype)).clamp(min=0)
    empty = rest.sum(-1, keepdim=True) <= 0
    rest = torch.where(empty, torch.ones_like(rest), rest)  # those rows draw nothing anyway
    drawn = torch.multinomial(rest, k, replacement=True, generator=generator)
    from_rest = drawn.gather(-1, (slot - deterministic).clamp(min=0))
    return torch.where(slot < deterministic, fixed, from_rest).reshape(log_weights.shape)


RESAMPLERS: dict[str, Resampler] = {
    "multinomial": multinomial,
    "systematic": systematic,
    "stratified": stratified,
    "residual": residual,
}


def get_resampler(name_or_fn: str | Resampler) -> Resampler:
    """A resampler by name (see :data:`RESAMPLERS`), or a user function passed through."""
    if callable(name_or_fn):
        return name_or_fn
    try:
        return RESAMPLERS[name_or_fn]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown resampler {name_or_fn!r}; choose one of: {', '.join(sorted(RESAMPLERS))}"
        ) from None
