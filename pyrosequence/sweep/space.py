"""The search space of a sweep: what each trial varies, and the trial's :class:`TrainConfig`.

On the command line every entry is ``NAME=KIND:ARGS``::

    lr=log:1e-5:1e-3                 a float drawn log-uniformly from [1e-5, 1e-3]
    weight_decay=float:0:1e-3        a float drawn uniformly (float:LOW:HIGH:STEP for a grid)
    batch_size=int:4:32              an integer (int:LOW:HIGH:STEP)
    hidden_dim=intlog:16:256         an integer drawn log-uniformly
    init=choice:default,fivo         one of the values (numbers, true/false and none are read as such)
    schedule=choice:constant|cosine:steps=20000,floor=1e-6|warmup:steps=500*cosine:steps=20000

Choices are separated by ``,``, or by ``|`` when a value itself holds commas (a schedule factor
with several parameters, a JSON list such as ``betas=choice:[0.9,0.999]|[0.96,0.999]``).

A space file (``--space-file``, YAML or JSON) maps names to ``{type: log, low: 1e-5, high: 1e-3}``
(``step`` for ``int``/``float``), to a list of choices, or to the same ``KIND:ARGS`` text.

A NAME is one of:

- a :class:`TrainConfig` field (``lr``, ``batch_size``, ``init``, ``grad_clip``, ``optimizer``, ...);
  ``schedule`` takes choices written as ``--schedule`` specs (several factors joined by ``*``,
  each read by :func:`pyrosequence.optim.schedules.parse_factor`) or, in a file, lists of factor
  objects; 0 turns ``grad_clip``, ``patience``, ``max_updates`` and ``time_limit`` off, as on the
  command line;
- an optimizer option (``weight_decay``, ``eps``, ``momentum``, ``clip_norm``, ``lrd``, ``betas``,
  ``nesterov``; and ``beta1``/``beta2`` for one of the two betas): it goes into
  ``optimizer_options``. When the space also varies ``optimizer``, an option the trial's
  optimizer does not take is left out of that trial; options the base configuration set
  explicitly are kept for another optimizer when it takes them;
- an option of the model's constructor (``hidden_dim``, ``layers``, ``cell``, ...): it goes into
  ``model_options``.

:meth:`SearchSpace.check` refuses unknown names and values the configuration would refuse (each
range's ends and every choice are tried on the base configuration) before any trial runs, in one
line naming them.
"""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pyrosequence.training.config import TrainConfig

#: The kinds of parameter, as written after ``NAME=``.
KINDS = ("log", "float", "int", "intlog", "choice")
#: TrainConfig fields a space may not vary (set through their own names, or not settable at all).
NOT_SWEEPABLE = ("model_options", "optimizer_options", "model_not_rebuildable", "world_size")
#: Settings whose value 0 means off (None), as on the command line.
OFF_WHEN_ZERO = ("grad_clip", "patience", "max_updates", "time_limit")
#: Space names that set one element of the optimizer's ``betas``.
BETA_NAMES = {"beta1": 0, "beta2": 1}


def _optimizer_specs() -> dict:
    from pyrosequence.optim.optimizers import OPTIMIZERS

    return OPTIMIZERS


def optimizer_option_names() -> list[str]:
    """Every option some optimizer takes, plus ``beta1``/``beta2``."""
    names = {k for spec in _optimizer_specs().values() for k in spec.defaults}
    return sorted(names | set(BETA_NAMES))


def config_field_names() -> list[str]:
    """The :class:`TrainConfig` fields a space may vary."""
    return [f.name for f in fields(TrainConfig) if f.name not in NOT_SWEEPABLE]


def model_option_names(model: str) -> list[str]:
    """The constructor options of model ``model`` (as :class:`TrainConfig` checks them)."""
    from pyrosequence.models import model_class

    cls = model_class(model)
    return sorted(set(inspect.signature(cls.__init__).parameters) - {"self", "x_dim", "z_dim", "name", "args", "kwargs"})


