"""Objects named by an import path ``package.module:attribute`` (a user's model class or data
loader, given on the command line or recorded in a run's config)."""

from __future__ import annotations

import importlib

from pyrosequence.atomic import first_line, raised_at


def import_attribute(path: str, what: str, example: str):
    """The object at ``path`` (``package.module:name``; ``name`` may be dotted).

    Every failure is a ``ValueError`` naming ``what`` was looked up (e.g. ``"model"``) and
    ``path``: a path without ``:``, a module that cannot be imported (missing, a syntax error with
    its file and line, or an exception its own code raised, with where), a missing attribute.
    ``example`` is the shape shown when the path is malformed (``"package.module:Class"``).
    """
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"a {what} import path looks like {example}, got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import the module of {what} {path!r}: {error}") from None
    except SyntaxError as error:  # IndentationError, TabError included
        where = f"{error.filename}, line {error.lineno}" if error.filename else f"module {module_name!r}"
        raise ValueError(f"cannot import the module of {what} {path!r}: {type(error).__name__} in {where}: {error.msg}") from None
    except Exception as error:  # the module's own code failed while it was imported
        raise ValueError(f"cannot import the module of {what} {path!r}: {type(error).__name__} "
                         f"{raised_at(error)}: {first_line(error)}") from None
    obj = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {module_name!r} has no {attribute!r} ({what} {path!r})")
        obj = getattr(obj, part)
    return obj
