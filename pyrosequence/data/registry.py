"""Data sets by name: where each split comes from and which emission suits it.

``load_split(name, split, root)`` loads a split; ``root`` is what each loader reads (the library
ships no data except ``synthetic`` and, built from the music21 corpus, ``bach``):

===================================== =====================================================
``synthetic``                         ignored (generated, VHRNN section 4)
``jsb``, ``piano``, ``nottingham``,   the folder holding the music file (original pickle,
``muse``                              ``.mat`` or JSON; see :mod:`pyrosequence.data.music`)
``bach``                              the cache folder (default ``$PYROSEQUENCE_CACHE`` or
                                      ``~/.cache/pyrosequence``)
``stock``                             the folder of QuantQuote ``table_<ticker>.csv`` files
``htsensor``                          the folder holding the two UCI ``.dat`` files
``speech``, ``speech-perm``,          a folder of mono PCM ``.wav`` files (searched
``speech-stride50/200``               recursively)
===================================== =====================================================

For the disk-backed sets ``root=None`` reads ``$PYROSEQUENCE_DATA``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from pyrosequence.data.bach import load_bach
from pyrosequence.data.dataset import SequenceDataset
from pyrosequence.data.ht_sensor import load_ht_sensor
from pyrosequence.data.music import MUSIC_SETS, load_music
from pyrosequence.data.speech import load_speech
from pyrosequence.data.stock import load_stock
from pyrosequence.data.synthetic import SETTINGS, synthetic_dataset

_SPLITS = ("train", "valid", "test")


def _load_stride(split: str, root, stride: int) -> SequenceDataset:
    return load_speech(split, root, stride=stride)


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
    **{
        name: DataSource(
            name,
            _SPLITS,
            partial(load_music, name),
            "bernoulli",
            f"{spec.title} (Boulanger-Lewandowski et al. 2012), 88-key binary piano rolls; root: the folder "
            f"holding {spec.original!r}, {spec.examples[2]!r} or another accepted name (or its {spec.subdir}/ sub-folder)",
        )
        for name, spec in MUSIC_SETS.items()
    },
    "bach": DataSource(
        "bach",
        _SPLITS,
        lambda split, root: load_bach(split, root),
        "bernoulli",
        "Bach four-part chorales from the music21 corpus, quarter-note 88-key binary rolls, built in "
        "(needs pyrosequence[music]); root: cache folder (default $PYROSEQUENCE_CACHE or ~/.cache/pyrosequence)",
    ),
    "stock": DataSource(
        "stock",
        _SPLITS,
        lambda split, root: load_stock(split, root),
        "gaussian",
        "VHRNN appendix C: 2008 daily log ratios of open/high/low/close/volume, 125 days, 5-D, "
        "345/50/50 companies; root: folder of QuantQuote table_<ticker>.csv files (or its daily/ parent)",
    ),
    "htsensor": DataSource(
        "htsensor",
        _SPLITS,
        lambda split, root: load_ht_sensor(split, root),
        "gaussian",
        "VHRNN appendix C: UCI HT Sensor, 3000 s windows every 1000 s downsampled to 100 steps, 10-D; "
        "root: folder holding HT_Sensor_dataset.dat and HT_Sensor_metadata.dat",
    ),
    "speech": DataSource(
        "speech",
        _SPLITS,
        lambda split, root: load_speech(split, root),
        "gaussian",
        "Dai et al. 4.1: raw mono WAV speech, 200 samples per step, 40-step training chunks; "
        "root: folder of .wav files (searched recursively, e.g. FSDD)",
    ),
    "speech-perm": DataSource(
        "speech-perm",
        _SPLITS,
        lambda split, root: load_speech(split, root, permute=True),
        "gaussian",
        "Dai et al. 5.1 (Perm-TIMIT): speech frames with a fixed random permutation of the 200 positions; "
        "root: folder of .wav files",
    ),
    **{
        f"speech-stride{m}": DataSource(
            f"speech-stride{m}",
            _SPLITS,
            partial(_load_stride, stride=m),
            "gaussian",
            f"Dai et al. 4.3: one speech sample of every {m}, 1-D steps, 40-step training chunks; "
            "root: folder of .wav files",
        )
        for m in (50, 200)
    },
}


def data_source(name: str) -> DataSource:
    """The :class:`DataSource` called ``name``; ``ValueError`` listing the names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}") from None


def load_split(name: str, split: str, root: str | None = None) -> SequenceDataset:
    """Load one split of the data set ``name``, with errors naming the valid choices."""
    source = data_source(name)
    if split not in source.splits:
        raise ValueError(f"dataset {name!r} has no split {split!r}; choose one of: {', '.join(source.splits)}")
    return source.load(split, root)
