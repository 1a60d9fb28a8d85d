"""The VHRNN synthetic data (Deng et al., 2020, section 4), checked against the module docstring."""

import functools

import numpy as np
import pytest
import torch

from pyrosequence.data import load_split, synthetic_dataset
from pyrosequence.data.registry import data_source
from pyrosequence.data.synthetic import (
    LENGTH,
    NOISE_LEVELS,
    NUM_MATRICES,
    SETTINGS,
    SPECTRAL_RADII,
    SPLIT_SIZES,
    TRAIN_MATRIX_SEED,
    ZERO_SHOT_MATRIX_SEED,
    _SEEDS,
    generate,
    transition_matrices,
)

ALL_SPLITS = ("train", "valid", "test") + SETTINGS
TIGHT = dict(rtol=1e-12, atol=1e-12)


@functools.lru_cache(maxsize=None)
def _split(name):
    return synthetic_dataset(name)


@functools.lru_cache(maxsize=None)
def _generated(setting, n=200, seed=12345):
    return generate(setting, n, seed)


def _predicted(matrices, x):
    """``W_t x_{t-1}`` for ``t >= 1`` given per-step matrices ``(n, T-1, 2, 2)``."""
    return np.einsum("ntij,ntj->nti", matrices, x[:, :-1])


def _pooled_standard_normal(z):
    """Assert pooled values look standard normal: mean and std within 5 standard errors."""
    z = np.asarray(z).ravel()
    n = z.size
    assert n > 1000
    assert abs(z.mean()) < 5 / np.sqrt(n), z.mean()
    assert abs(z.std() - 1) < 5 / np.sqrt(2 * n), z.std()


# ---------------------------------------------------------------------------- splits
def test_constants_follow_the_spec():
    assert LENGTH == 100
    assert NOISE_LEVELS == (0.25, 1.0, 4.0)
    assert NUM_MATRICES == 10
    np.testing.assert_allclose(SPECTRAL_RADII, np.linspace(0.85, 1.03, 10), **TIGHT)
    assert SPLIT_SIZES == {"train": 800, "valid": 100, "test": 100}
    assert SETTINGS == ("noiseless", "switch", "long", "zero-shot", "add", "rand")


@pytest.mark.parametrize("split,size", [("train", 800), ("valid", 100), ("test", 100)])
def test_split_sizes(split, size):
    data = _split(split)
    assert data.x.shape == (size, 100, 2)
    assert data.lengths.tolist() == [100] * size
    assert data.x.dtype == torch.float32
    assert data.name == f"synthetic/{split}"
    assert torch.isfinite(data.x).all()


@pytest.mark.parametrize("setting", SETTINGS)
def test_each_test_setting_has_100_sequences(setting):
    data = _split(setting)
    length = 200 if setting == "long" else 100
    assert data.x.shape == (100, length, 2)
    assert data.lengths.tolist() == [length] * 100
    assert data.name == f"synthetic/{setting}"


@pytest.mark.parametrize("split", ["train", "zero-shot", "rand"])
def test_dataset_generation_is_deterministic(split):
    a = synthetic_dataset(split)
    b = synthetic_dataset(split)
    assert torch.equal(a.x, b.x)
    assert torch.equal(a.lengths, b.lengths)


@pytest.mark.parametrize("setting", ("train",) + SETTINGS)
def test_generate_is_deterministic(setting):
    a = generate(setting, 5, seed=42)
    b = generate(setting, 5, seed=42)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.sigma, b.sigma)
    np.testing.assert_array_equal(a.matrix, b.matrix)
    c = generate(setting, 5, seed=43)
    assert not np.array_equal(a.x, c.x)


def test_train_valid_test_differ():
    train, valid, test = (_split(s).x for s in ("train", "valid", "test"))
    assert not torch.allclose(train[:100], valid)
    assert not torch.allclose(valid, test)
    assert not torch.allclose(train[:100], test)
    # not even a single shared sequence (compare the first observation of every sequence)
    starts = torch.cat([train[:, 0], valid[:, 0], test[:, 0]])
    assert torch.unique(starts, dim=0).shape[0] == 1000


