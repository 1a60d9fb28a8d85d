r"""Training a Multi-Rate VAE: the KL weight drawn log-uniformly at every update (Bae et al.,
ICLR 2023, eq. 10 and Algorithm 1).

The training loop asks a schedule ``schedule(step) -> beta`` for the KL weight of each update and
(i) scales the latent sites of model and guide by it with
:func:`~pyrosequence.inference.scaling.scale_latents` and (ii) hands it to the multi-rate model's
gates (``model.beta_conditioner.set_beta``). With :class:`LogUniformBeta` as the schedule, the
expected loss over updates is the paper's objective ``E_{log beta ~ U[log a, log b]} L_beta``.

What beta means for each objective (all see the same scaled latent sites):

* ``elbo`` / ``mean-field``: ``E_q[-log p(x|z)] + beta KL(q || p)``, the beta-VAE objective
  (mean-field evaluates the KL of each step analytically; the scale is applied to it).
* ``iwae``: ``-log (1/K) sum_k p(x|z_k) (p(z_k) / q(z_k|x))^beta``, a "beta-IWAE": the latent
  log-ratio of every importance weight is tempered by beta. It is the IWAE bound at beta = 1
  and, with K = 1, the beta-VAE loss; for K > 1 and beta != 1 it is a heuristic, not a bound
  and not ``D + beta R``.
* ``fivo``: the particle filter multiplies the latent terms ``log p(z_t|.) - log q(z_t|.)`` of
  every incremental weight by beta (``particle_filter(latent_scale=...)``, which FIVO reads from
  the ``scale_latents`` wrappers); resampling then uses the tempered weights too. Again a
  heuristic ("beta-FIVO") except at beta = 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pyrosequence.nn.beta_gate import DEFAULT_BETA_RANGE, check_beta_range


@dataclass(frozen=True)
class LogUniformBeta:
    """``beta = exp(eta)``, ``eta ~ U[log a, log b]``, drawn afresh for every update.

    The draw depends only on ``(seed, step)`` (its own generator, not the global RNG), so a
    resumed run sees the same betas and the training draws are not perturbed.
    """

    a: float = DEFAULT_BETA_RANGE[0]
    b: float = DEFAULT_BETA_RANGE[1]
    seed: int = 0

    def __post_init__(self) -> None:
        check_beta_range((self.a, self.b))

    def __call__(self, step: int) -> float:
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + 7919 * int(step)) % (2**63 - 1))
        u = float(torch.rand((), generator=generator, dtype=torch.float64))
        return math.exp(math.log(self.a) + u * (math.log(self.b) - math.log(self.a)))
