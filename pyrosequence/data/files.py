"""Reading a user's sequences from files: NumPy (``.npz``/``.npy``), CSV and Parquet tables, MIDI
files (piano rolls) and WAV files (framed waveforms).

Files are bounded by :mod:`pyrosequence.data.limits` (``max_table_bytes`` on disk; a ``.npz``'s
arrays by ``max_decoded_bytes`` before they are inflated). Every reader returns :class:`RawSequences`: a list of ``(T_i, x_dim)`` float64 arrays, an id per
sequence, and, when the file says so, the split of each sequence. Every problem with a file is a
one-line ``ValueError`` naming the file and, where there is one, the array, line or column.

Accepted layouts
----------------
``.npz``
    ``x`` ``(sequences, time, x_dim)`` padded, with an optional ``lengths`` ``(sequences,)``
    (padding beyond a length is ignored, NaN included), an optional ``split`` ``(sequences,)``
    of ``"train"``/``"valid"``/``"test"`` and optional covariates ``u`` (or ``covariates``)
    ``(sequences, time, U)``, padded like ``x``; or ``train_x``/``valid_x``/``test_x`` (each with
    an optional ``<split>_lengths`` and ``<split>_u``): the splits given; or ``arr_0, arr_1, ...`` as
    ``np.savez(path, *sequences)`` writes a list, each ``(T_i, x_dim)`` or ``(T_i,)``.
``.npy``
    ``(sequences, time, x_dim)`` (all of full length), ``(time, x_dim)`` or ``(time,)`` (one
    sequence). Object arrays (pickles) are refused: save a list with ``np.savez(path, *seqs)``.
CSV / Parquet, long form
    a sequence-id column (``id_column``, default ``"sequence"``), an optional time column
    (``time_column``, default ``"time"`` when present; rows are ordered by it within a sequence,
    else kept in file order; sequences are ordered by id, numerically when every id is a number),
    an optional split column (``split_column``, default ``"split"``
    when present), value columns (``value_columns``, default: all the others) and covariate columns
    (``covariate_columns``, default none: known inputs a model reads but does not emit; they
    are no value columns and may not be missing).
CSV / Parquet, wide form
    one series per file: a row per step, a column per feature (a time column, when present, orders
    the rows and is not a feature). A folder of such files is a data set of one sequence per file.
MIDI (``.mid``/``.midi``)
    one ``(T, 88)`` 0/1 piano roll per file, a step every ``step_quarters`` quarter notes (default
    1.0), read by :func:`pyrosequence.data.midi.read_midi` (needs music21).
WAV (``.wav``)
    one mono PCM recording per file, read by :func:`pyrosequence.data.speech.read_wav` (samples
    in [-1, 1)) and cut into steps of ``frame_size`` samples (default 200; a last, shorter
    remainder is dropped) as the speech data sets are; every file must have one sample rate.
A folder
    holding ``train.*``, ``valid.*`` and ``test.*`` (files or sub-folders): the splits given;
    otherwise every data file in it (sorted by name), their sequences pooled.
"""

from __future__ import annotations

import csv
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pyrosequence.data.limits import resolve

SPLITS = ("train", "valid", "test")
#: File suffixes read as data, by format.
SUFFIXES = {".npz": "npz", ".npy": "npy", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
            ".mid": "midi", ".midi": "midi", ".wav": "wav"}
#: Formats whose file is one sequence (its id is the file's name).
ONE_PER_FILE = ("midi", "wav")


@dataclass
class RawSequences:
    """Sequences as read from disk, before splitting and scaling.

    Attributes:
        sequences: ``(T_i, x_dim)`` float64 arrays, without inf (NaN marks a missing value).
        ids: one label per sequence (the id column's value, the file name, or the position).
        splits: the split of each sequence when the file gives it, else ``None``.
        features: the value columns' names (tables) or ``None``; covariate columns last.
        covariate_dim: how many of the last columns are covariates (known inputs a model reads
            but does not emit): a table's ``covariate_columns``, a ``.npz``'s ``u`` array.
    """

    sequences: list
    ids: list
    splits: list | None = None
    features: list | None = field(default=None)
    covariate_dim: int = 0

    def __len__(self) -> int:
        return len(self.sequences)


