"""Inference: objectives by name, KL weighting handlers and schedules, and bound evaluation."""

from pyrosequence.inference.evaluate import (
    IMPORTANCE_BOUNDS,
    EvaluationResult,
    ImportanceBound,
    evaluate,
    log_importance_weights,
)
from pyrosequence.inference.objectives import OBJECTIVES, make_objective
from pyrosequence.inference.scaling import ConstantBeta, KLAnnealing, LatentScaleMessenger, scale_latents

__all__ = [
    "evaluate",
    "EvaluationResult",
    "ImportanceBound",
    "IMPORTANCE_BOUNDS",
    "log_importance_weights",
    "make_objective",
    "OBJECTIVES",
    "scale_latents",
    "LatentScaleMessenger",
    "ConstantBeta",
    "KLAnnealing",
]
