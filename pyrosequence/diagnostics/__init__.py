"""Diagnostics: per-step dynamics of a model on a sequence, and plots of them."""

from pyrosequence.diagnostics.dynamics import StepDynamics, step_dynamics
from pyrosequence.diagnostics.plots import plot_dynamics

__all__ = ["StepDynamics", "step_dynamics", "plot_dynamics"]
