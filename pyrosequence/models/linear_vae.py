r"""The two-layer linear VAE of the Multi-Rate VAE paper (Bae et al., ICLR 2023, section 3.2 and
appendix A) and its exact optimum at every KL weight."""

from __future__ import annotations

import math

import torch
from torch.distributions import constraints
from torch import nn

import pyro.distributions as dist

from pyrosequence.models.core.base import SequenceModel


class LinearVAE(SequenceModel):
    r"""Linear VAE with two-layer linear encoder, covariance and decoder (eq. 9), one step at a time.

    Every time step is an independent data point (the state carries nothing)::

        z_t        ~ N(0, I_k)
        x_t | z_t  ~ N(D2 D1 z_t + mu, sigma^2 I_d)
        q(z_t | x_t) = N(E2 E1 (x_t - mu), diag(c2 * c1))

    ``E1: d -> k``, ``E2, D1: k -> k``, ``D2: k -> d`` are bias-free ``nn.Linear`` layers and
    ``c1, c2`` are ``nn.Linear(1, k)`` layers read at the constant input 1 (the diagonal
    matrices ``C1, C2``), so :func:`~pyrosequence.models.multi_rate.multi_rate` gates every factor
    as Theorem 1 does (encoder gates on E1, E2, C1, C2; decoder gates on D1, D2). ``mu`` is the
    training mean (the global optimum for ``mu``, appendix A.1), set by :meth:`init_from_data`
    and stored in :attr:`input_offset`; ``sigma`` (``obs_scale``) is fixed, 1 in the paper.

    Differences from the paper: the covariance is ``|c2 * c1|`` (the paper leaves positivity
    implicit); sequences are a bag of i.i.d. steps, so the per-step losses of the library are the
    paper's per-data-point losses. :func:`linear_vae_optimum` gives the exact optimum and
    :meth:`exact_rate_distortion` the exact rate and distortion of the current parameters.

    Args:
        obs_scale: the fixed observation noise ``sigma`` (1 in the paper).
    """

    #: Constructor options that are sizes (positive integers; see pyrosequence.models.core.options).
    size_options = ()

    homogeneous_transition = True
    #: Gaussian observations: any real value (no distribution head to declare it).
    emission_support = constraints.real

    def __init__(self, x_dim: int, z_dim: int, obs_scale: float = 1.0, name: str | None = None) -> None:
        super().__init__(x_dim, z_dim, name=name)
        if not z_dim:
            raise ValueError("a linear VAE needs z_dim >= 1")
        if not (obs_scale > 0 and math.isfinite(obs_scale)):
            raise ValueError(f"obs_scale must be a positive finite number, got {obs_scale!r}")
        self.obs_scale = float(obs_scale)
        self.enc1 = nn.Linear(x_dim, z_dim, bias=False)
        self.enc2 = nn.Linear(z_dim, z_dim, bias=False)
        self.cov1 = nn.Linear(1, z_dim, bias=False)
        self.cov2 = nn.Linear(1, z_dim, bias=False)
        self.dec1 = nn.Linear(z_dim, z_dim, bias=False)
        self.dec2 = nn.Linear(z_dim, x_dim, bias=False)
        with torch.no_grad():
            self.cov1.weight.fill_(1.0)
            self.cov2.weight.fill_(1.0)
            self.enc2.weight.copy_(torch.eye(z_dim))
            self.dec1.weight.copy_(torch.eye(z_dim))

    def init_from_data(self, x: torch.Tensor, lengths: torch.Tensor | None = None, center: bool = True) -> None:
        """``mu`` = the training mean (the linear VAE always centres; ``center`` is ignored)."""
        super().init_from_data(x, lengths, center=True)

    # ------------------------------------------------------------------ per-step pieces
    def initial_state(self, batch_shape: torch.Size, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(tuple(batch_shape) + (1,))  # nothing is carried between steps

    def transition(self, state: torch.Tensor, t: int | None) -> dist.Distribution:
        loc = state.new_zeros(state.shape[:-1] + (self.z_dim,))
        return dist.Normal(loc, torch.ones_like(loc)).to_event(1)

    def variance(self) -> torch.Tensor:
        """The diagonal of ``C = C2 C1``, shape ``(z_dim,)``."""
        one = self.input_offset.new_ones(1)
        return (self.cov2(one) * self.cov1(one)).abs().clamp_min(1e-12)

    def proposal(self, state: torch.Tensor, t: int, centered_x: torch.Tensor) -> dist.Distribution:
        loc = self.enc2(self.enc1(centered_x))
        return dist.Normal(loc, self.variance().sqrt().expand_as(loc)).to_event(1)

    def emission(self, state: torch.Tensor, z: torch.Tensor) -> dist.Distribution:
        loc = self.dec2(self.dec1(z)) + self.input_offset
        return dist.Normal(loc, torch.full_like(loc, self.obs_scale)).to_event(1)

    def update(self, state: torch.Tensor, z: torch.Tensor, context_t, t: int) -> torch.Tensor:
        return state

    # ------------------------------------------------------------------ exact objective
    def exact_rate_distortion(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact mean rate ``E[KL(q(z|x) || p(z))]`` and distortion ``E_q[-log p(x|z)]`` per
        step (data point) of ``x`` under the current parameters (and gates), in closed form."""
        seqs = self.prepare(x, lengths)
        points = seqs.x if seqs.mask is None else seqs.x[seqs.mask]
        xc = self.centered(points.reshape(-1, self.x_dim))
        m = self.enc2(self.enc1(xc))
        var = self.variance()
        rate = 0.5 * (-var.log() + m.pow(2) + var - 1).sum(-1)
        columns = self.dec2(self.dec1(torch.eye(self.z_dim, dtype=xc.dtype, device=xc.device)))  # row j = D e_j
        squared = (xc - self.dec2(self.dec1(m))).pow(2).sum(-1) + (var[:, None] * columns.pow(2)).sum()
        s2 = self.obs_scale**2
        distortion = 0.5 * self.x_dim * math.log(2 * math.pi * s2) + squared / (2 * s2)
        return rate.mean(), distortion.mean()


def linear_vae_optimum(covariance: torch.Tensor, z_dim: int, beta: float, obs_scale: float = 1.0) -> dict[str, float]:
    r"""The global optimum of the beta-VAE objective of a linear VAE (appendix A.1, eq. 20-22).

    For data with covariance ``S`` (eigenvalues ``l_1 >= ... >= l_d``) and ``s2 = obs_scale^2``,
    the optimum ``D* = U (max(0, L - beta s2))^{1/2} R`` (eq. 22, in units of ``s2``) with
    ``E*, C*`` of eq. 20-21 gives, per data point and per latent mode ``i <= k``, a KL of
    ``log(l_i / (beta s2)) / 2`` if ``l_i > beta s2`` (else the mode is off: 0), and a residual
    variance ``min(l_i, beta s2)``; modes beyond ``k`` keep their variance ``l_i``::

        rate       = 1/2 sum_{i<=k} max(0, log(l_i / (beta s2)))
        distortion = d/2 log(2 pi s2) + 1/(2 s2) (sum_{i<=k} min(l_i, beta s2) + sum_{i>k} l_i)
        loss       = distortion + beta * rate

    At ``beta = 1`` the loss is the negative log-likelihood of probabilistic PCA with fixed
    noise ``s2`` (the posterior is then exact). Returns ``{"rate", "distortion", "loss"}``.
    """
    if not (beta > 0 and math.isfinite(beta)):
        raise ValueError(f"the KL weight beta must be a positive finite number, got {beta!r}")
    cov = torch.as_tensor(covariance, dtype=torch.float64)
    if cov.dim() != 2 or cov.shape[0] != cov.shape[1] or not torch.allclose(cov, cov.T):
        raise ValueError(f"covariance must be a symmetric square matrix, got shape {tuple(cov.shape)}")
    if not 1 <= z_dim <= cov.shape[0]:
        raise ValueError(f"z_dim must lie in [1, {cov.shape[0]}], got {z_dim}")
    eig = torch.linalg.eigvalsh(cov).flip(0).clamp_min(0.0)
    s2 = float(obs_scale) ** 2
    top, rest = eig[:z_dim], eig[z_dim:]
    threshold = beta * s2
    rate = 0.5 * torch.log(top.clamp_min(1e-300) / threshold).clamp_min(0.0).sum()
    residual = torch.minimum(top, torch.tensor(threshold, dtype=torch.float64)).sum() + rest.sum()
    distortion = 0.5 * cov.shape[0] * math.log(2 * math.pi * s2) + residual / (2 * s2)
    return {"rate": float(rate), "distortion": float(distortion), "loss": float(distortion + beta * rate)}
