"""Polyphonic music loaders: published split sizes, the three file formats agree, bad files and
notes are rejected with messages naming them, and the file search."""

import json
import pickle

import numpy as np
import pytest
import torch

from pyrosequence.data import DATASETS, load_split
from pyrosequence.data.music import (
    NUM_KEYS,
    find_music_file,
    notes_to_roll,
    read_json,
    read_mat,
    read_music_file,
    read_pickle,
    roll_to_notes,
)

# Boulanger-Lewandowski et al. (2012) split sizes (sequences) and JSB's training steps.
PUBLISHED = {
    "jsb": (229, 76, 77),
    "nottingham": (694, 173, 170),
    "piano": (87, 12, 25),
    "muse": (524, 135, 124),
}
TRAIN_STEPS = {"jsb": 13807, "nottingham": 176561, "piano": 75911, "muse": 245202}


def _tiny(notes=((60, 64, 67), (), (21, 108))):
    """A small data set in the pickle/JSON layout: every split has two sequences."""
    seq_a = [list(notes[0]), list(notes[1]), list(notes[2])]
    seq_b = [[62], [62, 65]]
    data = {"train": [seq_a, seq_b], "valid": [seq_b, seq_a], "test": [seq_a, seq_a]}
    return json.loads(json.dumps(data))  # no shared lists, so a test can change one step


def _write_pickle(path, data, protocol=2, as_tuples=True):
    if as_tuples:  # the original files hold one tuple of notes per step
        data = {k: [[tuple(step) for step in seq] for seq in v] for k, v in data.items()}
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=protocol)
    return path


# ---------------------------------------------------------------------------- shared real data
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_split_sizes(shared_data, name):
    counts = []
    for split in ("train", "valid", "test"):
        data = load_split(name, split, str(shared_data))
        counts.append(len(data))
        assert data.x_dim == NUM_KEYS
        assert data.name == f"{name}/{split}"
        if split == "train":
            assert data.total_steps == TRAIN_STEPS[name]
    assert tuple(counts) == PUBLISHED[name]


def test_jsb_formats_agree_frame_by_frame(shared_data, tmp_path):
    json_path = shared_data / "jsb_chorales" / "jsb-chorales-quarter.json"
    mat_path = shared_data / "jsb_chorales" / "JSB_Chorales.mat"
    with open(json_path) as f:
        nested = json.load(f)
    pickle_path = _write_pickle(tmp_path / "JSB Chorales.pickle", nested)
    from_json, from_mat, from_pickle = read_json(json_path), read_mat(mat_path), read_pickle(pickle_path)
    for split, size in zip(("train", "valid", "test"), PUBLISHED["jsb"]):
        assert len(from_json[split]) == len(from_mat[split]) == len(from_pickle[split]) == size
        for a, b, c in zip(from_json[split], from_mat[split], from_pickle[split]):
            assert a.shape == b.shape == c.shape
            assert np.array_equal(a, b) and np.array_equal(a, c)
    # and through the registry, reading only the pickle
    loaded = load_split("jsb", "train", str(tmp_path))
    reference = load_split("jsb", "train", str(shared_data))
    assert torch.equal(loaded.x, reference.x) and torch.equal(loaded.lengths, reference.lengths)


def test_training_mean_is_the_per_key_frequency(shared_data):
    data = load_split("jsb", "train", str(shared_data))
    rolls = read_music_file(shared_data / "jsb_chorales" / "JSB_Chorales.mat")["train"]
    expected = np.concatenate(rolls).mean(0)
    assert torch.allclose(data.mean(), torch.as_tensor(expected, dtype=torch.float32), atol=1e-6)
    assert set(torch.unique(data.x).tolist()) == {0.0, 1.0}


