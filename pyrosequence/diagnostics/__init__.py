"""Diagnostics: ArviZ conversion, predictive checks, forecasting and sampling, per-step dynamics, plots."""

from pyrosequence.diagnostics.dynamics import StepDynamics, step_dynamics
from pyrosequence.diagnostics.plots import plot_dynamics
from pyrosequence.diagnostics.active_units import ActiveUnits, active_units
from pyrosequence.diagnostics.binary import Reliability, binary_emission, predictive_reliability, reliability
from pyrosequence.diagnostics.calibration import Calibration, calibration, interval_coverage
# (the forecasting functions live in pyrosequence.diagnostics.forecast; its name is the module's)
from pyrosequence.diagnostics.forecast import Forecast, Predictive, one_step_predictive, sample_sequences
from pyrosequence.diagnostics.filter_health import FilterHealth, filter_health
from pyrosequence.diagnostics.inference_data import to_inference_data
from pyrosequence.diagnostics.paired_comparison import PairedComparison, compare_bounds
from pyrosequence.diagnostics.psis import PSISDiagnostic, psis_khat
from pyrosequence.diagnostics.step_kl import StepCurves, step_curves

__all__ = ["StepDynamics", "step_dynamics", "plot_dynamics",
    "to_inference_data", "calibration", "interval_coverage", "Calibration", "psis_khat", "PSISDiagnostic",
    "filter_health", "FilterHealth", "Forecast", "one_step_predictive", "Predictive", "sample_sequences", "active_units", "ActiveUnits", "step_curves", "StepCurves",
    "reliability", "predictive_reliability", "Reliability", "binary_emission", "compare_bounds", "PairedComparison"]
