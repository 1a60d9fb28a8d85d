"""The restricted unpickler (pyrosequence.data.safe_pickle) refuses a pickle that would run code.
Its size checks (arrays, dtypes and containers refused before NumPy allocates) are tested with the
other readers' limits in tests/data/test_limits.py."""

import pickle

import pytest

from pyrosequence.data import load_split


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned > " + str(tmp_path / "ran"),))

    (tmp_path / "Nottingham.pickle").write_bytes(pickle.dumps({"train": Evil(), "valid": [], "test": []}))
    with pytest.raises(ValueError, match=r"Nottingham.pickle: not a readable .*refusing to load"):
        load_split("nottingham", "train", str(tmp_path))
    assert not (tmp_path / "ran").exists()
