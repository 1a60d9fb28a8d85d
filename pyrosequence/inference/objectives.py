"""Training objectives by name: each entry builds a ``pyro.infer.ELBO`` from a particle count."""

from __future__ import annotations

from typing import Callable

from pyro.infer import ELBO, RenyiELBO, Trace_ELBO, TraceMeanField_ELBO

#: Nesting of plates in every SequenceModel (the sequence plate); the particle plate goes left of it.
MAX_PLATE_NESTING = 1


def _elbo(num_particles: int, vectorize: bool) -> ELBO:
    return Trace_ELBO(num_particles=num_particles, vectorize_particles=vectorize, max_plate_nesting=MAX_PLATE_NESTING)


def _mean_field(num_particles: int, vectorize: bool) -> ELBO:
    return TraceMeanField_ELBO(
        num_particles=num_particles, vectorize_particles=vectorize, max_plate_nesting=MAX_PLATE_NESTING
    )


def _iwae(num_particles: int, vectorize: bool) -> ELBO:
    return RenyiELBO(
        alpha=0.0, num_particles=num_particles, vectorize_particles=vectorize, max_plate_nesting=MAX_PLATE_NESTING
    )


#: name -> factory(num_particles, vectorize_particles) -> pyro.infer.ELBO
OBJECTIVES: dict[str, Callable[[int, bool], ELBO]] = {
    "elbo": _elbo,
    "mean-field": _mean_field,
    "iwae": _iwae,
}


def make_objective(name: str, num_particles: int = 1, vectorize_particles: bool = True) -> ELBO:
    """Build the objective called ``name`` (see :data:`OBJECTIVES`).

    ``"elbo"`` is ``Trace_ELBO``; ``"mean-field"`` is ``TraceMeanField_ELBO`` (analytic KL per
    step); ``"iwae"`` is ``RenyiELBO(alpha=0)``, the importance-weighted bound of Burda et al.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of: {', '.join(sorted(OBJECTIVES))}")
    if int(num_particles) < 1:
        raise ValueError(f"the number of particles must be at least 1, got {num_particles}")
    return OBJECTIVES[name](int(num_particles), bool(vectorize_particles))
