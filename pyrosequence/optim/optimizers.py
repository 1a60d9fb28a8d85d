"""Optimizers by name, with their arguments checked and recorded in ``config.json``.

=================  ==========================================================================
``adam``           ``torch.optim.Adam`` (``betas``, ``eps``, ``weight_decay`` as an L2 term)
``adamw``          ``torch.optim.AdamW``: decoupled weight decay (Loshchilov & Hutter 2019)
``clipped-adam``   ``pyro.optim.clipped_adam.ClippedAdam``, the optimizer of Pyro's DMM example:
                   every gradient element clamped to ``[-clip_norm, clip_norm]``, L2
                   ``weight_decay``, and the learning rate multiplied by ``lrd`` at every update
``sgd``            ``torch.optim.SGD`` (``momentum``, ``nesterov``, ``weight_decay``)
=================  ==========================================================================

The learning rate itself is not an option here: it is ``TrainConfig.lr``, and the schedule
(:mod:`pyrosequence.optim.schedules`) sets every group's rate before each update. Clipped Adam's
per-update decay ``lrd`` is applied through that same path (the optimizer is built with
``lrd=1``): the rate of update ``k`` (counted from 1) is ``lr * lrd**k``, exactly Pyro's sequence,
and a resumed run that is given a new learning rate starts its decay again from that rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from pyro.optim.clipped_adam import ClippedAdam


@dataclass(frozen=True)
class OptimizerSpec:
    """One named optimizer: its class, the options it takes and their defaults."""

    name: str
    build: Callable[..., torch.optim.Optimizer]
    defaults: dict
    summary: str

    def options(self, given: dict) -> dict:
        """``given`` checked against this optimizer and completed with the defaults."""
        unknown = sorted(set(given) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"optimizer {self.name!r} does not take {', '.join(unknown)}; it takes: {', '.join(sorted(self.defaults)) or 'nothing'}"
            )
        values = {**self.defaults, **given}
        for key, value in values.items():
            _check_option(self.name, key, value)
        if "betas" in values:
            values["betas"] = [float(b) for b in values["betas"]]
        return values


def _check_option(optimizer: str, key: str, value) -> None:
    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if key == "betas":
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(number(b) and 0 <= b < 1 for b in value)):
            raise ValueError(f"{optimizer}: betas must be two numbers in [0, 1), got {value!r}")
    elif key == "nesterov":
        if not isinstance(value, bool):
            raise ValueError(f"{optimizer}: nesterov must be true or false, got {value!r}")
    elif key in ("eps", "clip_norm"):
        if not (number(value) and value > 0):
            raise ValueError(f"{optimizer}: {key} must be a positive number, got {value!r}")
    elif key == "lrd":
        if not (number(value) and 0 < value <= 1):
            raise ValueError(f"{optimizer}: lrd (the per-update decay factor) must be in (0, 1], got {value!r}")
    elif key in ("weight_decay", "momentum"):
        if not (number(value) and value >= 0):
            raise ValueError(f"{optimizer}: {key} must be a non-negative number, got {value!r}")


def _clipped_adam(params, lr, betas, eps, weight_decay, clip_norm, lrd):
    # lrd is applied by the learning-rate schedule (see the module docstring), so the optimizer's own is 1
    return ClippedAdam(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, clip_norm=clip_norm, lrd=1.0)


OPTIMIZERS: dict[str, OptimizerSpec] = {
    spec.name: spec
    for spec in [
        OptimizerSpec(
            "adam",
            lambda params, lr, betas, eps, weight_decay: torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay),
            {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0},
            "Adam (Kingma & Ba 2015); weight_decay is an L2 term added to the gradient",
        ),
        OptimizerSpec(
            "adamw",
            lambda params, lr, betas, eps, weight_decay: torch.optim.AdamW(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay),
            {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01},
            "AdamW: decoupled weight decay",
        ),
        OptimizerSpec(
            "clipped-adam",
            _clipped_adam,
            {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "clip_norm": 10.0, "lrd": 1.0},
            "Pyro's ClippedAdam: element-wise gradient clamp, L2 weight decay, per-update decay lrd",
        ),
        OptimizerSpec(
            "sgd",
            lambda params, lr, momentum, nesterov, weight_decay: torch.optim.SGD(
                params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
            ),
            {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
            "stochastic gradient descent, with optional (Nesterov) momentum",
        ),
    ]
}


def optimizer_spec(name: str) -> OptimizerSpec:
    """The optimizer called ``name``, with an error that lists them all."""
    try:
        return OPTIMIZERS[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}") from None


def check_optimizer(name: str, options: dict) -> dict:
    """The complete, checked options of optimizer ``name`` (raises ``ValueError`` naming the problem)."""
    if not isinstance(options, dict):
        raise ValueError(f"optimizer_options must be a mapping, got {options!r}")
    spec = optimizer_spec(name)
    if spec.name == "sgd" and options.get("nesterov") and not options.get("momentum"):
        raise ValueError("sgd: nesterov needs a positive momentum")
    return spec.options(options)


def per_update_decay(name: str, options: dict) -> float:
    """The factor by which the optimizer itself decays its rate at every update (``lrd``), else 1."""
    return float(options.get("lrd", 1.0)) if name == "clipped-adam" else 1.0


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float, options: dict) -> torch.optim.Optimizer:
    """Optimizer ``name`` over ``params`` at rate ``lr`` with ``options`` (checked here too)."""
    values = check_optimizer(name, options)
    return optimizer_spec(name).build(list(params), lr, **values)


def apply_options(optimizer: torch.optim.Optimizer, name: str, options: dict) -> None:
    """Write ``options`` (betas, weight decay, ...) into every parameter group of ``optimizer``:
    a resumed run whose optimizer state was loaded from its checkpoint takes the options it was
    started with now, not those it was saved with."""
    fresh = build_optimizer(name, [torch.nn.Parameter(torch.zeros(1))], 1.0, options)
    defaults = {k: v for k, v in fresh.defaults.items() if k not in ("lr", "params")}
    for group in optimizer.param_groups:
        group.update(defaults)
