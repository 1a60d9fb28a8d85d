"""The elbo, iwae, mean-field, iwae-dreg and elbo-stl training objectives computed by the per-step engine.

Pyro's ``Trace_ELBO``, ``RenyiELBO(alpha=0)`` and ``TraceMeanField_ELBO`` over a model's
``model``/``guide`` are the reference. With ``compile`` set, :func:`make_objective` builds the
classes below instead: they run the model's per-step pieces through a particle filter that never
resamples (:func:`~pyrosequence.inference.particle_filter.run_filter` with
``ess_threshold = 0``), whose final log-weights are ``K`` independent importance weights
``log p(x, z_k) - log q(z_k | x)`` per sequence, and reduce them as the Pyro estimator does. The
step is compiled with ``torch.compile`` (:mod:`pyrosequence.inference.engine`), which is where the
speed comes from; run eagerly (``compile=None``) they are the same computation.

The lower-variance gradient estimators of :mod:`pyrosequence.inference.gradient_estimators`
(``DReGIWAE``, ``STLELBO``) are the reference of :class:`EngineDReGIWAE` and
:class:`EngineSTLELBO`: the same loss as :class:`EngineIWAE` / :class:`EngineELBO`, and the
gradient of their surrogates, whose held-fixed terms (``log p`` and ``log q`` with every draw
detached, the state recomputed from the detached draws) the filter computes beside the particles
in the same (compiled) step (:class:`~pyrosequence.inference.engine.HeldFixed`). A proposal
without ``rsample`` is refused in the eager estimators' one line, naming the site.

Equal to the reference's, under the same random draws (the filter draws ``z_t`` exactly as the vectorised
guide does): the loss, summed over the sequences of the batch as Pyro's is (not normalised per
step), and its gradients, for reparameterised proposals (the only ones the filter takes); KL
weighting with :func:`~pyrosequence.inference.scaling.scale_latents` (beta, annealing,
multi-rate), which multiplies the latent terms; continuation from a state (``initial``,
``start``), with :attr:`final_state` left with its particle dimension as the model leaves it.

A model the engine cannot drive trains with the Pyro reference instead, with a one-line
``RuntimeWarning`` (once per model) saying why: a plain Pyro program
(:class:`~pyrosequence.models.PyroProgram`), a model whose overridden ``model``/``guide`` the
pieces do not describe (or describe without training-only terms that are active, such as
Z-Forcing's auxiliary factor: :meth:`~pyrosequence.models.core.base.SequenceModel.pieces_match_training`),
a model and guide of two different models, or different latent scales on model and guide.
"""

from __future__ import annotations

import math
import warnings
import weakref
from typing import Callable

import torch

import pyro
from pyro.infer import ELBO

from pyrosequence.inference.engine import CompileOptions, HeldFixed, NotReparameterized
from pyrosequence.inference.gradient_estimators import dreg_surrogate, stl_surrogate, unreparameterized_site
from pyrosequence.inference.particle_filter import check_filter_options, run_filter
from pyrosequence.inference.resamplers import get_resampler
from pyrosequence.inference.scaling import unwrap_scaled
from pyrosequence.models.core.base import SequenceModel
from pyrosequence.models.core.capabilities import has_pieces

#: model -> why the engine left its training to the Pyro reference (warned once per model)
_WARNED: "weakref.WeakKeyDictionary[object, str]" = weakref.WeakKeyDictionary()


def engine_target(model: Callable, guide: Callable) -> tuple[SequenceModel | None, object, str | None]:
    """The :class:`SequenceModel` whose pieces the engine may run for this ``model``/``guide``
    pair and their latent scale, or ``(None, owner, reason)`` saying why it may not."""
    inner_model, model_scale = unwrap_scaled(model)
    inner_guide, guide_scale = unwrap_scaled(guide)
    owner = getattr(inner_model, "__self__", None)
    if not isinstance(owner, SequenceModel):
        what = type(owner).__name__ if owner is not None else repr(inner_model)
        return None, owner, f"{what} is not a SequenceModel with per-step pieces"
    if (
        getattr(inner_model, "__name__", None) != "model"
        or getattr(inner_guide, "__self__", None) is not owner
        or getattr(inner_guide, "__name__", None) != "guide"
    ):
        return None, owner, "the model and guide are not the model() and guide() methods of one SequenceModel"
    if not has_pieces(owner):
        return None, owner, "it overrides model() or guide() without overrides_match_pieces = True"
    if not owner.pieces_match_training():
        return None, owner, "its model() adds training-only terms the per-step pieces do not compute"
    if not (model_scale is guide_scale or bool(torch.all(torch.as_tensor(model_scale == guide_scale)))):
        return None, owner, "the model and guide carry different latent scales"
    return owner, model_scale, None


