"""Bach chorales built from the ``music21`` corpus, as 88-key piano rolls at quarter-note steps.

A built-in alternative to JSB Chorales (Boulanger-Lewandowski et al., 2012; used by the VHRNN
paper, Deng et al. 2020, section 5 and appendix C) that needs no download: ``music21`` ships the
Bach chorales as MusicXML. Install it with ``pip install "pyrosequence[music]"``.

How the data set is built (fixed, so every machine gets the same data for one music21 version):

* Chorales: the Riemenschneider chorales that ``music21.corpus.chorales.Iterator`` lists, as
  unique corpus paths sorted by name; only four-part settings (exactly 4 parts, the SATB chorales
  that JSB consists of) are kept; settings with instrumental parts are left out.
* Quantisation: step ``k`` (``k = 0, 1, ...``) is the quarter-note beat at offset ``k`` from the
  start; a note sounds at step ``k`` when ``onset <= k < onset + duration`` (a note shorter than a
  beat that falls between two beats does not appear; grace notes are ignored). A chorale has
  ``ceil(last release)`` steps. No transposition.
* Frames: 88-dimensional 0/1 vectors, column ``k`` = MIDI ``21 + k``, as the other music sets.
* Split: the kept chorales are shuffled with ``numpy.random.default_rng(SPLIT_SEED)``; the first
  20 % (rounded) are ``valid``, the next 20 % ``test``, the rest ``train`` (JSB's proportions,
  229/76/77). ``limit=N`` builds from the first ``N`` sorted corpus paths only (for quick tests).
* Cache: the rolls are built once (about half a minute) and stored in
  ``<cache>/bach-chorales-v1-music21-<version>[-first<N>].npz``, written atomically; ``<cache>``
  is ``root`` when given, else ``$PYROSEQUENCE_CACHE``, else ``~/.cache/pyrosequence``.
"""

from __future__ import annotations

import math
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from pyrosequence.data._io import atomic_write
from pyrosequence.data.dataset import SequenceDataset
from pyrosequence.data.limits import LimitError, Limits, resolve
from pyrosequence.data.music import MIDI_HIGH, MIDI_LOW, NUM_KEYS, SPLITS

CACHE_ENV = "PYROSEQUENCE_CACHE"
DEFAULT_CACHE = "~/.cache/pyrosequence"
SPLIT_SEED = 2012
VALID_FRACTION = 0.2
TEST_FRACTION = 0.2
VOICES = 4
FORMAT_VERSION = 1


def _music21():
    try:
        import music21
    except ImportError:
        raise ImportError(
            "the built-in Bach chorales need the music21 package: pip install \"pyrosequence[music]\""
        ) from None
    return music21


def cache_dir(root=None) -> Path:
    """The cache folder: ``root``, else ``$PYROSEQUENCE_CACHE``, else ``~/.cache/pyrosequence``."""
    if root is None:
        root = os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(root).expanduser()


def chorale_paths(limit: int | None = None) -> list[str]:
    """The Riemenschneider chorales of the music21 corpus: unique corpus paths, sorted; the first
    ``limit`` when given."""
    music21 = _music21()
    paths = sorted({str(p) for p in music21.corpus.chorales.Iterator(returnType="filename")})
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        paths = paths[:limit]
    return paths


def score_to_roll(score) -> np.ndarray:
    """Quantise a music21 score to quarter-note steps: a ``(T, 88)`` uint8 roll (see the module
    docstring for the rule). Raises ``ValueError`` for a pitch outside MIDI 21..108."""
    events = []
    end_time = 0.0
    for element in score.flatten().notes:
        length = float(element.quarterLength)
        if length <= 0:  # grace notes
            continue
        start = float(element.offset)
        end_time = max(end_time, start + length)
        for pitch in element.pitches:
            events.append((start, start + length, int(pitch.midi)))
    steps = math.ceil(end_time - 1e-9)
    roll = np.zeros((steps, NUM_KEYS), dtype=np.uint8)
    for start, end, midi in events:
        if not MIDI_LOW <= midi <= MIDI_HIGH:
            raise ValueError(f"note {midi} at offset {start} is outside the piano range {MIDI_LOW}..{MIDI_HIGH}")
        first, last = math.ceil(start - 1e-9), math.ceil(end - 1e-9)
        roll[first:last, midi - MIDI_LOW] = 1
    return roll