def data_format(path: Path) -> str:
    """The format of a data file or folder: ``npz``, ``npy``, ``csv``, ``parquet`` or ``folder``."""
    if path.is_dir():
        return "folder"
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown data file type {path.suffix or '(no suffix)'!r}; "
                         f"give a .npz, .npy, .csv, .parquet, .mid or .wav file, or a folder of them")
    return fmt


def check_exists(path: Path) -> None:
    """One line for a missing or empty file, or one larger than ``max_table_bytes``
    (:mod:`pyrosequence.data.limits`; ``PYROSEQUENCE_MAX_TABLE_BYTES`` raises it)."""
    if not path.exists():
        raise ValueError(f"no data file or folder at {path}")
    if path.is_file():
        if path.stat().st_size == 0:
            raise ValueError(f"{path} is empty")
        resolve(None).check_file(path, "max_table_bytes")


def _finite(array: np.ndarray, where: str, lengths=None) -> None:
    """Refuse inf inside the sequences, and a sequence whose values are all NaN (NaN is a missing
    value, but a sequence needs at least one observed value)."""
    within = np.ones(array.shape, dtype=bool)
    if lengths is not None and array.ndim == 3:
        within = np.broadcast_to(np.arange(array.shape[1])[None, :, None] < np.asarray(lengths)[:, None, None],
                                 array.shape)
    bad = np.isinf(array) & within
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        names = ("sequence", "step", "feature")[-len(index):] if len(index) <= 3 else ()
        at = ", ".join(f"{n} {i}" for n, i in zip(names, index))
        raise ValueError(f"{where}: inf at {at} (NaN marks a missing value; inf is refused)")
    observed = ~np.isnan(array) & within
    if array.ndim == 3:
        empty = ~observed.reshape(array.shape[0], -1).any(1)
        if empty.any():
            raise ValueError(f"{where}: sequence {int(np.argmax(empty))} has no observed value (all NaN)")
    elif not observed.any():
        raise ValueError(f"{where}: the sequence has no observed value (all NaN)")


def _numeric(array: np.ndarray, where: str) -> np.ndarray:
    if array.dtype == object:
        raise ValueError(f"{where} is an object array (a pickle), which is not read; save a list of sequences with "
                         "np.savez(path, *sequences)")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{where} has dtype {array.dtype}, not numbers")
    return array.astype(np.float64)


def _padded(x: np.ndarray, lengths, where: str) -> list:
    """Split a padded ``(n, T, d)`` (or ``(n, T)``) array into sequences by ``lengths``."""
    x = _numeric(x, where)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"{where} must have shape (sequences, time, x_dim), got {x.shape}")
    if lengths is None:
        lengths = np.full(x.shape[0], x.shape[1])
    else:
        lengths = np.asarray(lengths)
        if lengths.shape != (x.shape[0],) or lengths.dtype.kind not in "iu":
            raise ValueError(f"{where}: lengths must be {x.shape[0]} integers, got shape {lengths.shape} dtype {lengths.dtype}")
        out_of_range = (lengths < 1) | (lengths > x.shape[1])
        if out_of_range.any():
            i = int(np.argmax(out_of_range))
            raise ValueError(f"{where}: sequence {i} has length {int(lengths[i])}, outside [1, {x.shape[1]}]")
    _finite(x, where, lengths)
    return [x[i, : int(n)] for i, n in enumerate(lengths)]


