"""Data sets by name: where each split comes from and which emission suits it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pyrosequence.data.dataset import SequenceDataset
from pyrosequence.data.synthetic import SETTINGS, synthetic_dataset


@dataclass(frozen=True)
class DataSource:
    """A named data set: its splits, a loader ``load(split, root)``, and its natural likelihood."""

    name: str
    splits: tuple[str, ...]
    load: Callable[[str, str | None], SequenceDataset]
    likelihood: str
    description: str = ""


DATASETS: dict[str, DataSource] = {
    "synthetic": DataSource(
        "synthetic",
        ("train", "valid", "test") + SETTINGS,
        lambda split, root: synthetic_dataset(split),
        "gaussian",
        "VHRNN paper section 4: switching-noise linear dynamics, 2-D, built in",
    ),
}


def data_source(name: str) -> DataSource:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(DATASETS))}") from None


def load_split(name: str, split: str, root: str | None = None) -> SequenceDataset:
    """Load one split of the data set ``name``, with errors naming the valid choices."""
    source = data_source(name)
    if split not in source.splits:
        raise ValueError(f"dataset {name!r} has no split {split!r}; choose one of: {', '.join(source.splits)}")
    return source.load(split, root)