@pytest.mark.parametrize("split", ["valid", "test", "noiseless", "add"])
def test_splits_are_generate_of_their_law_with_the_fixed_seed(split):
    law = "train" if split in SPLIT_SIZES else split
    gen = generate(law, len(_split(split)), seed=_SEEDS[split])
    assert torch.equal(_split(split).x, torch.as_tensor(gen.x, dtype=torch.float32))


def test_split_seeds_are_distinct():
    assert sorted(_SEEDS) == sorted(ALL_SPLITS)
    assert len(set(_SEEDS.values())) == len(_SEEDS)


# ---------------------------------------------------------------------------- matrices
def test_training_matrices_have_the_documented_spectral_radii():
    matrices = transition_matrices()
    assert matrices.shape == (10, 2, 2)
    radii = np.abs(np.linalg.eigvals(matrices)).max(axis=1)
    np.testing.assert_allclose(radii, SPECTRAL_RADII, rtol=1e-10)
    np.testing.assert_array_equal(matrices, transition_matrices(TRAIN_MATRIX_SEED))
    np.testing.assert_array_equal(matrices, transition_matrices())  # deterministic


def test_zero_shot_matrices_differ_from_the_training_ones():
    train = transition_matrices(TRAIN_MATRIX_SEED)
    zero = transition_matrices(ZERO_SHOT_MATRIX_SEED)
    radii = np.abs(np.linalg.eigvals(zero)).max(axis=1)
    np.testing.assert_allclose(radii, SPECTRAL_RADII, rtol=1e-10)
    distances = np.abs(train[:, None] - zero[None]).max(axis=(-1, -2))  # (10, 10)
    assert distances.min() > 1e-3


# ---------------------------------------------------------------------------- the training law
def test_train_sigma_switches_exactly_twice_among_the_three_levels():
    gen = _generated("train")
    assert gen.sigma.shape == (200, 100)
    assert set(np.unique(gen.sigma).tolist()) == {0.25, 1.0, 4.0}
    changes = (np.diff(gen.sigma, axis=1) != 0).sum(axis=1)
    assert (changes == 2).all()


def test_train_x0_is_uniform_in_the_square():
    x0 = _generated("train").x[:, 0]
    assert ((x0 >= -1) & (x0 <= 1)).all()
    # both signs occur in both coordinates: the range is [-1, 1], not [0, 1]
    assert (x0 < -0.5).any(axis=0).all() and (x0 > 0.5).any(axis=0).all()


def test_train_matrix_is_one_of_ten_and_fixed_per_sequence():
    gen = _generated("train")
    assert (gen.matrix == gen.matrix[:, :1]).all()
    assert set(np.unique(gen.matrix).tolist()) == set(range(10))


def test_train_noise_residuals_are_standard_normal():
    gen = _generated("train")
    matrices = transition_matrices()[gen.matrix[:, 1:]]
    residual = (gen.x[:, 1:] - _predicted(matrices, gen.x)) / gen.sigma[:, 1:, None]
    _pooled_standard_normal(residual)
    # and separately at every noise level (a misaligned sigma would break the small levels)
    for level in NOISE_LEVELS:
        _pooled_standard_normal(residual[gen.sigma[:, 1:] == level])


# ---------------------------------------------------------------------------- test settings
@pytest.mark.parametrize("setting,seed", [("noiseless", 4), ("long", 6)])
def test_noiseless_settings_follow_the_training_matrices_exactly(setting, seed):
    gen = generate(setting, 50, seed)
    length = 200 if setting == "long" else 100
    assert gen.x.shape == (50, length, 2)
    assert (gen.sigma == 0).all()
    assert (gen.matrix == gen.matrix[:, :1]).all()
    assert ((gen.matrix >= 0) & (gen.matrix < 10)).all()
    x0 = gen.x[:, 0]
    assert ((x0 >= -1) & (x0 <= 1)).all()
    matrices = transition_matrices()[gen.matrix[:, 1:]]
    np.testing.assert_allclose(gen.x[:, 1:], _predicted(matrices, gen.x), **TIGHT)


