"""A user's data set given by a path: read (:mod:`pyrosequence.data.files`), split
(:mod:`pyrosequence.data.splits`), optionally standardised, with its likelihood inferred.

``load_data(path, **options)`` returns the three splits; ``TrainConfig(data=path,
data_options={...})`` trains on them. The options a run used are completed by
:func:`resolve_data_options` and recorded in ``config.json`` (``data_options``), so that
``evaluate``, ``sample`` and ``--resume`` reopen the same split with the same scaling:

================= ===================================================================================
``format``        ``npz``, ``npy``, ``csv``, ``parquet``, ``midi``, ``wav`` or ``folder`` (from the path)
``layout``        tables: ``long`` (a sequence-id column) or ``wide`` (one series per file); default
                  ``long`` when the id column exists
``id_column``     long tables: the sequence-id column (default ``sequence``)
``time_column``   tables: orders the rows (default ``time`` when present; else file order)
``split_column``  long tables: ``train``/``valid``/``test`` per row (default ``split`` when present)
``value_columns`` tables: the features (default: every other column)
``covariate_columns`` tables: known inputs a model conditions on but does not emit (calendar
                  features, controls, another market's prices), e.g. ``["price", "holiday"]``;
                  read as the last columns of ``x`` (the data sets' ``covariate_dim``; a ``.npz``
                  gives them as a ``u`` array); never missing (NaN is refused, naming the column
                  and sequence); default none
``step_quarters`` MIDI files: quarter notes per step (default 1.0)
``frame_size``    WAV files: samples per step (default 200); ``sample_rate`` is recorded and checked
``split``         ``file`` (given by the file: a split column or array, or train/valid/test files),
                  ``sequence`` (whole sequences, by a seeded hash of their ids) or ``time`` (the last
                  ``holdout`` steps of every sequence for test, the ``holdout`` before for valid);
                  default: ``file`` when the file gives splits, else ``sequence`` when there are at
                  least 3 sequences, else ``time``
``split_seed``    ``split=sequence``: the seed (default 0)
``valid_fraction``, ``test_fraction``  ``split=sequence``: default 0.1 each (at least one sequence)
``holdout``       ``split=time``: steps held out for test and again for valid (default: a tenth of
                  the shortest sequence)
``likelihood``    ``bernoulli`` when every value is 0 or 1, else ``gaussian`` (inferred; the model's
                  ``likelihood`` option overrides what the model uses)
``standardize``   ``True``: every feature scaled to mean 0 and standard deviation 1 with the training
                  split's statistics, recorded as ``scaling`` (``{"mean": [...], "std": [...]}``) and
                  undone by :func:`unstandardize` (``pyrosequence sample`` writes data units); the
                  covariates are standardised too (they are network inputs, which learn best at unit
                  scale), but only the observation columns enter the bound's change of units
================= ===================================================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pyrosequence.data.dataset import SequenceDataset
from pyrosequence.data.files import (
    ONE_PER_FILE,
    SPLITS,
    SUFFIXES,
    RawSequences,
    check_exists,
    data_format,
    read_npy,
    read_midi_roll,
    read_npz,
    read_table,
    read_wav_frames,
    table_layout,
    table_sequences,
)
from pyrosequence.data.splits import METHODS, default_holdout, split_by_sequence, split_by_time

TABLE_OPTIONS = ("layout", "id_column", "time_column", "split_column", "value_columns", "covariate_columns")
#: Options of MIDI and WAV files (``sample_rate`` is recorded, and checked across files).
MEDIA_OPTIONS = ("step_quarters", "frame_size", "sample_rate")
OPTIONS = ("format", *TABLE_OPTIONS, *MEDIA_OPTIONS, "split", "split_seed", "valid_fraction", "test_fraction", "holdout",
           "likelihood", "standardize", "scaling")
LIKELIHOODS = ("bernoulli", "gaussian")


def is_data_path(name: str) -> bool:
    """Whether a ``data`` value names a path rather than a data set: it holds a path separator,
    ends with a data file suffix, or exists on disk."""
    return isinstance(name, str) and bool(name) and (
        os.sep in name or "/" in name or Path(name).suffix.lower() in SUFFIXES or Path(name).expanduser().exists()
    )


def resolve_path(path) -> str:
    """The absolute path a run records, so that it reads the same file from any folder."""
    return str(Path(path).expanduser().resolve())


@dataclass
class FileData:
    """A data set read from a path: its three splits and the completed options."""

    path: Path
    splits: dict
    options: dict

    def __getitem__(self, split: str) -> SequenceDataset:
        return self.splits[split]


def _check_options(options: dict) -> dict:
    if not isinstance(options, dict):
        raise ValueError(f"data_options must be a dict, got {type(options).__name__}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown data option(s) {', '.join(unknown)}; the options are: {', '.join(OPTIONS)}")
    if options.get("split") is not None and options["split"] not in METHODS:
        raise ValueError(f"split must be one of {', '.join(METHODS)}, got {options['split']!r}")
    if options.get("likelihood") is not None and options["likelihood"] not in LIKELIHOODS:
        raise ValueError(f"likelihood must be bernoulli or gaussian, got {options['likelihood']!r}")
    if not isinstance(options.get("standardize", False), bool):
        raise ValueError(f"standardize must be true or false, got {options['standardize']!r}")
    seed = options.get("split_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"split_seed must be a non-negative integer, got {seed!r}")
    return dict(options)


def read_path(path: Path, options: dict) -> tuple[RawSequences, dict]:
    """Read the sequences at ``path`` (a file or folder) and the table options used."""
    check_exists(path)
    fmt = data_format(path)
    if options.get("format") not in (None, fmt):
        raise ValueError(f"{path} is read as {fmt}, but the run recorded format {options['format']!r}")
    if fmt == "folder":
        return _read_folder(path, options)
    return _read_file(path, fmt, options)


def _refuse(path: Path, options: dict, names: tuple, what: str) -> None:
    given = sorted(k for k in names if options.get(k) is not None)
    if given:
        raise ValueError(f"{path}: option(s) {', '.join(given)} are for {what}")


def _read_file(path: Path, fmt: str, options: dict) -> tuple[RawSequences, dict]:
    if fmt != "midi":
        _refuse(path, options, ("step_quarters",), "MIDI files")
    if fmt != "wav":
        _refuse(path, options, ("frame_size", "sample_rate"), "WAV files")
    if fmt not in ("csv", "parquet"):
        _refuse(path, options, TABLE_OPTIONS, "CSV and Parquet tables")
    if fmt in ("npz", "npy"):
        return (read_npz(path) if fmt == "npz" else read_npy(path)), {}
    if fmt == "midi":
        step = options.get("step_quarters", 1.0)
        return read_midi_roll(path, step), {"step_quarters": step}
    if fmt == "wav":
        size = options.get("frame_size", 200)
        raw, rate = read_wav_frames(path, size)
        if options.get("sample_rate") not in (None, rate):
            raise ValueError(f"{path}: sample rate {rate} Hz differs from the {options['sample_rate']} Hz of the other "
                             "recordings (or the run's); resample it first")
        return raw, {"frame_size": size, "sample_rate": rate}
    table = read_table(path, fmt)
    layout = table_layout(table, options)
    return table_sequences(table, layout), layout


def _data_files(folder: Path) -> list:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUFFIXES)


def _read_files(files: list, options: dict, where: Path) -> tuple[RawSequences, dict]:
    """Pool the sequences of ``files``, read with the table options of the first table."""
    if not files:
        raise ValueError(f"{where} holds no data files (.npz, .npy, .csv, .parquet, .mid, .wav)")
    sequences, ids, splits, layout, features = [], [], [], None, None
    given, covariate_dims = [], set()
    for file in files:
        check_exists(file)
        raw, used = _read_file(file, data_format(file), {**options, **(layout or {})})
        covariate_dims.add(raw.covariate_dim)
        layout = layout or used or None
        features = features or raw.features
        sequences += raw.sequences
        # a wide table's, a MIDI or WAV file's id is already its name
        named = (layout or {}).get("layout") == "wide" or data_format(file) in ONE_PER_FILE
        ids += raw.ids if len(files) == 1 or named else [f"{file.stem}/{i}" for i in raw.ids]
        given.append(raw.splits is not None)
        splits += raw.splits or [None] * len(raw)
    if any(given) and not all(given):
        raise ValueError(f"{where}: some files give a split column and some do not")
    if len(covariate_dims) > 1:
        raise ValueError(f"{where}: the files give different numbers of covariates ({sorted(covariate_dims)})")
    return RawSequences(sequences, ids, splits if all(given) else None, features, covariate_dims.pop()), layout or {}


def _read_folder(folder: Path, options: dict) -> tuple[RawSequences, dict]:
    entries = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    named = {}
    for p in entries:
        key = p.name if p.is_dir() else p.stem
        if key in SPLITS and (p.is_dir() or p.suffix.lower() in SUFFIXES):
            if key in named:
                raise ValueError(f"{folder}: two {key!r} entries ({named[key].name}, {p.name})")
            named[key] = p
    if not named:
        return _read_files(_data_files(folder), options, folder)
    missing = [s for s in SPLITS if s not in named]
    if missing:
        raise ValueError(f"{folder}: the splits are given by train/valid/test files, but {', '.join(missing)} is missing")
    sequences, ids, splits, layout, features = [], [], [], {}, None
    covariate_dims = set()
    for split in SPLITS:
        p = named[split]
        files = _data_files(p) if p.is_dir() else [p]
        raw, used = _read_files(files, {**options, **layout}, p)
        covariate_dims.add(raw.covariate_dim)
        layout = layout or used
        features = features or raw.features
        if raw.splits is not None:
            raise ValueError(f"{p}: a file of the {split} split has its own split column")
        sequences += raw.sequences
        ids += [f"{split}/{i}" for i in raw.ids]
        splits += [split] * len(raw)
    if len(covariate_dims) > 1:
        raise ValueError(f"{folder}: the splits give different numbers of covariates ({sorted(covariate_dims)})")
    return RawSequences(sequences, ids, splits, features, covariate_dims.pop()), layout


def _check_dims(raw: RawSequences, path: Path) -> None:
    dims = {s.shape[1] for s in raw.sequences}
    if len(dims) != 1:
        first = raw.sequences[0].shape[1]
        i = next(i for i, s in enumerate(raw.sequences) if s.shape[1] != first)
        raise ValueError(f"{path}: sequence {raw.ids[i]!r} has {raw.sequences[i].shape[1]} features, sequence "
                         f"{raw.ids[0]!r} has {first}; every sequence needs the same features")


def infer_likelihood(sequences: list) -> str:
    """``bernoulli`` when every observed value of every sequence is 0 or 1, else ``gaussian``."""
    return "bernoulli" if all(bool(np.isin(s[~np.isnan(s)], (0.0, 1.0)).all()) for s in sequences) else "gaussian"


def _check_observed(raw: RawSequences, path: Path) -> None:
    """Missing values (NaN) are allowed, but every sequence needs an observed value, and so does
    every feature (a column that is never observed cannot be learnt, nor standardised)."""
    for i, s in enumerate(raw.sequences):
        if np.isnan(s).all():
            raise ValueError(f"{path}: sequence {raw.ids[i]!r} has no observed value (all NaN); remove it")
    seen = np.zeros(raw.sequences[0].shape[1], dtype=bool)
    for s in raw.sequences:
        seen |= ~np.isnan(s).all(0)
    if not seen.all():
        j = int(np.argmin(seen))
        name = raw.features[j] if getattr(raw, "features", None) is not None and j < len(raw.features) else f"feature {j}"
        raise ValueError(f"{path}: column {name!r} has no observed value (all NaN); remove it")


def _check_covariates(raw: RawSequences, path: Path) -> None:
    """Covariates are known inputs: a NaN or inf in one is refused, naming its column (by name for
    a table), the sequence and the step."""
    first = raw.sequences[0].shape[1] - raw.covariate_dim
    for i, s in enumerate(raw.sequences):
        bad = ~np.isfinite(s[:, first:])
        if bad.any():
            t, j = (int(v) for v in np.argwhere(bad)[0])
            names = getattr(raw, "features", None)
            name = repr(names[first + j]) if names is not None and first + j < len(names) else f"{j} (of the covariates)"
            raise ValueError(f"{path}: covariate column {name} is {'NaN' if np.isnan(s[t, first + j]) else 'inf'} "
                             f"in sequence {raw.ids[i]!r} at step {t}; covariates must be known at every step")


def _observations(raw: RawSequences) -> list:
    """The sequences without their covariate columns."""
    return [s[:, : s.shape[1] - raw.covariate_dim] for s in raw.sequences]


def _split_parts(raw: RawSequences, options: dict, path: Path) -> dict:
    """``{split: [arrays]}`` by the options' split method (completing its options)."""
    method = options.get("split")
    if method is None:
        method = "file" if raw.splits is not None else ("sequence" if len(raw) >= 3 else "time")
    options["split"] = method
    if method == "file":
        if raw.splits is None:
            raise ValueError(f"{path} gives no splits (a split column or array, or train/valid/test files); "
                             "use split='sequence' or split='time'")
        parts = {s: [seq for seq, name in zip(raw.sequences, raw.splits) if name == s] for s in SPLITS}
        empty = [s for s in SPLITS if not parts[s]]
        if empty:
            raise ValueError(f"{path}: the {', '.join(empty)} split(s) it gives hold no sequences")
        return parts
    if raw.splits is not None:
        raise ValueError(f"{path} gives its own splits (a split column or array, or train/valid/test files); "
                         f"use split='file' (to split a table by {method} anyway: split_column=null and value_columns without it)")
    if method == "sequence":
        options.setdefault("split_seed", 0)
        options.setdefault("valid_fraction", 0.1)
        options.setdefault("test_fraction", 0.1)
        names = split_by_sequence(raw.ids, options["split_seed"], options["valid_fraction"], options["test_fraction"])
        return {s: [seq for seq, name in zip(raw.sequences, names) if name == s] for s in SPLITS}
    options.setdefault("holdout", default_holdout(raw.sequences))
    return {s: split_by_time(raw.sequences, raw.ids, options["holdout"], s) for s in SPLITS}


