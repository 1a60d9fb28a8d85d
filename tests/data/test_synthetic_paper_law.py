"""The paper-like synthetic law (``synthetic-paper``): checked against its documented properties."""

import functools

import numpy as np
import pytest
import torch

from pyrosequence.data import load_split
from pyrosequence.data.synthetic import (
    DEFAULT_LAW,
    LAWS,
    LENGTH,
    SETTINGS,
    TRAIN_MATRIX_SEED,
    ZERO_SHOT_MATRIX_SEED,
    generate,
    regime_changes,
    synthetic_dataset,
    synthetic_sequences,
    transition_matrices,
)
from pyrosequence.diagnostics.markers import change_points

PAPER = LAWS["paper"]
TIGHT = dict(rtol=1e-12, atol=1e-12)


@functools.lru_cache(maxsize=None)
def _split(name):
    return synthetic_sequences(name, law=PAPER)


def _radii(matrices):
    return np.abs(np.linalg.eigvals(matrices)).max(axis=1)


def test_the_default_law_is_unchanged_by_the_law_argument():
    for split in ("train", "switch", "long"):
        a = synthetic_dataset(split)
        b = synthetic_dataset(split, law="default")
        assert torch.equal(a.x, b.x) and a.name == b.name == f"synthetic/{split}"
    np.testing.assert_array_equal(transition_matrices(), transition_matrices(law=DEFAULT_LAW))


def test_paper_matrices_are_the_unrescaled_standard_normal_draws_below_the_cap():
    for seed in (TRAIN_MATRIX_SEED, ZERO_SHOT_MATRIX_SEED):
        matrices = transition_matrices(seed, PAPER)
        # replay the documented rejection rule draw by draw
        rng, expected = np.random.default_rng(seed), []
        while len(expected) < 10:
            w = rng.standard_normal((2, 2))
            if _radii(w[None])[0] <= 1.1:
                expected.append(w)
        np.testing.assert_array_equal(matrices, np.stack(expected))
        assert (_radii(matrices) <= 1.1).all()


def test_paper_law_has_the_documented_growing_matrices():
    train, zero = (_radii(transition_matrices(s, PAPER)) for s in (TRAIN_MATRIX_SEED, ZERO_SHOT_MATRIX_SEED))
    assert (train > 1).sum() == 5 and 1.04 <= train[train > 1].min() and train.max() <= 1.08 + 5e-3
    assert (zero > 1).sum() == 3 and 1.05 <= zero[zero > 1].min() and zero.max() <= 1.08 + 5e-3
    # some singular value above 1 for most of them: the paper's condition for growth
    assert (np.linalg.svd(transition_matrices(law=PAPER), compute_uv=False)[:, 0] > 1).sum() >= 5


def test_long_leaves_the_training_range_under_the_paper_law_only():
    train_max = np.abs(_split("train").x).max()
    long_max = np.abs(_split("long").x).max()
    assert np.isfinite(train_max) and train_max < 1e5  # float32 and optimisation stay comfortable
    assert long_max > 50 * train_max  # "well beyond the range of training data"
    default_train = np.abs(synthetic_sequences("train").x).max()
    default_long = np.abs(synthetic_sequences("long").x).max()
    assert default_long < default_train  # the default law never leaves it


def test_paper_switch_is_three_full_noiseless_sequences():
    gen = _split("switch")
    assert gen.x.shape == (100, 3 * LENGTH, 2)
    matrices = transition_matrices(law=PAPER)
    for x, index in zip(gen.x, gen.matrix):
        starts = (0, LENGTH, 2 * LENGTH)
        assert len({index[a] for a in starts}) == 3
        for a in starts:
            i = index[a]
            assert (index[a : a + LENGTH] == i).all()
            assert ((x[a] >= -1) & (x[a] <= 1)).all()  # each sequence starts afresh in [-1, 1]^2
            np.testing.assert_allclose(x[a + 1 : a + LENGTH], x[a : a + LENGTH - 1] @ matrices[i].T, **TIGHT)
    assert regime_changes("switch", 0, law=PAPER) == [LENGTH, 2 * LENGTH]
    assert change_points("synthetic-paper", "switch", 0) == [LENGTH, 2 * LENGTH]
    assert change_points("synthetic", "switch", 0) == regime_changes("switch", 0)


@pytest.mark.parametrize("split", ("train", "valid", "test") + SETTINGS)
def test_synthetic_paper_is_a_data_set_by_name(split):
    data = load_split("synthetic-paper", split)
    expected = synthetic_dataset(split, law="paper")
    assert data.name == f"synthetic-paper/{split}"
    assert torch.equal(data.x, expected.x)
    assert torch.isfinite(data.x).all()
    length = {"long": 2 * LENGTH, "switch": 3 * LENGTH}.get(split, LENGTH)
    assert data.x.shape[1:] == (length, 2)


def test_noiseless_paper_sequences_follow_their_matrices():
    gen = generate("noiseless", 20, seed=4, law=PAPER)
    matrices = transition_matrices(law=PAPER)[gen.matrix[:, 1:]]
    np.testing.assert_allclose(gen.x[:, 1:], np.einsum("ntij,ntj->nti", matrices, gen.x[:, :-1]), **TIGHT)


def test_unknown_law_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown synthetic law 'papr'.*default, paper"):
        synthetic_dataset("train", law="papr")
