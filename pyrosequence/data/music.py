"""The four polyphonic music data sets of Boulanger-Lewandowski, Bengio & Vincent (ICML 2012).

JSB Chorales, Piano-midi.de, Nottingham and MuseData, with their standard train/valid/test
splits, as used by the VHRNN paper (Deng et al., 2020, section 5 and appendix C) and by Dai et
al. (2019, section 5.1). Each step is an 88-dimensional 0/1 vector: column ``k`` is MIDI note
``21 + k`` (A0 = 21 .. C8 = 108), 1 when the note sounds at that step.

Three file formats are read, chosen by the file's extension:

``.pickle`` / ``.pkl``
    The original distribution (``JSB Chorales.pickle`` etc. from the authors' page): a dict
    ``{"train", "valid", "test"}`` -> list of sequences -> list of time steps -> the MIDI note
    numbers (ints in 21..108) sounding at that step. The file is unpickled with a restricted
    unpickler (:mod:`pyrosequence.data.safe_pickle`) that builds only plain containers, numbers
    and NumPy arrays, so a hostile file cannot run code.
``.mat``
    MATLAB v5 piano rolls (as in ``JSB_Chorales.mat``, ``Piano_midi.mat``, ``Nottingham.mat``,
    ``MuseData.mat``): keys ``traindata``/``validdata``/``testdata``, each a 1 x N cell array of
    ``(T_i, 88)`` 0/1 matrices. Needs SciPy (``pip install "pyrosequence[music]"``).
``.json``
    The same nested lists as the pickle, as JSON (``jsb-chorales-quarter.json``).

The model mean-centres the frames (VHRNN appendix C); :meth:`SequenceDataset.mean` of the
training split gives the per-key training mean for that.

Every reader bounds what a file can make it allocate (:mod:`pyrosequence.data.limits`): the
file's size; the steps of each sequence, of the whole file and the notes of each step, counted
with ``len`` before any roll is allocated (a pickle can share one list many times); the arrays a
pickle asks NumPy for, checked inside the unpickler before NumPy allocates them; the arrays a
``.mat`` file declares, read from its headers before SciPy loads it; the nesting of a JSON file,
scanned before it is parsed. A refusal is a one-line ``ValueError`` naming the file and the limit.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import re
import reprlib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyrosequence.data._io import data_root, file_signature
from pyrosequence.data._matfile import MatFormatError, check_mat_sizes
from pyrosequence.data.dataset import SequenceDataset
from pyrosequence.data.limits import LimitError, Limits, resolve
from pyrosequence.data.safe_pickle import SafeUnpickler, sized

MIDI_LOW = 21
MIDI_HIGH = 108
NUM_KEYS = MIDI_HIGH - MIDI_LOW + 1  # 88
SPLITS = ("train", "valid", "test")
EXTENSIONS = (".pickle", ".pkl", ".mat", ".json")  # search order: the original format first


@dataclass(frozen=True)
class MusicSet:
    """Where a music data set's file may be and how it is called.

    Attributes:
        name: registry name (``jsb``, ``piano``, ``nottingham``, ``muse``).
        title: the data set's usual name.
        original: the file name of the original pickle (``fetch.py`` saves a pickle under this name).
        subdir: a sub-folder of ``root`` also searched (the layout of a shared data folder).
        stems: accepted file stems, compared after :func:`_normalise` (lower case, runs of
            spaces, hyphens and dots turned into one underscore).
        examples: file names listed in the "not found" message.
    """

    name: str
    title: str
    original: str
    subdir: str
    stems: tuple[str, ...]
    examples: tuple[str, ...]


MUSIC_SETS: dict[str, MusicSet] = {
    "jsb": MusicSet(
        "jsb", "JSB Chorales", "JSB Chorales.pickle", "jsb_chorales",
        ("jsb_chorales", "jsb_chorales_quarter", "jsb"),
        ("JSB Chorales.pickle", "jsb_chorales.pickle", "JSB_Chorales.mat", "jsb-chorales-quarter.json"),
    ),
    "piano": MusicSet(
        "piano", "Piano-midi.de", "Piano-midi.de.pickle", "piano_midi",
        ("piano_midi_de", "piano_midi", "pianomidi", "pianomidi_de"),
        ("Piano-midi.de.pickle", "piano_midi.pickle", "Piano_midi.mat", "piano_midi.json"),
    ),
    "nottingham": MusicSet(
        "nottingham", "Nottingham", "Nottingham.pickle", "nottingham",
        ("nottingham",),
        ("Nottingham.pickle", "nottingham.pickle", "Nottingham.mat", "nottingham.json"),
    ),
    "muse": MusicSet(
        "muse", "MuseData", "MuseData.pickle", "muse_data",
        ("musedata", "muse_data", "muse"),
        ("MuseData.pickle", "muse_data.pickle", "MuseData.mat", "muse_data.json"),
    ),
}


# ---------------------------------------------------------------------------- notes <-> rolls
def notes_to_roll(steps, where: str = "sequence") -> np.ndarray:
    """Turn one sequence in the pickle/JSON layout (a list of steps, each an iterable of MIDI
    note numbers) into a ``(T, 88)`` uint8 piano roll with column ``k`` = MIDI ``21 + k``.

    Raises ``ValueError`` naming ``where`` and the step for a note outside 21..108 or a value
    that is not an integer.
    """
    try:
        steps = list(steps)
    except TypeError:
        raise ValueError(f"{where} is not a list of time steps (got {type(steps).__name__})") from None
    roll = np.zeros((len(steps), NUM_KEYS), dtype=np.uint8)
    for t, step in enumerate(steps):
        if isinstance(step, (str, bytes)) or not hasattr(step, "__iter__"):
            raise ValueError(f"{where}, step {t}: a step must be a list of MIDI notes, got {reprlib.repr(step)}")
        for note in step:
            if isinstance(note, (bool, np.bool_)) or not isinstance(note, (int, np.integer, float, np.floating)):
                raise ValueError(f"{where}, step {t}: {reprlib.repr(note)} is not a MIDI note number")
            if not np.isfinite(note) or note != int(note):
                raise ValueError(f"{where}, step {t}: {reprlib.repr(note)} is not a whole MIDI note number")
            note = int(note)
            if not MIDI_LOW <= note <= MIDI_HIGH:
                raise ValueError(
                    f"{where}, step {t}: note {note} is outside the piano range "
                    f"{MIDI_LOW}..{MIDI_HIGH} (A0..C8) of the 88-key roll"
                )
            roll[t, note - MIDI_LOW] = 1
    return roll


def roll_to_notes(roll) -> list[list[int]]:
    """The inverse of :func:`notes_to_roll`: for each step, the sorted MIDI notes that sound."""
    roll = np.asarray(roll)
    return [[int(k) + MIDI_LOW for k in np.flatnonzero(row)] for row in roll]


def _check_sizes(data: dict, path: Path, limits: Limits) -> None:
    """Check every sequence's steps and every step's notes against ``limits`` before a roll is
    allocated (``len`` only: a pickle can share one list many times, so the sizes, not the file's
    bytes, say what building the rolls would cost)."""
    total_steps = limits.counter(path, "max_total_steps", "the time steps of all sequences")
    total_notes = limits.counter(path, "max_total_notes", "the notes of all time steps")
    measured = {}  # id(sequence) -> its notes: a sequence shared many times is measured once
    for split in SPLITS:
        sequences = data[split]
        if not isinstance(sequences, (list, tuple)):
            return  # reported by _nested_to_rolls
        for i, seq in enumerate(sequences):
            steps = sized(seq)
            if steps is None:
                continue  # not a list of steps: reported by notes_to_roll
            limits.check(path, "max_steps", steps, f"split {split!r}, sequence {i} has {steps:,} time steps")
            total_steps.add(steps)
            notes = measured.get(id(seq))
            if notes is None:
                notes = 0
                for t, step in enumerate(seq):
                    count = sized(step)
                    if count is None:
                        continue
                    limits.check(path, "max_notes", count,
                                 f"split {split!r}, sequence {i}, step {t} has {count:,} entries (notes)")
                    notes += count
                measured[id(seq)] = notes
            total_notes.add(notes)


def _nested_to_rolls(data, path: Path, limits: Limits | None = None) -> dict[str, list[np.ndarray]]:
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a dict with keys 'train', 'valid', 'test', got {type(data).__name__}"
        )
    missing = [s for s in SPLITS if s not in data]
    if missing:
        keys = sorted(k if isinstance(k, str) else reprlib.repr(k) for k in list(data)[:20])
        keys = [reprlib.repr(k) if len(k) > 40 else k for k in keys]
        raise ValueError(
            f"{path}: missing split(s) {', '.join(missing)}; the file has keys {keys}"
            + (f" (and {len(data) - 20} more)" if len(data) > 20 else "")
        )
    _check_sizes(data, path, resolve(limits))
    out = {}
    for split in SPLITS:
        sequences = data[split]
        if not isinstance(sequences, (list, tuple)):
            raise ValueError(f"{path}: split {split!r} must be a list of sequences, got {type(sequences).__name__}")
        rolls = []
        for i, seq in enumerate(sequences):
            roll = notes_to_roll(seq, where=f"{path}: split {split!r}, sequence {i}")
            if roll.shape[0] == 0:
                raise ValueError(f"{path}: split {split!r}, sequence {i} has no time steps")
            rolls.append(roll)
        if not rolls:
            raise ValueError(f"{path}: split {split!r} has no sequences")
        out[split] = rolls
    return out


# ---------------------------------------------------------------------------- readers
def read_pickle(path, limits: Limits | None = None) -> dict[str, list[np.ndarray]]:
    """Read a Boulanger-Lewandowski pickle: ``{"train"/"valid"/"test": [[[note, ...], ...], ...]}``.

    Returns ``{split: [(T_i, 88) uint8 roll, ...]}``. Python 2 pickles (the originals) are read
    with ``latin1`` strings. Raises ``ValueError`` naming the file when it is not such a pickle,
    and :class:`~pyrosequence.data.limits.LimitError` (a ``ValueError``) when it declares more
    than ``limits`` allow (default: :meth:`Limits.from_env`), before allocating for it.
    """
    path = Path(path)
    limits = resolve(limits)
    limits.check_file(path)
    try:
        with open(path, "rb") as f:
            data = SafeUnpickler(f, path=path, limits=limits, encoding="latin1").load()
    except LimitError:
        raise
    except MemoryError:  # e.g. a garbage header declaring a frame of terabytes
        raise ValueError(f"{path}: not a readable polyphonic-music pickle (it declares more data than can be "
                         "allocated: a damaged file or not a pickle)") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError,
            ValueError, KeyError, UnicodeDecodeError, OverflowError, RecursionError) as err:
        raise ValueError(f"{path}: not a readable polyphonic-music pickle ({type(err).__name__}: {_one_line(err)})") from None
    return _nested_to_rolls(data, path, limits)


def _one_line(err) -> str:
    text = str(err).replace("\r", " ").replace("\n", " ")
    return text if len(text) <= 300 else text[:300] + "..."


_JSON_TOKEN = re.compile(r'["\[\]{}]')


def _check_json_nesting(text: str, path: Path, limits: Limits) -> None:
    """Scan ``text`` (strings skipped with the json module's own scanner) for the nesting depth and
    the number of lists and objects that would be time steps (depth 4 and deeper), refusing either
    past ``limits`` before the JSON is parsed."""
    depth, steps, pos = 0, 0, 0
    search, scanstring = _JSON_TOKEN.search, json.decoder.scanstring
    max_depth, max_steps = limits.max_json_depth, limits.max_total_steps
    while True:
        match = search(text, pos)
        if match is None:
            return
        char, pos = match.group(), match.end()
        if char == '"':
            try:
                pos = scanstring(text, pos)[1]
            except (json.JSONDecodeError, ValueError):
                return  # an unterminated string: json.loads reports it
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                limits.check(path, "max_json_depth", depth,
                             f"lists/objects are nested at least {depth} deep (at character {match.start():,})")
            if depth >= 4:
                steps += 1
                if steps > max_steps:
                    limits.check(path, "max_total_steps", steps,
                                 f"the file holds at least {steps:,} time steps (lists at nesting depth 4)")
        elif depth > 0:
            depth -= 1


def read_json(path, limits: Limits | None = None) -> dict[str, list[np.ndarray]]:
    """Read the JSON variant (``jsb-chorales-quarter.json``): the pickle's nested lists as JSON.

    Returns ``{split: [(T_i, 88) uint8 roll, ...]}``; ``ValueError`` naming the file when it is
    not valid JSON of that shape, and :class:`~pyrosequence.data.limits.LimitError` when it is
    larger, deeper or longer than ``limits`` allow (checked before parsing).
    """
    path = Path(path)
    limits = resolve(limits)
    limits.check_file(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(limits.max_file_bytes + 1)
        limits.check(path, "max_file_bytes", len(raw), f"the file is at least {len(raw):,} bytes")
        text = raw.decode("utf-8")
        del raw
        _check_json_nesting(text, path, limits)
        data = json.loads(text)
    except LimitError:
        raise
    except RecursionError:
        raise ValueError(f"{path}: not a readable polyphonic-music JSON file (nested deeper than Python's recursion limit)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{path}: not a readable polyphonic-music JSON file ({_one_line(err)})") from None
    return _nested_to_rolls(data, path, limits)


def read_mat(path, limits: Limits | None = None) -> dict[str, list[np.ndarray]]:
    """Read MATLAB v5 piano rolls: keys ``traindata``/``validdata``/``testdata``, each a cell
    array of ``(T_i, 88)`` 0/1 matrices (column ``k`` = MIDI ``21 + k``).

    Returns ``{split: [(T_i, 88) uint8 roll, ...]}``. Needs SciPy; raises ``ValueError`` naming
    the file when it is not such a file. Before SciPy loads anything, the shapes and classes that
    every variable (and every cell inside one) declares are read from the file's headers (see
    :mod:`pyrosequence.data._matfile`; compressed variables are inflated a block at a time and
    discarded) and refused with a :class:`~pyrosequence.data.limits.LimitError` when the arrays
    would exceed ``limits.max_decoded_bytes``; the file itself must fit ``max_file_bytes``.
    """
    path = Path(path)
    limits = resolve(limits)
    try:
        from scipy.io import loadmat
    except ImportError:
        raise ImportError(
            f"reading {path} (a .mat piano roll) needs SciPy: pip install \"pyrosequence[music]\" "
            "(or pip install scipy)"
        ) from None
    limits.check_file(path)
    try:
        declared = check_mat_sizes(path, limits)
    except MatFormatError as err:
        raise ValueError(f"{path}: not a readable MATLAB piano-roll file ({err})") from None
    total_steps = limits.counter(path, "max_total_steps", "the time steps of all sequences")
    for split in SPLITS:  # the rolls' lengths, from the headers: refused before loading
        key = f"{split}data"
        for i, dims in enumerate((declared or {}).get(key, ())):
            steps = dims[0] if dims else 0
            limits.check(path, "max_steps", steps, f"{key} sequence {i} declares {steps:,} time steps")
            total_steps.add(steps)
    try:
        mat = loadmat(str(path))
    except Exception as err:  # scipy raises several unrelated types for a corrupt file
        raise ValueError(f"{path}: not a readable MATLAB piano-roll file ({type(err).__name__}: {_one_line(err)})") from None
    out = {}
    for split in SPLITS:
        key = f"{split}data"
        if key not in mat:
            found = sorted(k for k in mat if not k.startswith("__"))
            raise ValueError(f"{path}: no variable {key!r}; the file holds {found}")
        cells = np.asarray(mat[key])
        items = list(cells.reshape(-1)) if cells.dtype == object else [cells]
        rolls = []
        for i, item in enumerate(items):
            roll = np.asarray(item)
            if roll.ndim != 2 or roll.shape[1] != NUM_KEYS or roll.shape[0] == 0:
                raise ValueError(
                    f"{path}: {key} sequence {i} has shape {roll.shape}; expected (time, {NUM_KEYS})"
                )
            binary = np.isin(roll, (0, 1))
            if not binary.all():
                t, k = (int(j) for j in np.argwhere(~binary)[0])
                raise ValueError(
                    f"{path}: {key} sequence {i}, step {t}, column {k} holds {roll[t, k].item()!r}; "
                    "a piano roll must be 0/1"
                )
            rolls.append(np.ascontiguousarray(roll, dtype=np.uint8))  # MATLAB arrays are column-major
        if not rolls:
            raise ValueError(f"{path}: {key} has no sequences")
        out[split] = rolls
    return out


READERS = {".pickle": read_pickle, ".pkl": read_pickle, ".mat": read_mat, ".json": read_json}


def read_music_file(path, limits: Limits | None = None) -> dict[str, list[np.ndarray]]:
    """Read any of the three formats, chosen by the extension (``.pickle``/``.pkl``, ``.mat``, ``.json``).

    ``limits`` bounds what the file may make the reader allocate (default: :meth:`Limits.from_env`).
    """
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"{path}: unknown music file type {path.suffix!r}; expected one of {', '.join(READERS)}")
    return _read_cached(file_signature([path]), resolve(limits))


@functools.lru_cache(maxsize=4)
def _read_cached(signature, limits: Limits) -> dict[str, list[np.ndarray]]:
    path = Path(signature[0][0])
    return READERS[path.suffix.lower()](path, limits)


# ---------------------------------------------------------------------------- finding the file
def _normalise(name: str) -> tuple[str, str]:
    stem, ext = os.path.splitext(name)
    return re.sub(r"[\s\-._]+", "_", stem.strip().lower()).strip("_"), ext.lower()


def music_set(name: str) -> MusicSet:
    """The :class:`MusicSet` for ``name`` (``jsb``, ``piano``, ``nottingham``, ``muse``)."""
    try:
        return MUSIC_SETS[name]
    except KeyError:
        raise ValueError(f"unknown music dataset {name!r}; choose one of: {', '.join(MUSIC_SETS)}") from None


#: Where the original pickles are published (Boulanger-Lewandowski et al. 2012).
BASE_URL = "http://www-etud.iro.umontreal.ca/~boulanni/"


def music_url(name: str) -> str:
    """The public address of the original pickle of music data set ``name`` (spaces URL-encoded)."""
    return BASE_URL + urllib.parse.quote(music_set(name).original)


def find_music_file(name: str, root) -> Path:
    """Find the file of music data set ``name`` in ``root`` or ``root/<subdir>``.

    Accepted names: the original pickles (``JSB Chorales.pickle``, ``Piano-midi.de.pickle``,
    ``Nottingham.pickle``, ``MuseData.pickle``), the ``.mat`` rolls (``JSB_Chorales.mat``,
    ``Piano_midi.mat``, ...), the JSON variant (``jsb-chorales-quarter.json``), and any spelling of
    these that differs only in case or in spaces/hyphens/dots/underscores (``jsb_chorales.pickle``,
    ``muse_data.pkl``). The sub-folders searched are ``jsb_chorales``, ``piano_midi``,
    ``nottingham``, ``muse_data``. With several matches the order is pickle, pkl, mat, json.

    Raises ``FileNotFoundError`` listing the names looked for and the folders searched.
    """
    spec = music_set(name)
    root = data_root(root, name)
    folders = [root, root / spec.subdir]
    for ext in EXTENSIONS:
        for folder in folders:
            if not folder.is_dir():
                continue
            for entry in sorted(folder.iterdir()):
                stem, suffix = _normalise(entry.name)
                if suffix == ext and stem in spec.stems and entry.is_file():
                    return entry

    raise FileNotFoundError(
        f"dataset {name!r} ({spec.title}): no data file found. Looked for "
        f"{', '.join(repr(n) for n in spec.examples)} (or the same names in other case, with "
        f"spaces/hyphens/underscores interchanged; extensions {', '.join(EXTENSIONS)}) in "
        f"{', '.join(repr(str(f)) for f in folders)}. The original file is {spec.original!r} from "
        f"{music_url(name)}; pyrosequence.data.fetch.fetch_music({name!r}, root) (pyrosequence data fetch "
        f"{name}) downloads the same split as {spec.examples[2]!r}, checksum-verified."
    )


def load_music(name: str, split: str, root=None, limits: Limits | None = None) -> SequenceDataset:
    """One split of a Boulanger-Lewandowski (2012) music set as 88-dim binary frames.

    ``root`` is the folder holding the file (or a folder with the sub-folder named in
    :data:`MUSIC_SETS`); ``root=None`` reads ``$PYROSEQUENCE_DATA``. See :func:`find_music_file`
    for the accepted file names. Frames are not centred here (the model does that, VHRNN
    appendix C). ``limits``: see :mod:`pyrosequence.data.limits` (default: the environment's).
    """
    if split not in SPLITS:
        raise ValueError(f"dataset {name!r} has no split {split!r}; choose one of: {', '.join(SPLITS)}")
    path = find_music_file(name, root)
    rolls = read_music_file(path, limits)[split]
    return SequenceDataset.from_sequences(rolls, name=f"{name}/{split}")
