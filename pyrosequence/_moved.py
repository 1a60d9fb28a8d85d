"""Old import paths of modules that moved (the run wing into ``pyrosequence.training``, the models'
infrastructure into ``pyrosequence.models.core``): each old module is an alias of its new one, for
one release, with a :class:`DeprecationWarning` naming the new path."""

from __future__ import annotations

import importlib
import sys
import warnings


def alias_module(old: str, new: str) -> None:
    """Make the module ``old`` (being imported) the module ``new``: one module object under both
    names, so attributes, monkeypatching and ``isinstance`` checks agree."""
    warnings.warn(f"{old} moved to {new}; import it from there (the old path will be removed in the next release)",
                  DeprecationWarning, stacklevel=3)
    sys.modules[old] = importlib.import_module(new)
