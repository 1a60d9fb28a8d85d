r"""Rate and distortion of a sequence model, and rate-distortion curves (Alemi et al. 2018; the
Multi-Rate VAE paper, Bae et al. ICLR 2023, eq. 2-3).

For sequences ``x`` and the model's guide ``q``, per time step (summed over steps and sequences,
divided by the number of steps)::

    rate       R = E_q[ sum_t KL(q(z_t | s_{t-1}, x) || p(z_t | s_{t-1})) ]
    distortion D = E_q[ -log p(x | z) ] = E_q[ -sum_t log p(x_t | s_{t-1}, z_t) ]

so the beta-VAE loss is ``D + beta R`` (eq. 3) and ``D + R`` is the negative ELBO. The outer
expectation over the guide's trajectory ``z_{<t}`` is a Monte Carlo average over ``num_samples``
draws; each step's KL is analytic where PyTorch knows it (as ``TraceMeanField_ELBO`` computes it),
else the one-draw estimate ``log q(z_t) - log p(z_t)``.

For a multi-rate model (:func:`~pyrosequence.models.multi_rate.multi_rate`) :func:`rd_curve`
evaluates both at each beta of a list from one trained model. The tables and plots of the points
are in :mod:`pyrosequence.diagnostics.rate_distortion_report`.
"""

from __future__ import annotations

import importlib
import math
import warnings
from dataclasses import dataclass

import torch
from torch.distributions import kl_divergence

import pyro.poutine as poutine
from pyro.poutine.util import site_is_subsample

from pyrosequence.data.checks import Sequences
from pyrosequence.models.core.base import SequenceModel
from pyrosequence.models.core.capabilities import is_multi_rate
from pyrosequence.models.multi_rate import beta_range, get_beta, set_beta
from pyrosequence.nn.beta_gate import check_beta


@dataclass(frozen=True)
class RDPoint:
    """Rate and distortion per time step of one model at one KL weight ``beta``."""

    label: str
    kind: str  # "multi-rate" or "beta-VAE"
    beta: float
    rate: float
    distortion: float
    num_steps: int
    num_samples: int
    analytic_kl: bool

    @property
    def loss(self) -> float:
        """The beta-VAE loss per step, ``D + beta R``."""
        return self.distortion + self.beta * self.rate

    @property
    def neg_elbo(self) -> float:
        return self.distortion + self.rate


def rate_distortion_sums(model: SequenceModel, x: torch.Tensor, lengths=None, analytic: bool = True) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """One draw of the guide: ``(sum of KLs, sum of -log p(x|z), all KLs analytic)`` over the batch.

    The guide runs first and the model replays it, exactly as Pyro's ELBOs do, so under the same
    random seed the draw is the one ``Trace_ELBO``/``TraceMeanField_ELBO`` would make.
    """
    guide_trace = poutine.trace(model.guide).get_trace(x, lengths)
    model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x, lengths)
    rate = distortion = x.new_zeros(())
    all_analytic = True
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site["is_observed"]:
            distortion = distortion - site["fn"].log_prob(site["value"]).sum()
            continue
        guide_site = guide_trace.nodes[name]
        kl = None
        if analytic:
            try:
                kl = kl_divergence(guide_site["fn"], site["fn"])
            except NotImplementedError:
                kl = None
        if kl is None:
            all_analytic = False
            kl = guide_site["fn"].log_prob(guide_site["value"]) - site["fn"].log_prob(site["value"])
        mask = site["mask"] if site["mask"] is not None else guide_site["mask"]
        if mask is not None:
            kl = kl * mask
        rate = rate + kl.sum()
    return rate, distortion, all_analytic


def rate_distortion(
    model: SequenceModel,
    x: torch.Tensor,
    lengths=None,
    num_samples: int = 1,
    analytic: bool = True,
    batch_size: int = 256,
) -> tuple[float, float, bool]:
    """Rate and distortion per time step of ``model`` on ``(x, lengths)`` (see the module
    docstring), averaged over ``num_samples`` guide draws; returns ``(rate, distortion, analytic)``
    where ``analytic`` says whether every step's KL was computed in closed form."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    seqs = model.prepare(x, lengths)
    rate = distortion = 0.0
    all_analytic = True
    with torch.no_grad():
        for start in range(0, seqs.batch_size, batch_size):
            rows = slice(start, start + batch_size)
            part = seqs.rows(rows)
            for _ in range(num_samples):
                r, d, a = rate_distortion_sums(model, part.x, part.lengths, analytic)
                rate, distortion, all_analytic = rate + float(r), distortion + float(d), all_analytic and a
    steps = int(seqs.lengths.sum())
    return rate / (num_samples * steps), distortion / (num_samples * steps), all_analytic


def rd_curve(
    model: SequenceModel,
    x: torch.Tensor,
    lengths=None,
    betas=None,
    num_samples: int = 1,
    analytic: bool = True,
    label: str = "model",
    beta: float | None = None,
) -> list[RDPoint]:
    """Rate-distortion points of ``model`` on ``(x, lengths)``.

    A multi-rate model is evaluated at each of ``betas`` (default: 10 log-spaced values over its
    training range), its gates set to each in turn (and restored afterwards). Any other model
    gives one point, labelled with the ``beta`` it was trained with.
    """
    steps = int(model.prepare(x, lengths).lengths.sum())
    if not is_multi_rate(model):
        r, d, a = rate_distortion(model, x, lengths, num_samples, analytic)
        return [RDPoint(label, "beta-VAE", check_beta(1.0 if beta is None else beta), r, d, steps, num_samples, a)]
    if betas is None:
        lo, hi = (math.log(v) for v in beta_range(model))
        betas = [math.exp(lo + (hi - lo) * i / 9) for i in range(10)]
    betas = [check_beta(b) for b in betas]
    if not betas:
        raise ValueError("rd_curve needs at least one beta")
    previous, points = get_beta(model), []
    try:
        for b in betas:
            set_beta(model, b)
            r, d, a = rate_distortion(model, x, lengths, num_samples, analytic)
            points.append(RDPoint(label, "multi-rate", b, r, d, steps, num_samples, a))
    finally:
        set_beta(model, previous)
    return points


# The tables and plots moved to pyrosequence.diagnostics.rate_distortion_report; their old names
# here still work, with a DeprecationWarning, for one release. Imported on first use only, so that
# inference never imports diagnostics (which imports inference) at import time.
_MOVED = ("COLUMNS", "to_csv", "to_markdown", "to_json", "plot_rd")
_MOVED_TO = "pyrosequence.diagnostics.rate_distortion_report"


def __getattr__(name: str):
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"{__name__}.{name} moved to {_MOVED_TO}.{name}; the old name will be removed in the next release",
                  DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(_MOVED_TO), name)
