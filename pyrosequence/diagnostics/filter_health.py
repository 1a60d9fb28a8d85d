"""Health of the particle filter over time: effective sample size and resampling events."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FilterHealth:
    """The filter behind an InferenceData's predictive draws, step by step (``B`` sequences, ``T`` steps).

    Attributes:
        num_particles: K.
        ess: ``(B, T)`` effective sample size ``1 / sum_k w_k^2`` after each step's reweighting
            (NaN beyond a sequence's length).
        resampled: ``(B, T)`` 1.0 where the filter resampled after the step, NaN beyond a length.
        mean_ess: ``(T,)`` ESS averaged over the sequences that reach each step.
        min_ess: ``(T,)`` the smallest ESS at each step.
        resample_rate: ``(T,)`` fraction of the sequences that resampled after each step.
        resamples_per_sequence: ``(B,)`` resampling events of each sequence.
    """

    num_particles: int
    ess: np.ndarray
    resampled: np.ndarray
    mean_ess: np.ndarray
    min_ess: np.ndarray
    resample_rate: np.ndarray
    resamples_per_sequence: np.ndarray


def filter_health(idata) -> FilterHealth:
    """Summarise the ``filter_stats`` group of an InferenceData made by
    :func:`~pyrosequence.diagnostics.inference_data.to_inference_data`."""
    if "filter_stats" not in idata.groups():
        program = idata.posterior_predictive.attrs.get("program") if "posterior_predictive" in idata.groups() else None
        if program:  # made from a plain Pyro program: no particle filter ran
            from pyrosequence.models.core.capabilities import pieces_error

            raise pieces_error(None, "filter health", name=str(program))
        raise ValueError("the InferenceData has no filter_stats group (make it with pyrosequence.diagnostics.to_inference_data)")
    stats = idata.filter_stats
    ess = stats["ess"].transpose("sequence", "time").values
    resampled = stats["resampled"].transpose("sequence", "time").values
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps no sequence reaches are NaN
        return FilterHealth(
            num_particles=int(stats.attrs["num_particles"]),
            ess=ess,
            resampled=resampled,
            mean_ess=np.nanmean(ess, axis=0),
            min_ess=np.nanmin(ess, axis=0),
            resample_rate=np.nanmean(resampled, axis=0),
            resamples_per_sequence=np.nansum(resampled, axis=1),
        )
