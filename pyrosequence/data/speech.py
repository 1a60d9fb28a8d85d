"""Raw speech waveforms as multi-frame sequences (Dai et al., 2019, "Re-examination of the Role of
Latent Variables in Sequence Modeling", sections 4.1, 4.3 and 5.1, after Chung et al., 2015).

Input: a folder (searched recursively) of PCM WAV files, read with the standard ``wave`` module:
one channel, 8-, 16- or 32-bit samples, every file at one sample rate. A file with more than one
channel, another sample width, or another sample rate than the rest is rejected with a
``ValueError`` naming it (nothing is resampled or mixed down). The Free Spoken Digit Dataset
(``recordings/{digit}_{speaker}_{index}.wav``, 8 kHz) is such a folder.

Preparation:

* Amplitude: samples are scaled to [-1, 1) (divided by 2^15 for 16-bit, 2^31 for 32-bit; 8-bit
  unsigned samples become ``(s - 128) / 128``), then divided by the standard deviation of all
  training samples (``normalize=True``, the default), the same number for every split.
* Multi-frame steps (section 4.1): every ``frame_size = L = 200`` consecutive samples form one
  step ``x_t`` in R^L; a final remainder of fewer than ``L`` samples is dropped.
* Training chunks (section 4.1): each training file's steps are cut into consecutive chunks of
  ``chunk = T = 40`` steps, each an independent sequence; the last, shorter chunk of a file is
  kept as a shorter sequence (the data set pads and masks it). Validation and test sequences
  are whole files. ``chunk=None`` keeps whole training files too.
* Stride variant (section 4.3): ``stride = M`` keeps one sample of every ``M``
  (``x_1, x_{M+1}, x_{2M+1}, ...``), each a 1-dimensional step; ``frame_size`` is then unused.
* Permuted frames (section 5.1, "Perm-TIMIT"): ``permute=True`` reorders the ``L`` positions of
  every step by one fixed random permutation, ``frame_permutation(L, PERMUTATION_SEED)``.
* Split: when every file is named like FSDD (``{digit}_{speaker}_{index}.wav``), the FSDD
  README's convention is followed: indices 0-4 are the test set; of the README's training
  indices 5-49, this project uses 5-9 for validation and 10-49 for training. Otherwise the files,
  sorted by relative path, are shuffled with ``numpy.random.default_rng(SPLIT_SEED)`` and 10 %
  (rounded, at least one) go to validation, 10 % to test, the rest to training.
"""

from __future__ import annotations

import functools
import re
import wave
from pathlib import Path

import numpy as np

from pyrosequence.data._io import data_root, file_signature
from pyrosequence.data.dataset import SequenceDataset
from pyrosequence.data.limits import Limits, resolve

SPLITS = ("train", "valid", "test")
FRAME_SIZE = 200
CHUNK = 40
SPLIT_SEED = 2019
PERMUTATION_SEED = 2019
FSDD_NAME = re.compile(r"^(\d+)_([^_]+)_(\d+)\.wav$", re.IGNORECASE)
READ_BLOCK = 1 << 20  # frames read at a time: the header's frame count never sizes a read


# ---------------------------------------------------------------------------- frames
def frame(wave_, frame_size: int = FRAME_SIZE) -> np.ndarray:
    """Cut a 1-D waveform into ``(T, L)`` steps of ``L`` consecutive samples (Dai et al. 4.1);
    ``T = len // L``, the remainder is dropped. ``unframe(frame(w, L)) == w[:T * L]`` exactly."""
    wave_ = np.asarray(wave_)
    if wave_.ndim != 1:
        raise ValueError(f"a waveform must be 1-D, got shape {wave_.shape}")
    if frame_size < 1:
        raise ValueError(f"frame_size must be at least 1, got {frame_size}")
    steps = wave_.shape[0] // frame_size
    return wave_[: steps * frame_size].reshape(steps, frame_size)


