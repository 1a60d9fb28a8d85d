"""The training protocol: optimizers by name, learning-rate schedules, initialisation schemes."""

from pyrosequence.optim.optimizers import OPTIMIZERS, build_optimizer, check_optimizer
from pyrosequence.optim.schedules import FACTORS, LearningRate, check_schedule, parse_factor
from pyrosequence.optim.init import INITS, initialize

__all__ = ["OPTIMIZERS", "build_optimizer", "check_optimizer", "FACTORS", "LearningRate", "check_schedule",
           "parse_factor", "INITS", "initialize"]
