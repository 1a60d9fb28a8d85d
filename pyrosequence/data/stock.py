"""Daily S&P 500 prices of 2008, prepared as in the VHRNN paper (Deng et al., 2020, section 5
"Stock" and appendix C).

Input: a folder of per-ticker CSV files in the QuantQuote free daily format
(``table_<ticker>.csv``; no header; 7 comma-separated columns ``date (YYYYMMDD), time (0), open,
high, low, close, volume``; rows sorted by date). ``root`` may be that folder, or a folder holding
it as ``daily/`` or ``sp500_quantquote/daily/``.

Preparation (paper's protocol; the choices it leaves open are fixed here):

* Trading calendar: the 2008 dates found in at least half of the files that have 2008 rows,
  preceded by the last trading day of 2007 (the latest December 2007 date found in at least half
  of the files with December 2007 rows), so the first 2008 day also has a log ratio.
* A ticker is used only when it has a row for every calendar day and all five values are finite
  and positive on those days. Tickers with missing days (including those listed later in the year
  or delisted), with no 2008 data, or with a zero volume (whose log is undefined) are left out,
  not imputed; :attr:`StockData.excluded` says why for each.
* Features: ``log(v_t / v_{t-1})`` for open, high, low, close, volume (in that order) between
  consecutive calendar days.
* Halves: the first half holds the ratios dated up to June 30, the second those from July 1; a
  sequence is the first ``length = 125`` ratios of its half (the first half of 2008 has exactly
  125 trading days; the second has 128, of which the last 3 are not used).
* Companies: the usable tickers, sorted by name, are shuffled with
  ``numpy.random.default_rng(seed)`` (``seed = 2008``); the first 345 give the training split
  (first half of the year), the next 50 the validation split and the next 50 the test split (both
  second half), as in the paper (345 + 50 + 50 = 445 companies).
* Normalisation: each dimension is standardised with the mean and standard deviation
  (``ddof = 0``) over all training steps; the same statistics are applied to every split.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyrosequence.data._io import data_root, file_signature
from pyrosequence.data.dataset import SequenceDataset
from pyrosequence.data.limits import Limits, resolve

SPLITS = ("train", "valid", "test")
FEATURES = ("open", "high", "low", "close", "volume")
LENGTH = 125
SIZES = (345, 50, 50)
SEED = 2008
YEAR = 2008


@dataclass(frozen=True)
class StockData:
    """The prepared Stock data.

    Attributes:
        tickers: ``{split: [ticker, ...]}`` in the order of the sequences.
        sequences: ``{split: (n, length, 5) float64}``, normalised with the training statistics.
        mean, std: ``(5,)`` training mean and standard deviation of the log ratios.
        excluded: ``{ticker: reason}`` for every file that was not usable.
        calendar: the trading days used (YYYYMMDD ints), the last 2007 day first.
    """

    tickers: dict
    sequences: dict
    mean: np.ndarray
    std: np.ndarray
    excluded: dict
    calendar: np.ndarray


def find_stock_folder(root) -> Path:
    """The folder of per-ticker CSV files: ``root``, ``root/daily`` or ``root/sp500_quantquote/daily``."""
    base = data_root(root, "stock")
    candidates = [base, base / "daily", base / "sp500_quantquote" / "daily", base / "sp500_quantquote"]
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.csv")):
            return folder
    raise FileNotFoundError(
        "dataset 'stock': no per-ticker CSV files (table_<ticker>.csv, QuantQuote daily format) found in "
        + ", ".join(repr(str(c)) for c in candidates)
    )


def read_quote_csv(path, start: int, end: int, limits: Limits | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of one QuantQuote daily CSV dated ``start <= date <= end`` (YYYYMMDD ints).

    Returns ``(dates (n,) int64, values (n, 5) float64)`` with open, high, low, close, volume.
    Raises ``ValueError`` naming the file and line for a malformed row in that range, and
    :class:`~pyrosequence.data.limits.LimitError` when the file is larger than
    ``limits.max_file_bytes`` or has more than ``limits.max_steps`` rows in the range.
    """
    path = Path(path)
    limits = resolve(limits)
    limits.check_file(path)
    lo, hi = str(start), str(end)
    dates, values = [], []
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            key = line[:8]
            if key < lo or key > hi:
                continue
            if len(dates) >= limits.max_steps:
                limits.check(path, "max_steps", len(dates) + 1,
                             f"more than {len(dates):,} rows are dated {start} to {end} (line {number})")
            fields = line.strip().split(",")
            if len(fields) != 7:
                raise ValueError(f"{path}, line {number}: expected 7 comma-separated fields "
                                 f"(date, time, open, high, low, close, volume), got {len(fields)}")
            try:
                date = int(fields[0])
                row = [float(v) for v in fields[2:]]
            except ValueError:
                raise ValueError(f"{path}, line {number}: not a number in {line.strip()!r}") from None
            dates.append(date)
            values.append(row)
    return np.asarray(dates, dtype=np.int64), np.asarray(values, dtype=np.float64).reshape(-1, 5)


@functools.lru_cache(maxsize=2)
def _read_folder(signature, year: int, limits: Limits) -> dict:
    rows = {}
    for path, _, _ in signature:
        stem = Path(path).stem
        ticker = stem.removeprefix("table_")
        rows[ticker] = read_quote_csv(path, (year - 1) * 10000 + 1201, year * 10000 + 1231, limits)
    return rows


