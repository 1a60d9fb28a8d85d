"""Ground-truth markers to draw on plots: where a data set's sequences change regime."""

from __future__ import annotations

from typing import Callable

from pyrosequence.data.synthetic import regime_changes

#: data set name -> (split, index) -> steps where the generating regime changes.
CHANGE_POINTS: dict[str, Callable[[str, int], list[int]]] = {
    "synthetic": regime_changes,
}


def change_points(data: str | None, split: str, index: int) -> list[int]:
    """Regime changes of a sequence when the data set knows them, else none."""
    finder = CHANGE_POINTS.get(data or "")
    return finder(split, index) if finder else []
