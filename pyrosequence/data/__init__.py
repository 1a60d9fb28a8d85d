"""Data: validated padded batches, the built-in synthetic data sets, and batch loaders."""

from pyrosequence.data.checks import Sequences, check_lengths, check_sequences

__all__ = ["Sequences", "check_lengths", "check_sequences"]