def _calendar(rows: dict, year: int) -> np.ndarray:
    in_year = [d[(d >= year * 10000) & (d < (year + 1) * 10000)] for d, _ in rows.values()]
    in_december = [d[d < year * 10000] for d, _ in rows.values()]
    with_year = [d for d in in_year if d.size]
    with_december = [d for d in in_december if d.size]
    if not with_year or not with_december:
        raise ValueError(f"dataset 'stock': the files hold no rows for December {year - 1} and {year}")
    year_counts = Counter(int(x) for d in with_year for x in d)
    days = sorted(d for d, c in year_counts.items() if 2 * c >= len(with_year))
    december_counts = Counter(int(x) for d in with_december for x in d)
    common = [d for d, c in december_counts.items() if 2 * c >= len(with_december)]
    if not days or not common:
        raise ValueError(f"dataset 'stock': the files share no common trading days in December {year - 1} and {year}")
    previous = max(common)
    return np.asarray([previous] + days, dtype=np.int64)


def stock_log_ratios(root=None, length: int = LENGTH, year: int = YEAR, limits: Limits | None = None):
    """Per usable ticker, the first and second half-year log-ratio sequences.

    Returns ``(series, excluded, calendar)``: ``series = {ticker: ((length, 5), (length, 5))}``
    (unnormalised), ``excluded = {ticker: reason}``, and the trading calendar (see the module
    docstring for every rule). ``limits``: see :mod:`pyrosequence.data.limits`.
    """
    folder = find_stock_folder(root)
    rows = _read_folder(file_signature(sorted(folder.glob("*.csv"))), year, resolve(limits))
    calendar = _calendar(rows, year)
    ratio_dates = calendar[1:]
    first = ratio_dates <= year * 10000 + 630
    if first.sum() < length or (~first).sum() < length:
        raise ValueError(
            f"dataset 'stock': the {year} calendar has {int(first.sum())} first-half and {int((~first).sum())} "
            f"second-half trading days; sequences of length {length} need at least {length} in each"
        )
    series, excluded = {}, {}
    for ticker in sorted(rows):
        dates, values = rows[ticker]
        position = {int(d): i for i, d in enumerate(dates)}
        missing = [int(d) for d in calendar if int(d) not in position]
        if missing:
            excluded[ticker] = (f"missing {len(missing)} of the {len(calendar)} trading days "
                                f"(first missing {missing[0]})")
            continue
        v = values[[position[int(d)] for d in calendar]]
        bad = ~(np.isfinite(v) & (v > 0))
        if bad.any():
            i, j = (int(k) for k in np.argwhere(bad)[0])
            excluded[ticker] = f"{FEATURES[j]} is {v[i, j]:g} on {int(calendar[i])} (log ratio undefined)"
            continue
        ratios = np.log(v[1:] / v[:-1])
        series[ticker] = (ratios[first][:length], ratios[~first][:length])
    return series, excluded, calendar


def prepare_stock(root=None, length: int = LENGTH, sizes=SIZES, seed: int = SEED, year: int = YEAR,
                  limits: Limits | None = None) -> StockData:
    """All splits of the Stock data (VHRNN appendix C), normalised with the training statistics.

    ``sizes = (train, valid, test)`` companies; a size may be 0 (that split is then empty).
    Raises ``ValueError`` when fewer usable tickers exist than ``sum(sizes)``.
    """
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) != 3 or min(sizes) < 0 or sizes[0] < 1:
        raise ValueError(f"sizes must be (train, valid, test) company counts with train >= 1, got {sizes}")
    series, excluded, calendar = stock_log_ratios(root, length, year, limits)
    names = sorted(series)
    if len(names) < sum(sizes):
        raise ValueError(
            f"dataset 'stock': {len(names)} tickers have complete {year} data but the splits need "
            f"{sum(sizes)} ({sizes[0]} + {sizes[1]} + {sizes[2]}); {len(excluded)} files were left out"
        )
    order = np.random.default_rng(seed).permutation(len(names))
    bounds = np.cumsum((0,) + sizes)
    tickers = {s: [names[i] for i in order[bounds[k] : bounds[k + 1]]] for k, s in enumerate(SPLITS)}
    half = {"train": 0, "valid": 1, "test": 1}
    raw = {
        s: np.stack([series[t][half[s]] for t in tickers[s]]) if tickers[s] else np.zeros((0, length, 5))
        for s in SPLITS
    }
    flat = raw["train"].reshape(-1, 5)
    mean, std = flat.mean(0), flat.std(0)
    std = np.where(std > 0, std, 1.0)
    sequences = {s: (raw[s] - mean) / std for s in SPLITS}
    return StockData(tickers, sequences, mean, std, excluded, calendar)


def load_stock(split: str, root=None, length: int = LENGTH, sizes=SIZES, seed: int = SEED, year: int = YEAR,
               limits: Limits | None = None) -> SequenceDataset:
    """One split of the Stock data: ``(n, 125, 5)`` normalised daily log ratios of open, high,
    low, close and volume (VHRNN appendix C; see the module docstring). ``limits`` bounds each
    CSV file (see :mod:`pyrosequence.data.limits`; default: the environment's)."""
    if split not in SPLITS:
        raise ValueError(f"dataset 'stock' has no split {split!r}; choose one of: {', '.join(SPLITS)}")
    data = prepare_stock(root, length, sizes, seed, year, limits)
    x = data.sequences[split]
    if x.shape[0] == 0:
        raise ValueError(f"dataset 'stock': split {split!r} has no companies (sizes {tuple(sizes)})")
    return SequenceDataset.from_sequences(list(x), name=f"stock/{split}", scale=data.std)


