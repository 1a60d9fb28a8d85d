"""Moved to :mod:`pyrosequence.models.core.time_slicing`; this old path still works, with a DeprecationWarning, for one release."""

import importlib
import sys
import warnings

warnings.warn("pyrosequence.models.time_slicing moved to pyrosequence.models.core.time_slicing; the old path will be removed in the next release",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("pyrosequence.models.core.time_slicing")