def read_npz(path: Path) -> RawSequences:
    """Read a ``.npz`` file in one of the layouts of the module docstring."""
    try:
        with zipfile.ZipFile(path) as archive:  # what the arrays decode to, before anything is inflated
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{path} is not a readable .npz file: {error}") from None
    resolve(None).check(path, "max_decoded_bytes", declared, f"its arrays decode to {declared:,} bytes")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except ValueError as error:
        if "pickle" in str(error):
            raise ValueError(f"{path} holds object arrays (pickles), which are not read; save a list of sequences with "
                             "np.savez(path, *sequences)") from None
        raise ValueError(f"{path} is not a readable .npz file: {error}") from None
    except Exception as error:  # zipfile.BadZipFile, OSError, EOFError
        raise ValueError(f"{path} is not a readable .npz file: {error}") from None
    keys = set(arrays)
    if not keys:
        raise ValueError(f"{path} holds no arrays")
    if "x" in keys:
        unknown = sorted(keys - {"x", "lengths", "split", *COVARIATE_ARRAYS})
        if unknown:
            raise ValueError(f"{path}: unknown array(s) {', '.join(unknown)} beside 'x' (accepted: lengths, split, u)")
        sequences = _padded(arrays["x"], arrays.get("lengths"), f"{path}, array 'x'")
        sequences, covariate_dim = _with_covariates(sequences, arrays, "", arrays.get("lengths"), path)
        splits = None
        if "split" in arrays:
            split = arrays["split"]
            if split.shape != (len(sequences),) or split.dtype.kind not in "US":
                raise ValueError(f"{path}, array 'split': must be {len(sequences)} strings, got shape {split.shape} dtype {split.dtype}")
            splits = [str(s) for s in split]
            _check_split_names(splits, f"{path}, array 'split'")
        return RawSequences(sequences, list(range(len(sequences))), splits, covariate_dim=covariate_dim)
    if keys & {f"{s}_x" for s in SPLITS}:
        expected = {f"{s}_{k}" for s in SPLITS for k in ("x", "lengths", *COVARIATE_ARRAYS)}
        unknown = sorted(keys - expected)
        if unknown:
            raise ValueError(f"{path}: unknown array(s) {', '.join(unknown)} (accepted: train_x, valid_x, test_x and "
                             "<split>_lengths, <split>_u)")
        missing = [f"{s}_x" for s in SPLITS if f"{s}_x" not in keys]
        if missing:
            raise ValueError(f"{path}: the splits are given by train_x/valid_x/test_x but {', '.join(missing)} is missing")
        sequences, splits, dims = [], [], set()
        for s in SPLITS:
            part = _padded(arrays[f"{s}_x"], arrays.get(f"{s}_lengths"), f"{path}, array '{s}_x'")
            part, covariate_dim = _with_covariates(part, arrays, f"{s}_", arrays.get(f"{s}_lengths"), path)
            dims.add(covariate_dim)
            sequences += part
            splits += [s] * len(part)
        if len(dims) > 1:
            raise ValueError(f"{path}: some splits have covariates (<split>_u) and some do not, or not as many")
        return RawSequences(sequences, list(range(len(sequences))), splits, covariate_dim=dims.pop())
    if all(k.startswith("arr_") and k[4:].isdigit() for k in keys):
        sequences = []
        for i in range(len(keys)):
            where = f"{path}, array 'arr_{i}'"
            if f"arr_{i}" not in arrays:
                raise ValueError(f"{path}: array 'arr_{i}' is missing from the list arr_0 .. arr_{len(keys) - 1}")
            sequences.append(_one_sequence(arrays[f"arr_{i}"], where))
        return RawSequences(sequences, list(range(len(sequences))))
    raise ValueError(f"{path}: unknown arrays {', '.join(sorted(keys))}; accepted: x (with lengths, split), "
                     "train_x/valid_x/test_x (with <split>_lengths), or arr_0, arr_1, ... (np.savez(path, *sequences))")


#: The names a ``.npz`` may give its covariates array (``<split>_u`` etc. with split arrays).
COVARIATE_ARRAYS = ("u", "covariates")


def _with_covariates(sequences: list, arrays: dict, prefix: str, lengths, path: Path) -> tuple[list, int]:
    """``sequences`` with the covariates of the ``.npz`` array ``<prefix>u`` (or
    ``<prefix>covariates``) appended as their last columns, and how many there are (0: none)."""
    given = [prefix + k for k in COVARIATE_ARRAYS if prefix + k in arrays]
    if not given:
        return sequences, 0
    if len(given) > 1:
        raise ValueError(f"{path}: give the covariates once, as {given[0]!r} or {given[1]!r}")
    where = f"{path}, array {given[0]!r}"
    u = _numeric(np.asarray(arrays[given[0]]), where)
    u = u[..., None] if u.ndim == 2 else u
    steps = max(len(s) for s in sequences)
    if u.ndim != 3 or u.shape[0] != len(sequences) or u.shape[1] < steps or 0 in u.shape:
        raise ValueError(f"{where} must have shape ({len(sequences)}, time, covariates) with the time of "
                         f"{prefix}x (at least {steps} steps), got {u.shape}")
    return [np.concatenate([s, c[: len(s)]], axis=1) for s, c in zip(sequences, u)], u.shape[2]


