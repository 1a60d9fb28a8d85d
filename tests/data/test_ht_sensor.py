"""HT Sensor (VHRNN appendix C) on small files in the UCI format written by the test: windowing,
downsampling, normalisation with training statistics, the split, and error messages."""

import numpy as np
import pytest

from pyrosequence.data import DATASETS, load_split
from pyrosequence.data.ht_sensor import (
    SIGNALS,
    induction_windows,
    load_ht_sensor,
    prepare_ht_sensor,
    read_ht_sensor,
    split_sizes,
)

HEADER = "id time      R1         R2         R3         R4         R5         R6         R7        R8        Temp.      Humidity"
METADATA = (
    "id\tdate\t\tclass\tt0\tdt\n"
    "0\t07-04-15\tbanana\t13.49\t1.64 \n"
    "1\t07-05-15\twine\t19.61\t0.54 \n"
    "2\t08-03-15\tbackground\t15.42\t0.98\n"
)
# induction id -> (first reading, seconds relative to the induction start; number of 1 s readings)
RECORDINGS = {0: (-3600.0, 5500), 1: (-1800.0, 4000), 2: (-600.0, 2000)}
DROPPED = (1, 1500)  # induction 1 misses one reading: the grid value is interpolated


def signal(d, seconds):
    """Signal ``d`` at ``seconds`` after the induction start: linear, so interpolation is exact."""
    return 10.0 * (d + 1) + 0.01 * (d + 1) * np.asarray(seconds)


def _rows(ident, first, count):
    seconds = first + np.arange(count, dtype=np.float64)
    if ident == DROPPED[0] and count > DROPPED[1]:
        seconds = np.delete(seconds, DROPPED[1])
    values = np.stack([signal(d, seconds) for d in range(len(SIGNALS))], 1)
    return np.column_stack([np.full(seconds.shape, ident), seconds / 3600.0, values])


def write_uci(folder, recordings=RECORDINGS, metadata=METADATA):
    table = np.concatenate([_rows(i, *recordings[i]) for i in recordings])
    np.savetxt(folder / "HT_Sensor_dataset.dat", table, fmt=["%d", "%.10f"] + ["%.8f"] * len(SIGNALS),
               delimiter="  ", header=HEADER, comments="")
    (folder / "HT_Sensor_metadata.dat").write_text(metadata)
    return folder


@pytest.fixture(scope="module")
def uci(tmp_path_factory):
    return write_uci(tmp_path_factory.mktemp("ht"))


def test_reading_the_uci_files(uci):
    inductions = read_ht_sensor(uci)
    assert [i.id for i in inductions] == [0, 1, 2]
    assert [i.stimulus for i in inductions] == ["banana", "wine", "background"]
    assert inductions[0].date == "07-04-15" and inductions[0].t0 == 13.49 and inductions[0].dt == 1.64
    assert inductions[1].values.shape == (3999, 10)
    np.testing.assert_allclose(inductions[0].seconds[:3], [-3600.0, -3599.0, -3598.0], atol=1e-5)


def test_windows_and_downsampling(uci):
    inductions = read_ht_sensor(uci)
    counts = [induction_windows(i).shape[0] for i in inductions]
    assert counts == [3, 2, 0]  # (5500 - 3000) // 1000 + 1, (4000 - 3000) // 1000 + 1, too short
    for induction in inductions[:2]:
        windows = induction_windows(induction)
        assert windows.shape[1:] == (100, 10)
        first = RECORDINGS[induction.id][0]
        for k in range(windows.shape[0]):
            times = first + 1000 * k + 30 * np.arange(100)
            expected = np.stack([signal(d, times) for d in range(10)], 1)
            np.testing.assert_allclose(windows[k], expected, atol=1e-4)


