"""Data: validated padded batches, the built-in synthetic data, loaders of the public data sets
(polyphonic music, Bach chorales, Stock, HT Sensor, raw speech), a user's own sequences read from a
path (:mod:`pyrosequence.data.from_path`) or registered (``register_dataset``), and batch iteration. The disk
readers bound what a file can make them allocate (:mod:`pyrosequence.data.limits`)."""

from pyrosequence.data.bach import load_bach
from pyrosequence.data.checks import Sequences, check_lengths, check_sequences
from pyrosequence.data.dataset import SequenceDataset
from pyrosequence.data.describe import describe
from pyrosequence.data.fetch import FetchError, fetch_music
from pyrosequence.data.ht_sensor import load_ht_sensor
from pyrosequence.data.limits import LimitError, Limits
from pyrosequence.data.music import load_music, read_music_file
from pyrosequence.data.from_path import load_data, standardize, unstandardize
from pyrosequence.data.registry import DATASETS, DataSource, data_source, load_split, register_dataset, unregister_dataset
from pyrosequence.data.speech import load_speech
from pyrosequence.data.stock import load_stock
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
    "load_data",
    "register_dataset",
    "unregister_dataset",
    "standardize",
    "unstandardize",
    "SYNTHETIC_SETTINGS",
    "generate_synthetic",
    "synthetic_dataset",
    "describe",
    "fetch_music",
    "FetchError",
    "Limits",
    "LimitError",
    "load_music",
    "read_music_file",
    "load_bach",
    "load_stock",
    "load_ht_sensor",
    "load_speech",
]
