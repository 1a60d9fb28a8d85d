"""Data sets by name: where each split comes from and which emission suits it.

``load_split(name, split, root)`` loads a split; ``root`` is what each loader reads (the library
ships no data except ``synthetic`` and, built from the music21 corpus, ``bach``):

===================================== =====================================================
``synthetic``, ``synthetic-paper``    ignored (generated, VHRNN section 4; two laws, see
                                      :mod:`pyrosequence.data.synthetic`)
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

Beyond the built-in names, ``data`` may be

* a path to a file or folder of the user's sequences (:mod:`pyrosequence.data.from_path`; its
  reading options are ``data_options``);
* a name given to :func:`register_dataset` in this process (a run records the loader's import
  path, ``package.module:function``, so that a new process finds it);
* an installed package's entry point in the group ``pyrosequence.datasets``
  (``[project.entry-points."pyrosequence.datasets"] mine = "mypkg.data:load"``);
* ``package.module:function``: a loader imported by path.

A loader is called as ``load(split, root)`` and returns a
:class:`~pyrosequence.data.dataset.SequenceDataset`; an entry point may also name a
:class:`DataSource`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from importlib import metadata
from typing import Callable

from pyrosequence.atomic import first_line

from pyrosequence.data.bach import load_bach
from pyrosequence.data.dataset import SequenceDataset
from pyrosequence.data.ht_sensor import load_ht_sensor
from pyrosequence.data.music import MUSIC_SETS, load_music
from pyrosequence.data.speech import load_speech
from pyrosequence.data.stock import load_stock
from pyrosequence.data.synthetic import LAWS, SETTINGS, synthetic_dataset
from pyrosequence.import_path import import_attribute

_SPLITS = ("train", "valid", "test")


def _load_stride(split: str, root, stride: int) -> SequenceDataset:
    return load_speech(split, root, stride=stride)


@dataclass(frozen=True)
class DataSource:
    """A named data set: its splits, a loader ``load(split, root)``, and its natural likelihood
    (``None``: inferred from the training split, Bernoulli when it is binary, else Gaussian).
    ``options``: for data read from a path, the completed reading options a run records."""

    name: str
    splits: tuple[str, ...]
    load: Callable[[str, str | None], SequenceDataset]
    likelihood: str | None
    description: str = ""
    options: dict | None = None

    def natural_likelihood(self, root=None) -> str:
        """The likelihood, inferred from the training split when none is declared."""
        if self.likelihood is not None:
            return self.likelihood
        from pyrosequence.data.from_path import infer_likelihood

        data = self.load("train", root)
        return infer_likelihood([data.observations[i, : int(n)].numpy() for i, n in enumerate(data.lengths)])

    def has_missing(self, root=None) -> bool:
        """Whether the training split has missing values (NaN). The built-in data sets have none
        (their readers refuse NaN), so only the user's data (a path, a registered loader) is read."""
        if self.name in DATASETS and DATASETS[self.name] is self:
            return False
        return self.load("train", root).has_missing

    def covariate_dim(self, root=None) -> int:
        """How many covariate columns the data sets carry (the built-in ones: none)."""
        if self.name in DATASETS and DATASETS[self.name] is self:
            return 0
        return self.load("train", root).covariate_dim


