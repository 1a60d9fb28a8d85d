"""Moved to :mod:`pyrosequence.models.core.program`; this old path still works, with a DeprecationWarning, for one release."""

import importlib
import sys
import warnings

warnings.warn("pyrosequence.models.program moved to pyrosequence.models.core.program; the old path will be removed in the next release",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("pyrosequence.models.core.program")
