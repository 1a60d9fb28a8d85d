"""Moved to :mod:`pyrosequence.models.core.missing`; this path works, with a DeprecationWarning, for one release."""

from pyrosequence._moved import alias_module

alias_module(__name__, "pyrosequence.models.core.missing")