class EngineObjective(ELBO):
    """Base class of the engine's importance objectives (see the module docstring).

    A subclass sets :attr:`analytic_kl` and :meth:`bound`, the bound of the batch (summed over
    its sequences) from the ``(K, B)`` final log-weights; ``reference`` is the Pyro ELBO used for
    models the engine cannot drive.
    """

    #: The latent term of each step is ``-KL(q || p)`` in closed form (the mean-field ELBO).
    analytic_kl = False

    def __init__(self, num_particles: int, reference: ELBO, compile: CompileOptions | None) -> None:
        check_filter_options(num_particles, 0.0)
        if compile is not None and not isinstance(compile, CompileOptions):
            raise ValueError(f"compile must be None or CompileOptions (see compile_options), got {compile!r}")
        self.compile = compile
        self.reference = reference
        super().__init__(num_particles=num_particles, max_plate_nesting=1, vectorize_particles=True)

    def bound(self, log_w: torch.Tensor) -> torch.Tensor:
        """The estimator's bound of the whole batch (a 0-d tensor) from ``(K, B)`` log-weights."""
        raise NotImplementedError

    def _target(self, model, guide) -> tuple[SequenceModel | None, object]:
        seq_model, scale, reason = engine_target(model, guide)
        if seq_model is None:
            key = scale if isinstance(scale, torch.nn.Module) else model
            try:
                first = key not in _WARNED
                _WARNED[key] = reason
            except TypeError:  # not weakly referenceable: warn every time
                first = True
            if first:
                warnings.warn(
                    f"compile: {type(self).__name__} trains with {type(self.reference).__name__} (Pyro traces, eager) "
                    f"because {reason}; the objective is the same, only slower",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return seq_model, scale

    def _engine_loss(self, seq_model: SequenceModel, scale, x, lengths, initial, start: int) -> torch.Tensor:
        pyro.module(seq_model.pyro_name, seq_model)  # lets SVI find the parameters
        seqs = seq_model.prepare(x, lengths)
        log_w = run_filter(
            seq_model, seqs, self.num_particles, get_resampler("multinomial"), 0.0, scale, initial, start,
            compile=self.compile, analytic_kl=self.analytic_kl, keep_particles=True,
        )[1]
        return -self.bound(log_w)

    def differentiable_loss(self, model, guide, x, lengths=None, initial=None, start: int = 0) -> torch.Tensor:
        """The negative bound of the batch, differentiable (summed over sequences, as Pyro's)."""
        seq_model, scale = self._target(model, guide)
        if seq_model is None:
            return self.reference.differentiable_loss(model, guide, x, lengths, **_continuation(initial, start))
        return self._engine_loss(seq_model, scale, x, lengths, initial, start)

    def loss(self, model, guide, x, lengths=None, initial=None, start: int = 0) -> float:
        seq_model, scale = self._target(model, guide)
        if seq_model is None:
            return self.reference.loss(model, guide, x, lengths, **_continuation(initial, start))
        with torch.no_grad():
            return float(self._engine_loss(seq_model, scale, x, lengths, initial, start))

    def loss_and_grads(self, model, guide, x, lengths=None, initial=None, start: int = 0) -> float:
        seq_model, scale = self._target(model, guide)
        if seq_model is None:
            return self.reference.loss_and_grads(model, guide, x, lengths, **_continuation(initial, start))
        loss = self._engine_loss(seq_model, scale, x, lengths, initial, start)
        loss.backward()
        return float(loss.detach())

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError(f"{type(self).__name__} runs the model's per-step pieces, not Pyro traces")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_particles={self.num_particles}, compile={self.compile!r})"


def _continuation(initial, start: int) -> dict:
    """The keyword arguments a model/guide continuing a sequence takes (none for a fresh start)."""
    return {} if initial is None and start == 0 else {"initial": initial, "start": start}


class EngineELBO(EngineObjective):
    """The ELBO (Kingma & Welling, 2014) averaged over ``K`` particles, by the per-step engine:
    ``sum_b mean_k [log p(x_b, z_k) - log q(z_k | x_b)]``, the estimate ``Trace_ELBO`` computes
    (with ``vectorize_particles``), its gradient the reparameterised one."""

    def bound(self, log_w: torch.Tensor) -> torch.Tensor:
        return log_w.sum() / log_w.shape[0]