def _number(name: str, text, integer: bool, spec: str):
    """``text`` (a string or a number) as an int or a finite float, else a ValueError."""
    if isinstance(text, bool):
        raise ValueError(f"space {name}: {text!r} is not a number in {spec!r}")
    if isinstance(text, (int, float)):
        value = text
    else:
        try:
            value = int(text) if integer else float(text)
        except (TypeError, ValueError):
            try:
                value = float(text)  # "1e3" for an integer range
            except (TypeError, ValueError):
                raise ValueError(f"space {name}: {text!r} is not a number in {spec!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"space {name}: {text!r} is not a finite number in {spec!r}")
    if integer:
        if value != int(value):
            raise ValueError(f"space {name}: {text!r} is not an integer in {spec!r}")
        value = int(value)
    return value


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


@dataclass(frozen=True)
class Param:
    """One dimension of the search space: ``kind`` is one of :data:`KINDS`; numeric kinds have
    ``low``/``high`` (and ``step`` for ``int``/``float``), ``choice`` has ``choices``."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    choices: tuple = ()

    def __post_init__(self) -> None:
        spec = self.text()
        if self.kind not in KINDS:
            raise ValueError(f"space {self.name}: unknown kind {self.kind!r}; choose one of: {', '.join(KINDS)}")
        if self.kind == "choice":
            if not self.choices:
                raise ValueError(f"space {self.name}: a choice needs at least one value")
            labels = self.labels()
            if len(set(map(repr, labels))) != len(labels):
                raise ValueError(f"space {self.name}: a value is given twice in {spec!r}")
            return
        if self.low is None or self.high is None:
            raise ValueError(f"space {self.name}: {self.kind} needs low and high")
        if self.low > self.high:
            raise ValueError(f"space {self.name}: low {self.low!r} is above high {self.high!r}")
        if self.kind in ("log", "intlog") and self.low <= 0:
            raise ValueError(f"space {self.name}: a log range needs low > 0, got {self.low!r}")
        if self.step is not None:
            if self.kind not in ("int", "float"):
                raise ValueError(f"space {self.name}: only int and float ranges take a step")
            if not self.step > 0:
                raise ValueError(f"space {self.name}: step must be positive, got {self.step!r}")

    def labels(self) -> list:
        """The choices as Optuna stores them: scalars as they are, lists and objects as JSON text."""
        return [c if _is_scalar(c) else json.dumps(c, sort_keys=True) for c in self.choices]

    def decode(self, label):
        """The value of the choice Optuna recorded as ``label`` (numbers as such for ranges)."""
        if self.kind != "choice":
            return label
        for choice, known in zip(self.choices, self.labels()):
            if known == label and type(known) is type(label):
                return choice
        for choice, known in zip(self.choices, self.labels()):
            if known == label:
                return choice
        raise ValueError(f"space {self.name}: {label!r} is not one of its choices")

    def suggest(self, trial):
        """Draw this parameter from an Optuna trial; returns the value for the configuration."""
        if self.kind == "log":
            return trial.suggest_float(self.name, float(self.low), float(self.high), log=True)
        if self.kind == "float":
            return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1))
        if self.kind == "intlog":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=True)
        return self.decode(trial.suggest_categorical(self.name, self.labels()))

    def corners(self) -> list:
        """The values :meth:`SearchSpace.check` tries: a range's two ends, or every choice."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]

    def text(self) -> str:
        """The parameter as ``KIND:ARGS`` (what ``--space NAME=`` takes)."""
        if self.kind == "choice":
            parts = [c if isinstance(c, str) else json.dumps(c) for c in self.choices]
            return "choice:" + ("|" if any("," in p for p in parts) else ",").join(parts)
        step = "" if self.step is None else f":{self.step!r}"
        return f"{self.kind}:{self.low!r}:{self.high!r}{step}"

    def to_dict(self) -> dict:
        """The parameter as a space-file entry (JSON-able)."""
        if self.kind == "choice":
            return {"type": "choice", "choices": list(self.choices)}
        entry = {"type": self.kind, "low": self.low, "high": self.high}
        if self.step is not None:
            entry["step"] = self.step
        return entry


def _choice_value(name: str, text: str):
    """One choice written on the command line: JSON lists/objects, numbers, true/false and none
    are read as such; anything else (and every schedule) stays text."""
    if name == "schedule":
        return text
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"space {name}: choice {text!r} is not valid JSON") from None
    lower = text.lower()
    if lower in ("true", "false"):
        return lower == "true"
    if lower in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            break
        return value
    return text


