"""What a model class can be built with, read from the class itself: its constructor options
(name, type, default, documentation) and which of them are sizes.

The command line builds its model flags from these (``pyrosequence train --omega-dim 8``), and
:class:`~pyrosequence.training.config.TrainConfig` checks sizes with them, so a new model's
options need no list elsewhere: its constructor signature is the list, the ``Args:`` section of
its docstring the help, and its ``size_options`` class attribute says which integers are sizes
(positive; 0 is refused rather than read as "the default").
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
from dataclasses import dataclass

#: Constructor arguments every model takes positionally or that the library sets itself.
STRUCTURAL = ("self", "x_dim", "z_dim", "name")


#: A docstring entry that only points elsewhere.
POINTER = re.compile(r"^(see|as in|other arguments as in)\b", re.IGNORECASE)
#: Options the library itself gives many models, documented once here.
COMMON_DOCS = {
    "mask_inputs": "read missing values as zero plus a mask feature (set by train when the training data have gaps)",
    "covariate_dim": "the number of covariate columns, the last of x (known inputs read, never emitted; set by "
                     "train from the data's covariate_columns)",
}


@dataclass(frozen=True)
class ModelOption:
    """One constructor option shared by one or more model classes.

    Attributes:
        name: the keyword (``omega_dim``); the flag is ``--omega-dim``.
        kind: ``"int"``, ``"float"``, ``"bool"``, ``"str"`` or ``"json"`` (the models disagree, or
            the annotation is something else): how a command-line value is read.
        models: the registered names of the models that take it.
        docs: ``(models, description)`` pairs: the models that document it alike (a model that
            does not document it is listed with ``""``).
        defaults: the distinct defaults, in the order of ``models``.
    """

    name: str
    kind: str
    models: tuple[str, ...]
    docs: tuple[tuple[tuple[str, ...], str], ...]
    defaults: tuple

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, text: str):
        """A command-line value of this option."""
        return VALUE_READERS[self.kind](text, self.flag)

    def help(self) -> str:
        parts = []
        for models, doc in self.docs[:3]:
            who = ", ".join(models) if len(models) <= 4 else f"{', '.join(models[:3])} and {len(models) - 3} more"
            parts.append(f"{who}: {doc or 'constructor option'}")
        shown = [d for d in self.defaults if d is not None]
        documented = any("default" in doc for _, doc in self.docs)
        default = f" (default {' or '.join(map(repr, shown))})" if shown and len(shown) <= 2 and not documented else ""
        more = f"; {len(self.docs) - 3} more models: see their docstrings" if len(self.docs) > 3 else ""
        return "; ".join(parts) + more + default


def _boolean(text: str, flag: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{flag} takes true or false, got {text!r}")


def _number(kind):
    def read(text: str, flag: str):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"{flag} takes {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    return read


def _json(text: str, flag: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


VALUE_READERS = {"int": _number(int), "float": _number(float), "bool": _boolean, "str": lambda t, f: t, "json": _json}


def _kind(annotation) -> str:
    """``"int | None"`` -> ``"int"`` (annotations are strings under postponed evaluation)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    parts = {p.strip() for p in text.split("|")} - {"None"}
    if len(parts) == 1 and (kind := parts.pop()) in VALUE_READERS:
        return kind
    return "json"


