"""The synthetic data of the VHRNN paper (Deng et al., 2020, section 4, eq. 6).

Training, validation and test sequences follow ``x_t = W x_{t-1} + sigma_t eps_t`` with
``eps_t ~ N(0, I_2)``, ``x_0 ~ U[-1, 1]^2``, ``W`` drawn with equal probability from 10 fixed
random 2x2 matrices, and ``sigma_t in {0.25, 1, 4}`` switching exactly twice per sequence.
Six further test settings probe systematic generalisation (Table 1 of the paper):

========== =================================================================================
noiseless  the same matrices with ``sigma_t = 0``
switch     three noiseless sequences with three different matrices, concatenated
long       noiseless sequences of twice the length
zero-shot  noiseless sequences from a second, disjoint set of 10 random matrices
add        ``x_t = x_{t-1} + b``, ``b, x_0 ~ U[0, 1]^2``, no noise
rand       ``W = I`` (random walks); sigma switches between 0 and 3 times
========== =================================================================================

Choices the paper leaves open, made here and fixed by seeds: sequences have ``LENGTH = 100``
observations ``x_0 ... x_99`` (``long``: 200); the i-th matrix is a standard-normal 2x2 matrix
rescaled to the i-th spectral radius of ``linspace(0.85, 1.03, 10)``, so some regimes contract
and two grow slowly (up to 1.03^99 = 19x over a sequence and 1.03^199 = 360x over a ``long``
one: the growth that makes ``long`` hard); noise change points are two distinct steps drawn
uniformly from 1..T-1 and each new level differs from the previous one; ``switch`` keeps the
total length at ``LENGTH`` with segments of 33, 33 and 34 steps, each a fresh noiseless
sequence (its own ``x_0``); ``rand`` draws its number of switches uniformly from {0, 1, 2, 3}.
Everything is generated with NumPy from fixed seeds, so the data are identical on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pyrosequence.data.dataset import SequenceDataset

LENGTH = 100
NOISE_LEVELS = (0.25, 1.0, 4.0)
NUM_MATRICES = 10
SPECTRAL_RADII = np.linspace(0.85, 1.03, NUM_MATRICES)
TRAIN_MATRIX_SEED = 20200
ZERO_SHOT_MATRIX_SEED = 20201
SPLIT_SIZES = {"train": 800, "valid": 100, "test": 100}
SETTINGS = ("noiseless", "switch", "long", "zero-shot", "add", "rand")
_SEEDS = {"train": 1, "valid": 2, "test": 3, "noiseless": 4, "switch": 5, "long": 6, "zero-shot": 7, "add": 8, "rand": 9}


def transition_matrices(seed: int = TRAIN_MATRIX_SEED) -> np.ndarray:
    """The 10 fixed random matrices ``(10, 2, 2)`` for ``seed``."""
    rng = np.random.default_rng(seed)
    out = []
    for radius in SPECTRAL_RADII:
        w = rng.standard_normal((2, 2))
        out.append(w * radius / np.abs(np.linalg.eigvals(w)).max())
    return np.stack(out)


@dataclass(frozen=True)
class SyntheticSequences:
    """Generated sequences with their ground truth.

    Attributes:
        x: ``(n, T, 2)`` observations.
        sigma: ``(n, T)`` noise standard deviation of each step's transition (0 when noiseless);
            ``sigma[:, 0]`` is the level of the first segment, although ``x_0`` itself is drawn
            uniformly, without noise.
        matrix: ``(n, T)`` index of the transition matrix in effect (-1 for ``add``/``rand``).
    """

    x: np.ndarray
    sigma: np.ndarray
    matrix: np.ndarray

    def dataset(self, name: str) -> SequenceDataset:
        x = torch.as_tensor(self.x, dtype=torch.float32)
        return SequenceDataset(x, torch.full((x.shape[0],), x.shape[1], dtype=torch.long), name)


def _switching_sigma(rng: np.random.Generator, length: int, switches: int) -> np.ndarray:
    points = np.sort(rng.choice(np.arange(1, length), size=switches, replace=False))
    levels = [rng.integers(len(NOISE_LEVELS))]
    for _ in range(switches):
        levels.append(rng.choice([i for i in range(len(NOISE_LEVELS)) if i != levels[-1]]))
    segment = np.searchsorted(points, np.arange(length), side="right")
    return np.asarray(NOISE_LEVELS)[np.asarray(levels)[segment]]


def _roll(rng, w: np.ndarray, x0: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    xs = [x0]
    for t in range(1, sigma.shape[0]):
        xs.append(w @ xs[-1] + sigma[t] * rng.standard_normal(2))
    return np.stack(xs)


def generate(setting: str, num_sequences: int, seed: int, length: int = LENGTH) -> SyntheticSequences:
    """Generate ``num_sequences`` sequences of ``setting`` ("train" for the noisy training law)."""
    if setting not in ("train",) + SETTINGS:
        raise ValueError(f"unknown synthetic setting {setting!r}; choose one of: {', '.join(('train',) + SETTINGS)}")
    rng = np.random.default_rng(seed)
    matrices = transition_matrices(ZERO_SHOT_MATRIX_SEED if setting == "zero-shot" else TRAIN_MATRIX_SEED)
    if setting == "long":
        length = 2 * length
    xs, sigmas, indices = [], [], []
    for _ in range(num_sequences):
        if setting == "switch":
            which = rng.choice(NUM_MATRICES, size=3, replace=False)
            sizes = [length // 3, length // 3, length - 2 * (length // 3)]
            parts = [_roll(rng, matrices[i], rng.uniform(-1, 1, 2), np.zeros(n)) for i, n in zip(which, sizes)]
            x, sigma, index = np.concatenate(parts), np.zeros(length), np.repeat(which, sizes)
        elif setting == "add":
            b, x0 = rng.uniform(0, 1, 2), rng.uniform(0, 1, 2)
            x, sigma, index = x0 + np.arange(length)[:, None] * b, np.zeros(length), np.full(length, -1)
        elif setting == "rand":
            sigma = _switching_sigma(rng, length, int(rng.integers(0, 4)))
            x, index = _roll(rng, np.eye(2), rng.uniform(-1, 1, 2), sigma), np.full(length, -1)
        else:
            i = int(rng.integers(NUM_MATRICES))
            sigma = _switching_sigma(rng, length, 2) if setting == "train" else np.zeros(length)
            x, index = _roll(rng, matrices[i], rng.uniform(-1, 1, 2), sigma), np.full(length, i)
        xs.append(x)
        sigmas.append(sigma)
        indices.append(index)
    return SyntheticSequences(np.stack(xs), np.stack(sigmas), np.stack(indices))


def synthetic_sequences(split: str, length: int = LENGTH) -> SyntheticSequences:
    """One split with its ground truth (noise levels, matrix indices): "train", "valid", "test",
    or a test setting name."""
    if split not in _SEEDS:
        raise ValueError(f"unknown synthetic split {split!r}; choose one of: {', '.join(_SEEDS)}")
    law = "train" if split in SPLIT_SIZES else split
    size = SPLIT_SIZES.get(split, SPLIT_SIZES["test"])
    return generate(law, size, seed=_SEEDS[split], length=length)


def synthetic_dataset(split: str, length: int = LENGTH) -> SequenceDataset:
    """One split of the synthetic data as a :class:`SequenceDataset` (see :func:`synthetic_sequences`)."""
    return synthetic_sequences(split, length).dataset(f"synthetic/{split}")


def regime_changes(split: str, index: int) -> list[int]:
    """Steps at which sequence ``index`` of ``split`` changes regime (matrix or noise level)."""
    seqs = synthetic_sequences(split)
    if not 0 <= index < seqs.x.shape[0]:
        raise ValueError(f"synthetic/{split} has {seqs.x.shape[0]} sequences; index {index} is out of range")
    changed = (np.diff(seqs.matrix[index]) != 0) | (np.diff(seqs.sigma[index]) != 0)
    return [int(t) + 1 for t in np.nonzero(changed)[0]]