def unframe(frames) -> np.ndarray:
    """The inverse of :func:`frame`: the samples of ``(T, L)`` steps in order, ``(T * L,)``."""
    return np.asarray(frames).reshape(-1)


def stride_sequence(wave_, stride: int) -> np.ndarray:
    """The stride-``M`` variant (Dai et al. 4.3): ``[x_1, x_{M+1}, ...]`` as ``(ceil(len / M), 1)``."""
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    return np.asarray(wave_)[::stride, None]


def frame_permutation(frame_size: int = FRAME_SIZE, seed: int = PERMUTATION_SEED) -> np.ndarray:
    """The fixed random permutation of the ``L`` positions of a step (Perm-TIMIT, Dai et al. 5.1)."""
    return np.random.default_rng(seed).permutation(frame_size)


def permute_frames(frames, permutation) -> np.ndarray:
    """Reorder the positions of every step: ``out[t, i] = frames[t, permutation[i]]``."""
    return np.asarray(frames)[..., np.asarray(permutation)]


def unpermute_frames(frames, permutation) -> np.ndarray:
    """The inverse of :func:`permute_frames` with the same permutation."""
    return np.asarray(frames)[..., np.argsort(np.asarray(permutation))]


def chunk_steps(steps, chunk: int) -> list[np.ndarray]:
    """Consecutive chunks of ``chunk`` steps; the last may be shorter (no step is lost)."""
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    steps = np.asarray(steps)
    return [steps[i : i + chunk] for i in range(0, steps.shape[0], chunk)]


# ---------------------------------------------------------------------------- files
def read_wav(path, limits: Limits | None = None) -> tuple[np.ndarray, int]:
    """Read a PCM WAV file with the ``wave`` module: ``(samples in [-1, 1) as float32, sample_rate)``.

    Raises ``ValueError`` naming the file when it is not mono PCM with 8-, 16- or 32-bit samples,
    and :class:`~pyrosequence.data.limits.LimitError` when the file is larger than
    ``limits.max_file_bytes`` (default: the environment's). The frame count in the header is not
    trusted: the samples are read in blocks until the data ends, so a header declaring more
    frames than the file holds reads the frames it does hold (as before) without sizing any
    buffer by the declared count.
    """
    path = Path(path)
    limits = resolve(limits)
    limits.check_file(path)
    try:
        with wave.open(str(path), "rb") as f:
            channels, width, rate, count = f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()
            if channels != 1:
                raise ValueError(f"{path}: has {channels} channels; only mono recordings are read (mix it down first)")
            if width not in (1, 2, 4):
                raise ValueError(f"{path}: {8 * width}-bit samples are not supported (8, 16 or 32 bits are)")
            blocks, read = [], 0
            while read < count:
                block = f.readframes(min(READ_BLOCK, count - read))
                if not block:
                    break
                blocks.append(block)
                read += len(block) // width
            raw = b"".join(blocks)
    except (wave.Error, EOFError, OSError) as err:
        raise ValueError(f"{path}: not a readable PCM WAV file ({err})") from None
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width in (2, 4):
        ints = np.frombuffer(raw, dtype=np.dtype(f"<i{width}"))
        samples = (ints.astype(np.float64) / float(2 ** (8 * width - 1))).astype(np.float32)
    else:
        raise ValueError(f"{path}: {8 * width}-bit samples are not supported (8, 16 or 32 bits are)")
    return samples, rate


def find_wav_files(root) -> tuple[Path, list[Path]]:
    """``(folder, files)``: every ``*.wav`` under the folder ``root`` (recursively), sorted by relative path."""
    folder = data_root(root, "speech")
    files = sorted((p for p in folder.rglob("*") if p.suffix.lower() == ".wav" and p.is_file()),
                   key=lambda p: p.relative_to(folder).as_posix())
    if not files:
        raise FileNotFoundError(f"dataset 'speech': no .wav files under {str(folder)!r}")
    return folder, files


