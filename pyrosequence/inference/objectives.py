"""Training objectives by name: each entry builds a ``pyro.infer.ELBO`` from a particle count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pyro.infer import ELBO, RenyiELBO, Trace_ELBO, TraceMeanField_ELBO

from pyrosequence.inference.engine import CompileOptions, compile_options
from pyrosequence.inference.engine_objectives import (
    EngineDReGIWAE, EngineELBO, EngineIWAE, EngineMeanFieldELBO, EngineObjective, EngineSTLELBO,
)
from pyrosequence.inference.fivo import FIVO
from pyrosequence.inference.gradient_estimators import DReGIWAE, STLELBO
from pyrosequence.inference.resamplers import Resampler

#: Nesting of plates in every SequenceModel (the sequence plate); the particle plate goes left of it.
MAX_PLATE_NESTING = 1


@dataclass(frozen=True)
class ObjectiveOptions:
    """Settings an objective may use: Pyro's ELBOs read ``vectorize_particles``, FIVO the rest."""

    vectorize_particles: bool = True
    resampler: str | Resampler = "multinomial"
    ess_threshold: float = 0.5
    #: Run the objective through the compiled per-step engine (:mod:`pyrosequence.inference.engine`):
    #: FIVO's filter step, or the engine's elbo/iwae/mean-field/iwae-dreg/elbo-stl (:mod:`.engine_objectives`).
    compile: bool | str | CompileOptions = False


def _through_engine(engine: type[EngineObjective], reference: ELBO, num_particles: int, options: ObjectiveOptions) -> ELBO:
    """``reference`` (a Pyro ELBO), or with ``options.compile`` the ``engine`` objective computing
    the same estimate from the model's per-step pieces (falling back to ``reference`` for a model
    without them)."""
    compiled = compile_options(options.compile)
    return reference if compiled is None else engine(num_particles, reference, compiled)


def _elbo(num_particles: int, options: ObjectiveOptions) -> ELBO:
    """Pyro's Trace_ELBO (the mean of K one-sample ELBOs)."""
    reference = Trace_ELBO(
        num_particles=num_particles, vectorize_particles=options.vectorize_particles, max_plate_nesting=MAX_PLATE_NESTING
    )
    return _through_engine(EngineELBO, reference, num_particles, options)


def _mean_field(num_particles: int, options: ObjectiveOptions) -> ELBO:
    """Pyro's TraceMeanField_ELBO (analytic KL per step)."""
    reference = TraceMeanField_ELBO(
        num_particles=num_particles, vectorize_particles=options.vectorize_particles, max_plate_nesting=MAX_PLATE_NESTING
    )
    return _through_engine(EngineMeanFieldELBO, reference, num_particles, options)


def _iwae(num_particles: int, options: ObjectiveOptions) -> ELBO:
    """The importance-weighted bound, Pyro's RenyiELBO with alpha 0 (Burda et al. 2016)."""
    reference = RenyiELBO(
        alpha=0.0,
        num_particles=num_particles,
        vectorize_particles=options.vectorize_particles,
        max_plate_nesting=MAX_PLATE_NESTING,
    )
    return _through_engine(EngineIWAE, reference, num_particles, options)


def _iwae_dreg(num_particles: int, options: ObjectiveOptions) -> ELBO:
    """The IWAE bound with doubly reparameterised guide gradients (Tucker et al. 2018)."""
    reference = DReGIWAE(num_particles, max_plate_nesting=MAX_PLATE_NESTING, vectorize_particles=options.vectorize_particles)
    return _through_engine(EngineDReGIWAE, reference, num_particles, options)


def _elbo_stl(num_particles: int, options: ObjectiveOptions) -> ELBO:
    """The ELBO with sticking-the-landing guide gradients (Roeder et al. 2017)."""
    reference = STLELBO(num_particles, max_plate_nesting=MAX_PLATE_NESTING, vectorize_particles=options.vectorize_particles)
    return _through_engine(EngineSTLELBO, reference, num_particles, options)


def _fivo(num_particles: int, options: ObjectiveOptions) -> ELBO:
    """The filtering variational objective, a particle filter's log-likelihood estimate (Maddison et al. 2017)."""
    return FIVO(num_particles, options.resampler, options.ess_threshold, compile=options.compile)


#: name -> factory(num_particles, ObjectiveOptions) -> pyro.infer.ELBO
OBJECTIVES: dict[str, Callable[[int, ObjectiveOptions], ELBO]] = {
    "elbo": _elbo,
    "mean-field": _mean_field,
    "iwae": _iwae,
    "iwae-dreg": _iwae_dreg,
    "elbo-stl": _elbo_stl,
    "fivo": _fivo,
}


def make_objective(
    name: str,
    num_particles: int = 1,
    vectorize_particles: bool = True,
    resampler: str | Resampler = "multinomial",
    ess_threshold: float = 0.5,
    compile: bool | str | CompileOptions = False,
) -> ELBO:
    """Build the objective called ``name`` (see :data:`OBJECTIVES`).

    ``"elbo"`` is ``Trace_ELBO``; ``"mean-field"`` is ``TraceMeanField_ELBO`` (analytic KL per
    step); ``"iwae"`` is ``RenyiELBO(alpha=0)``, the importance-weighted bound of Burda et al.;
    ``"fivo"`` is :class:`~pyrosequence.inference.FIVO` with ``resampler`` and ``ess_threshold``.
    ``compile`` (``True``, a ``torch.compile`` mode or
    :class:`~pyrosequence.inference.engine.CompileOptions`) runs the objective through the
    compiled per-step engine: FIVO's filter step, and for ``"elbo"``, ``"iwae"``,
    ``"mean-field"``, ``"iwae-dreg"`` and ``"elbo-stl"`` the engine's
    :class:`~pyrosequence.inference.engine_objectives.EngineELBO`, :class:`~.EngineIWAE`,
    :class:`~.EngineMeanFieldELBO`, :class:`~.EngineDReGIWAE` and :class:`~.EngineSTLELBO`, which
    compute the eager estimate from the model's pieces (a model without pieces, e.g. a
    :class:`~pyrosequence.models.PyroProgram`, trains with the eager estimator, with a warning).
    ``"iwae-dreg"`` and ``"elbo-stl"`` are iwae and elbo with lower-variance gradient estimators
    (:mod:`pyrosequence.inference.gradient_estimators`; reparameterised latents only).
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of: {', '.join(sorted(OBJECTIVES))}")
    if isinstance(num_particles, bool) or int(num_particles) != num_particles or num_particles < 1:
        raise ValueError(f"the number of particles must be an integer of at least 1, got {num_particles}")
    options = ObjectiveOptions(bool(vectorize_particles), resampler, ess_threshold, compile)
    return OBJECTIVES[name](int(num_particles), options)
