"""Declared emission supports: which values of ``x`` an emission distribution can score.

Every distribution head (:mod:`pyrosequence.nn.heads`, :mod:`pyrosequence.nn.autoregressive`)
declares the support of one element of its output as a ``support`` attribute holding a
``torch.distributions.constraints`` object: ``constraints.boolean`` for Bernoulli heads,
``constraints.real`` for Gaussian and mixture heads. A model's
:attr:`~pyrosequence.models.SequenceModel.emission_support` is built from those declarations, and
data outside it is rejected before it is scored (a Bernoulli head would otherwise give 0.5-valued
data a finite "log-likelihood").

:func:`check_support` is the one check with the one message; :class:`AllOf` is the support of a
model that owns several declaring heads (data must lie in each one's support).
"""

from __future__ import annotations

import torch
from torch.distributions import constraints
from torch.distributions.constraints import Constraint

__all__ = ["AllOf", "element_support", "is_static", "check_support", "describe"]


class AllOf(Constraint):
    """The intersection of several element-wise constraints: a value is in the support when every
    part accepts it (``AllOf(boolean, real)`` accepts exactly 0 and 1)."""

    def __init__(self, *parts: Constraint) -> None:
        self.parts = tuple(parts)
        super().__init__()

    def check(self, value: torch.Tensor) -> torch.Tensor:
        ok = torch.ones_like(value, dtype=torch.bool)
        for part in self.parts:
            ok = ok & part.check(value)
        return ok

    def __repr__(self) -> str:
        return f"AllOf({', '.join(repr(p) for p in self.parts)})"


def element_support(support: Constraint) -> Constraint:
    """The element-wise constraint under ``constraints.independent`` wrappers (a distribution's
    ``support`` after ``.to_event(1)`` is ``independent(boolean, 1)``; the data check is per element)."""
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support


def is_static(support) -> bool:
    """True for a parameter-free constraint that can check any data tensor (``boolean``, ``real``,
    ``interval(0., 1.)``); False for one that holds tensors (e.g. a ``Uniform``'s per-batch bounds)
    or for anything that is not a constraint."""
    if not isinstance(support, Constraint) or support is constraints.dependent:
        return False
    if isinstance(support, constraints._Dependent):
        return False
    return not any(torch.is_tensor(v) for v in vars(support).values())


def describe(support: Constraint) -> str:
    """A short human name: ``binary (0/1)``, ``real``, or the constraint's ``repr``."""
    support = element_support(support)
    if support is constraints.boolean:
        return "binary (0/1)"
    if support is constraints.real:
        return "real"
    return repr(support)


def check_support(
    x: torch.Tensor, support: Constraint | None, name: str = "x", what: str = "the emission", source: str = ""
) -> None:
    """Raise ``ValueError`` if some element of ``x`` lies outside ``support`` (element-wise).

    ``what`` names the distribution in the message (``"a Bernoulli emission"``), ``source`` says who
    declared the support (``" (declared by BernoulliHead 'out')"``). ``None`` or ``real`` accept any
    finite data (finiteness itself is checked by :func:`pyrosequence.data.checks.check_sequences`).
    """
    if support is None:
        return
    parts = support.parts if isinstance(support, AllOf) else (support,)
    for part in parts:
        part = element_support(part)
        if part is constraints.real:
            continue
        ok = part.check(x)
        if ok.shape != x.shape:  # an event-level constraint: one verdict per event
            ok = ok.reshape(ok.shape + (1,) * (x.dim() - ok.dim())).expand(x.shape)
        if bool(ok.all()):
            continue
        index = tuple(int(i) for i in (~ok).nonzero()[0])
        value = x[index].item()
        where = f" at index {index}" if x.dim() else ""
        if part is constraints.boolean:
            kind = "a Bernoulli emission" if what == "the emission" else what
            raise ValueError(
                f"{name} must be binary (0/1) for {kind}{source}; found the value {value:g}{where}. "
                "Use likelihood='gaussian' for real-valued data."
            )
        raise ValueError(
            f"{name} must lie in the support {describe(part)} of {what}{source}; found the value {value:g}{where}"
        )
