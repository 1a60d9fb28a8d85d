"""Bounds on what a data file may make the readers allocate.

Every disk reader of :mod:`pyrosequence.data` (music pickles, ``.mat`` and JSON files, MIDI files,
the Bach cache, stock CSV files, the HT Sensor tables, WAV recordings) checks the sizes a file
declares against a :class:`Limits` *before* it allocates for them, so a small hostile file (a
pickle asking NumPy for a huge array, a compressed ``.mat`` that inflates a thousandfold, JSON
nested 100,000 deep, a WAV header declaring gigabytes) is refused with one line instead of
exhausting memory. A refusal is a :class:`LimitError`, a ``ValueError`` whose single-line message
names the file, the quantity, the limit and how to raise it.

The defaults are generous: each is several times (mostly 10x or more) the largest value measured
on the real data sets (the shared copies of JSB Chorales, Piano-midi.de, Nottingham and MuseData
as ``.mat``/JSON, the 500 QuantQuote CSV files, the 3000 FSDD recordings; the UCI HT Sensor
figures are the published ones). Values measured are given with each field.

Raising a limit, for a file you trust:

* pass ``limits=Limits(max_steps=1_000_000)`` (or ``Limits.from_env().replace(...)``) to the
  reader or loader, which all accept a ``limits`` argument; or
* set an environment variable, read at every call (so it also reaches the command line):

  ================================== =================
  ``PYROSEQUENCE_MAX_FILE_BYTES``    ``max_file_bytes``
  ``PYROSEQUENCE_MAX_TABLE_BYTES``   ``max_table_bytes``
  ``PYROSEQUENCE_MAX_STEPS``         ``max_steps``
  ``PYROSEQUENCE_MAX_TOTAL_STEPS``   ``max_total_steps``
  ``PYROSEQUENCE_MAX_NOTES``         ``max_notes``
  ``PYROSEQUENCE_MAX_TOTAL_NOTES``   ``max_total_notes``
  ``PYROSEQUENCE_MAX_JSON_DEPTH``    ``max_json_depth``
  ``PYROSEQUENCE_MAX_DECODED_BYTES`` ``max_decoded_bytes``
  ================================== =================

  A value is a positive whole number; byte counts may end in ``K``, ``M`` or ``G`` (powers of
  1024), e.g. ``PYROSEQUENCE_MAX_FILE_BYTES=512M``. An argument given to a reader wins over the
  environment.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, fields

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

ENV_PREFIX = "PYROSEQUENCE_"


class LimitError(ValueError):
    """A file declares more than a :class:`Limits` field allows (a ``ValueError``; one-line message)."""


@dataclass(frozen=True)
class Limits:
    """The most a single data file may make a reader allocate. All fields are per file.

    Attributes:
        max_file_bytes: size on disk of a music file (pickle, ``.mat``, JSON), MIDI file, Bach
            cache, stock CSV file, WAV recording or HT Sensor metadata file; also the most
            ``data fetch`` downloads. Default 64 MiB. Largest measured: 947,219 bytes
            (``MuseData.mat``); CSV 218,904; WAV 36,568.
        max_table_bytes: size on disk of the HT Sensor readings file
            (``HT_Sensor_dataset.dat``). Default 1 GiB. UCI's file is about 70 MB (not in the
            shared data; the figure is the size stated for it).
        max_steps: time steps of one sequence (a music piece, one ticker's rows in the
            requested date range, a MIDI roll). Default 100,000. Largest measured: 4,273
            (a MuseData test piece); stock: 273 rows dated December 2007 to December 2008
            (3,926 rows in a whole file).
        max_total_steps: time steps of one file, all sequences together (music: every split;
            HT Sensor: the rows of the readings file, and the steps of all its windows). Default
            10,000,000. Largest measured: 392,296 (MuseData, all splits; Nottingham 266,537 in
            1,037 pieces). UCI HT Sensor (not measured here): one reading a second of 100
            inductions, each a 7 min to 2 h stimulus with an hour of background before and after,
            so under 1.5 million rows.
        max_notes: entries of one time step in a pickle or JSON file (notes sounding at once;
            at most 88 distinct ones). Default 256. Largest measured: 15 (MuseData).
        max_total_notes: entries of all time steps of one pickle or JSON file. Default
            20,000,000. Largest measured: 1,356,293 (MuseData).
        max_json_depth: nesting of lists and objects in a JSON file (the music layout needs 4).
            Default 32.
        max_decoded_bytes: bytes a file's data may decode to in memory, all its arrays together:
            the arrays and scalars a pickle builds (and 64 bytes per item of the lists, tuples,
            sets and dicts a pickle builds by calling those types); the arrays a ``.mat`` file's
            headers declare (the bytes stored for each numeric array, 8 per cell or struct
            element, 4 per character), added up as the headers are read so a compressed file
            cannot inflate past it; the arrays of the Bach cache. Default 384 MiB. Largest
            measured: 34,522,048 (``MuseData.mat``: 392,296 x 88 uint8 rolls; about 34.6 MB
            with the per-array overhead counted).
    """

    max_file_bytes: int = 64 * MIB
    max_table_bytes: int = 1 * GIB
    max_steps: int = 100_000
    max_total_steps: int = 10_000_000
    max_notes: int = 256
    max_total_notes: int = 20_000_000
    max_json_depth: int = 32
    max_decoded_bytes: int = 384 * MIB

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{f.name} must be a positive whole number, got {value!r}")

    @classmethod
    def from_env(cls, environ=None) -> "Limits":
        """The defaults, with each field replaced by its ``PYROSEQUENCE_<FIELD>`` variable when set."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            name = env_name(f.name)
            text = environ.get(name)
            if text is not None and text.strip():
                values[f.name] = _parse(name, text, f.name.endswith("_bytes"))
        return cls(**values)

    def replace(self, **changes) -> "Limits":
        """A copy with some fields changed: ``limits.replace(max_steps=10**6)``."""
        return dataclasses.replace(self, **changes)

    def check(self, path, field: str, value: int, what: str) -> None:
        """Raise :class:`LimitError` when ``value`` exceeds the limit ``field``.

        ``what`` describes the quantity as it is in the file, e.g. ``"sequence 3 has 200,000 time
        steps"``; the message adds the limit, the field and how to raise it.
        """
        limit = getattr(self, field)
        if value > limit:
            raise LimitError(refusal(path, field, what, limit))

    def check_file(self, path, field: str = "max_file_bytes") -> int:
        """The size of ``path`` in bytes, after checking it against ``field``."""
        size = os.stat(path).st_size
        self.check(path, field, size, f"the file is {size:,} bytes")
        return size

    def counter(self, path, field: str, what: str, unit: str = "") -> "Counter":
        """A running total checked against ``field`` at every :meth:`Counter.add`; ``what`` names
        what is added up (``"the time steps of all sequences"``), ``unit`` its unit (``"bytes"``)."""
        return Counter(self, path, field, what, unit)


