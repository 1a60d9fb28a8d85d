"""Length-bucketed minibatches: batches of sequences of similar lengths, so less padding is computed.

A training step of a recurrent model costs about as much per time step whatever the batch size
(per-operation overhead dominates small models), and a batch runs to its longest sequence. With
ragged data sets (music, speech) random batches waste much of that on padding.
:func:`bucketed_order` draws, every epoch:

1. a random permutation of the sequences (from the generator),
2. cuts it into pools of ``pool`` batches and sorts each pool by length (ties keep the random
   order),
3. cuts each sorted pool into batches and shuffles the order of all batches.

Every sequence is used once per epoch, as with plain shuffling; what changes is the randomness
of the batch *composition*: batch-mates now have similar lengths (the larger ``pool``, the
more so; ``pool=1`` is plain shuffling). The per-sequence terms of every estimator are untouched
(a filter or an importance sampler runs per sequence). One thing does change for objectives whose
gradient is divided by the batch's number of steps (the ELBO family in ``train_epoch``; not FIVO,
which normalises each sequence by its own length): over an epoch, the steps of short batches
weigh a little more than those of long batches, since every batch is one update.
"""

from __future__ import annotations

import torch


def bucketed_order(lengths: torch.Tensor, batch_size: int, pool: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Index tensors of the batches of one epoch (see the module docstring)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1:
        raise ValueError(f"the bucket pool must be a positive number of batches, got {pool!r}")
    lengths = lengths.cpu()
    n = lengths.numel()
    order = torch.randperm(n, generator=generator)
    batches = []
    span = batch_size * pool
    for start in range(0, n, span):
        chunk = order[start : start + span]
        chunk = chunk[torch.sort(lengths[chunk], stable=True).indices]
        batches += list(chunk.split(batch_size))
    shuffle = torch.randperm(len(batches), generator=generator)
    return [batches[i] for i in shuffle]


def padding_cost(lengths: torch.Tensor, batches: list[torch.Tensor]) -> dict:
    """What a set of batches costs a per-step loop: ``loop_steps`` (the sum of each batch's longest
    length: iterations of the time loop), ``cell_steps`` (batch size x longest length: steps
    computed, padding included) and ``real_steps``."""
    longest = [int(lengths[b].max()) for b in batches]
    return {
        "loop_steps": sum(longest),
        "cell_steps": sum(m * len(b) for m, b in zip(longest, batches)),
        "real_steps": int(lengths.sum()),
    }
