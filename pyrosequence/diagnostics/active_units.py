"""Active latent units (Burda, Grosse and Salakhutdinov, "Importance Weighted Autoencoders", 2016, section 5.2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Burda et al.'s threshold on the activity statistic.
ACTIVITY_THRESHOLD = 0.01


@dataclass(frozen=True)
class ActiveUnits:
    """Which latent dimensions carry information about the data.

    Burda et al. call unit ``u`` active when ``A_u = Cov_x(E_{q(z | x)}[z_u]) > 0.01``: the
    posterior mean of the unit moves with the data point. For a sequence model the data points
    are the (sequence, step) pairs: ``E_q[z_{t,u}]`` is estimated per step of each sequence by
    the mean of the guide's draws, and its variance is taken over all valid (sequence, step)
    pairs. The Monte Carlo mean adds about ``Var_q(z_u) / num_draws`` to ``A_u``; use enough draws
    that this is well below the threshold.

    Attributes:
        activity: ``(Z,)`` ``A_u``.
        active: ``(Z,)`` bool, ``activity > threshold``.
        threshold: the threshold used.
    """

    activity: np.ndarray
    active: np.ndarray
    threshold: float

    @property
    def num_active(self) -> int:
        return int(self.active.sum())


def active_units(idata, threshold: float = ACTIVITY_THRESHOLD) -> ActiveUnits:
    """Active units of the ``posterior`` group (``z``) of an InferenceData made by
    :func:`~pyrosequence.diagnostics.inference_data.to_inference_data` (best with ``latents="guide"``,
    the variational posterior ``q(z | x)`` that the definition refers to)."""
    if "posterior" not in idata.groups() or "z" not in idata.posterior:
        raise ValueError("the InferenceData has no posterior.z: the model has no latent variables")
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold!r}")
    z = idata.posterior["z"].transpose("chain", "draw", "sequence", "time", "latent").values
    posterior_mean = z.mean(axis=(0, 1)).reshape(-1, z.shape[-1])  # ((sequence, time), Z)
    points = posterior_mean[~np.isnan(posterior_mean).any(-1)]
    if len(points) < 2:
        raise ValueError("active units need at least two valid (sequence, step) pairs")
    activity = points.var(axis=0, ddof=1)
    return ActiveUnits(activity=activity, active=activity > threshold, threshold=float(threshold))