def parse_param(name: str, spec: str) -> Param:
    """``parse_param("lr", "log:1e-5:1e-3")``: one entry's ``KIND:ARGS`` text."""
    kind, sep, rest = spec.strip().partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        raise ValueError(f"space {name}: unknown kind {kind!r} in {spec!r}; choose one of: {', '.join(KINDS)} "
                         "(e.g. lr=log:1e-5:1e-3, init=choice:default,fivo)")
    if kind == "choice":
        parts = rest.split("|") if "|" in rest else rest.split(",")
        parts = [p.strip() for p in parts]
        if not sep or not rest.strip() or any(not p for p in parts):
            raise ValueError(f"space {name}: a choice takes values separated by ',' (or '|' when a value holds commas), got {spec!r}")
        return Param(name, "choice", choices=tuple(_choice_value(name, p) for p in parts))
    parts = rest.split(":") if sep else []
    takes_step = kind in ("int", "float")
    if len(parts) not in ((2, 3) if takes_step else (2,)):
        form = f"{kind}:LOW:HIGH" + ("[:STEP]" if takes_step else "")
        raise ValueError(f"space {name}: {kind} takes {form}, got {spec!r}")
    integer = kind in ("int", "intlog")
    low, high = (_number(name, p.strip(), integer, spec) for p in parts[:2])
    step = _number(name, parts[2].strip(), integer, spec) if len(parts) == 3 else None
    return Param(name, kind, low, high, step)


def param_from_entry(name: str, entry) -> Param:
    """One entry of a space file: ``{type, low, high[, step]}``, ``{type: choice, choices}``, a list
    of choices, or ``KIND:ARGS`` text."""
    if isinstance(entry, str):
        return parse_param(name, entry)
    if isinstance(entry, (list, tuple)):
        return Param(name, "choice", choices=tuple(entry))
    if not isinstance(entry, dict):
        raise ValueError(f"space {name}: an entry is {{type: ..., low: ..., high: ...}}, a list of choices or KIND:ARGS text, got {entry!r}")
    kind = entry.get("type", entry.get("kind"))
    if kind not in KINDS:
        raise ValueError(f"space {name}: unknown type {kind!r}; choose one of: {', '.join(KINDS)}")
    allowed = {"type", "kind"} | ({"choices"} if kind == "choice" else {"low", "high"} | ({"step"} if kind in ("int", "float") else set()))
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ValueError(f"space {name}: a {kind} entry does not take {', '.join(unknown)}; it takes: {', '.join(sorted(allowed - {'kind'}))}")
    if kind == "choice":
        choices = entry.get("choices")
        if not isinstance(choices, (list, tuple)):
            raise ValueError(f"space {name}: a choice entry needs a list of choices")
        return Param(name, "choice", choices=tuple(choices))
    for key in ("low", "high"):
        if key not in entry:
            raise ValueError(f"space {name}: a {kind} entry needs {key}")
    integer = kind in ("int", "intlog")
    spec = json.dumps(entry, default=str)
    step = entry.get("step")
    return Param(name, kind, _number(name, entry["low"], integer, spec), _number(name, entry["high"], integer, spec),
                 None if step is None else _number(name, step, integer, spec))


