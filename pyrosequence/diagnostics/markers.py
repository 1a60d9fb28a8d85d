"""Ground-truth markers to draw on plots: where a data set's sequences change regime."""

from __future__ import annotations

from functools import partial
from typing import Callable

from pyrosequence.data.synthetic import LAWS, regime_changes

#: data set name -> (split, index) -> steps where the generating regime changes.
CHANGE_POINTS: dict[str, Callable[[str, int], list[int]]] = {
    **{law.dataset: partial(regime_changes, law=law) for law in LAWS.values()},
}


def change_points(data: str | None, split: str, index: int) -> list[int]:
    """Regime changes of a sequence when the data set knows them, else none."""
    finder = CHANGE_POINTS.get(data or "")
    return finder(split, index) if finder else []