# ---------------------------------------------------------------------------- notes and rolls
def test_notes_to_roll_columns_and_inverse():
    steps = [[21, 60], [], [108]]
    roll = notes_to_roll(steps)
    assert roll.shape == (3, 88) and roll.dtype == np.uint8
    assert roll[0, 0] == 1 and roll[0, 39] == 1 and roll[2, 87] == 1 and roll.sum() == 3
    assert roll_to_notes(roll) == steps


@pytest.mark.parametrize("note", [20, 109, 0, -3])
def test_notes_outside_the_piano_are_rejected(tmp_path, note):
    data = _tiny()
    data["valid"][1][2] = [60, note]  # split valid, sequence 1, step 2
    path = tmp_path / "jsb-chorales-quarter.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"split 'valid', sequence 1, step 2: note {note} is outside the piano range 21..108"):
        read_json(path)
    _write_pickle(tmp_path / "JSB Chorales.pickle", data)
    with pytest.raises(ValueError, match=rf"JSB Chorales.pickle: split 'valid', sequence 1, step 2: note {note}"):
        read_pickle(tmp_path / "JSB Chorales.pickle")


@pytest.mark.parametrize("bad", [60.5, "60", None, True])
def test_non_integer_notes_are_rejected(bad):
    with pytest.raises(ValueError, match=r"seq, step 1: .* (is not a MIDI note|whole MIDI note)"):
        notes_to_roll([[60], [bad]], where="seq")


# ---------------------------------------------------------------------------- formats
def test_pickle_json_and_mat_readers_agree_on_a_small_file(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    data = _tiny()
    _write_pickle(tmp_path / "a.pickle", data)
    (tmp_path / "a.json").write_text(json.dumps(data))
    cells = {}
    for split in ("train", "valid", "test"):
        cell = np.empty((1, len(data[split])), dtype=object)
        for i, seq in enumerate(data[split]):
            cell[0, i] = notes_to_roll(seq)
        cells[f"{split}data"] = cell
    scipy_io.savemat(tmp_path / "a.mat", cells)
    readings = [read_pickle(tmp_path / "a.pickle"), read_json(tmp_path / "a.json"), read_mat(tmp_path / "a.mat")]
    for split in ("train", "valid", "test"):
        for rolls in zip(*(r[split] for r in readings)):
            assert all(np.array_equal(rolls[0], other) for other in rolls[1:])
    assert roll_to_notes(readings[2]["train"][0]) == [[60, 64, 67], [], [21, 108]]


def test_a_python3_pickle_of_lists_also_reads(tmp_path):
    path = _write_pickle(tmp_path / "x.pkl", _tiny(), protocol=pickle.HIGHEST_PROTOCOL, as_tuples=False)
    assert read_pickle(path)["test"][0].shape == (3, 88)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("JSB Chorales.pickle", b"not a pickle at all", r"JSB Chorales.pickle: not a readable polyphonic-music pickle"),
        ("JSB Chorales.pickle", pickle.dumps([1, 2, 3]), r"JSB Chorales.pickle: expected a dict with keys"),
        ("JSB Chorales.pickle", pickle.dumps({"train": [], "valid": []}), r"JSB Chorales.pickle: missing split\(s\) test"),
        ("jsb-chorales-quarter.json", b"{\"train\": [", r"jsb-chorales-quarter.json: not a readable polyphonic-music JSON"),
        ("jsb-chorales-quarter.json", b"{\"train\": 3, \"valid\": [], \"test\": []}", r"split 'train' must be a list"),
        ("JSB_Chorales.mat", b"MATLAB 5.0 garbage" * 20, r"JSB_Chorales.mat: not a readable MATLAB piano-roll file"),
    ],
)
def test_corrupt_files_are_named(tmp_path, name, content, message):
    if name.endswith(".mat"):
        pytest.importorskip("scipy.io")
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_split("jsb", "train", str(tmp_path))