def load_space_file(path: str | Path) -> dict:
    """The mapping a YAML or JSON space file holds (``.json`` is read as JSON, anything else as YAML)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no space file at {path}")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"space file {path} is not valid JSON: {error}") from None
    else:
        try:
            import yaml
        except ImportError:
            raise ImportError('a YAML space file needs PyYAML: install with pip install -e ".[sweep]"') from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"space file {path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"space file {path} must map parameter names to their ranges or choices")
    return data


def parse_space(entries=(), file: str | Path | None = None) -> "SearchSpace":
    """The space of ``--space NAME=KIND:ARGS ...`` entries and an optional ``--space-file``; every
    malformed entry is named in the one ``ValueError``."""
    params, errors = [], []
    for text in entries:
        name, sep, spec = text.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name.isidentifier():
            errors.append(f"space entry {text!r} is not NAME=KIND:ARGS")
            continue
        try:
            params.append(parse_param(name, spec))
        except ValueError as error:
            errors.append(str(error))
    if file is not None:
        for name, entry in load_space_file(file).items():
            try:
                params.append(param_from_entry(str(name).replace("-", "_"), entry))
            except ValueError as error:
                errors.append(str(error))
    if errors:
        raise ValueError("; ".join(errors))
    return SearchSpace(params)


class SearchSpace:
    """The parameters a sweep draws, and how a draw becomes a trial's :class:`TrainConfig`."""

    def __init__(self, params) -> None:
        self.params = tuple(params)
        names = [p.name for p in self.params]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"space: {', '.join(twice)} given more than once")
        if "betas" in names and set(names) & set(BETA_NAMES):
            raise ValueError("space: give betas or beta1/beta2, not both")

    def __len__(self) -> int:
        return len(self.params)

    @property
    def names(self) -> list[str]:
        """The parameter names, in the order given."""
        return [p.name for p in self.params]

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @classmethod
    def from_dict(cls, data: dict) -> "SearchSpace":
        """The space of a space-file mapping (as :meth:`to_dict` writes it)."""
        return cls([param_from_entry(name, entry) for name, entry in data.items()])

    def to_dict(self) -> dict:
        """The space as a space-file mapping (JSON-able; recorded in the study)."""
        return {p.name: p.to_dict() for p in self.params}

    def describe(self) -> str:
        """The space as ``--space`` arguments."""
        return " ".join(f"{p.name}={p.text()}" for p in self.params)

    def suggest(self, trial) -> dict:
        """Draw every parameter from an Optuna trial: ``{name: value}``."""
        return {p.name: p.suggest(trial) for p in self.params}

    def decode(self, params: dict) -> dict:
        """The values of a finished trial's recorded ``params`` (choices decoded)."""
        return {name: (self[name].decode(value) if name in self.names else value) for name, value in params.items()}

    def _where(self, name: str) -> str:
        if name in config_field_names():
            return "field"
        if name in optimizer_option_names():
            return "optimizer"
        return "model"

    def config(self, base: TrainConfig, values: dict) -> TrainConfig:
        """The trial's configuration: ``base`` with ``values`` (``{name: value}``) set; raises the
        configuration's ``ValueError`` when a value is refused."""
        data = asdict(base)
        model_options = dict(base.model_options)
        given_options = {}
        for name, value in values.items():
            where = self._where(name)
            if where == "field":
                if name == "schedule":
                    value = _schedule(value)
                elif name in OFF_WHEN_ZERO and value == 0:
                    value = None
                data[name] = value
            elif where == "optimizer":
                given_options[name] = value
            else:
                model_options[name] = value
        specs = _optimizer_specs()
        optimizer = data["optimizer"]
        if optimizer == base.optimizer or base.optimizer not in specs:
            options = dict(base.optimizer_options)
        else:  # another optimizer: keep the options the base set explicitly and the new one takes
            defaults = specs[base.optimizer].defaults
            takes = specs[optimizer].defaults if optimizer in specs else {}
            options = {k: v for k, v in base.optimizer_options.items() if k in takes and defaults.get(k) != v}
        takes = specs[optimizer].defaults if optimizer in specs else {}
        varied = "optimizer" in self.names
        for name, value in given_options.items():
            key = "betas" if name in BETA_NAMES else name
            if varied and key not in takes:
                continue  # this trial's optimizer does not take it
            if name in BETA_NAMES:
                betas = list(options.get("betas") or takes.get("betas") or [0.9, 0.999])
                betas[BETA_NAMES[name]] = value
                value = betas
            options[key] = value
        data["optimizer_options"] = options
        data["model_options"] = model_options
        return TrainConfig(**data)

    def check(self, base: TrainConfig) -> None:
        """Refuse, in one ``ValueError`` naming them, names that are neither a configuration field,
        an optimizer option nor an option of the model, and values the configuration refuses
        (each range's ends and every choice, tried one parameter at a time on ``base``)."""
        models = [base.model]
        if "model" in self.names and self["model"].kind == "choice":
            models += [m for m in self["model"].choices if isinstance(m, str)]
        model_options = set()
        for model in models:
            try:
                model_options |= set(model_option_names(model))
            except ValueError:
                pass  # an unknown model among the choices: the corner check names it
        known = set(config_field_names()) | set(optimizer_option_names()) | model_options
        unknown = [p.name for p in self.params if p.name not in known]
        if unknown:
            raise ValueError(
                f"unknown space name(s) {', '.join(unknown)}: a name is a TrainConfig field (e.g. lr, batch_size, init, "
                f"schedule), an optimizer option ({', '.join(optimizer_option_names())}) or an option of model "
                f"{base.model!r} ({', '.join(sorted(model_options)) or 'none'})"
            )
        errors = []
        for p in self.params:
            context = {}
            if self._where(p.name) == "optimizer" and "optimizer" in self.names:
                key = "betas" if p.name in BETA_NAMES else p.name
                takers = [o for o in self["optimizer"].corners() if key in getattr(_optimizer_specs().get(o), "defaults", {})]
                if takers:
                    context["optimizer"] = takers[0]
            for value in p.corners():
                try:
                    self.config(base, {**context, p.name: value})
                except (ValueError, TypeError) as error:
                    errors.append(f"space {p.name}={p.text()}: {p.name} = {value!r} is refused: {str(error).splitlines()[0]}")
                    break
        if errors:
            raise ValueError("; ".join(errors))


def _schedule(value) -> list:
    """A schedule choice: ``"warmup:steps=500*cosine:steps=20000"`` or a list of factors."""
    from pyrosequence.optim.schedules import check_schedule

    if isinstance(value, str):
        value = [part.strip() for part in value.split("*") if part.strip()]
    return check_schedule(value)