class EngineMeanFieldELBO(EngineELBO):
    """The ELBO with each step's KL term in closed form, ``E_q[log p(x | z)] - sum_t KL(q(z_t|.)
    || p(z_t|.))`` averaged over ``K`` particles, by the per-step engine: what
    ``TraceMeanField_ELBO`` computes (a sampled ``log p - log q`` where no closed form is
    registered). The KL of step ``t`` still depends on the sampled ``z_<t`` through the state."""

    analytic_kl = True


class EngineIWAE(EngineObjective):
    """The importance-weighted bound (Burda et al., ICLR 2016) by the per-step engine:
    ``sum_b [log (1/K) sum_k w_bk]`` with ``log w_bk = log p(x_b, z_k) - log q(z_k | x_b)``, per
    sequence, the estimate of ``RenyiELBO(alpha=0)`` (whose surrogate gradient is that of
    log-sum-exp for reparameterised proposals)."""

    def bound(self, log_w: torch.Tensor) -> torch.Tensor:
        return (log_w.logsumexp(0) - math.log(log_w.shape[0])).sum()


class _HeldFixedEstimator(EngineObjective):
    """Base of the engine's lower-variance gradient estimators (DReG, STL; see
    :mod:`pyrosequence.inference.gradient_estimators`): the filter also runs the held-fixed pass
    (:class:`~pyrosequence.inference.engine.HeldFixed`) when gradients are on, and the loss's
    gradient is that of :meth:`surrogate` while its value stays the negative bound."""

    #: the name in refusals (the objective's name in :data:`~pyrosequence.inference.OBJECTIVES`)
    objective_name = ""
    #: which held-fixed terms the surrogate needs: ``"guide"`` (log q) or ``"both"``
    held_fixed = "both"

    def surrogate(self, log_w: torch.Tensor, held: HeldFixed, scale) -> torch.Tensor:
        """A function of the ``(K, B)`` log-weights and the held-fixed terms whose gradient is
        the estimator's gradient of the bound."""
        raise NotImplementedError

    def _engine_loss(self, seq_model: SequenceModel, scale, x, lengths, initial, start: int) -> torch.Tensor:
        pyro.module(seq_model.pyro_name, seq_model)  # lets SVI find the parameters
        seqs = seq_model.prepare(x, lengths)
        passes = self.held_fixed if torch.is_grad_enabled() else "none"
        try:
            out = run_filter(
                seq_model, seqs, self.num_particles, get_resampler("multinomial"), 0.0, scale, initial, start,
                compile=self.compile, keep_particles=True, held_fixed=passes,
            )
        except NotReparameterized as error:
            name = f"{getattr(seq_model, 'latent_name', 'z')}_{error.t - start}"
            refusal = unreparameterized_site(self.objective_name, name, error.distribution)
            raise ValueError(refusal or str(error)) from None
        log_w = out[1]
        bound = self.bound(log_w)
        if passes == "none" or not log_w.requires_grad:
            return -bound
        surrogate = self.surrogate(log_w, out[2], scale)
        # the value of the bound, the gradient of the surrogate
        return -(bound.detach() + (surrogate - surrogate.detach()))


class EngineDReGIWAE(_HeldFixedEstimator, EngineIWAE):
    """The IWAE bound with the doubly reparameterised gradient (DReG) by the per-step engine:
    the loss of :class:`EngineIWAE` and the gradient of
    :class:`~pyrosequence.inference.gradient_estimators.DReGIWAE` (the same, under the same
    draws), from a held-fixed model and proposal pass run beside the particles."""

    objective_name = "iwae-dreg"
    held_fixed = "both"

    def surrogate(self, log_w: torch.Tensor, held: HeldFixed, scale) -> torch.Tensor:
        return dreg_surrogate(log_w, held.log_p, held.log_q, scale)


class EngineSTLELBO(_HeldFixedEstimator, EngineELBO):
    """The ELBO with the "sticking the landing" gradient (STL) by the per-step engine: the loss
    of :class:`EngineELBO` and the gradient of
    :class:`~pyrosequence.inference.gradient_estimators.STLELBO` (the same, under the same
    draws), from a held-fixed proposal pass run beside the particles."""

    objective_name = "elbo-stl"
    held_fixed = "guide"

    def surrogate(self, log_w: torch.Tensor, held: HeldFixed, scale) -> torch.Tensor:
        return stl_surrogate(log_w, held.log_q)
