"""``SequenceDataset``: padding, minibatches, subsets and the valid-step mean."""

import numpy as np
import pytest
import torch

from pyrosequence.data import SequenceDataset

LENGTHS = [4, 1, 3, 6, 2, 5, 6, 1, 3]


def _numbered(lengths=LENGTHS, x_dim=2):
    """Sequence ``i`` holds ``100 * (i + 1) + t`` at step ``t`` in dimension 0 and its negative in
    dimension 1, so every value identifies its sequence and step."""
    out = []
    for i, n in enumerate(lengths):
        t = np.arange(n, dtype=np.float64)
        seq = np.stack([100.0 * (i + 1) + t] + [-(100.0 * (i + 1) + t)] * (x_dim - 1), axis=1)
        out.append(seq)
    return out


def _ids(x):
    """Recover sequence numbers from a batch built by :func:`_numbered`."""
    return (x[:, 0, 0] / 100).round().long().sub(1).tolist()


# ---------------------------------------------------------------------------- from_sequences
def test_from_sequences_pads_with_zeros():
    seqs = [
        np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
        np.array([[7.0, 8.0]]),
        torch.tensor([[9.0, 10.0], [11.0, 12.0]]),
    ]
    data = SequenceDataset.from_sequences(seqs, name="toy")
    expected = torch.tensor(
        [
            [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
            [[7.0, 8.0], [0.0, 0.0], [0.0, 0.0]],
            [[9.0, 10.0], [11.0, 12.0], [0.0, 0.0]],
        ]
    )
    assert torch.equal(data.x, expected)
    assert data.x.dtype == torch.float32
    assert data.lengths.tolist() == [3, 1, 2]
    assert data.lengths.dtype == torch.int64
    assert len(data) == 3
    assert data.x_dim == 2
    assert data.total_steps == 6
    assert data.name == "toy"


def test_from_sequences_keeps_values_and_dtype():
    seqs = _numbered()
    data = SequenceDataset.from_sequences(seqs, dtype=torch.float64)
    assert data.x.dtype == torch.float64
    assert data.x.shape == (len(LENGTHS), max(LENGTHS), 2)
    assert data.lengths.tolist() == LENGTHS
    for i, (seq, n) in enumerate(zip(seqs, LENGTHS)):
        np.testing.assert_array_equal(data.x[i, :n].numpy(), seq)
        assert torch.count_nonzero(data.x[i, n:]) == 0


def test_from_sequences_accepts_nested_lists():
    data = SequenceDataset.from_sequences([[[1.0], [2.0]], [[3.0]]])
    assert data.x[:, :, 0].tolist() == [[1.0, 2.0], [3.0, 0.0]]
    assert data.lengths.tolist() == [2, 1]


def test_from_sequences_rejects_empty_list():
    with pytest.raises(ValueError, match=r"dataset 'empty' has no sequences"):
        SequenceDataset.from_sequences([], name="empty")


def test_from_sequences_rejects_mixed_x_dims():
    with pytest.raises(ValueError, match=r"one x_dim; got \[\(2,\), \(3,\)\]"):
        SequenceDataset.from_sequences([np.zeros((4, 2)), np.zeros((3, 3))], name="mixed")


def test_from_sequences_rejects_sequences_that_are_not_matrices():
    with pytest.raises(ValueError, match=r"every sequence must be \(time, x_dim\)"):
        SequenceDataset.from_sequences([np.zeros(4), np.zeros(3)])
    with pytest.raises(ValueError, match=r"every sequence must be \(time, x_dim\)"):
        SequenceDataset.from_sequences([np.zeros((4, 2, 1))])


def test_from_sequences_rejects_non_finite_values_naming_the_dataset():
    seq = np.zeros((3, 2))
    seq[2, 1] = np.inf
    with pytest.raises(ValueError, match=r"dataset 'bad' contains inf at sequence 1, step 2, dimension 1"):
        SequenceDataset.from_sequences([np.zeros((5, 2)), seq], name="bad")


def test_from_sequences_keeps_nan_as_missing_values():
    seq = np.ones((3, 2))
    seq[2, 1] = np.nan
    data = SequenceDataset.from_sequences([np.zeros((5, 2)), seq], name="gaps")
    assert data.has_missing and torch.isnan(data.x[1, 2, 1]) and torch.allclose(data.mean(), torch.tensor([3 / 8, 2 / 7]))
    with pytest.raises(ValueError, match=r"dataset 'gaps': sequence 1 has no observed value"):
        SequenceDataset.from_sequences([np.zeros((5, 2)), np.full((3, 2), np.nan)], name="gaps")


def test_constructor_validates_lengths():
    with pytest.raises(ValueError, match=r"sequence 1 has length 4"):
        SequenceDataset(torch.zeros(2, 3, 1), torch.tensor([3, 4]))


# ---------------------------------------------------------------------------- batches
@pytest.mark.parametrize("batch_size", [1, 2, 4, 9, 50])
@pytest.mark.parametrize("shuffle", [False, True])
def test_batches_cover_every_sequence_once_and_are_trimmed(batch_size, shuffle):
    data = SequenceDataset.from_sequences(_numbered())
    generator = torch.Generator().manual_seed(0)
    seen = []
    sizes = []
    for x, lengths in data.batches(batch_size, shuffle=shuffle, generator=generator):
        ids = _ids(x)
        assert lengths.tolist() == [LENGTHS[i] for i in ids]
        assert x.shape == (len(ids), max(lengths.tolist()), 2)  # trimmed to its longest sequence
        assert torch.equal(x, data.x[ids, : x.shape[1]])
        seen.extend(ids)
        sizes.append(len(ids))
    assert sorted(seen) == list(range(len(LENGTHS)))
    n = len(LENGTHS)
    assert sizes == [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    if not shuffle:
        assert seen == list(range(n))


def test_batches_trim_to_the_longest_in_the_batch():
    data = SequenceDataset.from_sequences(_numbered())
    widths = [x.shape[1] for x, _ in data.batches(3)]
    # unshuffled batches are sequences 0-2, 3-5, 6-8
    assert widths == [max(LENGTHS[0:3]), max(LENGTHS[3:6]), max(LENGTHS[6:9])] == [4, 6, 6]


def test_shuffled_batches_are_reproducible_given_a_seeded_generator():
    data = SequenceDataset.from_sequences(_numbered())

    def order(seed):
        generator = torch.Generator().manual_seed(seed)
        return [_ids(x) for x, _ in data.batches(2, shuffle=True, generator=generator)]

    assert order(7) == order(7)
    assert order(7) != order(8)
    assert order(7) != order(9)
    identity = [list(range(i, min(i + 2, len(LENGTHS)))) for i in range(0, len(LENGTHS), 2)]
    assert order(7) != identity  # it does shuffle


def test_successive_epochs_from_one_generator_differ():
    data = SequenceDataset.from_sequences(_numbered())
    generator = torch.Generator().manual_seed(3)
    first = [_ids(x) for x, _ in data.batches(4, shuffle=True, generator=generator)]
    second = [_ids(x) for x, _ in data.batches(4, shuffle=True, generator=generator)]
    assert first != second


def test_shuffle_without_generator_still_covers_everything():
    data = SequenceDataset.from_sequences(_numbered())
    seen = [i for x, _ in data.batches(4, shuffle=True) for i in _ids(x)]
    assert sorted(seen) == list(range(len(LENGTHS)))


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_below_one_is_rejected(batch_size):
    data = SequenceDataset.from_sequences(_numbered())
    with pytest.raises(ValueError, match=rf"batch_size must be at least 1, got {batch_size}"):
        next(data.batches(batch_size))


# ---------------------------------------------------------------------------- subset and mean
def test_subset_selects_and_trims():
    data = SequenceDataset.from_sequences(_numbered(), name="numbered")
    sub = data.subset([4, 1, 8])
    assert len(sub) == 3
    assert sub.name == "numbered"
    assert sub.lengths.tolist() == [2, 1, 3]
    assert sub.x.shape == (3, 3, 2)
    assert _ids(sub.x) == [4, 1, 8]
    assert torch.equal(sub.x, data.x[[4, 1, 8], :3])
    assert sub.total_steps == 6


def test_subset_accepts_a_tensor_index_and_keeps_full_width_when_needed():
    data = SequenceDataset.from_sequences(_numbered())
    sub = data.subset(torch.tensor([3, 0]))
    assert sub.x.shape == (2, 6, 2)
    assert torch.equal(sub.x, data.x[[3, 0]])
    assert sub.lengths.tolist() == [6, 4]


def test_mean_ignores_padding():
    seqs = [
        np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
        np.array([[10.0, 20.0]]),
    ]
    data = SequenceDataset.from_sequences(seqs)
    # four valid steps: (1 + 3 + 5 + 10) / 4 and (2 + 4 + 6 + 20) / 4; padding would divide by 6
    assert data.mean().tolist() == [4.75, 8.0]
    assert data.mean().shape == (2,)


def test_mean_of_numbered_sequences_matches_a_hand_computed_value():
    data = SequenceDataset.from_sequences(_numbered(), dtype=torch.float64)
    values = [100.0 * (i + 1) + t for i, n in enumerate(LENGTHS) for t in range(n)]
    expected = sum(values) / len(values)
    torch.testing.assert_close(data.mean(), torch.tensor([expected, -expected], dtype=torch.float64))


def test_to_keeps_contents():
    data = SequenceDataset.from_sequences(_numbered(), name="n")
    moved = data.to("cpu")
    assert torch.equal(moved.x, data.x)
    assert torch.equal(moved.lengths, data.lengths)
    assert moved.name == "n"
