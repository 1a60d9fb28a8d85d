"""Data by path (issue 24, item 1): every file format round-trips to the same padded tensors and
splits, the splits and scaling are recorded and reopened, and bad files get one line naming the
file, column or line."""

import csv
import json

import numpy as np
import pytest
import torch

from pyrosequence.training.config import TrainConfig
from pyrosequence.data.from_path import load_data, load_path, unstandardize
from pyrosequence.data.registry import load_split

SPLITS = ("train", "valid", "test")


def ragged(seed: int, n: int = 12, x_dim: int = 3, binary: bool = False) -> list:
    """``n`` sequences of random lengths 2..15 (seeded)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 16, size=n)
    if binary:
        return [rng.integers(0, 2, size=(int(t), x_dim)).astype(np.float64) for t in lengths]
    return [rng.normal(size=(int(t), x_dim)).round(6) for t in lengths]


def padded(sequences: list, fill=0.0) -> tuple:
    x = np.full((len(sequences), max(map(len, sequences)), sequences[0].shape[1]), fill)
    for i, s in enumerate(sequences):
        x[i, : len(s)] = s
    return x, np.array([len(s) for s in sequences])


def write_long_csv(path, sequences, splits=None, shuffle_seed=None, ids=None):
    rows = []
    for i, s in enumerate(sequences):
        for t, values in enumerate(s):
            rows.append([ids[i] if ids else i, t, *values, *([splits[i]] if splits else [])])
    if shuffle_seed is not None:  # the time column orders the rows, not the file
        np.random.default_rng(shuffle_seed).shuffle(rows)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sequence", "time", *[f"f{j}" for j in range(sequences[0].shape[1])], *(["split"] if splits else [])])
        writer.writerows([[repr(float(v)) if isinstance(v, float) else v for v in row] for row in rows])


def write_wide_csv(path, sequence):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"f{j}" for j in range(sequence.shape[1])])
        writer.writerows([[repr(float(v)) for v in row] for row in sequence])


def expected(sequences, names, split):
    chosen = [s for s, name in zip(sequences, names) if name == split]
    x, lengths = padded(chosen)
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(lengths)


def assert_same(loaded: dict, other: dict):
    for split in SPLITS:
        assert torch.equal(loaded[split].x, other[split].x), split
        assert torch.equal(loaded[split].lengths, other[split].lengths), split


@pytest.mark.parametrize("seed", range(4))
def test_formats_with_given_splits_round_trip(tmp_path, seed):
    sequences = ragged(seed)
    names = (["train"] * 8 + ["valid"] * 2 + ["test"] * 2)
    names = [names[i] for i in np.random.default_rng(seed).permutation(len(sequences))]
    # padded with lengths (NaN in the padding is ignored) and a split array
    x, lengths = padded(sequences, fill=np.nan)
    np.savez(tmp_path / "padded.npz", x=x, lengths=lengths, split=np.array(names))
    # one padded array per split
    np.savez(tmp_path / "by_split.npz", **{f"{s}_{k}": v for s in SPLITS
                                           for k, v in zip(("x", "lengths"), padded([q for q, n in zip(sequences, names) if n == s]))})
    # long CSV with a split column, rows shuffled
    write_long_csv(tmp_path / "long.csv", sequences, names, shuffle_seed=seed)
    # a folder of train/valid/test sub-folders of wide CSVs, one series per file
    for i, (s, name) in enumerate(zip(sequences, names)):
        (tmp_path / "wide" / name).mkdir(parents=True, exist_ok=True)
        write_wide_csv(tmp_path / "wide" / name / f"{i:03d}.csv", s)
    # a folder of train/valid/test .npz lists
    (tmp_path / "lists").mkdir()
    for split in SPLITS:
        np.savez(tmp_path / "lists" / f"{split}.npz", *[s for s, n in zip(sequences, names) if n == split])
    results = {}
    for name in ("padded.npz", "by_split.npz", "long.csv", "wide", "lists"):
        data = load_path(tmp_path / name)
        assert data.options["split"] == "file"
        results[name] = data.splits
        for split in SPLITS:
            x_expected, lengths_expected = expected(sequences, names, split)
            assert torch.equal(data.splits[split].lengths, lengths_expected), (name, split)
            assert torch.equal(data.splits[split].x, x_expected), (name, split)


@pytest.mark.parametrize("seed", range(3))
def test_library_split_by_sequence_is_the_same_from_every_format(tmp_path, seed):
    sequences = ragged(seed, n=15)
    np.savez(tmp_path / "list.npz", *sequences)
    x, lengths = padded(sequences)
    np.savez(tmp_path / "padded.npz", x=x, lengths=lengths)
    write_long_csv(tmp_path / "long.csv", sequences, shuffle_seed=seed)
    loaded = {name: load_path(tmp_path / name, {"split_seed": seed}) for name in ("list.npz", "padded.npz", "long.csv")}
    for data in loaded.values():
        assert {k: data.options[k] for k in ("split", "split_seed", "valid_fraction", "test_fraction")} == {
            "split": "sequence", "split_seed": seed, "valid_fraction": 0.1, "test_fraction": 0.1}
        assert [len(data[s]) for s in SPLITS] == [11, 2, 2]
    assert_same(loaded["list.npz"].splits, loaded["padded.npz"].splits)
    assert_same(loaded["list.npz"].splits, loaded["long.csv"].splits)
    # every sequence is in exactly one split
    total = sorted(int(n) for s in SPLITS for n in loaded["list.npz"][s].lengths)
    assert total == sorted(len(s) for s in sequences)
    # another seed, another split (of 15 sequences, the same test pair by chance is unlikely)
    other = load_path(tmp_path / "list.npz", {"split_seed": seed + 100})
    assert not all(torch.equal(other[s].lengths, loaded["list.npz"][s].lengths) for s in SPLITS)


def test_split_by_time_holds_out_the_last_steps(tmp_path):
    series = np.arange(40, dtype=np.float64).reshape(20, 2)
    write_wide_csv(tmp_path / "one.csv", series)
    data = load_path(tmp_path / "one.csv", {"holdout": 3})
    assert data.options["split"] == "time" and data.options["layout"] == "wide"
    assert data["train"].x[0].tolist() == series[:14].tolist()
    assert data["valid"].x[0].tolist() == series[14:17].tolist()
    assert data["test"].x[0].tolist() == series[17:].tolist()
    with pytest.raises(ValueError, match=r"sequence 'one' has 20 steps: too short to hold out 2 x 10"):
        load_path(tmp_path / "one.csv", {"holdout": 10})
    np.save(tmp_path / "one.npy", series)
    assert_same(load_path(tmp_path / "one.npy", {"holdout": 3}).splits, data.splits)


def test_likelihood_is_inferred_and_can_be_overridden(tmp_path):
    np.savez(tmp_path / "binary.npz", *ragged(0, binary=True))
    np.savez(tmp_path / "real.npz", *ragged(0))
    config = TrainConfig(data=str(tmp_path / "binary.npz"), epochs=1)
    assert config.data_options["likelihood"] == "bernoulli" and config.model_options["likelihood"] == "bernoulli"
    assert TrainConfig(data=str(tmp_path / "real.npz")).model_options["likelihood"] == "gaussian"
    override = TrainConfig(data=str(tmp_path / "binary.npz"), model_options={"likelihood": "gaussian"})
    assert override.model_options["likelihood"] == "gaussian"
    with pytest.raises(ValueError, match="likelihood 'bernoulli' needs binary data"):
        TrainConfig(data=str(tmp_path / "real.npz"), model_options={"likelihood": "bernoulli"})
    with pytest.raises(ValueError, match="standardize is for real-valued data"):
        load_path(tmp_path / "binary.npz", {"standardize": True})


def test_standardisation_uses_the_training_statistics_and_is_recorded(tmp_path):
    sequences = [s * 5 + 3 for s in ragged(1, n=20)]
    np.savez(tmp_path / "data.npz", *sequences)
    config = TrainConfig(data=str(tmp_path / "data.npz"), data_options={"standardize": True})
    scaling = config.data_options["scaling"]
    train = load_split(config.data, "train", None, config.data_options)
    steps = torch.cat([train.x[i, :n] for i, n in enumerate(train.lengths)]).double()
    assert torch.allclose(steps.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(steps.std(0, unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-5)
    raw = load_path(tmp_path / "data.npz", {"split_seed": 0})
    assert torch.allclose(unstandardize(train.x.double(), config.data_options)[0, : int(train.lengths[0])],
                          raw["train"].x[0, : int(train.lengths[0])].double(), atol=1e-4)
    # config.json reopens the same splits with the recorded scaling, without recomputing it
    reopened = TrainConfig.from_dict(json.loads(config.to_json()))
    assert reopened.data_options == config.data_options
    valid = load_split(reopened.data, "valid", None, {**reopened.data_options, "scaling": {"mean": [0.0] * 3, "std": [2.0] * 3}})
    assert torch.allclose(valid.x * 2, raw["valid"].x, atol=1e-4)


@pytest.mark.parametrize(
    "name,content,options,message",
    [
        ("ragged.csv", "sequence,time,a\n0,0,1\n0,1,2,3\n", {}, r"ragged\.csv, line 3: 4 fields, but the header has 3 columns"),
        ("text.csv", "sequence,time,a\n0,0,1\n0,1,abc\n", {}, r"text\.csv, line 3, column 'a': 'abc' is not a number"),
        ("inf.csv", "sequence,time,a\n0,0,1\n0,1,inf\n", {}, r"inf\.csv, line 3, column 'a': infinite value"),
        ("blank.csv", "sequence,time,a\n0,0,\n", {}, r"blank\.csv: sequence '0' has no observed value \(all NaN\)"),
        ("allnan.csv", "sequence,time,a\n0,0,1\n1,0,\n1,1,nan\n", {}, r"allnan\.csv: sequence '1' has no observed value"),
        ("nancol.csv", "sequence,time,a,b\n0,0,1,\n1,0,2,NaN\n", {}, r"nancol\.csv: column 'b' has no observed value"),
        ("cols.csv", "sequence,time,a\n0,0,1\n", {"value_columns": ["b"]}, r"cols\.csv: no column 'b' \(value_columns\); the columns are sequence, time, a"),
        ("idcol.csv", "sequence,time,a\n0,0,1\n", {"id_column": "store"}, r"idcol\.csv: no column 'store' \(id_column\)"),
        ("empty.csv", "", {}, r"empty\.csv is empty"),
        ("header.csv", "sequence,time,a\n", {}, r"header\.csv has a header but no rows"),
        ("repeat.csv", "sequence,time,a\n0,0,1\n0,0,2\n0,1,3\n1,0,1\n", {}, r"repeat\.csv, line 3: time 0 repeats \(sequence '0'\)"),
        ("split.csv", "sequence,a,split\n0,1,train\n0,2,dev\n", {}, r"split\.csv, column 'split': sequence '0' is in several splits"),
        ("data.txt", "1,2\n", {}, r"data\.txt: unknown data file type '\.txt'"),
    ],
)
def test_bad_tables_get_one_line_naming_the_file_and_place(tmp_path, name, content, options, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        load_data(tmp_path / name, **options)
    assert "\n" not in str(error.value)


def test_bad_arrays_get_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"no data file or folder at .*missing\.npz"):
        load_data(tmp_path / "missing.npz")
    x = np.ones((3, 5, 2))
    x[1, 2, 1] = np.inf
    np.savez(tmp_path / "inf.npz", x=x)
    with pytest.raises(ValueError, match=r"inf\.npz, array 'x': inf at sequence 1, step 2, feature 1"):
        load_data(tmp_path / "inf.npz")
    x[1, 2, 1] = np.nan
    np.savez(tmp_path / "padding.npz", x=x, lengths=np.array([5, 2, 5]))  # NaN beyond a length is padding
    assert load_data(tmp_path / "padding.npz", split="sequence")["train"].x.isfinite().all()
    np.savez(tmp_path / "gaps.npz", x=x)  # NaN within a length is a missing value
    data = load_data(tmp_path / "gaps.npz", split="sequence")
    assert int(sum(torch.isnan(d.x).sum() for d in data.values())) == 1
    x[1] = np.nan
    np.savez(tmp_path / "allnan.npz", x=x)
    with pytest.raises(ValueError, match=r"allnan\.npz, array 'x': sequence 1 has no observed value \(all NaN\)$"):
        load_data(tmp_path / "allnan.npz")
    np.savez(tmp_path / "list.npz", np.ones((4, 2)), np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match=r"list\.npz, array 'arr_1': the sequence has no observed value"):
        load_data(tmp_path / "list.npz")
    np.savez(tmp_path / "dims.npz", np.ones((4, 2)), np.ones((4, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"dims\.npz: sequence 1 has 3 features, sequence 0 has 2"):
        load_data(tmp_path / "dims.npz")
    np.save(tmp_path / "objects.npy", np.array([np.ones(3), np.ones(4)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"objects\.npy is an object array \(a pickle\), which is not read"):
        load_data(tmp_path / "objects.npy")
    np.savez(tmp_path / "keys.npz", foo=np.ones(3))
    with pytest.raises(ValueError, match=r"keys\.npz: unknown arrays foo; accepted"):
        load_data(tmp_path / "keys.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.npz is empty"):
        load_data(tmp_path / "empty.npz")
    with pytest.raises(ValueError, match=r"unknown data option\(s\) colour"):
        load_data(tmp_path / "padding.npz", colour="red")


def test_parquet_round_trips_like_csv(tmp_path):
    pd = pytest.importorskip("pandas", reason="Parquet needs the optional pandas (pyrosequence[tables])")
    pytest.importorskip("pyarrow", reason="Parquet needs the optional pyarrow (pyrosequence[tables])")
    sequences = ragged(5)
    write_long_csv(tmp_path / "long.csv", sequences)
    pd.read_csv(tmp_path / "long.csv").to_parquet(tmp_path / "long.parquet")
    assert_same(load_path(tmp_path / "long.parquet").splits, load_path(tmp_path / "long.csv").splits)


def test_a_folder_of_midi_files_reads_as_piano_rolls(tmp_path):
    pytest.importorskip("music21", reason="MIDI files need the optional music21 (pyrosequence[music])")
    from pyrosequence.data.midi import write_midi

    rng = np.random.default_rng(0)
    rolls = []
    for i in range(4):  # held notes with a note at the first and last step, so the roll's length is kept
        roll = np.zeros((6 + i, 88), dtype=np.float32)
        roll[:, 39] = 1.0
        roll[rng.integers(0, 6 + i, size=3), rng.integers(40, 60, size=3)] = 1.0
        write_midi(roll, tmp_path / "songs" / ("train" if i < 2 else "valid" if i == 2 else "test") / f"song{i}.mid")
        rolls.append(roll)
    data = load_path(tmp_path / "songs")
    assert data.options["format"] == "folder" and data.options["step_quarters"] == 1.0 and data.options["likelihood"] == "bernoulli"
    assert torch.equal(data["train"].x[1, :7], torch.as_tensor(rolls[1]))
    assert data["train"].lengths.tolist() == [6, 7] and torch.equal(data["test"].x[0], torch.as_tensor(rolls[3]))


def write_wav(path, samples, rate=8000):
    import wave

    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((np.asarray(samples) * 2**15).astype("<i2").tobytes())


def test_a_folder_of_wav_files_is_framed_like_speech(tmp_path):
    rng = np.random.default_rng(0)
    waves = [np.round(rng.uniform(-0.5, 0.5, size=40 * n + 7) * 2**15) / 2**15 for n in range(3, 8)]
    for i, samples in enumerate(waves):
        write_wav(tmp_path / "voices" / f"v{i}.wav", samples)
    data = load_path(tmp_path / "voices", {"frame_size": 40, "split": "sequence", "valid_fraction": 0.2, "test_fraction": 0.2})
    assert data.options["sample_rate"] == 8000 and data.options["frame_size"] == 40
    assert sorted(n for s in SPLITS for n in data[s].lengths.tolist()) == [3, 4, 5, 6, 7]  # the 7-sample remainders dropped
    first = data["train"]
    length = int(first.lengths[0])
    source = next(w for w in waves if len(w) // 40 == length)
    assert torch.allclose(first.x[0, :length], torch.as_tensor(source[: 40 * length].reshape(length, 40), dtype=torch.float32))
    write_wav(tmp_path / "voices" / "v9.wav", waves[0], rate=16000)
    with pytest.raises(ValueError, match=r"v9\.wav: sample rate 16000 Hz differs from the 8000 Hz"):
        load_path(tmp_path / "voices", {"frame_size": 40})


def test_files_are_bounded_by_the_limits(tmp_path, monkeypatch):
    np.savez_compressed(tmp_path / "zeros.npz", x=np.zeros((4, 1000, 8)))
    write_long_csv(tmp_path / "long.csv", ragged(0))
    monkeypatch.setenv("PYROSEQUENCE_MAX_DECODED_BYTES", "64K")
    with pytest.raises(ValueError, match=r"zeros\.npz.*max_decoded_bytes"):
        load_data(tmp_path / "zeros.npz")
    monkeypatch.setenv("PYROSEQUENCE_MAX_TABLE_BYTES", "1K")
    with pytest.raises(ValueError, match=r"long\.csv.*max_table_bytes"):
        load_data(tmp_path / "long.csv")


def test_a_file_that_gives_its_splits_is_not_split_again_unless_asked(tmp_path):
    sequences = ragged(2, n=6)
    names = ["train"] * 4 + ["valid", "test"]
    write_long_csv(tmp_path / "long.csv", sequences, names)
    with pytest.raises(ValueError, match=r"long\.csv gives its own splits.*use split='file'"):
        load_data(tmp_path / "long.csv", split="time")
    with pytest.raises(ValueError, match=r"long\.csv, line 2, column 'split': 'train' is not a number"):
        load_data(tmp_path / "long.csv", split="time", split_column=None)
    data = load_path(tmp_path / "long.csv", {"split": "time", "split_column": None, "value_columns": ["f0", "f1", "f2"], "holdout": 1})
    assert data.options["split_column"] is None  # recorded as "none", so reopening does not find it again
    assert_same(load_path(tmp_path / "long.csv", data.options).splits, data.splits)
    assert data["test"].lengths.tolist() == [1] * 6


def test_bad_parquet_tables_name_the_row_and_column(tmp_path):
    pd = pytest.importorskip("pandas", reason="Parquet needs the optional pandas (pyrosequence[tables])")
    pytest.importorskip("pyarrow", reason="Parquet needs the optional pyarrow (pyrosequence[tables])")
    pd.DataFrame({"sequence": [0, 0, 1], "a": [1.0, float("nan"), 2.0]}).to_parquet(tmp_path / "nan.parquet")
    assert torch.isnan(load_data(tmp_path / "nan.parquet", split="time", holdout=0)["train"].x).any()
    pd.DataFrame({"sequence": [0, 1], "a": [1.0, float("nan")]}).to_parquet(tmp_path / "allnan.parquet")
    with pytest.raises(ValueError, match=r"allnan\.parquet: sequence '1' has no observed value"):
        load_data(tmp_path / "allnan.parquet")
    pd.DataFrame({"sequence": [0, 0], "a": ["x", "y"]}).to_parquet(tmp_path / "text.parquet")
    with pytest.raises(ValueError, match=r"text\.parquet, row 0, column 'a': 'x' is not a number"):
        load_data(tmp_path / "text.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"junk\.parquet is not a readable Parquet file"):
        load_data(tmp_path / "junk.parquet")