def test_other_window_settings(uci):
    induction = read_ht_sensor(uci)[1]
    w = induction_windows(induction, window=600, hop=300, downsample=60)
    assert w.shape == ((4000 - 600) // 300 + 1, 10, 10)
    np.testing.assert_allclose(w[2, 3, 0], signal(0, -1800.0 + 600 + 180), atol=1e-4)
    with pytest.raises(ValueError, match=r"window \(1000 s\) must be a multiple of downsample \(30\)"):
        induction_windows(induction, window=1000)


def test_split_sizes_follow_the_paper():
    assert split_sizes(674) == (532, 68, 74)
    assert split_sizes(5) == (3, 1, 1)
    assert sum(split_sizes(1000)) == 1000


def test_normalised_with_training_statistics(uci):
    data = prepare_ht_sensor(uci)
    assert [len(data.windows[s]) for s in ("train", "valid", "test")] == [3, 1, 1]
    every = sorted(sum(data.windows.values(), []))
    assert every == [(0, 0), (0, 1000), (0, 2000), (1, 0), (1, 1000)]
    train = data.sequences["train"].reshape(-1, 10)
    np.testing.assert_allclose(train.mean(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(train.std(0), 1.0, atol=1e-9)

    def raw(ident, start):
        times = RECORDINGS[ident][0] + start + 30 * np.arange(100)
        return np.stack([signal(d, times) for d in range(10)], 1)

    raw_train = np.concatenate([raw(*w) for w in data.windows["train"]])
    np.testing.assert_allclose(data.mean, raw_train.mean(0), rtol=1e-6)
    np.testing.assert_allclose(data.std, raw_train.std(0), rtol=1e-6)
    for split in ("valid", "test"):
        (window,) = data.windows[split]
        np.testing.assert_allclose(data.sequences[split][0], (raw(*window) - data.mean) / data.std, atol=1e-5)
    loaded = load_split("htsensor", "valid", str(uci))
    assert tuple(loaded.x.shape) == (1, 100, 10)
    np.testing.assert_allclose(loaded.x.numpy()[0], data.sequences["valid"][0], atol=1e-5)
    assert DATASETS["htsensor"].likelihood == "gaussian"


def test_the_split_is_seeded(uci):
    a, b = prepare_ht_sensor(uci), prepare_ht_sensor(uci)
    assert a.windows == b.windows
    assert any(prepare_ht_sensor(uci, seed=s).windows != a.windows for s in range(1, 6))


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"need both 'HT_Sensor_dataset.dat' and 'HT_Sensor_metadata.dat'"):
        load_ht_sensor("train", tmp_path)
    (tmp_path / "HT_Sensor_metadata.dat").write_text(METADATA)
    with pytest.raises(FileNotFoundError, match=repr(str(tmp_path))):
        load_ht_sensor("train", tmp_path)


def test_unlisted_induction_and_bad_metadata(tmp_path):
    write_uci(tmp_path, metadata=METADATA.split("\n2\t")[0] + "\n")
    with pytest.raises(ValueError, match=r"HT_Sensor_dataset.dat: induction id 2 is not listed in .*HT_Sensor_metadata.dat"):
        read_ht_sensor(tmp_path)
    (tmp_path / "HT_Sensor_metadata.dat").write_text("a b c\n0 1 2\n")
    with pytest.raises(ValueError, match=r"HT_Sensor_metadata.dat: header 'a b c' is not 'id date class t0 dt'"):
        read_ht_sensor(tmp_path)
    (tmp_path / "HT_Sensor_metadata.dat").write_text("id date class t0 dt\n0 07-04-15 banana x 1.0\n")
    with pytest.raises(ValueError, match=r"HT_Sensor_metadata.dat, line 2: bad id, t0 or dt"):
        read_ht_sensor(tmp_path)


def test_malformed_data_rows_are_named(tmp_path):
    (tmp_path / "HT_Sensor_metadata.dat").write_text(METADATA)
    good = "0 -1.0 " + " ".join(["1.5"] * 10)
    (tmp_path / "HT_Sensor_dataset.dat").write_text(f"{HEADER}\n{good}\n0 -0.9 1 2 3\n{good}\n")
    with pytest.raises(ValueError, match=r"HT_Sensor_dataset.dat: every row .* must have 12 columns; data line 2 has 5"):
        read_ht_sensor(tmp_path)
    (tmp_path / "HT_Sensor_dataset.dat").write_text(f"{HEADER}\n{good}\n0 -0.9 1 2 3 x 5 6 7 8 9 10\n")
    with pytest.raises(ValueError, match=r"HT_Sensor_dataset.dat: not a table of numbers"):
        read_ht_sensor(tmp_path)


def test_too_few_windows(tmp_path):
    write_uci(tmp_path, recordings={0: (-100.0, 4000), 1: (0.0, 100), 2: (0.0, 100)})
    with pytest.raises(ValueError, match=r"only 2 windows of 3000 s found; need at least 3"):
        load_ht_sensor("train", tmp_path)