def test_zero_shot_follows_the_zero_shot_matrices_exactly():
    gen = generate("zero-shot", 50, seed=7)
    assert (gen.sigma == 0).all()
    zero = transition_matrices(ZERO_SHOT_MATRIX_SEED)[gen.matrix[:, 1:]]
    np.testing.assert_allclose(gen.x[:, 1:], _predicted(zero, gen.x), **TIGHT)
    train = transition_matrices(TRAIN_MATRIX_SEED)[gen.matrix[:, 1:]]
    assert not np.allclose(gen.x[:, 1:], _predicted(train, gen.x))


def test_switch_uses_three_matrices_on_contiguous_segments():
    gen = generate("switch", 50, seed=5)
    assert gen.x.shape == (50, 100, 2)
    assert (gen.sigma == 0).all()
    matrices = transition_matrices()
    for x, index in zip(gen.x, gen.matrix):
        segments = [(0, 33), (33, 66), (66, 100)]
        used = [index[a] for a, _ in segments]
        assert len(set(used)) == 3
        for (a, b), i in zip(segments, used):
            assert (index[a:b] == i).all()
            np.testing.assert_allclose(x[a + 1 : b], x[a : b - 1] @ matrices[i].T, **TIGHT)
            assert ((x[a] >= -1) & (x[a] <= 1)).all()  # each segment starts afresh


def test_switch_segments_are_restarted_not_continued():
    gen = generate("switch", 50, seed=5)
    matrices = transition_matrices()
    continued = 0
    for x, index in zip(gen.x, gen.matrix):
        for t in (33, 66):
            continued += np.allclose(x[t], matrices[index[t]] @ x[t - 1])
    assert continued == 0


def test_add_has_constant_increments_in_the_unit_square():
    gen = generate("add", 50, seed=8)
    assert (gen.sigma == 0).all()
    assert (gen.matrix == -1).all()
    steps = np.diff(gen.x, axis=1)
    np.testing.assert_allclose(steps, np.broadcast_to(steps[:, :1], steps.shape), rtol=1e-9, atol=1e-9)
    b = steps[:, 0]
    assert ((b >= 0) & (b <= 1)).all()
    x0 = gen.x[:, 0]
    assert ((x0 >= 0) & (x0 <= 1)).all()
    np.testing.assert_allclose(gen.x, x0[:, None] + np.arange(100)[None, :, None] * b[:, None], rtol=1e-9, atol=1e-9)


def test_rand_is_a_random_walk_with_zero_to_three_switches():
    gen = _generated("rand")
    assert (gen.matrix == -1).all()
    assert set(np.unique(gen.sigma).tolist()) <= set(NOISE_LEVELS)
    changes = (np.diff(gen.sigma, axis=1) != 0).sum(axis=1)
    assert set(changes.tolist()) == {0, 1, 2, 3}
    x0 = gen.x[:, 0]
    assert ((x0 >= -1) & (x0 <= 1)).all()
    residual = np.diff(gen.x, axis=1) / gen.sigma[:, 1:, None]
    _pooled_standard_normal(residual)


# ---------------------------------------------------------------------------- names
def test_unknown_setting_is_rejected_listing_the_valid_names():
    with pytest.raises(ValueError, match=r"unknown synthetic setting 'nope'; choose one of: train, noiseless, switch, long, zero-shot, add, rand"):
        generate("nope", 1, seed=0)
    with pytest.raises(ValueError, match=r"unknown synthetic setting 'valid'"):
        generate("valid", 1, seed=0)


def test_unknown_split_is_rejected_listing_the_valid_names():
    with pytest.raises(ValueError, match=r"unknown synthetic split 'nope'; choose one of: train, valid, test, noiseless, switch, long, zero-shot, add, rand"):
        synthetic_dataset("nope")


def test_load_split_unknown_dataset():
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'; choose one of: synthetic"):
        load_split("nope", "train")


def test_load_split_unknown_split():
    with pytest.raises(ValueError, match=r"dataset 'synthetic' has no split 'nope'; choose one of: " + ", ".join(ALL_SPLITS)):
        load_split("synthetic", "nope")


def test_load_split_returns_the_synthetic_split():
    data = load_split("synthetic", "test")
    assert torch.equal(data.x, _split("test").x)
    assert data_source("synthetic").likelihood == "gaussian"
    assert data_source("synthetic").splits == ALL_SPLITS