def test_mat_with_wrong_keys_or_values_is_named(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    roll = np.zeros((3, 88))
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = roll
    scipy_io.savemat(tmp_path / "Piano_midi.mat", {"traindata": cell, "validdata": cell})
    with pytest.raises(ValueError, match=r"Piano_midi.mat: no variable 'testdata'; the file holds \['traindata', 'validdata'\]"):
        load_split("piano", "train", str(tmp_path))
    bad = roll.copy()
    bad[1, 5] = 2
    cell2 = np.empty((1, 1), dtype=object)
    cell2[0, 0] = bad
    scipy_io.savemat(tmp_path / "Piano_midi.mat", {"traindata": cell, "validdata": cell2, "testdata": cell})
    with pytest.raises(ValueError, match=r"validdata sequence 0, step 1, column 5 holds 2.0; a piano roll must be 0/1"):
        load_split("piano", "valid", str(tmp_path))
    cell2[0, 0] = np.zeros((3, 87))
    scipy_io.savemat(tmp_path / "Piano_midi.mat", {"traindata": cell, "validdata": cell2, "testdata": cell})
    with pytest.raises(ValueError, match=r"validdata sequence 0 has shape \(3, 87\); expected \(time, 88\)"):
        load_split("piano", "valid", str(tmp_path))


# ---------------------------------------------------------------------------- finding the file
@pytest.mark.parametrize(
    "name, filename",
    [
        ("jsb", "JSB Chorales.pickle"),
        ("jsb", "jsb_chorales.pickle"),
        ("jsb", "JSB_Chorales.pkl"),
        ("jsb", "jsb-chorales-quarter.json"),
        ("piano", "Piano-midi.de.pickle"),
        ("piano", "piano_midi.pickle"),
        ("nottingham", "NOTTINGHAM.PICKLE"),
        ("muse", "MuseData.pickle"),
        ("muse", "muse_data.pkl"),
    ],
)
def test_accepted_file_names(tmp_path, name, filename):
    path = tmp_path / filename
    if filename.endswith(".json"):
        path.write_text(json.dumps(_tiny()))
    else:
        _write_pickle(path, _tiny())
    assert find_music_file(name, tmp_path) == path
    assert len(load_split(name, "valid", str(tmp_path))) == 2


def test_sub_folder_and_format_preference(tmp_path):
    (tmp_path / "muse_data").mkdir()
    (tmp_path / "muse_data" / "muse_data.json").write_text(json.dumps(_tiny()))
    assert find_music_file("muse", tmp_path) == tmp_path / "muse_data" / "muse_data.json"
    _write_pickle(tmp_path / "muse_data" / "MuseData.pickle", _tiny())
    assert find_music_file("muse", tmp_path).name == "MuseData.pickle"  # the original format first
    # a different data set's file is not taken
    with pytest.raises(FileNotFoundError):
        find_music_file("jsb", tmp_path)


def test_missing_file_message_names_files_and_folders(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_split("piano", "train", str(tmp_path))
    message = str(info.value)
    for text in ("'Piano-midi.de.pickle'", "'Piano_midi.mat'", repr(str(tmp_path)), repr(str(tmp_path / "piano_midi")),
                 "http://www-etud.iro.umontreal.ca/~boulanni/Piano-midi.de.pickle", "fetch_music"):
        assert text in message


def test_no_root_and_no_environment_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("PYROSEQUENCE_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"dataset 'jsb' is read from files on disk: pass the folder .*PYROSEQUENCE_DATA"):
        load_split("jsb", "train")
    (tmp_path / "jsb-chorales-quarter.json").write_text(json.dumps(_tiny()))
    monkeypatch.setenv("PYROSEQUENCE_DATA", str(tmp_path))
    assert len(load_split("jsb", "train")) == 2
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        load_split("jsb", "train", str(tmp_path / "nowhere"))


def test_unknown_split_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"dataset 'jsb' has no split 'dev'; choose one of: train, valid, test"):
        load_split("jsb", "dev", str(tmp_path))


def test_registry_entries():
    for name in PUBLISHED:
        assert DATASETS[name].likelihood == "bernoulli"
        assert DATASETS[name].splits == ("train", "valid", "test")