def _scaling(train: list, path: Path) -> dict:
    steps = np.concatenate(train, axis=0)
    mean = np.nanmean(steps, axis=0)  # of the observed values (NaN marks a missing one)
    std = np.nanstd(steps, axis=0)
    std[~(std > 0)] = 1.0  # a constant feature is only centred
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}


def _check_scaling(scaling, x_dim: int, path: Path) -> tuple:
    try:
        mean, std = np.asarray(scaling["mean"], dtype=np.float64), np.asarray(scaling["std"], dtype=np.float64)
    except (TypeError, KeyError, ValueError):
        raise ValueError(f"{path}: the recorded scaling must be {{'mean': [...], 'std': [...]}}, got {scaling!r}") from None
    if mean.shape != (x_dim,) or std.shape != (x_dim,) or not np.isfinite(mean).all() or not (std > 0).all():
        raise ValueError(f"{path}: the recorded scaling does not fit data with {x_dim} features (or has a zero std)")
    return mean, std


def load_path(path, options: dict | None = None) -> FileData:
    """Read, split and scale the data at ``path``; the returned options are complete (what a run
    records, and what reopens the same splits)."""
    path = Path(path).expanduser()
    options = _check_options(dict(options or {}))
    raw, layout = read_path(path, options)
    if len(raw) == 0:
        raise ValueError(f"{path} holds no sequences")
    _check_dims(raw, path)
    _check_covariates(raw, path)
    _check_observed(raw, path)
    options.update(format=data_format(path), **layout)
    parts = _split_parts(raw, options, path)
    options.setdefault("likelihood", infer_likelihood(_observations(raw)))
    options.setdefault("standardize", False)
    if options["standardize"]:
        if options["likelihood"] == "bernoulli":
            raise ValueError(f"{path}: standardize is for real-valued data; this data is binary (Bernoulli likelihood)")
        options.setdefault("scaling", _scaling(parts["train"], path))
        mean, std = _check_scaling(options["scaling"], raw.sequences[0].shape[1], path)
        parts = {s: [(seq - mean) / std for seq in seqs] for s, seqs in parts.items()}
    elif options.get("scaling") is not None:
        raise ValueError(f"{path}: a scaling is recorded but standardize is off")
    # None is dropped, except for the optional columns, where it says "none" (not "detect it")
    options = {k: options[k] for k in OPTIONS if options.get(k) is not None
               or (k in ("time_column", "split_column") and k in options)}
    x_dim = raw.sequences[0].shape[1] - raw.covariate_dim
    scale = np.asarray(options["scaling"]["std"][:x_dim], dtype=float) if options.get("scaling") else None
    splits = {s: SequenceDataset.from_sequences(seqs, name=f"{path.name}/{s}", scale=scale, covariate_dim=raw.covariate_dim)
              for s, seqs in parts.items()}
    return FileData(path, splits, options)


