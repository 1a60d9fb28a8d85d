"""How a model instance handed to :func:`pyrosequence.training.train` is recorded in its run directory.

A run directory is reopened (``evaluate``, ``sample``, ``plot``, ``report``, ``--resume``) by
building the model again as ``Class(x_dim, z_dim, **model_options)`` from ``config.json`` and
loading the checkpoint's weights into it. For an instance that means recovering three things:

* an importable class: a built-in name, or ``package.module:Class`` that imports to the very
  class (not one defined in a script's ``__main__`` or inside a function);
* the constructor arguments: every :class:`~pyrosequence.models.SequenceModel` subclass records the
  arguments its constructor was called with (:attr:`~pyrosequence.models.SequenceModel.init_arguments`);
  the constructor must take ``x_dim`` first (and ``z_dim`` second when it has latents), and the
  other arguments must be JSON values (numbers, strings, booleans, ``None``, lists and dicts of
  them; a tuple is recorded as a list);
* a check that it worked: the model is built again from that recipe (without consuming random
  numbers) and must have the same parameter and buffer names and shapes as the instance.

When any of this fails the run still trains; ``config.json`` records why in
``model_not_rebuildable``, and every command that would rebuild the model refuses the run with that
reason.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass

import torch


@dataclass
class Recipe:
    """What ``config.json`` records about a model instance: ``model`` (a built-in name or an import
    path), ``z_dim``, ``model_options``, and ``reason`` (``None`` when the recipe rebuilds the model,
    else why it cannot)."""

    model: str
    z_dim: int | None
    model_options: dict
    reason: str | None = None


def _json_value(value):
    """``value`` as it reads back from JSON (tuples become lists), or raise ``TypeError``."""
    return json.loads(json.dumps(value, allow_nan=False))


def _same(a, b) -> bool:
    if isinstance(a, (tuple, list)):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _shapes(module: torch.nn.Module) -> dict[str, tuple]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def recipe(model) -> Recipe:
    """The :class:`Recipe` of ``model`` (see the module docstring)."""
    from pyrosequence.models import MODELS, SequenceModel
    from pyrosequence.models.core.capabilities import is_multi_rate
    from pyrosequence.models.core.registry import import_model

    cls = type(model)
    path = f"{cls.__module__}:{cls.__qualname__}"
    builtin = next((name for name, c in MODELS.items() if c is cls), None)
    z_dim = getattr(model, "z_dim", None) or None

    def refuse(reason: str) -> Recipe:
        return Recipe(builtin or path, z_dim, {}, reason)

    if not isinstance(model, SequenceModel):
        return refuse(f"{cls.__name__} is not a SequenceModel subclass, the kind whose constructor arguments are recorded")
    if is_multi_rate(model):
        return refuse(f"this {cls.__name__} instance was made multi-rate after it was built")
    if builtin is None:
        if cls.__module__ == "__main__":
            return refuse(f"its class {cls.__qualname__} is defined in a script (__main__), which another process cannot "
                          "import; define it in an importable module")
        if "<locals>" in cls.__qualname__:
            return refuse(f"its class {cls.__qualname__} is defined inside a function; define it at module level")
        try:
            found = import_model(path)
        except (ValueError, TypeError) as error:
            return refuse(str(error))
        if found is not cls:
            return refuse(f"{path} imports another class than the instance's")
    arguments = model.init_arguments
    if arguments is None:
        return refuse(f"the arguments {cls.__name__}'s constructor was called with were not recorded")
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    names = [p.name for p in parameters]
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return refuse(f"{cls.__name__}'s constructor takes *{next(p.name for p in parameters if p.kind is p.VAR_POSITIONAL)}, "
                      "which a configuration cannot pass")
    takes_z = "z_dim" in names
    if names[:1] != ["x_dim"] or (takes_z and names[1:2] != ["z_dim"]):
        return refuse(f"{cls.__name__}'s constructor takes ({', '.join(names)}); a run rebuilds a model as "
                      "Class(x_dim, z_dim, **options) or Class(x_dim, **options)")
    options = {k: v for k, v in arguments.items() if k not in ("x_dim", "z_dim", "name")}
    for p in parameters:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            options.update(options.pop(p.name, {}))
    recorded = {}
    for key, value in options.items():
        try:
            recorded[key] = _json_value(value)
        except (TypeError, ValueError):
            return refuse(f"its constructor argument {key}={type(value).__name__} is not a JSON value a configuration can record")
        if not _same(value, recorded[key]):
            return refuse(f"its constructor argument {key}={value!r} does not read back from JSON unchanged")
    z_dim = arguments["z_dim"] if takes_z else None
    positional = (arguments["x_dim"], z_dim) if takes_z else (arguments["x_dim"],)
    try:
        with torch.random.fork_rng(devices=[]):
            twin = cls(*positional, **recorded)
    except Exception as error:  # noqa: BLE001 - any failure means it cannot be rebuilt
        return refuse(f"building it again as {cls.__name__}{positional} with its recorded options fails: "
                      f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    mine, theirs = _shapes(model), _shapes(twin)
    if mine != theirs:
        key = next(k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k))
        return refuse(f"building it again from its constructor arguments gives other weights ({key}: rebuilt "
                      f"{theirs.get(key, 'missing')}, instance {mine.get(key, 'missing')}); it was changed after it was built")
    return Recipe(builtin or path, z_dim, recorded)
