"""KL weighting: ``poutine.scale`` restricted to latent sites, and the schedules that drive it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from pyro.poutine.scale_messenger import ScaleMessenger


class LatentScaleMessenger(ScaleMessenger):
    """``poutine.scale`` that touches only latent (unobserved) sample sites.

    Applied to both the model and the guide, it multiplies every ``log p(z_t | .)`` and
    ``log q(z_t | .)`` term by ``scale``, so the ELBO becomes ``E[log p(x|z)] - scale * KL``: the
    beta-VAE objective, KL annealing, and (with a tensor ``scale`` broadcasting over the
    sequence plate) one beta per sequence. Analytic-KL estimators such as
    ``TraceMeanField_ELBO`` read the guide site's scale, so they see the same weighting.
    """

    def _process_message(self, msg) -> None:
        if msg["type"] == "sample" and not msg["is_observed"]:
            super()._process_message(msg)


class ScaledLatents:
    """A model or guide whose latent sites are scaled by ``scale`` (see :func:`scale_latents`).

    Calling it runs ``fn`` under :class:`LatentScaleMessenger`; ``fn`` and ``scale`` stay visible
    so estimators that drive a model's steps directly (``FIVO``) can apply the same weighting.
    """

    def __init__(self, fn: Callable, scale: float | torch.Tensor) -> None:
        self.fn = fn
        self.scale = scale

    def __call__(self, *args, **kwargs):
        with LatentScaleMessenger(self.scale):
            return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"scale_latents({self.fn!r}, {self.scale!r})"


def scale_latents(fn: Callable, scale: float | torch.Tensor) -> ScaledLatents:
    """Wrap a model or guide so its latent sites are scaled by ``scale`` (a float or tensor)."""
    if not torch.is_tensor(scale) and not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"the KL weight must be a positive finite number, got {scale}")
    return ScaledLatents(fn, scale)


def unwrap_scaled(fn: Callable) -> tuple[Callable, float | torch.Tensor]:
    """Peel :class:`ScaledLatents` layers off ``fn``; returns the inner callable and total scale."""
    scale = 1.0
    while isinstance(fn, ScaledLatents):
        scale = scale * fn.scale
        fn = fn.fn
    return fn, scale


@dataclass(frozen=True)
class ConstantBeta:
    """A fixed KL weight ``beta`` (the beta-VAE objective; ``beta=1`` is the plain ELBO)."""

    beta: float = 1.0

    def __post_init__(self) -> None:
        if not (self.beta > 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta must be a positive finite number, got {self.beta}")

    def __call__(self, step: int) -> float:
        return self.beta


@dataclass(frozen=True)
class KLAnnealing:
    """Linear KL annealing: ``min(end, start + increment * step)`` times ``beta``.

    The defaults are the schedule of Goyal et al. (Z-Forcing, section 4) and Dai et al.
    (appendix C): the weight starts at 0.2 and grows by 5e-5 per update until it reaches 1.
    """

    start: float = 0.2
    increment: float = 5e-5
    end: float = 1.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        if not (0 < self.start <= self.end) or self.increment < 0 or not self.beta > 0:
            raise ValueError(
                f"KL annealing needs 0 < start <= end, increment >= 0 and beta > 0; got {self}"
            )

    def __call__(self, step: int) -> float:
        return self.beta * min(self.end, self.start + self.increment * step)
