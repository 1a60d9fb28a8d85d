"""Data: validated padded batches, the built-in synthetic data sets, and batch loaders."""

from pyrosequence.data.checks import Sequences, check_lengths, check_sequences
from pyrosequence.data.dataset import SequenceDataset
from pyrosequence.data.registry import DATASETS, DataSource, data_source, load_split
from pyrosequence.data.synthetic import SETTINGS as SYNTHETIC_SETTINGS
from pyrosequence.data.synthetic import generate as generate_synthetic
from pyrosequence.data.synthetic import synthetic_dataset

__all__ = [
    "Sequences",
    "check_lengths",
    "check_sequences",
    "SequenceDataset",
    "DATASETS",
    "DataSource",
    "data_source",
    "load_split",
    "SYNTHETIC_SETTINGS",
    "generate_synthetic",
    "synthetic_dataset",
]
