"""Inference: objectives by name (Pyro's ELBOs, their per-step-engine versions and FIVO), the particle filter and resamplers,
KL weighting handlers and schedules, and bound evaluation."""

from pyrosequence.inference.evaluate import (
    BOUNDS,
    EvaluationResult,
    FilteringBound,
    ImportanceBound,
    evaluate,
    in_data_units,
    log_importance_weights,
    make_bound,
)
from pyrosequence.inference.engine import CompileOptions
from pyrosequence.inference.engine_objectives import (
    EngineDReGIWAE,
    EngineELBO,
    EngineIWAE,
    EngineMeanFieldELBO,
    EngineSTLELBO,
)
from pyrosequence.inference.fivo import FIVO
from pyrosequence.inference.objectives import OBJECTIVES, ObjectiveOptions, make_objective
from pyrosequence.inference.particle_filter import FilterResult, particle_filter
from pyrosequence.inference.resamplers import RESAMPLERS, get_resampler, multinomial, residual, stratified, systematic
from pyrosequence.inference.scaling import (
    ConstantBeta,
    KLAnnealing,
    LatentScaleMessenger,
    ScaledLatents,
    scale_latents,
)

__all__ = [
    "evaluate",
    "in_data_units",
    "EvaluationResult",
    "BOUNDS",
    "make_bound",
    "ImportanceBound",
    "FilteringBound",
    "log_importance_weights",
    "FIVO",
    "CompileOptions",
    "EngineELBO",
    "EngineIWAE",
    "EngineMeanFieldELBO",
    "EngineDReGIWAE",
    "EngineSTLELBO",
    "particle_filter",
    "FilterResult",
    "RESAMPLERS",
    "get_resampler",
    "multinomial",
    "systematic",
    "stratified",
    "residual",
    "make_objective",
    "ObjectiveOptions",
    "OBJECTIVES",
    "scale_latents",
    "ScaledLatents",
    "LatentScaleMessenger",
    "ConstantBeta",
    "KLAnnealing",
]