def split_assignment(n: int, seed: int = SPLIT_SEED) -> np.ndarray:
    """For ``n`` chorales in sorted order, the split of each (0 train, 1 valid, 2 test)."""
    order = np.random.default_rng(seed).permutation(n)
    n_valid, n_test = round(VALID_FRACTION * n), round(TEST_FRACTION * n)
    which = np.zeros(n, dtype=np.int64)
    which[order[:n_valid]] = 1
    which[order[n_valid : n_valid + n_test]] = 2
    return which


def _cache_file(folder: Path, limit: int | None) -> Path:
    version = _music21().__version__
    suffix = "" if limit is None else f"-first{limit}"
    return folder / f"bach-chorales-v{FORMAT_VERSION}-music21-{version}{suffix}.npz"


def build_bach(limit: int | None = None) -> dict[str, object]:
    """Parse and quantise the chorales (no cache): ``{"paths", "split", "rolls"}`` for the kept
    four-part chorales in sorted path order."""
    music21 = _music21()
    kept_paths, rolls = [], []
    for path in chorale_paths(limit):
        try:
            score = music21.corpus.parse(path)
        except Exception as err:  # a corpus file music21 cannot read: leave it out, say so
            warnings.warn(f"music21 could not parse {path} ({err}); left out of the Bach chorales")
            continue
        if len(score.parts) != VOICES:
            continue
        roll = score_to_roll(score)
        if roll.shape[0] == 0:
            continue
        kept_paths.append(path)
        rolls.append(roll)
    if not rolls:
        raise ValueError(f"no four-part chorale found among the first {limit} corpus paths")
    return {"paths": kept_paths, "split": split_assignment(len(rolls)), "rolls": rolls}


CACHE_ARRAYS = ("frames", "lengths", "split")


def _check_cache(path: Path, limits: Limits) -> None:
    """Refuse a cache file whose arrays declare more than ``limits.max_decoded_bytes`` (NumPy
    allocates an array of the shape in its header before reading the data), reading the
    headers only."""
    limits.check_file(path)
    counter = limits.counter(path, "max_decoded_bytes", "the arrays of the cache", "bytes")
    with zipfile.ZipFile(path) as archive:
        for name in CACHE_ARRAYS:
            try:
                member = archive.open(f"{name}.npy")
            except KeyError:
                continue  # reported by np.load
            with member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            counter.add(math.prod(shape) * dtype.itemsize)


def bach_rolls(root=None, limit: int | None = None, limits: Limits | None = None) -> dict[str, list[np.ndarray]]:
    """All splits as ``{split: [(T_i, 88) uint8 roll, ...]}``, from the cache or built (and cached).

    A cache file is checked against ``limits`` (default: the environment's, see
    :mod:`pyrosequence.data.limits`) before it is loaded."""
    path = _cache_file(cache_dir(root), limit)
    if path.is_file():
        try:
            _check_cache(path, resolve(limits))
            with np.load(path, allow_pickle=False) as f:
                frames, lengths, split = f["frames"], f["lengths"], f["split"]
        except LimitError:
            raise
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
            raise ValueError(f"{path}: unreadable Bach chorale cache ({err}); delete it to rebuild") from None
    else:
        built = build_bach(limit)
        lengths = np.array([r.shape[0] for r in built["rolls"]], dtype=np.int64)
        frames = np.concatenate(built["rolls"])
        split = built["split"]

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, frames=frames, lengths=lengths, split=split,
                                    paths=np.array(built["paths"]))

        atomic_write(path, write)
    rolls = np.split(frames, np.cumsum(lengths)[:-1])
    return {name: [r for r, s in zip(rolls, split) if s == i] for i, name in enumerate(SPLITS)}


def load_bach(split: str, root=None, limit: int | None = None, limits: Limits | None = None) -> SequenceDataset:
    """One split of the built-in Bach chorales (88-dim binary frames at quarter-note steps).

    ``root`` is the cache folder (default ``$PYROSEQUENCE_CACHE`` or ``~/.cache/pyrosequence``);
    the first call builds the cache (needs ``music21``), later calls read it.
    """
    if split not in SPLITS:
        raise ValueError(f"dataset 'bach' has no split {split!r}; choose one of: {', '.join(SPLITS)}")
    rolls = bach_rolls(root, limit, limits)[split]
    if not rolls:
        raise ValueError(f"the Bach chorales built from the first {limit} corpus paths have no {split!r} chorale")
    return SequenceDataset.from_sequences(rolls, name=f"bach/{split}")
