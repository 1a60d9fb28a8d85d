"""Stock (VHRNN appendix C): a hand-computed example on small CSV files the test writes, the
handling of incomplete tickers, and the real QuantQuote folder when it is present."""

import math

import numpy as np
import pytest

from pyrosequence.data import DATASETS, load_split
from pyrosequence.data.stock import load_stock, prepare_stock

DATES = [20071228, 20071231, 20080102, 20080103, 20080104, 20080630, 20080701, 20080702, 20080703]
A = [2, 2, 2, 4, 2, 2, 4, 8, 8]  # log ratios from 2007-12-31 on: 0, L, -L, 0 | L, L, 0
B = [5, 5, 10, 10, 20, 40, 20, 20, 10]  # L, 0, L, L | -L, 0, -L
L = math.log(2.0)


def _write(folder, ticker, prices, dates=DATES, volume=None, extra=()):
    lines = ["19991231,0,1,1,1,1,1"]  # before the range: ignored
    for i, (d, p) in enumerate(zip(dates, prices)):
        v = 1000.0 * p * p if volume is None else volume[i]
        lines.append(f"{d},0,{p},{3 * p},{p},{p},{v}")
    lines += list(extra) + ["20090105,0,1,1,1,1,1"]  # after the range: ignored
    (folder / f"table_{ticker}.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def toy(tmp_path):
    _write(tmp_path, "a", A)
    _write(tmp_path, "b", B)
    _write(tmp_path, "c", [p for i, p in enumerate(A) if i != 3], [d for i, d in enumerate(DATES) if i != 3])
    _write(tmp_path, "d", A, volume=[1000.0] * 7 + [0.0, 1000.0])
    _write(tmp_path, "e", A[:2], DATES[:2])  # no 2008 data
    return tmp_path


def test_hand_computed_two_tickers(toy):
    data = prepare_stock(toy, length=3, sizes=(1, 1, 0))
    assert sorted(data.tickers["train"] + data.tickers["valid"]) == ["a", "b"] and data.tickers["test"] == []
    assert data.calendar.tolist() == DATES[1:]
    r = 1 / math.sqrt(2)
    s = math.sqrt(1.5)
    if data.tickers["train"] == ["a"]:
        # train: A's first half 0, L, -L -> mean 0, std L*sqrt(2/3); valid: B's second half -L, 0, -L
        expected_train, expected_valid = [0, s, -s], [-s, 0, -s]
        mean, std = 0.0, L * math.sqrt(2 / 3)
    else:
        # train: B's first half L, 0, L -> mean 2L/3, std L*sqrt(2)/3; valid: A's second half L, L, 0
        expected_train, expected_valid = [r, -2 * r, r], [r, r, -2 * r]
        mean, std = 2 * L / 3, L * math.sqrt(2) / 3
    for split, expected in (("train", expected_train), ("valid", expected_valid)):
        x = data.sequences[split]
        assert x.shape == (1, 3, 5)
        for dim in range(5):  # volume = 1000 p^2 has doubled ratios, so the same standardised values
            np.testing.assert_allclose(x[0, :, dim], expected, atol=1e-12)
    np.testing.assert_allclose(data.mean, [mean] * 4 + [2 * mean], atol=1e-12)
    np.testing.assert_allclose(data.std, [std] * 4 + [2 * std], atol=1e-12)
    loaded = load_stock("valid", toy, length=3, sizes=(1, 1, 0))
    np.testing.assert_allclose(loaded.x.numpy()[0], data.sequences["valid"][0], atol=1e-6)
    assert loaded.lengths.tolist() == [3]
    # the split carries the training std, so bounds can be reported in raw log-ratio units
    np.testing.assert_allclose(loaded.scale.numpy(), [std] * 4 + [2 * std], rtol=1e-6)


def test_the_second_half_starts_at_july_and_the_test_split_uses_it(toy):
    data = prepare_stock(toy, length=3, sizes=(1, 0, 1))
    train, test = data.tickers["train"][0], data.tickers["test"][0]
    second = {"a": [L, L, 0.0], "b": [-L, 0.0, -L]}[test]
    np.testing.assert_allclose(data.sequences["test"][0, :, 0] * data.std[0] + data.mean[0], second, atol=1e-12)
    assert train != test


def test_incomplete_tickers_are_left_out_with_a_reason(toy):
    data = prepare_stock(toy, length=3, sizes=(1, 1, 0))
    assert data.excluded == {
        "c": "missing 1 of the 8 trading days (first missing 20080103)",
        "d": "volume is 0 on 20080702 (log ratio undefined)",
        "e": "missing 7 of the 8 trading days (first missing 20080102)",
    }


def test_too_few_companies_and_empty_splits(toy):
    with pytest.raises(ValueError, match=r"2 tickers have complete 2008 data but the splits need 3 \(1 \+ 1 \+ 1\); 3 files were left out"):
        prepare_stock(toy, length=3, sizes=(1, 1, 1))
    with pytest.raises(ValueError, match=r"split 'test' has no companies"):
        load_stock("test", toy, length=3, sizes=(1, 1, 0))
    with pytest.raises(ValueError, match=r"has 4 first-half and 3 second-half trading days; sequences of length 4"):
        prepare_stock(toy, length=4, sizes=(1, 1, 0))


def test_bad_rows_and_missing_folder_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no per-ticker CSV files"):
        load_split("stock", "train", str(tmp_path))
    _write(tmp_path, "a", A, extra=["20080707,0,1,2,3"])
    with pytest.raises(ValueError, match=r"table_a.csv, line 11: expected 7 comma-separated fields"):
        prepare_stock(tmp_path, length=3, sizes=(1, 0, 0))
    _write(tmp_path, "a", A, extra=["20080707,0,1,2,3,x,5"])
    with pytest.raises(ValueError, match=r"table_a.csv, line 11: not a number"):
        prepare_stock(tmp_path, length=3, sizes=(1, 0, 0))


def test_daily_sub_folder_is_found(tmp_path):
    daily = tmp_path / "daily"
    daily.mkdir()
    _write(daily, "a", A)
    _write(daily, "b", B)
    assert len(load_stock("train", tmp_path, length=3, sizes=(2, 0, 0))) == 2


def test_real_quantquote_folder(shared_data):
    data = prepare_stock(shared_data)
    assert [len(data.tickers[s]) for s in ("train", "valid", "test")] == [345, 50, 50]
    assert len(set(sum(data.tickers.values(), []))) == 445
    assert len(data.calendar) == 254 and data.calendar[0] == 20071231 and data.calendar[-1] == 20081231
    assert len(data.excluded) == 20
    train = data.sequences["train"].reshape(-1, 5)
    np.testing.assert_allclose(train.mean(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(train.std(0), 1.0, atol=1e-9)
    loaded = {s: load_split("stock", s, str(shared_data)) for s in ("train", "valid", "test")}
    for split, size in zip(("train", "valid", "test"), (345, 50, 50)):
        assert tuple(loaded[split].x.shape) == (size, 125, 5)
        assert loaded[split].lengths.unique().tolist() == [125]
    assert DATASETS["stock"].likelihood == "gaussian"
