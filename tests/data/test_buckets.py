"""Length-bucketed batches: every sequence once per epoch, similar lengths together, reproducible."""

import pytest
import torch

from pyrosequence.training.config import TrainConfig
from pyrosequence.data.buckets import bucketed_order, padding_cost
from pyrosequence.data.dataset import SequenceDataset
from pyrosequence.training.loop import train

LENGTHS = torch.randint(1, 200, (103,), generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("pool", [1, 3, 100])
def test_every_sequence_once_per_epoch(pool):
    batches = bucketed_order(LENGTHS, 8, pool, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(batches).tolist()) == list(range(len(LENGTHS)))
    assert sum(len(b) == 8 for b in batches) >= len(LENGTHS) // 8 - pool  # only each pool's last batch may be short


def test_pool_one_keeps_the_composition_of_plain_shuffling():
    permutation = torch.randperm(len(LENGTHS), generator=torch.Generator().manual_seed(2))
    plain = {frozenset(b.tolist()) for b in permutation.split(8)}
    bucketed = {frozenset(b.tolist()) for b in bucketed_order(LENGTHS, 8, 1, torch.Generator().manual_seed(2))}
    assert bucketed == plain


def test_buckets_cut_padding_and_a_global_pool_sorts():
    plain = padding_cost(LENGTHS, list(torch.randperm(len(LENGTHS), generator=torch.Generator().manual_seed(1)).split(8)))
    some = padding_cost(LENGTHS, bucketed_order(LENGTHS, 8, 4, torch.Generator().manual_seed(1)))
    full = padding_cost(LENGTHS, bucketed_order(LENGTHS, 8, 100, torch.Generator().manual_seed(1)))
    assert full["loop_steps"] < some["loop_steps"] < plain["loop_steps"]
    assert full["real_steps"] == plain["real_steps"] == int(LENGTHS.sum())
    ordered = LENGTHS.sort().values
    assert full["loop_steps"] == sum(int(chunk.max()) for chunk in ordered.split(8))  # = the sorted split


def test_reproducible_and_seeded():
    a = bucketed_order(LENGTHS, 8, 4, torch.Generator().manual_seed(3))
    b = bucketed_order(LENGTHS, 8, 4, torch.Generator().manual_seed(3))
    c = bucketed_order(LENGTHS, 8, 4, torch.Generator().manual_seed(4))
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and any(not torch.equal(x, y) for x, y in zip(a, c))


def test_dataset_batches_are_trimmed_and_bad_pools_rejected():
    x = torch.randn(len(LENGTHS), 200, 2)
    data = SequenceDataset(x * (torch.arange(200)[None, :, None] < LENGTHS[:, None, None]), LENGTHS)
    for xb, lb in data.batches(8, shuffle=True, generator=torch.Generator().manual_seed(0), bucket_pool=4):
        assert xb.shape[1] == int(lb.max())
    with pytest.raises(ValueError, match="bucket pool must be a positive"):
        bucketed_order(LENGTHS, 8, 0)
    with pytest.raises(ValueError, match="length_buckets must be a positive integer"):
        TrainConfig(length_buckets=0)


def test_training_with_buckets_resumes_exactly(tmp_path):
    quiet = dict(progress=False, log=lambda s: None)
    fast = dict(z_dim=2, batch_size=64, eval_particles=2, train_subset=256, length_buckets=2)
    full = train(TrainConfig(epochs=2, **fast), out=tmp_path / "full", **quiet)
    train(TrainConfig(epochs=1, **fast), out=tmp_path / "split", **quiet)
    resumed = train(TrainConfig(epochs=2, **fast), out=tmp_path / "split", resume=True, **quiet)
    assert resumed.test == full.test
