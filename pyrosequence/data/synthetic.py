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

Two laws (:class:`SyntheticLaw`) fill in what the paper leaves open, each a data set by name:

``synthetic`` (``LAWS["default"]``)
    the choices above. Noise-driven training sequences reach |x| of 20-600, while noiseless
    ones stay near 1 (at most 18 over 100 steps, 143 over ``long``'s 200), so the test settings
    never leave the training range.
``synthetic-paper`` (``LAWS["paper"]``, a *paper-like law*)
    follows the paper's remark that "the exponential growth of data could happen when the
    singular values of the underlying weight matrix are greater than 1" and that in ``long``
    "the data scale can exceed well beyond the range of training data": each matrix has
    i.i.d. standard-normal entries, kept as drawn (not rescaled) unless its spectral radius
    exceeds ``1.1``, in which case it is drawn again (so that 100 training steps stay far
    inside float32). With the fixed seeds, five of the ten training matrices grow (spectral
    radii 1.04-1.08) and three of the ten zero-shot ones (1.05-1.08); training sequences reach
    |x| up to about 2.5e4, 90 % of ``long`` sequences stay below 3e5 but the largest reach 2.7e6,
    100 times beyond the training range. ``switch`` concatenates three *full-length*
    noiseless sequences (length ``3 * LENGTH``), so each regime change is a jump from a grown
    state back to ``[-1, 1]^2``, the surprise the paper's Table 1 punishes VRNN for.

The default job and every number recorded before the paper-like law existed use ``synthetic``.
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


@dataclass(frozen=True)
class SyntheticLaw:
    """What the paper leaves open about its synthetic data, fixed one way (see the module doc).

    Attributes:
        name: the law's name (``"default"``, ``"paper"``).
        dataset: the data set that generates from it (``"synthetic"``, ``"synthetic-paper"``).
        radii: rescale the i-th standard-normal matrix to spectral radius ``radii[i]``; ``None``
            keeps the draws as they are.
        max_radius: with ``radii=None``, draw a matrix again while its spectral radius exceeds
            this (``None``: keep every draw).
        switch_full_length: ``switch`` concatenates three full-length noiseless sequences
            (``3 * length`` steps) instead of three segments that sum to ``length``.
    """

    name: str
    dataset: str
    radii: tuple[float, ...] | None
    max_radius: float | None
    switch_full_length: bool


LAWS = {
    "default": SyntheticLaw("default", "synthetic", tuple(SPECTRAL_RADII.tolist()), None, False),
    "paper": SyntheticLaw("paper", "synthetic-paper", None, 1.1, True),
}
DEFAULT_LAW = LAWS["default"]


def _law(law: SyntheticLaw | str) -> SyntheticLaw:
    if isinstance(law, SyntheticLaw):
        return law
    if law not in LAWS:
        raise ValueError(f"unknown synthetic law {law!r}; choose one of: {', '.join(LAWS)}")
    return LAWS[law]


def transition_matrices(seed: int = TRAIN_MATRIX_SEED, law: SyntheticLaw | str = DEFAULT_LAW) -> np.ndarray:
    """The 10 fixed random matrices ``(10, 2, 2)`` of ``law`` for ``seed``."""
    law = _law(law)
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < NUM_MATRICES:
        w = rng.standard_normal((2, 2))
        radius = np.abs(np.linalg.eigvals(w)).max()
        if law.radii is not None:
            out.append(w * law.radii[len(out)] / radius)
        elif law.max_radius is None or radius <= law.max_radius:
            out.append(w)
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


def generate(
    setting: str, num_sequences: int, seed: int, length: int = LENGTH, law: SyntheticLaw | str = DEFAULT_LAW
) -> SyntheticSequences:
    """Generate ``num_sequences`` sequences of ``setting`` ("train" for the noisy training law)
    under ``law`` (a :class:`SyntheticLaw` or its name)."""
    if setting not in ("train",) + SETTINGS:
        raise ValueError(f"unknown synthetic setting {setting!r}; choose one of: {', '.join(('train',) + SETTINGS)}")
    law = _law(law)
    rng = np.random.default_rng(seed)
    matrices = transition_matrices(ZERO_SHOT_MATRIX_SEED if setting == "zero-shot" else TRAIN_MATRIX_SEED, law)
    if setting == "long":
        length = 2 * length
    xs, sigmas, indices = [], [], []
    for _ in range(num_sequences):
        if setting == "switch":
            which = rng.choice(NUM_MATRICES, size=3, replace=False)
            sizes = [length] * 3 if law.switch_full_length else [length // 3, length // 3, length - 2 * (length // 3)]
            parts = [_roll(rng, matrices[i], rng.uniform(-1, 1, 2), np.zeros(n)) for i, n in zip(which, sizes)]
            x, sigma, index = np.concatenate(parts), np.zeros(sum(sizes)), np.repeat(which, sizes)
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


def synthetic_sequences(split: str, length: int = LENGTH, law: SyntheticLaw | str = DEFAULT_LAW) -> SyntheticSequences:
    """One split with its ground truth (noise levels, matrix indices): "train", "valid", "test",
    or a test setting name, under ``law``."""
    if split not in _SEEDS:
        raise ValueError(f"unknown synthetic split {split!r}; choose one of: {', '.join(_SEEDS)}")
    setting = "train" if split in SPLIT_SIZES else split
    size = SPLIT_SIZES.get(split, SPLIT_SIZES["test"])
    return generate(setting, size, seed=_SEEDS[split], length=length, law=law)


def synthetic_dataset(split: str, length: int = LENGTH, law: SyntheticLaw | str = DEFAULT_LAW) -> SequenceDataset:
    """One split of the synthetic data as a :class:`SequenceDataset` (see :func:`synthetic_sequences`)."""
    law = _law(law)
    return synthetic_sequences(split, length, law).dataset(f"{law.dataset}/{split}")


def regime_changes(split: str, index: int, law: SyntheticLaw | str = DEFAULT_LAW) -> list[int]:
    """Steps at which sequence ``index`` of ``split`` changes regime (matrix or noise level)."""
    seqs = synthetic_sequences(split, law=law)
    if not 0 <= index < seqs.x.shape[0]:
        raise ValueError(f"synthetic/{split} has {seqs.x.shape[0]} sequences; index {index} is out of range")
    changed = (np.diff(seqs.matrix[index]) != 0) | (np.diff(seqs.sigma[index]) != 0)
    return [int(t) + 1 for t in np.nonzero(changed)[0]]