def _one_sequence(array: np.ndarray, where: str) -> np.ndarray:
    array = _numeric(array, where)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"{where} must have shape (time, x_dim) or (time,), got {array.shape}")
    _finite(array, where)
    return array


def read_npy(path: Path) -> RawSequences:
    """Read a ``.npy`` file: ``(sequences, time, x_dim)``, ``(time, x_dim)`` or ``(time,)``."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        if "pickle" in str(error):
            raise ValueError(f"{path} is an object array (a pickle), which is not read; save a list of sequences with "
                             "np.savez(path, *sequences)") from None
        raise ValueError(f"{path} is not a readable .npy file: {error}") from None
    except Exception as error:
        raise ValueError(f"{path} is not a readable .npy file: {error}") from None
    if array.ndim == 3:
        sequences = _padded(array, None, str(path))
    else:
        sequences = [_one_sequence(array, str(path))]
    return RawSequences(sequences, list(range(len(sequences))))


def _check_split_names(splits: list, where: str) -> None:
    bad = sorted(set(splits) - set(SPLITS))
    if bad:
        raise ValueError(f"{where}: unknown split name(s) {', '.join(map(repr, bad))}; use train, valid, test")


def read_midi_roll(path: Path, step_quarters: float) -> RawSequences:
    """One MIDI file as a piano-roll sequence (see the module docstring)."""
    from pyrosequence.data.midi import read_midi

    try:
        roll = read_midi(path, step_quarters)
    except ImportError as error:
        raise ValueError(f"{path}: {error}") from None
    if roll.shape[0] == 0:
        raise ValueError(f"{path} holds no notes between MIDI 21 and 108 (an empty piano roll)")
    return RawSequences([roll.astype(np.float64)], [path.stem])


def read_wav_frames(path: Path, frame_size: int) -> tuple[RawSequences, int]:
    """One WAV file as a sequence of ``frame_size``-sample steps, and its sample rate."""
    from pyrosequence.data.speech import frame, read_wav

    if isinstance(frame_size, bool) or not isinstance(frame_size, int) or frame_size < 1:
        raise ValueError(f"frame_size must be a positive number of samples, got {frame_size!r}")
    samples, rate = read_wav(path)
    steps = frame(samples.astype(np.float64), frame_size)
    if steps.shape[0] == 0:
        raise ValueError(f"{path} has {len(samples)} samples: shorter than one step of {frame_size} (frame_size)")
    return RawSequences([steps], [path.stem]), rate


# ----------------------------------------------------------------------------------------- tables


@dataclass
class Table:
    """A table's columns (strings for CSV, arrays for Parquet) and where its rows came from."""

    path: Path
    columns: list
    data: dict
    first_line: int = 2  # the file line of the first row (CSV: after the header)

    @property
    def num_rows(self) -> int:
        return len(next(iter(self.data.values()))) if self.data else 0

    def row_name(self, i: int) -> str:
        return f"line {self.first_line + i}" if self.first_line else f"row {i}"


