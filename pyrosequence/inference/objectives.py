"""Training objectives by name: each entry builds a ``pyro.infer.ELBO`` from a particle count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pyro.infer import ELBO, RenyiELBO, Trace_ELBO, TraceMeanField_ELBO

from pyrosequence.inference.engine import CompileOptions
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
    #: FIVO only: compile the filter's step (:mod:`pyrosequence.inference.engine`).
    compile: bool | str | CompileOptions = False


def _elbo(num_particles: int, options: ObjectiveOptions) -> ELBO:
    return Trace_ELBO(
        num_particles=num_particles, vectorize_particles=options.vectorize_particles, max_plate_nesting=MAX_PLATE_NESTING
    )


def _mean_field(num_particles: int, options: ObjectiveOptions) -> ELBO:
    return TraceMeanField_ELBO(
        num_particles=num_particles, vectorize_particles=options.vectorize_particles, max_plate_nesting=MAX_PLATE_NESTING
    )


def _iwae(num_particles: int, options: ObjectiveOptions) -> ELBO:
    return RenyiELBO(
        alpha=0.0,
        num_particles=num_particles,
        vectorize_particles=options.vectorize_particles,
        max_plate_nesting=MAX_PLATE_NESTING,
    )


def _iwae_dreg(num_particles: int, options: ObjectiveOptions) -> ELBO:
    return DReGIWAE(num_particles, max_plate_nesting=MAX_PLATE_NESTING, vectorize_particles=options.vectorize_particles)


def _elbo_stl(num_particles: int, options: ObjectiveOptions) -> ELBO:
    return STLELBO(num_particles, max_plate_nesting=MAX_PLATE_NESTING, vectorize_particles=options.vectorize_particles)


def _fivo(num_particles: int, options: ObjectiveOptions) -> ELBO:
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
    ``"iwae-dreg"`` and ``"elbo-stl"`` are iwae and elbo with lower-variance gradient estimators
    (:mod:`pyrosequence.inference.gradient_estimators`; reparameterised latents only, eager).
    ``compile`` compiles FIVO's per-step engine; the Pyro ELBOs run their traces eagerly and
    ignore it (their model/guide are ordinary Pyro programs).
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of: {', '.join(sorted(OBJECTIVES))}")
    if isinstance(num_particles, bool) or int(num_particles) != num_particles or num_particles < 1:
        raise ValueError(f"the number of particles must be an integer of at least 1, got {num_particles}")
    options = ObjectiveOptions(bool(vectorize_particles), resampler, ess_threshold, compile)
    return OBJECTIVES[name](int(num_particles), options)
