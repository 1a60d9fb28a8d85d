"""Model names: the built-in models, models registered at run time, installed plugins, and
``package.module:Class`` import paths.

A user's :class:`~pyrosequence.models.SequenceModel` subclass reaches ``train()``, the CLI and
every command that reopens a run directory in one of three ways:

* ``--model package.module:Class`` (or ``TrainConfig(model="package.module:Class")``): imported
  by path wherever the run is reopened; nothing to register;
* ``register_model("name", Class)`` in the same process; a run directory then records the class's
  import path (``package.module:Class``), so that ``evaluate``, ``sample``, ``plot``, ``report``
  and ``--resume`` find it in a new process (a class defined in ``__main__`` cannot be found again
  and is refused);
* an installed package's entry point in the group ``pyrosequence.models``
  (``[project.entry-points."pyrosequence.models"] dmm = "mypkg.dmm:DMM"``), found by name.

A model class is built as ``Class(x_dim, z_dim, **model_options)`` (without ``z_dim`` when its
constructor takes none: a deterministic model). A :class:`~pyrosequence.models.PyroProgram`
subclass (a plain Pyro model/guide pair) is registered and built the same way.
"""

from __future__ import annotations

from importlib import metadata

from pyrosequence.import_path import import_attribute

ENTRY_POINT_GROUP = "pyrosequence.models"


class ModelRegistry:
    """Names -> model classes, with the built-ins fixed and user registrations on top."""

    def __init__(self, builtins: dict) -> None:
        self._builtins = builtins  # the package's MODELS dict itself
        self._registered: dict = {}

    def names(self) -> list[str]:
        return sorted({**self._builtins, **self._registered, **{ep.name: None for ep in _entry_points()}})

    def register(self, name: str, cls, replace: bool = False):
        if not isinstance(name, str) or not name or ":" in name or name != name.strip():
            raise ValueError(f"a model name must be a non-empty string without ':' or surrounding spaces, got {name!r}")
        if not _is_model_class(cls):
            raise TypeError(f"register_model({name!r}, ...) needs a SequenceModel subclass (or a PyroProgram subclass), got {cls!r}")
        if name in self._builtins:
            raise ValueError(f"{name!r} is a built-in model; register yours under another name")
        if name in self._registered and self._registered[name] is not cls and not replace:
            raise ValueError(f"a model {name!r} is already registered ({_path(self._registered[name])}); pass replace=True")
        self._registered[name] = cls
        return cls

    def unregister(self, name: str) -> None:
        self._registered.pop(name, None)

    def lookup(self, name: str):
        if not isinstance(name, str):
            raise ValueError(f"a model name must be a string, got {name!r}")
        if name in self._builtins:
            return self._builtins[name]
        if name in self._registered:
            return self._registered[name]
        if ":" in name:
            return import_model(name)
        for ep in _entry_points():
            if ep.name == name:
                return _checked(ep.load(), f"entry point {ep.value!r}")
        raise ValueError(
            f"unknown model {name!r}; choose one of: {', '.join(self.names())}, or give a class as "
            "package.module:Class (see pyrosequence.register_model)"
        )

    def recorded_name(self, name: str) -> str:
        """The name a run directory should record for ``name``: itself for built-ins, import paths
        and plugins; the import path of a class registered in this process."""
        if name in self._registered:
            cls = self._registered[name]
            if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
                raise ValueError(
                    f"model {name!r} ({cls.__qualname__}) is defined in {'a script' if cls.__module__ == '__main__' else 'a function'}, "
                    "so a run directory could not be reopened; define it in an importable module"
                )
            return _path(cls)
        return name


def _path(cls) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _entry_points():
    try:
        return list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # a broken installed distribution must not break the built-in models
        return []


def _is_model_class(cls) -> bool:
    """A :class:`SequenceModel` subclass, or a :class:`~pyrosequence.models.PyroProgram` subclass
    (a plain Pyro program; its constructor takes ``x_dim`` first, as every model's does)."""
    from pyrosequence.models.core.base import SequenceModel
    from pyrosequence.models.core.program import PyroProgram

    return isinstance(cls, type) and issubclass(cls, (SequenceModel, PyroProgram))


def _checked(cls, where: str):
    if not _is_model_class(cls):
        raise TypeError(f"{where} is not a SequenceModel subclass (nor a PyroProgram subclass; got {cls!r})")
    return cls


def import_model(path: str):
    """The class at ``package.module:Class`` (``Class`` may be dotted), checked to be a model."""
    return _checked(import_attribute(path, "model", "package.module:Class"), f"{path!r}")
