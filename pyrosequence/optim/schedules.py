"""Learning-rate schedules as composable values.

A schedule is a list of factors; the learning rate of an update is the configured rate times
the product of the factors (the way optax chains transforms): ``warmup(500) * cosine(20000,
floor=1e-6)`` warms up linearly, then decays along a cosine. Each factor says whether it moves
per update or per epoch:

=============  =========  ===================================================================
``constant``   -          1 (no schedule)
``warmup``     update     ``min(1, (u + 1) / steps)``: linear warm-up over ``steps`` updates
``exponential`` update    ``gamma ** (u + 1)``: a per-update decay (Pyro's ``lrd``)
``cosine``     update     from the rate to ``floor`` (an absolute rate) along a half cosine over
                          ``steps`` updates, after an optional linear ``warmup``; then ``floor``
``step``       epoch      ``gamma ** (e // every)``
``plateau``    epoch      times ``factor`` whenever the validation bound has not improved by
                          more than ``threshold`` (nats per step) for ``patience`` epochs, with
                          ``cooldown`` epochs after each cut; never below ``min_lr``
=============  =========  ===================================================================

``u`` and ``e`` count the updates and epochs since the schedule started, which is the start of
the run, or the resume at which the learning rate, the schedule or the optimizer's options
were changed. Their formulas are those of ``torch.optim.lr_scheduler`` (``LinearLR``,
``ExponentialLR``, ``CosineAnnealingLR``, ``StepLR``, ``ReduceLROnPlateau`` in ``"max"`` mode
with an absolute threshold); ``tests/optim/test_schedules.py`` checks each against torch's sequence.
The plateau factor's state (best bound, bad epochs, cooldown, cuts) is part of the checkpoint,
so a resumed run reproduces an uninterrupted one exactly.

In a configuration a schedule is a list of ``{"name": ..., parameters}`` objects; on the command
line each ``--schedule NAME:key=value,key=value`` adds one factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: Each factor's parameters with their defaults (``None``: required).
FACTORS: dict[str, dict] = {
    "constant": {},
    "warmup": {"steps": None},
    "exponential": {"gamma": None},
    "cosine": {"steps": None, "floor": 0.0, "warmup": 0},
    "step": {"every": None, "gamma": 0.1},
    "plateau": {"factor": 0.5, "patience": 10, "threshold": 0.0, "cooldown": 0, "min_lr": 0.0},
}
#: ``torch.optim.lr_scheduler.ReduceLROnPlateau``'s default ``eps``: a plateau cut smaller than this is skipped.
PLATEAU_EPS = 1e-8
_INTEGERS = {("warmup", "steps"), ("cosine", "steps"), ("cosine", "warmup"), ("step", "every"), ("plateau", "patience"), ("plateau", "cooldown")}


def check_schedule(schedule) -> list[dict]:
    """The schedule ``schedule`` (a list of factor objects, one object, or a string of
    ``--schedule`` specs) checked and completed with defaults; raises ``ValueError`` naming the problem."""
    if schedule is None:
        return []
    if isinstance(schedule, (str, dict)):
        schedule = [schedule]
    if not isinstance(schedule, (list, tuple)):
        raise ValueError(f"a schedule is a list of factors, got {schedule!r}")
    checked = []
    for item in schedule:
        item = parse_factor(item) if isinstance(item, str) else item
        if not isinstance(item, dict) or "name" not in item:
            raise ValueError(f"a schedule factor is an object with a 'name', got {item!r}")
        name = item["name"]
        if name not in FACTORS:
            raise ValueError(f"unknown schedule {name!r}; choose one of: {', '.join(FACTORS)}")
        params = {k: v for k, v in item.items() if k != "name"}
        unknown = sorted(set(params) - set(FACTORS[name]))
        if unknown:
            raise ValueError(f"schedule {name!r} does not take {', '.join(unknown)}; it takes: {', '.join(FACTORS[name]) or 'nothing'}")
        values = {**FACTORS[name], **params}
        for key, value in values.items():
            if value is None:
                raise ValueError(f"schedule {name!r} needs {key} (e.g. --schedule {name}:{key}=...)")
            _check_value(name, key, value)
        if name == "cosine" and values["warmup"] >= values["steps"]:
            raise ValueError(f"schedule 'cosine': warmup ({values['warmup']}) must be shorter than steps ({values['steps']})")
        if name != "constant":
            checked.append({"name": name, **values})
    if sum(f["name"] == "plateau" for f in checked) > 1:
        raise ValueError("a schedule has at most one plateau factor")
    return checked


def _check_value(name: str, key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"schedule {name!r}: {key} must be a finite number, got {value!r}")
    if (name, key) in _INTEGERS:
        if value != int(value) or value < (1 if key in ("steps", "every") else 0):
            raise ValueError(f"schedule {name!r}: {key} must be a {'positive' if key in ('steps', 'every') else 'non-negative'} integer, got {value!r}")
    elif key in ("gamma", "factor"):
        if not 0 < value <= 1:
            raise ValueError(f"schedule {name!r}: {key} must be in (0, 1] (a decay), got {value!r}")
    elif value < 0:
        raise ValueError(f"schedule {name!r}: {key} must not be negative, got {value!r}")


def parse_factor(spec: str) -> dict:
    """``"cosine:steps=20000,floor=1e-6"`` -> ``{"name": "cosine", "steps": 20000, "floor": 1e-6}``."""
    name, _, rest = spec.strip().partition(":")
    item: dict = {"name": name.strip()}
    for pair in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--schedule takes NAME:key=value,key=value, got {spec!r}")
        try:
            number = float(raw)
        except ValueError:
            raise ValueError(f"--schedule {spec!r}: {key.strip()} must be a number, got {raw!r}") from None
        item[key.strip()] = int(number) if number.is_integer() and "." not in raw and "e" not in raw.lower() else number
    return item


def describe(schedule: list[dict]) -> str:
    """The schedule as ``--schedule`` arguments (``"constant"`` for none)."""
    if not schedule:
        return "constant"
    return " * ".join(f["name"] + ":" + ",".join(f"{k}={v}" for k, v in f.items() if k != "name") for f in schedule)


@dataclass
class LearningRate:
    """The learning rate of every update: ``lr * decay**(u + 1) * prod(factors)``.

    ``decay`` is the optimizer's own per-update decay (clipped Adam's ``lrd``); ``u`` counts the
    updates since :attr:`origin_step`. Call :meth:`apply` before each optimizer step and
    :meth:`end_epoch` after each validation; :meth:`state_dict` goes into the checkpoint.
    """

    lr: float
    schedule: list[dict]
    decay: float = 1.0
    origin_step: int = 0
    origin_epoch: int = 0
    plateau: dict = field(default_factory=lambda: {"best": None, "bad_epochs": 0, "cooldown": 0, "scale": 1.0})

    def rate(self, step: int, epoch: int) -> float:
        """The rate of the update that follows ``step`` updates, in epoch ``epoch`` (0-based)."""
        u, e = step - self.origin_step, epoch - self.origin_epoch
        rate = self.lr * self.decay ** (u + 1)
        for f in self.schedule:
            rate *= self._factor(f, u, e)
        return rate

    def _factor(self, f: dict, u: int, e: int) -> float:
        name = f["name"]
        if name == "warmup":
            return min(1.0, (u + 1) / f["steps"])
        if name == "exponential":
            return f["gamma"] ** (u + 1)
        if name == "step":
            return f["gamma"] ** (e // f["every"])
        if name == "plateau":
            return self.plateau["scale"]
        if name == "cosine":
            if u < f["warmup"]:
                return (u + 1) / f["warmup"]
            progress = min(1.0, (u - f["warmup"]) / (f["steps"] - f["warmup"]))
            floor = f["floor"] / self.lr
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        raise AssertionError(name)

    def apply(self, optimizer, step: int, epoch: int) -> float:
        """Set every parameter group's rate for the update after ``step`` updates; returns it."""
        rate = self.rate(step, epoch)
        for group in optimizer.param_groups:
            group["lr"] = rate
        return rate

    def end_epoch(self, valid: float) -> None:
        """Feed the epoch's validation bound (higher is better) to the plateau factor, if any."""
        f = next((f for f in self.schedule if f["name"] == "plateau"), None)
        if f is None:
            return
        p = self.plateau
        if p["best"] is None or valid > p["best"] + f["threshold"]:
            p["best"], p["bad_epochs"] = valid, 0
        else:
            p["bad_epochs"] += 1
        if p["cooldown"] > 0:
            p["cooldown"] -= 1
            p["bad_epochs"] = 0
        if p["bad_epochs"] > f["patience"]:
            # torch's _reduce_lr: a cut that would not lower the rate by more than its eps
            # (a min_lr at or above the rate) leaves it alone; it never raises it
            scale = max(p["scale"] * f["factor"], f["min_lr"] / self.lr)
            if self.lr * (p["scale"] - scale) > PLATEAU_EPS:
                p["scale"] = scale
            p["cooldown"], p["bad_epochs"] = f["cooldown"], 0

    def state_dict(self) -> dict:
        return {"origin_step": self.origin_step, "origin_epoch": self.origin_epoch, "plateau": dict(self.plateau)}

    def load_state_dict(self, state: dict) -> None:
        self.origin_step, self.origin_epoch = int(state["origin_step"]), int(state["origin_epoch"])
        self.plateau = dict(state["plateau"])
