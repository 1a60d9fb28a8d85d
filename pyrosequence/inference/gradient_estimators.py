r"""Lower-variance gradient estimators for reparameterised guides: DReG for IWAE, STL for the ELBO.

Both estimate the gradient of the same bound as the standard estimator (``RenyiELBO(alpha=0)``
and ``Trace_ELBO``); only the surrogate that is differentiated differs. Write the log weight of
particle ``k`` as ``log w_k = log p(x, z_k) - log q(z_k)`` with ``z_k = g(eps_k, psi)`` drawn by
reparameterisation, ``psi`` being *all* parameters (model and guide may share them, as VRNN's
feature extractors and recurrence are). Its total gradient splits into three parts::

    d log w_k = A_k + B_k - beta * C_k
    A_k = d_psi log p(x, z)  at z = z_k held fixed          (the model's direct term)
    B_k = d_z log w_k(z) . dz_k/dpsi                         (the path through the sample)
    C_k = d_psi log q(z)     at z = z_k held fixed, unscaled  (the score term, mean zero)

where ``beta`` is the scale of the guide's latent sites (1 normally; the KL weight under
:func:`~pyrosequence.inference.scaling.scale_latents`). The standard IWAE estimator is
``sum_k wt_k (A_k + B_k - beta C_k)`` with ``wt`` the normalised weights. Holding ``z`` fixed is
done by replaying the model and guide with the sampled values detached (one more pass of each):
its gradient is the direct term, with every input that depends on earlier ``z`` held fixed too.

* **DReG** (Tucker, Lawson, Gu, Maddison 2018, "Doubly reparameterized gradient estimators for
  Monte Carlo objectives"): since ``E[f(z) C] = E[d_z f . dz/dpsi]`` for a
  reparameterised ``q``, applied to ``f = wt_k`` (``d_z_k wt_k = (wt_k - wt_k^2) d_z log w_k``),
  the score term's expectation is ``beta * E[sum_k (wt_k - wt_k^2) B_k]`` and the estimator is
  ``sum_k wt_k A_k + sum_k ((1 - beta) wt_k + beta wt_k^2) B_k``: the IWAE gradient for the
  model's direct term, the squared weights on the path term (``beta = 1``: Tucker et al.'s
  estimator exactly). Its expectation is the IWAE bound's gradient.
* **STL** (Roeder, Wu, Duvenaud 2017, "Sticking the landing: simple, lower-variance gradient
  estimators for variational inference"): drop ``beta C_k`` (mean zero) from the ELBO's
  reparameterised gradient, i.e. ``mean_k (A_k + B_k)``. At the exact posterior ``log w`` is
  constant in ``z``, so the guide's gradient is exactly zero, where the standard estimator's
  is zero only on average.

Both need every latent site of the guide to be continuous and reparameterised (``rsample``);
any other site is refused in one line naming it. The classes here run Pyro traces (eagerly);
with ``compile``, :func:`~pyrosequence.inference.objectives.make_objective` builds
:class:`~pyrosequence.inference.engine_objectives.EngineDReGIWAE` and
:class:`~pyrosequence.inference.engine_objectives.EngineSTLELBO` instead, which compute the same
estimators from a model's per-step pieces in the compiled engine (the held-fixed pass runs
beside the particles: :class:`~pyrosequence.inference.engine.HeldFixed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pyro import poutine
from pyro.infer import ELBO
from pyro.infer.util import get_dependent_plate_dims, is_validation_enabled, torch_sum
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_model_guide_match, check_site_shape, warn_if_nan


@dataclass
class _ParticleTerms:
    """Per particle and sequence: ``log p(x, z)`` and ``log q(z)`` as sampled, and the same two
    with ``z`` held fixed (``None`` where not needed); ``beta`` is the guide sites' scale."""

    log_p: torch.Tensor
    log_q: torch.Tensor
    log_p_fixed: torch.Tensor | None
    log_q_fixed: torch.Tensor | None
    beta: float | torch.Tensor


def _latent_sites(trace):
    return [(name, site) for name, site in trace.nodes.items() if site["type"] == "sample" and not site["is_observed"]]


def unreparameterized_site(objective: str, name: str, fn) -> str | None:
    """The one-line refusal for guide site ``name`` drawn from ``fn`` when ``objective`` cannot
    differentiate through it (discrete, or no ``rsample``); ``None`` when it can."""
    if getattr(fn.support, "is_discrete", False):
        return f"{objective} needs reparameterised latents, but guide site {name!r} is discrete ({type(fn).__name__})"
    if not fn.has_rsample:
        return f"{objective} needs reparameterised latents, but guide site {name!r} ({type(fn).__name__}) has no rsample"
    return None


def refuse_unreparameterized(objective: str, model_trace, guide_trace) -> None:
    """Raise a one-line ``ValueError`` naming the first latent site that ``objective`` cannot
    differentiate through: a discrete or non-reparameterised guide site, or a model latent the
    guide does not sample."""
    for name, site in _latent_sites(guide_trace):
        fn = site["fn"]
        if type(fn).__name__ == "_Subsample":
            continue
        refusal = unreparameterized_site(objective, name, fn)
        if refusal is not None:
            raise ValueError(refusal)
    for name, site in _latent_sites(model_trace):
        if name not in guide_trace.nodes and type(site["fn"]).__name__ != "_Subsample":
            raise ValueError(f"{objective} needs every latent in the guide, but model site {name!r} is not sampled by the guide")