def complete_options(options: dict) -> bool:
    """Whether ``options`` are complete (a run's recorded ones), so nothing need be read to know
    the likelihood and the split (they are checked when the data is loaded)."""
    _check_options(options)
    needed = {"format", "split", "likelihood"} | {"sequence": {"split_seed", "valid_fraction", "test_fraction"},
                                                 "time": {"holdout"}}.get(options.get("split"), set())
    if options.get("standardize"):
        needed.add("scaling")
    return needed <= set(options)


def resolve_data_options(path, options: dict | None = None) -> dict:
    """The complete options of the data at ``path`` (reading it once)."""
    return load_path(path, options).options


def load_data(path, **options) -> dict:
    """Load a data set from a file or folder (see the module docstring for ``options``):
    ``{"train": ..., "valid": ..., "test": ...}`` of :class:`SequenceDataset`.

    Example: ``load_data("sales.csv", id_column="store", split="time", holdout=8)["train"]``.
    """
    return dict(load_path(path, options).splits)


def _recorded_scaling(x, options: dict):
    """The recorded ``(mean, std)`` of ``options`` as ``x``'s kind (tensor or array), or ``None``;
    only the first ``x.shape[-1]`` features', so that observations alone (draws, forecasts: the
    covariate columns come last) are scaled by their own statistics."""
    scaling = (options or {}).get("scaling")
    if not scaling:
        return None
    mean, std = scaling["mean"][: x.shape[-1]], scaling["std"][: x.shape[-1]]
    if torch.is_tensor(x):
        return (torch.as_tensor(mean, dtype=x.dtype, device=x.device),
                torch.as_tensor(std, dtype=x.dtype, device=x.device))
    return np.asarray(mean), np.asarray(std)


def unstandardize(x, options: dict):
    """Undo the recorded standardisation of ``options`` (a run's ``data_options``) on ``x``
    (``(..., x_dim)`` tensor or array); ``x`` unchanged when the data was not standardised."""
    scaling = _recorded_scaling(x, options)
    return x if scaling is None else x * scaling[1] + scaling[0]


def standardize(x, options: dict):
    """Apply the recorded standardisation of ``options`` to data in the file's units."""
    scaling = _recorded_scaling(x, options)
    return x if scaling is None else (x - scaling[0]) / scaling[1]
