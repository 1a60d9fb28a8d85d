"""HT Sensor (Huerta et al., 2016; UCI "Gas sensors for home activity monitoring"), prepared as
in the VHRNN paper (Deng et al., 2020, section 5 "HT Sensor" and appendix C).

Input: the two UCI files, in ``root`` or ``root/ht_sensor`` (``root/HT_Sensor_UCIsubmission``
too):

``HT_Sensor_dataset.dat``
    A header line, then whitespace-separated rows ``id time R1 R2 R3 R4 R5 R6 R7 R8 Temp.
    Humidity``: the induction ``id``, ``time`` in hours relative to the start of the induction
    (negative before it), the resistances of the eight metal-oxide gas sensors R1..R8, the
    temperature and the relative humidity. Readings come about once per second.
``HT_Sensor_metadata.dat``
    A header line, then whitespace-separated rows ``id date class t0 dt``: the date
    (MM-DD-YY), the stimulus (``banana``, ``wine`` or ``background``), the time of day at which
    the induction started (``t0``, hours) and its duration (``dt``, hours). Every ``id`` of the
    data file must appear here.

Preparation (paper's protocol; the choices it leaves open are fixed here):

* Each induction's readings are put on a 1-second grid starting at its first reading (values at
  the grid times are linearly interpolated between the neighbouring readings, which returns the
  readings themselves when they are 1 s apart).
* Windows of ``window = 3000`` s start every ``hop = 1000`` s (at grid seconds 0, 1000, ...) while
  the whole window lies within the induction's recording; each is downsampled by
  ``downsample = 30`` (grid seconds 0, 30, ..., 2970 of the window) to 100 steps.
* Dimensions: the 10 measured signals R1..R8, temperature, humidity. (The paper speaks of 11
  sensors; the UCI file has these 10 signal columns besides id and time, and time is not used
  as a feature.)
* Split: all windows, in (id, start) order, are shuffled with
  ``numpy.random.default_rng(seed)`` (``seed = 2016``) and cut in the paper's proportions
  532 : 68 : 74 (exactly 532/68/74 when there are 674 windows): ``n_valid = round(68 n / 674)``,
  ``n_test = round(74 n / 674)``, the rest train. As in the paper's counts, windows are split, not
  inductions, so overlapping windows of one induction can land in different splits.
* Normalisation: every dimension is standardised with the mean and standard deviation
  (``ddof = 0``) over all training steps, applied to every split.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyrosequence.data._io import data_root, file_signature
from pyrosequence.data.dataset import SequenceDataset
from pyrosequence.data.limits import Limits, resolve

SPLITS = ("train", "valid", "test")
DATA_FILE = "HT_Sensor_dataset.dat"
METADATA_FILE = "HT_Sensor_metadata.dat"
SIGNALS = ("R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "Temp.", "Humidity")
WINDOW_S = 3000
HOP_S = 1000
DOWNSAMPLE = 30
PAPER_SIZES = (532, 68, 74)
SEED = 2016


@dataclass(frozen=True)
class Induction:
    """One induction: metadata and its readings (``seconds`` since the induction start, ``(n,)``;
    ``values``, ``(n, 10)``)."""

    id: int
    date: str
    stimulus: str
    t0: float
    dt: float
    seconds: np.ndarray
    values: np.ndarray


def find_ht_sensor_files(root) -> tuple[Path, Path]:
    """``(dataset, metadata)`` paths in ``root``, ``root/ht_sensor`` or ``root/HT_Sensor_UCIsubmission``."""
    base = data_root(root, "htsensor")
    folders = [base, base / "ht_sensor", base / "HT_Sensor_UCIsubmission"]
    for folder in folders:
        data, meta = folder / DATA_FILE, folder / METADATA_FILE
        if data.is_file() and meta.is_file():
            return data, meta
    raise FileNotFoundError(
        f"dataset 'htsensor': need both {DATA_FILE!r} and {METADATA_FILE!r} (UCI 'Gas sensors for home "
        f"activity monitoring') in one of {', '.join(repr(str(f)) for f in folders)}"
    )


def _numbers(path: Path, columns: int, what: str, limits: Limits, size_field: str = "max_table_bytes") -> np.ndarray:
    limits.check_file(path, size_field)
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        header = f.readline()
        body = f.read()
    if not header.strip():
        raise ValueError(f"{path}: empty file; expected the UCI {what} with a header line")
    lines = body.count("\n") + 1
    if lines > limits.max_total_steps:
        limits.check(path, "max_total_steps", lines, f"the file has {lines:,} lines (rows of readings)")
    try:
        with warnings.catch_warnings():  # older NumPy only warns when it stops at a non-number
            warnings.simplefilter("error", DeprecationWarning)
            flat = np.fromstring(body, dtype=np.float64, sep=" ")
    except (ValueError, DeprecationWarning) as err:
        raise ValueError(f"{path}: not a table of numbers after the header ({err})") from None
    if flat.size == 0 or flat.size % columns:
        lines = [ln for ln in body.splitlines() if ln.strip()]
        bad = next((i for i, ln in enumerate(lines) if len(ln.split()) != columns), None)
        where = f"; data line {bad + 1} has {len(lines[bad].split())}" if bad is not None else ""
        raise ValueError(f"{path}: every row of the UCI {what} must have {columns} columns{where}")
    limits.check(path, "max_total_steps", flat.size // columns, f"the file has {flat.size // columns:,} rows of readings")
    return flat.reshape(-1, columns)


def read_metadata(path, limits: Limits | None = None) -> dict[int, tuple[str, str, float, float]]:
    """``HT_Sensor_metadata.dat`` as ``{id: (date, class, t0, dt)}``; ``ValueError`` naming the file
    (:class:`~pyrosequence.data.limits.LimitError` when it is larger than ``limits.max_file_bytes``
    or has more than ``limits.max_total_steps`` rows)."""
    path = Path(path)
    limits = resolve(limits)
    limits.check_file(path)
    out = {}
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        header = f.readline().split()
        if [h.lower() for h in header[:5]] != ["id", "date", "class", "t0", "dt"]:
            raise ValueError(f"{path}: header {' '.join(header)!r} is not 'id date class t0 dt' (UCI HT Sensor metadata)")
        for number, line in enumerate(f, 2):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 5:
                raise ValueError(f"{path}, line {number}: expected 5 fields (id date class t0 dt), got {len(fields)}")
            if len(out) >= limits.max_total_steps:
                limits.check(path, "max_total_steps", len(out) + 1, f"more than {len(out):,} inductions are listed")
            try:
                out[int(fields[0])] = (fields[1], fields[2], float(fields[3]), float(fields[4]))
            except ValueError:
                raise ValueError(f"{path}, line {number}: bad id, t0 or dt in {line.strip()!r}") from None
    if not out:
        raise ValueError(f"{path}: no inductions listed")
    return out


def read_ht_sensor(root=None, limits: Limits | None = None) -> list[Induction]:
    """Read the two UCI files into one :class:`Induction` per id (sorted by id).

    ``limits`` (default: the environment's, see :mod:`pyrosequence.data.limits`) bounds the
    readings file by ``max_table_bytes`` and ``max_total_steps`` rows, the metadata file by
    ``max_file_bytes``."""
    data_path, meta_path = find_ht_sensor_files(root)
    return list(_read_cached(file_signature([data_path, meta_path]), resolve(limits)))


@functools.lru_cache(maxsize=2)
def _read_cached(signature, limits: Limits) -> tuple[Induction, ...]:
    data_path, meta_path = Path(signature[0][0]), Path(signature[1][0])
    meta = read_metadata(meta_path, limits)
    table = _numbers(data_path, 2 + len(SIGNALS), "HT_Sensor_dataset.dat (id time R1..R8 Temp. Humidity)", limits)
    if not np.isfinite(table).all():
        row = int(np.argwhere(~np.isfinite(table))[0, 0])
        raise ValueError(f"{data_path}: data row {row + 1} holds NaN or inf")
    ids = table[:, 0]
    if (ids != np.round(ids)).any():
        raise ValueError(f"{data_path}: the first column (induction id) must hold whole numbers")
    inductions = []
    unique, inverse = np.unique(ids, return_inverse=True)
    grouped = np.argsort(inverse.reshape(-1), kind="stable")  # rows of each id in file order, ids ascending
    ends = np.cumsum(np.bincount(inverse.reshape(-1), minlength=unique.size))
    for k, value in enumerate(unique):
        i = int(value)
        if i not in meta:
            raise ValueError(f"{data_path}: induction id {i} is not listed in {meta_path}")
        rows = table[grouped[(ends[k - 1] if k else 0) : ends[k]]]
        seconds = rows[:, 1] * 3600.0
        order = np.argsort(seconds, kind="stable")
        date, stimulus, t0, dt = meta[i]
        inductions.append(Induction(int(i), date, stimulus, t0, dt, seconds[order], rows[order, 2:]))
    return tuple(inductions)


def _window_count(induction: Induction, window: int, hop: int) -> int:
    start, end = induction.seconds[0], induction.seconds[-1]
    span = int(np.floor(end - start + 1e-6)) + 1  # grid seconds 0 .. span-1 lie within the recording
    return (span - window) // hop + 1 if span >= window else 0


def induction_windows(induction: Induction, window: int = WINDOW_S, hop: int = HOP_S, downsample: int = DOWNSAMPLE,
                      limits: Limits | None = None, where: str | None = None) -> np.ndarray:
    """The windows of one induction: ``(n, window // downsample, 10)`` (see the module docstring).

    Raises :class:`~pyrosequence.data.limits.LimitError` (naming ``where``, e.g. the data file)
    when the windows would hold more than ``limits.max_total_steps`` steps: the readings' times
    decide how many windows there are, so a file with absurd times is refused before allocating."""
    if window % downsample:
        raise ValueError(f"window ({window} s) must be a multiple of downsample ({downsample})")
    start = induction.seconds[0]
    count = _window_count(induction, window, hop)
    resolve(limits).check(where or "dataset 'htsensor'", "max_total_steps",
                          count * (window // downsample),
                          f"the readings of induction {induction.id} span {count:,} windows of {window // downsample} steps")
    if count <= 0:
        return np.zeros((0, window // downsample, len(SIGNALS)))
    grid = start + (np.arange(count)[:, None] * hop + np.arange(0, window, downsample)[None, :])
    values = np.stack(
        [np.interp(grid.reshape(-1), induction.seconds, induction.values[:, d]) for d in range(len(SIGNALS))], -1
    )
    return values.reshape(count, window // downsample, len(SIGNALS))


def split_sizes(n: int) -> tuple[int, int, int]:
    """``(train, valid, test)`` window counts for ``n`` windows in the paper's 532 : 68 : 74
    proportions (exactly those for ``n = 674``; valid and test get at least one each)."""
    total = sum(PAPER_SIZES)
    n_valid = max(1, round(n * PAPER_SIZES[1] / total))
    n_test = max(1, round(n * PAPER_SIZES[2] / total))
    return n - n_valid - n_test, n_valid, n_test


@dataclass(frozen=True)
class HTSensorData:
    """The prepared HT Sensor windows: ``sequences[split]`` ``(n, 100, 10)`` normalised;
    ``windows[split]`` the ``(id, start second)`` of each; training ``mean``/``std``."""

    sequences: dict
    windows: dict
    mean: np.ndarray
    std: np.ndarray


def prepare_ht_sensor(root=None, window: int = WINDOW_S, hop: int = HOP_S, downsample: int = DOWNSAMPLE, seed: int = SEED,
                      limits: Limits | None = None) -> HTSensorData:
    """All splits of HT Sensor (VHRNN appendix C), normalised with the training statistics.

    ``limits``: see :func:`read_ht_sensor`; the steps of all windows together must also fit
    ``limits.max_total_steps``."""
    limits = resolve(limits)
    pieces, labels = [], []
    data_path = find_ht_sensor_files(root)[0]
    steps = limits.counter(data_path, "max_total_steps", "the steps of the windows of all inductions")
    for induction in read_ht_sensor(root, limits):
        steps.add(max(0, _window_count(induction, window, hop)) * (window // downsample))
        w = induction_windows(induction, window, hop, downsample, limits, where=data_path)
        pieces.append(w)
        labels += [(induction.id, k * hop) for k in range(w.shape[0])]
    n = len(labels)
    if n < 3:
        raise ValueError(f"dataset 'htsensor': only {n} windows of {window} s found; need at least 3 for three splits")
    x = np.concatenate(pieces)
    _, n_valid, n_test = split_sizes(n)
    order = np.random.default_rng(seed).permutation(n)
    parts = {"valid": order[:n_valid], "test": order[n_valid : n_valid + n_test], "train": order[n_valid + n_test :]}
    parts = {s: np.sort(parts[s]) for s in SPLITS}
    train = x[parts["train"]].reshape(-1, x.shape[-1])
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 0, std, 1.0)
    sequences = {s: (x[parts[s]] - mean) / std for s in SPLITS}
    windows = {s: [labels[i] for i in parts[s]] for s in SPLITS}
    return HTSensorData(sequences, windows, mean, std)


def load_ht_sensor(split: str, root=None, window: int = WINDOW_S, hop: int = HOP_S, downsample: int = DOWNSAMPLE, seed: int = SEED,
                   limits: Limits | None = None) -> SequenceDataset:
    """One split of HT Sensor: ``(n, 100, 10)`` normalised windows (VHRNN appendix C).
    ``limits``: see :func:`prepare_ht_sensor` (default: the environment's)."""
    if split not in SPLITS:
        raise ValueError(f"dataset 'htsensor' has no split {split!r}; choose one of: {', '.join(SPLITS)}")
    data = prepare_ht_sensor(root, window, hop, downsample, seed, limits)
    return SequenceDataset.from_sequences(list(data.sequences[split]), name=f"htsensor/{split}")