def _guide_scale(objective: str, guide_trace) -> float | torch.Tensor:
    """The scale shared by all latent sites of the guide (1.0 when there are none)."""
    beta, first = None, None
    for name, site in _latent_sites(guide_trace):
        scale = site["scale"]
        if beta is None:
            beta, first = scale, name
        elif not torch.equal(*torch.broadcast_tensors(torch.as_tensor(scale), torch.as_tensor(beta))):
            raise ValueError(
                f"{objective} needs one scale (KL weight) on all guide latents, but site {name!r} is scaled "
                f"differently from {first!r}"
            )
    return 1.0 if beta is None else beta


def _fixed_values(guide_trace):
    """A copy of ``guide_trace`` whose sample values are detached from the graph."""
    fixed = guide_trace.copy()
    for name, site in guide_trace.nodes.items():
        if site["type"] == "sample":
            fixed.nodes[name] = dict(site, value=site["value"].detach())
    return fixed


def _run(model, guide, args, kwargs, values=None):
    """Trace ``guide`` (replaying ``values`` if given), then ``model`` replaying the guide."""
    if values is not None:
        guide = poutine.replay(guide, trace=values)
    guide_trace = poutine.trace(guide, graph_type="flat").get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace), graph_type="flat").get_trace(*args, **kwargs)
    return model_trace, guide_trace


def _log_sums(trace, sum_dims) -> torch.Tensor | float:
    total = 0.0
    for site in trace.nodes.values():
        if site["type"] == "sample":
            total = total + torch_sum(site["log_prob"], sum_dims)
    return total


def _aligned(*values):
    """``values`` (tensors, floats for traces without sites, or None) as tensors of one shape."""
    tensors = [v for v in values if torch.is_tensor(v)]
    reference = tensors[0] if tensors else torch.zeros(())
    shape = torch.broadcast_shapes(*(t.shape for t in tensors)) if tensors else ()
    return [
        None if v is None else (v if torch.is_tensor(v) else reference.new_full((), v).detach()).expand(shape)
        for v in values
    ]


class _ReparameterizedEstimator(ELBO):
    """Shared machinery: sampled and held-fixed passes, per-particle log terms, checks."""

    #: objective name used in error messages
    objective_name = ""
    #: which held-fixed passes the surrogate needs: "none", "guide" or "both"
    fixed_passes = "both"

    def __init__(self, num_particles: int = 1, max_plate_nesting: float = float("inf"), vectorize_particles: bool = True):
        super().__init__(
            num_particles=num_particles, max_plate_nesting=max_plate_nesting, vectorize_particles=vectorize_particles
        )

    def _get_trace(self, model, guide, args, kwargs):
        raw_model, raw_guide = _run(model, guide, args, kwargs)
        validate = is_validation_enabled()
        if validate:
            check_model_guide_match(raw_model, raw_guide, self.max_plate_nesting)
        refuse_unreparameterized(self.objective_name, raw_model, raw_guide)
        model_trace, guide_trace = self._scored(raw_model, raw_guide, validate)
        sum_dims = get_dependent_plate_dims(model_trace.nodes.values())
        log_p, log_q = _log_sums(model_trace, sum_dims), _log_sums(guide_trace, sum_dims)
        beta = _guide_scale(self.objective_name, guide_trace)
        log_p_fixed = log_q_fixed = None
        if torch.is_grad_enabled() and self.fixed_passes != "none":
            values = _fixed_values(raw_guide)
            if self.fixed_passes == "guide":
                fixed_guide = poutine.trace(poutine.replay(guide, trace=values), graph_type="flat").get_trace(*args, **kwargs)
                fixed_guide = prune_subsample_sites(fixed_guide)
                fixed_guide.compute_log_prob()
                log_q_fixed = _log_sums(fixed_guide, sum_dims)
            else:
                fixed_model, fixed_guide = self._scored(*_run(model, guide, args, kwargs, values), False)
                log_p_fixed, log_q_fixed = _log_sums(fixed_model, sum_dims), _log_sums(fixed_guide, sum_dims)
        return _ParticleTerms(*_aligned(log_p, log_q, log_p_fixed, log_q_fixed), beta)

    def _scored(self, model_trace, guide_trace, validate):
        model_trace, guide_trace = prune_subsample_sites(model_trace), prune_subsample_sites(guide_trace)
        model_trace.compute_log_prob()
        guide_trace.compute_log_prob()
        if validate:
            for trace in (model_trace, guide_trace):
                for site in trace.nodes.values():
                    if site["type"] == "sample":
                        check_site_shape(site, self.max_plate_nesting)
        return model_trace, guide_trace

    def _particles(self, model, guide, args, kwargs) -> _ParticleTerms:
        """The terms of all particles stacked along dim 0: ``(num_particles, ...)``."""
        terms = list(self._get_traces(model, guide, args, kwargs))
        if self.vectorize_particles and self.num_particles > 1:
            return terms[0]

        def stack(field):
            values = [getattr(t, field) for t in terms]
            if values[0] is None:
                return None
            return torch.stack(torch.broadcast_tensors(*[torch.as_tensor(v) for v in values]))

        return _ParticleTerms(
            stack("log_p"), stack("log_q"), stack("log_p_fixed"), stack("log_q_fixed"), terms[0].beta
        )

    def _bound(self, log_w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _surrogate(self, terms: _ParticleTerms) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def loss(self, model, guide, *args, **kwargs) -> float:
        """The negative bound (the same number as the standard estimator's ``loss``)."""
        terms = self._particles(model, guide, args, kwargs)
        loss = -self._bound(torch.as_tensor(terms.log_p - terms.log_q)).item()
        warn_if_nan(loss, "loss")
        return loss

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """The negative bound; accumulates this estimator's gradient into the parameters' ``.grad``."""
        terms = self._particles(model, guide, args, kwargs)
        log_w = torch.as_tensor(terms.log_p - terms.log_q)
        loss = -self._bound(log_w.detach()).item()
        if log_w.requires_grad:
            (-self._surrogate(terms)).backward()
        warn_if_nan(loss, "loss")
        return loss


class DReGIWAE(_ReparameterizedEstimator):
    r"""The IWAE bound with the doubly reparameterised gradient estimator (DReG).

    Tucker, Lawson, Gu and Maddison (2018), "Doubly reparameterized gradient estimators for Monte
    Carlo objectives". Same bound and same loss value as ``RenyiELBO(alpha=0)`` (log of the mean
    of ``num_particles`` importance weights, per sequence, summed over the batch); the gradient's
    expectation is that bound's gradient for every parameter. The model's direct term keeps
    IWAE's weights ``wt_k``; the path term through the reparameterised sample gets
    ``(1 - beta) wt_k + beta wt_k^2`` (``wt_k^2`` when latents are unscaled), which removes the
    score term whose variance makes IWAE's inference-network gradient signal-to-noise ratio fall
    as ``num_particles`` grows (Rainforth et al. 2018). Costs one more model and guide pass.
    """

    objective_name = "iwae-dreg"
    fixed_passes = "both"

    def _bound(self, log_w: torch.Tensor) -> torch.Tensor:
        return (torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])).sum()

    def _surrogate(self, terms: _ParticleTerms) -> torch.Tensor:
        return dreg_surrogate(terms.log_p - terms.log_q, terms.log_p_fixed, terms.log_q_fixed, terms.beta)