class Counter:
    """A running total over a file (e.g. all its arrays' bytes), refused once past a limit."""

    def __init__(self, limits: Limits, path, field: str, what: str, unit: str = ""):
        self.limits, self.path, self.field, self.what = limits, path, field, what
        self.unit = f" {unit}" if unit else ""
        self.limit = getattr(limits, field)
        self.total = 0

    def add(self, amount: int) -> None:
        self.total += int(amount)
        if self.total > self.limit:
            self.limits.check(self.path, self.field, self.total, f"{self.what} come to at least {self.total:,}{self.unit}")


def env_name(field: str) -> str:
    """The environment variable of a :class:`Limits` field: ``max_steps`` -> ``PYROSEQUENCE_MAX_STEPS``."""
    return ENV_PREFIX + field.upper()


def refusal(path, field: str, what: str, limit: int) -> str:
    """The one-line message of a refusal (newlines in a file name are shown escaped)."""
    where = str(path).replace("\n", "\\n").replace("\r", "\\r")
    return (
        f"{where}: {what}, more than the limit of {limit:,} ({field}). "
        f"If the file is trusted, raise the limit: set {env_name(field)}=<n> or pass limits=Limits({field}=<n>)"
    )


def resolve(limits: Limits | None) -> Limits:
    """``limits`` itself, or the environment's (:meth:`Limits.from_env`) when it is ``None``."""
    if limits is None:
        return Limits.from_env()
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a pyrosequence.data.limits.Limits or None, got {type(limits).__name__}")
    return limits


_SUFFIX = {"": 1, "K": KIB, "M": MIB, "G": GIB}


def _parse(name: str, text: str, is_bytes: bool) -> int:
    pattern = r"\s*([0-9][0-9_]*)\s*([KMG]?)(?:I?B)?\s*" if is_bytes else r"\s*([0-9][0-9_]*)()\s*"
    match = re.fullmatch(pattern, text, re.IGNORECASE)
    if match is None:
        hint = "a positive whole number, optionally ending in K, M or G" if is_bytes else "a positive whole number"
        raise ValueError(f"environment variable {name}={text!r} is not {hint}")
    value = int(match.group(1)) * _SUFFIX[match.group(2).upper()]
    if value < 1:
        raise ValueError(f"environment variable {name}={text!r} must be at least 1")
    return value
