"""Train/valid/test splits of a user's sequences: given by the file, by sequence, or by time.

* by sequence (:func:`split_by_sequence`): each sequence goes wholly to one split. The order is
  the rank of ``sha256(f"{seed}:{id}")`` over the sequences' ids, so a split depends only on the
  seed and the ids (not on the NumPy version, nor on the order of the rows in the file);
* by time (:func:`split_by_time`): the last ``holdout`` steps of every sequence are the test
  split, the ``holdout`` steps before them the validation split, the rest the training split;
  each part is a sequence of its own (scored without the steps before it).
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "valid", "test")
#: How a split is made: given by the file, or made by the library.
METHODS = ("file", "sequence", "time")


def _rank_key(seed: int, label) -> bytes:
    return hashlib.sha256(f"{seed}:{label}".encode()).digest()


def split_by_sequence(ids: list, seed: int, valid_fraction: float, test_fraction: float) -> list:
    """The split name of each sequence: ``round(n * fraction)`` (at least one) sequences each for
    the validation and test splits, chosen by the seeded hash of their ids; the rest train."""
    n = len(ids)
    for name, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    n_valid = max(1, round(n * valid_fraction))
    n_test = max(1, round(n * test_fraction))
    if n - n_valid - n_test < 1:
        raise ValueError(f"{n} sequence(s) cannot be split by sequence into train, valid and test "
                         f"(valid_fraction {valid_fraction}, test_fraction {test_fraction}); "
                         "use split='time' to hold out the last steps instead")
    if len(set(map(str, ids))) != n:
        raise ValueError("sequence ids must be unique to split by sequence")
    order = sorted(range(n), key=lambda i: _rank_key(seed, ids[i]))
    names = ["train"] * n
    for i in order[:n_test]:
        names[i] = "test"
    for i in order[n_test:n_test + n_valid]:
        names[i] = "valid"
    return names


def split_by_time(sequences: list, ids: list, holdout: int, split: str) -> list:
    """The ``split`` part of every sequence when the last ``holdout`` steps are held out for test
    and the ``holdout`` before them for validation (see the module docstring)."""
    if isinstance(holdout, bool) or not isinstance(holdout, int) or holdout < 1:
        raise ValueError(f"holdout must be a positive number of steps, got {holdout!r}")
    parts = []
    for seq, label in zip(sequences, ids):
        n = len(seq)
        if n <= 2 * holdout:
            raise ValueError(f"sequence {label!r} has {n} steps: too short to hold out 2 x {holdout} steps "
                             "(valid and test) and keep one for training; lower holdout")
        bounds = {"train": (0, n - 2 * holdout), "valid": (n - 2 * holdout, n - holdout), "test": (n - holdout, n)}
        start, stop = bounds[split]
        parts.append(seq[start:stop])
    return parts


def default_holdout(sequences: list) -> int:
    """A tenth of the shortest sequence (at least one step)."""
    return max(1, min(len(s) for s in sequences) // 10)