class STLELBO(_ReparameterizedEstimator):
    r"""The ELBO with the "sticking the landing" gradient estimator (STL).

    Roeder, Wu and Duvenaud (2017), "Sticking the landing: simple, lower-variance gradient
    estimators for variational inference". Same bound and loss value as ``Trace_ELBO`` (the mean
    over ``num_particles`` of ``log p(x, z) - log q(z)``, summed over the batch); the gradient
    drops the score term ``d_psi log q(z)`` at the sampled ``z`` held fixed (mean zero), keeping
    the path through the reparameterised sample. Unbiased; at the exact posterior the guide's
    gradient is exactly zero. Costs one more guide pass.
    """

    objective_name = "elbo-stl"
    fixed_passes = "guide"

    def _bound(self, log_w: torch.Tensor) -> torch.Tensor:
        return log_w.sum() / log_w.shape[0]

    def _surrogate(self, terms: _ParticleTerms) -> torch.Tensor:
        return stl_surrogate(terms.log_p - terms.log_q, terms.log_q_fixed)


def dreg_surrogate(log_w: torch.Tensor, log_p_fixed: torch.Tensor, log_q_fixed: torch.Tensor,
                   beta: float | torch.Tensor) -> torch.Tensor:
    """DReG's surrogate from ``(K, ...)`` per-particle terms: the log-weights as sampled and
    ``log p(x, z)``, ``log q(z)`` with ``z`` held fixed (latent terms scaled by ``beta``). Its
    gradient is ``sum_k wt_k A_k + ((1 - beta) wt_k + beta wt_k^2) B_k`` (module docstring)."""
    weights = torch.softmax(log_w.detach(), dim=0)
    beta = torch.as_tensor(beta, dtype=weights.dtype, device=weights.device).detach()
    path_weights = (1.0 - beta) * weights + beta * weights**2
    # value 0: log w - log p(x, z fixed) + log q(z fixed); its gradient is the path term B
    path = log_w - log_p_fixed + log_q_fixed
    return (weights * log_p_fixed + path_weights * path).sum()


def stl_surrogate(log_w: torch.Tensor, log_q_fixed: torch.Tensor) -> torch.Tensor:
    """STL's surrogate from ``(K, ...)`` log-weights as sampled and ``log q(z)`` with ``z`` held
    fixed: the ELBO's gradient without the score term."""
    # + log q(z fixed): cancels the score term -beta C of the sampled log q
    return (log_w + log_q_fixed).sum() / log_w.shape[0]