def constructor_parameters(cls) -> list[inspect.Parameter]:
    """The keyword options of ``cls(x_dim, z_dim, **options)``."""
    return [p for p in inspect.signature(cls.__init__).parameters.values()
            if p.name not in STRUCTURAL and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def plain(text: str) -> str:
    """Docstring markup as plain text: ``x`` -> x, :class:`~a.B` -> B."""
    text = re.sub(r":\w+:`~?([\w.]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    return text.replace("``", "")


def documented_arguments(cls) -> dict[str, str]:
    """``{name: first sentence}`` from the ``Args:`` sections of ``cls``'s docstring and its bases'
    (Google style; ``a, b: text`` documents both; the class's own entry wins)."""
    out: dict[str, str] = {}
    for klass in inspect.getmro(cls):
        doc = inspect.cleandoc(klass.__doc__ or "")
        match = re.search(r"^Args:[ \t]*\n((?:[ \t]+\S.*\n?|[ \t]*\n)*)", doc, flags=re.MULTILINE)
        if not match:
            continue
        lines = re.split(r"\n(?=    [A-Za-z_][\w, ]*:)", "\n" + match.group(1))
        # "a: text; b: text" documents two arguments in one entry
        entries = [part for line in lines for part in re.split(r";\s+(?=[a-z_]\w*(?:, [a-z_]\w*)*:\s)", line)]
        for entry in entries:
            head, sep, text = entry.strip().partition(":")
            text = text.strip()
            if not sep:
                continue
            names = [n.strip() for n in head.split(",") if n.strip().isidentifier()]
            if POINTER.match(plain(text)):  # "see FilteringRNN", "as in VRNN": that class's entries
                target = _referenced_class(text, klass)
                if target is None or target is cls:
                    continue
                theirs = documented_arguments(target)
                for name in names:
                    if name in theirs:
                        out.setdefault(name, theirs[name])
                continue
            for name in names:
                out.setdefault(name, _first_sentence(text))
    return out


def _first_sentence(text: str) -> str:
    text = plain(" ".join(text.split()))
    return re.split(r"(?<=[a-z0-9)]\.)\s+(?=[A-Z])", text, maxsplit=1)[0].rstrip(".;")


def _referenced_class(text: str, klass):
    """The class a ``:class:`~a.b.C``` reference in ``text`` names, looked up from ``klass``'s
    module (or imported by its dotted path); ``None`` when there is none."""
    match = re.search(r":class:`~?([\w.]+)`", text)
    if not match:
        return None
    path = match.group(1)
    module = sys.modules.get(klass.__module__)
    found = getattr(module, path.rsplit(".", 1)[-1], None)
    if found is None and "." in path:
        try:
            found = getattr(importlib.import_module(path.rsplit(".", 1)[0]), path.rsplit(".", 1)[-1], None)
        except ImportError:
            return None
    return found if isinstance(found, type) else None


def model_options(models: dict) -> dict[str, ModelOption]:
    """Every constructor option of the model classes in ``models`` (name -> class), by name."""
    found: dict[str, list] = {}
    for model_name, cls in models.items():
        docs = documented_arguments(cls)
        for p in constructor_parameters(cls):
            default = None if p.default is inspect.Parameter.empty else p.default
            doc = docs.get(p.name) or COMMON_DOCS.get(p.name, "")
            found.setdefault(p.name, []).append((model_name, _kind(p.annotation), doc, default))
    options = {}
    for name, uses in sorted(found.items()):
        kinds = {kind for _, kind, _, _ in uses}
        by_doc: dict[str, list] = {}
        for model_name, _, doc, _ in uses:  # an undocumented model joins the first documented group
            by_doc.setdefault(doc or next((d for _, _, d, _ in uses if d), ""), []).append(model_name)
        docs = tuple((tuple(models), doc) for doc, models in by_doc.items())
        defaults = tuple(dict.fromkeys(d for *_, d in uses if isinstance(d, (int, float, str, bool, type(None)))))
        options[name] = ModelOption(name, kinds.pop() if len(kinds) == 1 else "json", tuple(m for m, *_ in uses), docs,
                                    defaults)
    return options


#: Options that are sizes wherever a model takes them: checked for a class that declares no
#: ``size_options`` of its own (a user's model), as the library always has.
COMMON_SIZES = ("hidden_dim", "hyper_dim", "omega_dim", "feature_dim", "width", "layers", "components", "backward_dim",
                "low_hidden", "group", "leak", "transition_dim", "emission_dim", "iaf_dim")


def size_options(cls) -> tuple[str, ...]:
    """The options of ``cls`` that are sizes: its ``size_options`` class attribute, or for a class
    that declares none, the :data:`COMMON_SIZES` its constructor takes."""
    declared = getattr(cls, "size_options", None)
    if declared is not None:
        return tuple(declared)
    return tuple(p.name for p in constructor_parameters(cls) if p.name in COMMON_SIZES)