DATASETS: dict[str, DataSource] = {
    "synthetic": DataSource(
        "synthetic",
        ("train", "valid", "test") + SETTINGS,
        lambda split, root: synthetic_dataset(split),
        "gaussian",
        "VHRNN paper section 4: switching-noise linear dynamics, 2-D, built in",
    ),
    "synthetic-paper": DataSource(
        "synthetic-paper",
        ("train", "valid", "test") + SETTINGS,
        lambda split, root: synthetic_dataset(split, law=LAWS["paper"]),
        "gaussian",
        "VHRNN paper section 4 under the paper-like law: unrescaled random matrices, some growing "
        "(noiseless long sequences leave the training range), switch = three full sequences; built in",
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


ENTRY_POINT_GROUP = "pyrosequence.datasets"


class DataRegistry:
    """Names -> data sources: the built-ins fixed, run-time registrations on top, then installed
    entry points, import paths and file paths (see the module docstring)."""

    def __init__(self, builtins: dict) -> None:
        self._builtins = builtins
        self._registered: dict = {}

    def names(self) -> list[str]:
        return list(self._builtins) + sorted({**self._registered, **{ep.name: None for ep in _entry_points()}})

    def register(self, name: str, load, likelihood: str | None = None, splits=_SPLITS, description: str = "",
                 replace: bool = False) -> DataSource:
        if not isinstance(name, str) or not name or ":" in name or "/" in name or name != name.strip():
            raise ValueError(f"a data set name must be a non-empty string without ':', '/' or surrounding spaces, got {name!r}")
        if name in self._builtins:
            raise ValueError(f"{name!r} is a built-in data set; register yours under another name")
        source = load if isinstance(load, DataSource) else None
        if source is None:
            if not callable(load):
                raise TypeError(f"register_dataset({name!r}, ...) needs a loader load(split, root) or a DataSource, got {load!r}")
            if likelihood not in (None, "bernoulli", "gaussian"):
                raise ValueError(f"likelihood must be 'bernoulli', 'gaussian' or None (inferred), got {likelihood!r}")
            source = DataSource(name, tuple(splits), load, likelihood, description)
        old = self._registered.get(name)
        if old is not None and old.load is not source.load and not replace:
            raise ValueError(f"a data set {name!r} is already registered; pass replace=True")
        self._registered[name] = source
        return source

    def unregister(self, name: str) -> None:
        self._registered.pop(name, None)

    def lookup(self, name: str, options: dict | None = None) -> DataSource:
        if not isinstance(name, str):
            raise ValueError(f"a data set must be a name or a path, got {name!r}")
        from pyrosequence.data.from_path import is_data_path

        source = self._builtins.get(name) or self._registered.get(name)
        if source is None:
            source = next((_entry_source(ep) for ep in _entry_points() if ep.name == name), None)
        if source is None and ":" in name and not is_data_path(name):
            source = import_source(name)
        if source is None and is_data_path(name):
            return file_source(name, options)
        if source is None:
            raise ValueError(
                f"unknown dataset {name!r}; choose one of: {', '.join(self.names())}, or give a path to a "
                ".npz/.npy/.csv/.parquet file or folder (see pyrosequence.register_dataset)"
            )
        if options:
            raise ValueError(f"data_options are for data read from a path; data set {name!r} takes none")
        return source

    def recorded_name(self, name: str) -> str:
        """What a run records for ``name``: the loader's import path for a run-time registration,
        the absolute path for a file path, the name itself otherwise."""
        from pyrosequence.data.from_path import is_data_path, resolve_path

        if name in self._builtins:
            return name
        if name in self._registered:
            load = self._registered[name].load
            module, qualname = getattr(load, "__module__", None), getattr(load, "__qualname__", "")
            if module in (None, "__main__") or "<" in qualname:
                raise ValueError(f"data set {name!r}: its loader {qualname or load!r} is not importable (defined in a script, "
                                 "a function or a lambda), so a run directory could not be reopened; define it in a module")
            return f"{module}:{qualname}"
        if any(ep.name == name for ep in _entry_points()) or (":" in name and not is_data_path(name)):
            return name
        return resolve_path(name) if is_data_path(name) else name


def _entry_points():
    try:
        return list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # a broken installed distribution must not break the built-in data sets
        return []


def _as_source(obj, name: str, where: str) -> DataSource:
    if isinstance(obj, DataSource):
        return replace(obj, name=name)
    if callable(obj):
        return DataSource(name, _SPLITS, obj, None, f"loader {where}")
    raise TypeError(f"{where} is neither a DataSource nor a loader load(split, root) (got {obj!r})")


def _entry_source(ep) -> DataSource:
    try:
        obj = ep.load()
    except Exception as error:
        raise ValueError(f"cannot load data set entry point {ep.name!r} ({ep.value}): {type(error).__name__}: {first_line(error)}") from None
    return _as_source(obj, ep.name, f"entry point {ep.value!r}")


def import_source(path: str) -> DataSource:
    """The loader (or :class:`DataSource`) at ``package.module:name``."""
    return _as_source(import_attribute(path, "data set", "package.module:function"), path, repr(path))


def file_source(path: str, options: dict | None = None) -> DataSource:
    """The :class:`DataSource` of data read from ``path`` with ``options`` (completed by reading
    the data unless they already are: a run's recorded options)."""
    from pyrosequence.data.from_path import SPLITS, complete_options, load_path, resolve_data_options

    options = dict(options or {})
    if not complete_options(options):
        options = resolve_data_options(path, options)

    def load(split: str, root=None) -> SequenceDataset:
        return load_path(root or path, options)[split]

    return DataSource(str(path), SPLITS, load, options["likelihood"], f"sequences read from {path}", options)


REGISTRY = DataRegistry(DATASETS)


def register_dataset(name: str, load, likelihood: str | None = None, splits=_SPLITS, description: str = "",
                     replace: bool = False) -> DataSource:
    """Make ``name`` a data set for ``train()``, ``--data`` and every command that reopens a run.

    ``load(split, root)`` returns the :class:`SequenceDataset` of ``split`` (``root`` is the run's
    ``data_root``, or ``None``); ``likelihood`` is ``"bernoulli"``, ``"gaussian"`` or ``None``
    (inferred from the training split). A run records the loader's import path, so the loader must
    live in an importable module. ``load`` may also be a :class:`DataSource`. Registering a name
    again with another loader needs ``replace=True``. Installed packages can offer data sets
    through the entry-point group ``pyrosequence.datasets`` instead.
    """
    return REGISTRY.register(name, load, likelihood, splits, description, replace)


def unregister_dataset(name: str) -> None:
    """Forget a run-time registration (built-ins and entry points stay)."""
    REGISTRY.unregister(name)


def data_source(name: str, options: dict | None = None) -> DataSource:
    """The :class:`DataSource` called ``name`` (a built-in, registered or entry-point name, an
    import path, or a path to the user's data read with ``options``); ``ValueError`` listing the
    names otherwise."""
    return REGISTRY.lookup(name, options)


def load_split(name: str, split: str, root: str | None = None, options: dict | None = None) -> SequenceDataset:
    """Load one split of the data set ``name``, with errors naming the valid choices."""
    source = data_source(name, options)
    if split not in source.splits:
        raise ValueError(f"dataset {name!r} has no split {split!r}; choose one of: {', '.join(source.splits)}")
    return source.load(split, root)