def split_files(files, seed: int = SPLIT_SEED) -> dict[str, list[Path]]:
    """Assign WAV files to splits: the FSDD convention by file name when every file follows it,
    else a seeded 80/10/10 shuffle (see the module docstring)."""
    files = [Path(f) for f in files]
    matches = [FSDD_NAME.match(f.name) for f in files]
    if files and all(matches):
        out = {s: [] for s in SPLITS}
        for f, m in zip(files, matches):
            index = int(m.group(3))
            out["test" if index < 5 else "valid" if index < 10 else "train"].append(f)
        return out
    n = len(files)
    if n < 3:
        raise ValueError(f"dataset 'speech': need at least 3 WAV files for three splits, found {n}")
    n_valid = n_test = max(1, round(0.1 * n))
    order = np.random.default_rng(seed).permutation(n)
    index = {"valid": order[:n_valid], "test": order[n_valid : n_valid + n_test], "train": order[n_valid + n_test :]}
    return {s: [files[i] for i in sorted(index[s])] for s in SPLITS}


@functools.lru_cache(maxsize=2)
def _read_all(signature, sample_rate, limits: Limits) -> tuple[tuple[np.ndarray, ...], int]:
    waves, expected = [], sample_rate
    for path, _, _ in signature:
        samples, rate = read_wav(path, limits)
        if expected is None:
            expected = rate
        elif rate != expected:
            raise ValueError(
                f"{path}: sample rate {rate} Hz differs from the {expected} Hz of the other recordings; "
                "resample it first (files are not resampled here)"
            )
        waves.append(samples)
    return tuple(waves), expected


def load_speech(
    split: str,
    root=None,
    frame_size: int = FRAME_SIZE,
    chunk: int | None = CHUNK,
    stride: int | None = None,
    permute: bool = False,
    normalize: bool = True,
    sample_rate: int | None = None,
    seed: int = SPLIT_SEED,
    limits: Limits | None = None,
) -> SequenceDataset:
    """One split of a raw speech folder as multi-frame sequences (Dai et al. 4.1; see the module
    docstring for every option).

    ``root``: the folder of WAV files (searched recursively; for FSDD the repository folder or its
    ``recordings/``). ``sample_rate``: required rate (default: the first file's). ``stride``: the
    one-sample-every-``M`` variant (4.3), ``x_dim = 1``. ``permute``: Perm-TIMIT frames (5.1).
    ``limits``: bounds each WAV file (see :func:`read_wav`; default: the environment's).
    """
    if split not in SPLITS:
        raise ValueError(f"dataset 'speech' has no split {split!r}; choose one of: {', '.join(SPLITS)}")
    if stride is not None and permute:
        raise ValueError("permute reorders the positions of a multi-frame step; the stride variant has 1-D steps")
    folder, files = find_wav_files(root)
    waves, _ = _read_all(file_signature(files), sample_rate, resolve(limits))
    by_path = dict(zip(files, waves))
    splits = split_files(files, seed)
    if not splits[split]:
        raise ValueError(f"dataset 'speech': split {split!r} has no files under {str(folder)!r}")
    scale = 1.0
    if normalize:
        train = np.concatenate([by_path[f] for f in splits["train"]]).astype(np.float64)
        scale = float(train.std()) or 1.0
    permutation = frame_permutation(frame_size) if permute else None
    sequences = []
    for f in splits[split]:
        x = by_path[f].astype(np.float64) / scale
        steps = stride_sequence(x, stride) if stride is not None else frame(x, frame_size)
        if permutation is not None:
            steps = permute_frames(steps, permutation)
        if steps.shape[0] == 0:
            continue  # shorter than one step
        if split == "train" and chunk is not None:
            sequences.extend(chunk_steps(steps, chunk))
        else:
            sequences.append(steps)
    if not sequences:
        raise ValueError(f"dataset 'speech': every {split!r} file is shorter than one step of {frame_size} samples")
    label = "speech" if stride is None else f"speech-stride{stride}"
    label += "-perm" if permute else ""
    return SequenceDataset.from_sequences(sequences, name=f"{label}/{split}")