def read_csv(path: Path) -> Table:
    """A CSV file with a header line as a :class:`Table` of strings; ragged rows are refused."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not a UTF-8 text file ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise ValueError(f"{path}: not valid CSV: {error}") from None
    rows = [r for r in rows if r]  # blank lines
    if not rows:
        raise ValueError(f"{path} is empty")
    header = [name.strip() for name in rows[0]]
    if len(rows) == 1:
        raise ValueError(f"{path} has a header but no rows")
    duplicated = sorted({n for n in header if header.count(n) > 1})
    if duplicated or "" in header:
        raise ValueError(f"{path}: the header has {'duplicated column(s) ' + ', '.join(map(repr, duplicated)) if duplicated else 'an empty column name'}")
    for i, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise ValueError(f"{path}, line {i + 2}: {len(row)} fields, but the header has {len(header)} columns")
    data = {name: [row[j].strip() for row in rows[1:]] for j, name in enumerate(header)}
    return Table(path, header, data)


def read_parquet(path: Path) -> Table:
    """A Parquet file as a :class:`Table` (needs pandas with pyarrow or fastparquet: ``pyrosequence[tables]``)."""
    try:
        import pandas as pd
    except ImportError:
        raise ValueError(f"{path}: reading Parquet needs pandas and pyarrow (pip install 'pyrosequence[tables]')") from None
    try:
        frame = pd.read_parquet(path)
    except ImportError:
        raise ValueError(f"{path}: reading Parquet needs pyarrow (pip install 'pyrosequence[tables]')") from None
    except Exception as error:
        raise ValueError(f"{path} is not a readable Parquet file: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    if frame.shape[0] == 0:
        raise ValueError(f"{path} has no rows")
    columns = [str(c) for c in frame.columns]
    return Table(path, columns, {str(c): frame[c].to_numpy() for c in frame.columns}, first_line=0)


def read_table(path: Path, fmt: str) -> Table:
    """Read a CSV or Parquet file."""
    return read_csv(path) if fmt == "csv" else read_parquet(path)


def _floats(table: Table, column: str) -> np.ndarray:
    """A column as float64, refusing text and NaN/inf naming the line."""
    values = table.data[column]
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        out = values.astype(np.float64)
    else:
        out = np.empty(len(values))
        for i, text in enumerate(values):
            if isinstance(text, str) and text.strip() == "":
                out[i] = math.nan  # an empty cell is a missing value
                continue
            try:
                out[i] = float(text)
            except (TypeError, ValueError):
                raise ValueError(f"{table.path}, {table.row_name(i)}, column {column!r}: {text!r} is not a number") from None
    bad = np.isinf(out)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{table.path}, {table.row_name(i)}, column {column!r}: infinite value "
                         "(an empty cell or NaN marks a missing value; inf is refused)")
    return out


def _column(table: Table, name: str, option: str) -> str:
    if name not in table.columns:
        raise ValueError(f"{table.path}: no column {name!r} ({option}); the columns are {', '.join(table.columns)}")
    return name


def table_layout(table: Table, options: dict) -> dict:
    """The resolved table options: ``layout``, ``id_column``, ``time_column``, ``split_column``,
    ``value_columns``; given column names are checked to exist."""
    out = {}
    # a column named like a number arrives as one from the command line's JSON reading
    options = {k: (str(v) if k.endswith("_column") and isinstance(v, (int, float)) and not isinstance(v, bool) else v)
               for k, v in options.items()}
    if isinstance(options.get("value_columns"), list):
        options["value_columns"] = [str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                                    for v in options["value_columns"]]
    id_column = options.get("id_column")
    layout = options.get("layout") or ("long" if id_column or "sequence" in table.columns else "wide")
    if layout not in ("long", "wide"):
        raise ValueError(f"layout must be 'long' or 'wide', got {layout!r}")
    out["layout"] = layout
    if layout == "long":
        out["id_column"] = _column(table, id_column or "sequence", "id_column")
    elif id_column is not None:
        raise ValueError(f"{table.path}: id_column is for the long layout (one row per step of many sequences)")
    time_column = options.get("time_column", "time" if "time" in table.columns else None)
    out["time_column"] = time_column and _column(table, time_column, "time_column")
    split_column = options.get("split_column", "split" if "split" in table.columns and layout == "long" else None)
    if split_column and layout == "wide":
        raise ValueError(f"{table.path}: split_column is for the long layout; give wide files as train/valid/test files")
    out["split_column"] = split_column and _column(table, split_column, "split_column")
    reserved = {out.get("id_column"), out["time_column"], out["split_column"]} - {None}
    covariates = options.get("covariate_columns") or []
    if isinstance(covariates, str) or not isinstance(covariates, (list, tuple)):
        raise ValueError(f"covariate_columns must be a list of column names, got {covariates!r}")
    covariates = [str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in covariates]
    for name in covariates:
        _column(table, name, "covariate_columns")
    clash = sorted(set(covariates) & reserved)
    if clash:
        raise ValueError(f"{table.path}: column(s) {', '.join(clash)} cannot be both a covariate and an id/time/split column")
    values = options.get("value_columns")
    if values is None:
        values = [c for c in table.columns if c not in reserved and c not in covariates]
    else:
        if isinstance(values, str) or not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"value_columns must be a non-empty list of column names, got {values!r}")
        for name in values:
            _column(table, name, "value_columns")
        clash = sorted(set(values) & reserved)
        if clash:
            raise ValueError(f"{table.path}: column(s) {', '.join(clash)} cannot be both a value and an id/time/split column")
        clash = sorted(set(values) & set(covariates))
        if clash:
            raise ValueError(f"{table.path}: column(s) {', '.join(clash)} cannot be both a value and a covariate column")
    if not values:
        raise ValueError(f"{table.path}: no value columns (every column is an id, time, split or covariate column)")
    out["value_columns"] = list(values)
    if covariates:
        out["covariate_columns"] = list(covariates)
    return out


def table_sequences(table: Table, layout: dict) -> RawSequences:
    """The sequences of a table read with the resolved ``layout`` (see :func:`table_layout`)."""
    features = [*layout["value_columns"], *layout.get("covariate_columns", [])]
    covariate_dim = len(layout.get("covariate_columns", []))
    for name in [layout.get("id_column"), layout["time_column"], layout["split_column"], *features]:
        if name is not None:
            _column(table, name, "column")
    values = np.stack([_floats(table, c) for c in features], axis=1)
    n = table.num_rows
    times = _floats(table, layout["time_column"]) if layout["time_column"] else np.arange(n, dtype=np.float64)
    if layout["layout"] == "wide":
        order = _time_order(table, times, np.arange(n), "")
        return RawSequences([values[order]], [table.path.stem], None, features, covariate_dim)
    ids = [str(v) for v in table.data[layout["id_column"]]]
    for i, label in enumerate(ids):
        if label == "" or label == "nan":
            raise ValueError(f"{table.path}, {table.row_name(i)}, column {layout['id_column']!r}: missing sequence id")
    groups: dict = {}
    for i, label in enumerate(ids):
        groups.setdefault(label, []).append(i)
    groups = {label: groups[label] for label in _sorted_ids(list(groups))}
    sequences, labels, splits = [], [], [] if layout["split_column"] else None
    for label, rows in groups.items():
        rows = np.asarray(rows)
        order = _time_order(table, times, rows, f" (sequence {label!r})")
        sequences.append(values[rows[order]])
        labels.append(label)
        if splits is not None:
            column = layout["split_column"]
            names = {str(table.data[column][i]).strip() for i in rows}
            if len(names) != 1:
                raise ValueError(f"{table.path}, column {column!r}: sequence {label!r} is in several splits ({', '.join(sorted(names))})")
            name = names.pop()
            if name not in SPLITS:
                i = int(rows[0])
                raise ValueError(f"{table.path}, {table.row_name(i)}, column {column!r}: unknown split {name!r}; use train, valid, test")
            splits.append(name)
    return RawSequences(sequences, labels, splits, features, covariate_dim)


def _sorted_ids(labels: list) -> list:
    """Sequence ids in order: numerically when every id is a number, else as text (so the order
    of the sequences does not depend on the order of the rows)."""
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


def _time_order(table: Table, times: np.ndarray, rows: np.ndarray, what: str) -> np.ndarray:
    """The order of ``rows`` by time (stable); repeated times are refused naming the line."""
    t = times[rows]
    order = np.argsort(t, kind="stable")
    repeated = np.nonzero(np.diff(t[order]) == 0)[0]
    if repeated.size:
        i = int(rows[order[repeated[0] + 1]])
        raise ValueError(f"{table.path}, {table.row_name(i)}: time {t[order[repeated[0]]]:g} repeats{what}")
    return order
