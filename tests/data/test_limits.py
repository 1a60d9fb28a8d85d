"""Hostile files are refused before the readers allocate for them: every test crafts a small file
that declares something huge (a pickle asking NumPy for a huge array, a .mat whose headers declare
more than it stores, JSON nested 100,000 deep, a WAV header declaring gigabytes, ...) and checks
the one-line ``ValueError`` that names the file, the quantity, the limit and how to raise it."""

import io
import json
import pickle
import pickletools
import struct
import tracemalloc
import wave
import zipfile

import numpy as np
import pytest

from pyrosequence.data import load_split
from pyrosequence.data.limits import LimitError, Limits, env_name
from pyrosequence.data.music import read_json, read_mat, read_music_file, read_pickle

SPLITS = ("train", "valid", "test")


def _one_line_refusal(info, path, field):
    """The refusal names the file, the limit's field and its environment variable, on one line."""
    message = str(info.value)
    assert isinstance(info.value, LimitError) and isinstance(info.value, ValueError)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert f"({field})" in message and f"set {env_name(field)}=<n>" in message and f"Limits({field}=<n>)" in message
    return message


class Peak:
    """The peak of traced memory (Python objects and NumPy arrays) inside the block, in bytes."""

    def __enter__(self):
        tracemalloc.start()
        return self

    def __exit__(self, *exc):
        self.bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return False


# ---------------------------------------------------------------------------- the limits themselves
def test_defaults_environment_and_validation():
    assert Limits().max_steps == 100_000 and Limits().max_json_depth == 32
    env = {"PYROSEQUENCE_MAX_STEPS": "1_000", "PYROSEQUENCE_MAX_FILE_BYTES": "2M", "PYROSEQUENCE_MAX_JSON_DEPTH": " "}
    limits = Limits.from_env(env)
    assert limits.max_steps == 1000 and limits.max_file_bytes == 2 * 1024 * 1024 and limits.max_json_depth == 32
    with pytest.raises(ValueError, match=r"PYROSEQUENCE_MAX_STEPS='12M' is not a positive whole number"):
        Limits.from_env({"PYROSEQUENCE_MAX_STEPS": "12M"})
    with pytest.raises(ValueError, match=r"PYROSEQUENCE_MAX_DECODED_BYTES='lots'"):
        Limits.from_env({"PYROSEQUENCE_MAX_DECODED_BYTES": "lots"})
    with pytest.raises(ValueError, match=r"Limits.max_notes must be a positive whole number"):
        Limits(max_notes=0)
    assert Limits().replace(max_steps=7).max_steps == 7


def test_the_environment_reaches_the_registry(tmp_path, monkeypatch):
    data = {s: [[[60], [62], [64]]] for s in SPLITS}
    (tmp_path / "jsb-chorales-quarter.json").write_text(json.dumps(data))
    assert len(load_split("jsb", "train", str(tmp_path))) == 1
    monkeypatch.setenv("PYROSEQUENCE_MAX_STEPS", "2")
    with pytest.raises(LimitError) as info:
        load_split("jsb", "train", str(tmp_path))
    message = _one_line_refusal(info, tmp_path / "jsb-chorales-quarter.json", "max_steps")
    assert "split 'train', sequence 0 has 3 time steps, more than the limit of 2" in message


def test_the_real_music_files_fit_the_measured_values(shared_data):
    """MuseData has the longest piece (4,273 steps), the most steps (392,296) and decoded bytes."""
    path = shared_data / "muse_data" / "MuseData.mat"
    tight = Limits(max_steps=4273, max_total_steps=392_296, max_file_bytes=947_219)
    assert sum(r.shape[0] for r in read_music_file(path, tight)["test"]) == 64_339
    with pytest.raises(LimitError, match=r"testdata sequence \d+ declares 4,273 time steps, more than the limit of 4,272"):
        read_mat(path, tight.replace(max_steps=4272))
    with pytest.raises(LimitError, match=r"max_total_steps"):
        read_mat(path, tight.replace(max_total_steps=392_295))
    with pytest.raises(LimitError, match=r"the file is 947,219 bytes"):
        read_mat(path, tight.replace(max_file_bytes=947_218))
    defaults = Limits()
    assert defaults.max_steps >= 10 * 4273 and defaults.max_total_steps >= 10 * 392_296
    assert defaults.max_decoded_bytes >= 10 * 34_522_048 and defaults.max_file_bytes >= 10 * 947_219


# ---------------------------------------------------------------------------- pickles
def G(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def I(n):
    return b"J" + struct.pack("<i", n)


def S(text):
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def B(data):
    return b"C" + bytes([len(data)]) + data


MARK, TUPLE, T1, T2, T3, REDUCE, BUILD, APPEND, POP = b"(", b"t", b"\x85", b"\x86", b"\x87", b"R", b"b", b"a", b"0"
NONE, FALSE, TRUE = b"N", b"\x89", b"\x88"
RECONSTRUCT = G("numpy._core.multiarray", "_reconstruct") + G("numpy", "ndarray")
EMPTY_ARRAY = RECONSTRUCT + I(0) + T1 + B(b"b") + T3 + REDUCE  # _reconstruct(ndarray, (0,), b'b'), as NumPy writes it


def PUT(i):
    return b"q" + bytes([i])


def GET(i):
    return b"h" + bytes([i])


def DTYPE(code):
    return G("numpy", "dtype") + S(code) + FALSE + TRUE + T3 + REDUCE


def DTYPE_STATE(itemsize):
    return MARK + I(3) + S("|") + NONE + NONE + NONE + I(itemsize) + I(1) + I(0) + TUPLE


def ARRAY_STATE(shape, dtype, raw):
    return MARK + I(1) + MARK + b"".join(I(d) for d in shape) + TUPLE + dtype + FALSE + raw + TUPLE + BUILD


def music_pickle(sequence: bytes) -> bytes:
    """``{"train": [seq], "valid": [seq], "test": [seq]}`` with ``sequence`` the opcodes of one
    sequence (protocol 2)."""
    data = (b"\x80\x02}" + MARK + S("train") + b"]" + PUT(250) + sequence + APPEND
            + S("valid") + GET(250) + S("test") + GET(250) + b"u.")
    pickletools.dis(data, out=io.StringIO())  # a well-formed pickle
    return data


def _refused(tmp_path, data, field, limits=None, name="Nottingham.pickle"):
    path = tmp_path / name
    path.write_bytes(data)
    with Peak() as peak, pytest.raises(LimitError) as info:
        read_pickle(path) if limits is None else read_pickle(path, limits)
    assert peak.bytes < 8 * 1024 * 1024  # refused before anything large was allocated
    return _one_line_refusal(info, path, field)


def test_the_audit_pickle_a_30_million_step_array_is_refused_before_allocating(tmp_path):
    # 111 bytes: one sequence is _reconstruct(ndarray, (30_000_000, 0), b'b'), 30 million empty steps
    data = music_pickle(RECONSTRUCT + I(30_000_000) + I(0) + T2 + B(b"b") + T3 + REDUCE)
    assert len(data) < 130
    message = _refused(tmp_path, data, "max_total_steps")
    assert "an array in the pickle has a dimension of 30,000,000 (shape (30000000, 0))" in message
    # under a raised limit the sequence itself is then too long, still before any roll is allocated
    message = _refused(tmp_path, data, "max_steps", Limits(max_total_steps=10**8))
    assert "split 'train', sequence 0 has 30,000,000 time steps, more than the limit of 100,000" in message


def test_array_state_sizes_are_checked_before_numpy_allocates(tmp_path):
    # BUILD asks for a (100000, 1000) float64 array: 800 MB from a 150-byte file
    data = music_pickle(EMPTY_ARRAY + ARRAY_STATE((100_000, 1000), DTYPE("f8"), B(b"")))
    message = _refused(tmp_path, data, "max_decoded_bytes")
    assert "the arrays and containers the pickle builds come to at least 800,000,000 bytes" in message
    # an object array of 9 million x 8 entries (NumPy allocates the pointers before filling them)
    data = music_pickle(EMPTY_ARRAY + ARRAY_STATE((9_000_000, 8), DTYPE("O"), b"]"))
    _refused(tmp_path, data, "max_decoded_bytes")
    # a dtype whose items are a gigabyte each, used by a scalar
    data = music_pickle(b"]" + G("numpy._core.multiarray", "scalar") + DTYPE("V4") + DTYPE_STATE(1 << 30) + BUILD
                        + B(b"abcd") + T2 + REDUCE + APPEND)
    assert "a NumPy dtype in the pickle has items of 1,073,741,824 bytes" in _refused(tmp_path, data, "max_decoded_bytes")


def test_list_of_a_large_array_is_counted(tmp_path):
    # list() of a (5_000_000, 0) array would make five million row objects
    array = EMPTY_ARRAY + ARRAY_STATE((5_000_000, 0), DTYPE("u1"), B(b""))
    data = music_pickle(G("builtins", "list") + array + T1 + REDUCE)
    assert "come to at least 320,000,000 bytes" in _refused(tmp_path, data, "max_decoded_bytes", Limits(max_decoded_bytes=10**8))


def test_a_shared_list_cannot_multiply_into_huge_data(tmp_path):
    sequence = [(60,)] * 2000  # one step tuple, 2000 references
    data = pickle.dumps({"train": [sequence] * 6000, "valid": [sequence], "test": [sequence]}, protocol=2)
    assert len(data) < 40_000  # 12 million steps described in under 40 KB
    message = _refused(tmp_path, data, "max_total_steps")
    assert "the time steps of all sequences come to at least 10,002,000" in message
    chord = tuple(range(21, 109))
    sequence = [chord] * 2000  # 88 notes a step, shared
    data = pickle.dumps({"train": [sequence] * 200, "valid": [sequence], "test": [sequence]}, protocol=2)
    message = _refused(tmp_path, data, "max_total_notes")
    assert "the notes of all time steps come to at least 20,064,000" in message
    wide = pickle.dumps({s: [[chord * 4]] for s in SPLITS}, protocol=2)  # 352 notes in one step
    assert "split 'train', sequence 0, step 0 has 352 entries (notes)" in _refused(tmp_path, wide, "max_notes")


@pytest.mark.parametrize(
    "sequence, message",
    [
        # a dtype changed after an array used it (NumPy would let the array read past its memory:
        # the reader without this check crashes with a segmentation fault on this 229-byte file)
        (b"]" + DTYPE("V4") + PUT(9) + DTYPE_STATE(4) + BUILD + POP + EMPTY_ARRAY
         + ARRAY_STATE((2,), GET(9), B(b"abcdefgh")) + APPEND + GET(9) + DTYPE_STATE(1 << 28) + BUILD + POP,
         "refusing to change a numpy dtype after an array used it"),
        # the state of one array set twice (it would free memory that views may still use)
        (b"]" + EMPTY_ARRAY + ARRAY_STATE((2,), DTYPE("u1"), B(b"<>")) + ARRAY_STATE((2,), DTYPE("u1"), B(b"<>")) + APPEND,
         "refusing to set the state of an array twice"),
        # numpy.ndarray called directly (a shape with no memory behind it)
        (G("numpy", "ndarray") + I(1 << 28) + T1 + T1 + REDUCE, "refusing to call numpy.ndarray directly"),
    ],
    ids=["dtype-changed-after-use", "state-set-twice", "ndarray-called"],
)
def test_unsafe_numpy_tricks_are_refused(tmp_path, sequence, message):
    path = tmp_path / "JSB Chorales.pickle"
    path.write_bytes(music_pickle(sequence))
    with pytest.raises(ValueError, match=rf"JSB Chorales.pickle: not a readable polyphonic-music pickle \(UnpicklingError: {message}"):
        read_pickle(path)


def test_numpy_pickles_still_read(tmp_path):
    sequence = [np.array([60, 64], dtype=np.int64), np.array([], dtype=np.int16), (np.int64(21), np.float64(108.0))]
    data = {"train": [sequence], "valid": [np.array([[60, 61], [62, 63]], dtype=np.uint8)], "test": [[{60, 62}]]}
    for protocol in (3, 4):
        path = tmp_path / f"p{protocol}.pickle"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        rolls = read_pickle(path)
        assert [np.flatnonzero(row).tolist() for row in rolls["train"][0]] == [[39, 43], [], [0, 87]]
        assert rolls["valid"][0].shape == (2, 88) and rolls["test"][0].sum() == 2
    # a hand-written NumPy array as NumPy pickles it, and a Python 2 module name
    array = EMPTY_ARRAY + ARRAY_STATE((2,), DTYPE("u1"), B(b"\x3c\x3e"))
    path = tmp_path / "JSB Chorales.pickle"
    path.write_bytes(music_pickle(b"]" + array + APPEND + G("__builtin__", "set") + b"]" + I(60) + APPEND + T1 + REDUCE + APPEND))
    assert [np.flatnonzero(row).tolist() for row in read_pickle(path)["train"][0]] == [[39, 41], [39]]


def test_an_oversized_pickle_file_is_refused_unread(tmp_path):
    path = tmp_path / "MuseData.pickle"
    path.write_bytes(pickle.dumps({s: [[[60]] * 500] for s in SPLITS}))
    with pytest.raises(LimitError) as info:
        read_pickle(path, Limits(max_file_bytes=100))
    assert "the file is " in _one_line_refusal(info, path, "max_file_bytes")


# ---------------------------------------------------------------------------- JSON
def test_json_nested_100000_deep_is_a_one_line_error(tmp_path):
    path = tmp_path / "jsb-chorales-quarter.json"
    path.write_text('{"train": ' + "[" * 100_000 + "]" * 100_000 + ', "valid": [], "test": []}')
    with pytest.raises(LimitError) as info:
        read_json(path)
    message = _one_line_refusal(info, path, "max_json_depth")
    assert "lists/objects are nested at least 33 deep" in message
    # with the depth limit raised past Python's recursion limit, the parser's RecursionError is named too
    with pytest.raises(ValueError, match=r"jsb-chorales-quarter.json: not a readable polyphonic-music JSON file \(nested deeper than Python's recursion limit\)"):
        read_json(path, Limits(max_json_depth=200_000))


def test_json_brackets_in_strings_are_not_nesting(tmp_path):
    path = tmp_path / "x.json"
    data = {"[" * 100: 1, "train": [[[60, 62]]], "valid": [[[60]]], "test": [[[60], ["x]]]]"]]]}
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"split 'test', sequence 0, step 1: 'x\]\]\]\]' is not a MIDI note number"):
        read_json(path)


def test_json_steps_are_counted_before_parsing(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({s: [[[60]] * 400] for s in SPLITS}))
    monkeypatch.setattr(json, "loads", lambda *a, **k: pytest.fail("parsed before the limit was checked"))
    with pytest.raises(LimitError) as info:
        read_json(path, Limits(max_total_steps=1000))
    assert "the file holds at least 1,001 time steps (lists at nesting depth 4)" in _one_line_refusal(info, path, "max_total_steps")


# ---------------------------------------------------------------------------- .mat
def _cells(rolls):
    cell = np.empty((1, len(rolls)), dtype=object)
    for i, roll in enumerate(rolls):
        cell[0, i] = roll
    return cell


def _no_loadmat(monkeypatch):
    import scipy.io

    monkeypatch.setattr(scipy.io, "loadmat", lambda *a, **k: pytest.fail("loadmat ran before the limits were checked"))


def test_a_compressed_mat_is_refused_by_its_declared_size(tmp_path, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    path = tmp_path / "Nottingham.mat"
    roll = np.zeros((20_000, 88), dtype=np.uint8)  # 1.76 MB of zeros: a few kilobytes compressed
    scipy_io.savemat(path, {f"{s}data": _cells([roll]) for s in SPLITS}, do_compression=True)
    assert path.stat().st_size < 20_000
    assert len(read_mat(path)["train"]) == 1  # fits the defaults
    _no_loadmat(monkeypatch)
    with Peak() as peak, pytest.raises(LimitError) as info:
        read_mat(path, Limits(max_decoded_bytes=1_000_000))
    assert peak.bytes < 1_000_000  # the variable was never inflated whole
    message = _one_line_refusal(info, path, "max_decoded_bytes")
    assert "a compressed variable at byte 128 inflates to 1,760," in message
    with pytest.raises(LimitError, match=r"traindata sequence 0 declares 20,000 time steps, more than the limit of 10,000 \(max_steps\)"):
        read_mat(path, Limits(max_steps=10_000))
    with pytest.raises(LimitError, match=r"come to at least 40,000, more than the limit of 30,000 \(max_total_steps\)"):
        read_mat(path, Limits(max_total_steps=30_000))


def test_many_cells_add_up(tmp_path, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    path = tmp_path / "Piano_midi.mat"
    rolls = [np.zeros((100, 88), dtype=np.uint8)] * 50  # 440 KB in 50 cells: no single one is large
    scipy_io.savemat(path, {f"{s}data": _cells(rolls) for s in SPLITS}, do_compression=False)
    _no_loadmat(monkeypatch)
    with pytest.raises(LimitError) as info:
        read_mat(path, Limits(max_decoded_bytes=1_000_000))
    assert "the arrays the variables declare come to at least 1,0" in _one_line_refusal(info, path, "max_decoded_bytes")


def _mat5_cell(dims, name=b"traindata"):
    """A MATLAB 5 file with one cell array that declares ``dims`` and holds no cells."""
    flags = struct.pack("<II", 6, 8) + struct.pack("<II", 1, 0)  # miUINT32, class mxCELL
    dim = struct.pack("<II", 5, 4 * len(dims)) + struct.pack(f"<{len(dims)}i", *dims)
    dim += b"\0" * (-len(dim) % 8)
    nm = struct.pack("<II", 1, len(name)) + name + b"\0" * (-len(name) % 8)
    body = flags + dim + nm
    header = b"MATLAB 5.0 MAT-file, hostile".ljust(116, b" ") + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    return header + struct.pack("<II", 14, len(body)) + body


def test_a_cell_array_declaring_a_billion_cells_is_refused(tmp_path, monkeypatch):
    pytest.importorskip("scipy.io")
    path = tmp_path / "JSB_Chorales.mat"
    path.write_bytes(_mat5_cell((1, 1_000_000_000)))  # loadmat would allocate 8 GB of cell pointers
    assert path.stat().st_size < 200
    _no_loadmat(monkeypatch)
    with pytest.raises(LimitError) as info:
        read_mat(path)
    assert "come to at least 8,000,000,128 bytes" in _one_line_refusal(info, path, "max_decoded_bytes")


def test_mat_headers_that_do_not_parse_are_named(tmp_path, monkeypatch):
    pytest.importorskip("scipy.io")
    path = tmp_path / "JSB_Chorales.mat"
    path.write_bytes(_mat5_cell((1, 1))[:-12])  # cut inside the name
    with pytest.raises(ValueError, match=r"JSB_Chorales.mat: not a readable MATLAB piano-roll file \(.*past the end"):
        read_mat(path)


def test_matlab4_files_are_checked_and_read(tmp_path, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    path = tmp_path / "JSB_Chorales.mat"
    roll = np.zeros((300, 88))
    roll[:, 5] = 1
    scipy_io.savemat(path, {f"{s}data": roll for s in SPLITS}, format="4")
    assert read_mat(path)["valid"][0].shape == (300, 88)
    with pytest.raises(LimitError, match=r"traindata sequence 0 declares 300 time steps"):
        read_mat(path, Limits(max_steps=299))
    _no_loadmat(monkeypatch)
    with pytest.raises(LimitError, match=r"max_decoded_bytes"):
        read_mat(path, Limits(max_decoded_bytes=300_000))


# ---------------------------------------------------------------------------- WAV, CSV, HT Sensor, MIDI, Bach cache
def _wav_header_only(path, frames_declared, samples=b"\x00\x01" * 10):
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 8000, 16000, 2, 16)
    data = struct.pack("<4sI", b"data", frames_declared * 2) + samples
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(fmt) + len(data)) + b"WAVE" + fmt + data)


def test_a_wav_header_declaring_gigabytes_does_not_size_the_read(tmp_path, monkeypatch):
    from pyrosequence.data import speech

    path = tmp_path / "0_x_1.wav"
    _wav_header_only(path, 2_000_000_000)  # 4 GB declared, 20 bytes present
    asked = []
    readframes = wave.Wave_read.readframes
    monkeypatch.setattr(wave.Wave_read, "readframes", lambda self, n: (asked.append(n), readframes(self, n))[1])
    samples, rate = speech.read_wav(path)
    assert samples.shape == (10,) and rate == 8000
    assert max(asked) <= 1 << 20  # read a block at a time, never the 2e9 frames the header claims


def test_a_wav_larger_than_the_limit_is_refused(tmp_path, monkeypatch):
    from pyrosequence.data.speech import read_wav

    path = tmp_path / "long.wav"
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(8000)
        f.writeframes(np.zeros(4000, dtype="<i2").tobytes())
    monkeypatch.setenv("PYROSEQUENCE_MAX_FILE_BYTES", "4K")
    with pytest.raises(LimitError) as info:
        read_wav(path)
    assert "the file is 8,044 bytes, more than the limit of 4,096" in _one_line_refusal(info, path, "max_file_bytes")


def test_stock_csv_size_and_rows_are_bounded(tmp_path):
    from pyrosequence.data.stock import read_quote_csv

    path = tmp_path / "table_x.csv"
    path.write_text("".join(f"2008{1 + d // 28:02d}{1 + d % 28:02d},0,1,1,1,1,100\n" for d in range(300)))
    dates, values = read_quote_csv(path, 20071201, 20081231)
    assert values.shape == (300, 5)
    with pytest.raises(LimitError) as info:
        read_quote_csv(path, 20071201, 20081231, Limits(max_steps=250))
    assert "more than 250 rows are dated 20071201 to 20081231 (line 251)" in _one_line_refusal(info, path, "max_steps")
    with pytest.raises(LimitError, match=r"table_x.csv: the file is 6,900 bytes, more than the limit of 1,000 \(max_file_bytes\)"):
        read_quote_csv(path, 20071201, 20081231, Limits(max_file_bytes=1000))


def _ht_files(folder, rows):
    (folder / "HT_Sensor_metadata.dat").write_text("id date class t0 dt\n0 07-04-15 banana 13.49 1.64\n")
    body = "".join(f"0 {t:.6f} " + " ".join(["1.0"] * 10) + "\n" for t in rows)
    (folder / "HT_Sensor_dataset.dat").write_text("id time R1 R2 R3 R4 R5 R6 R7 R8 Temp. Humidity\n" + body)


def test_ht_sensor_times_cannot_ask_for_billions_of_windows(tmp_path):
    from pyrosequence.data.ht_sensor import prepare_ht_sensor

    _ht_files(tmp_path, [0.0, 1e9])  # two readings a billion hours apart: 3.6e9 windows
    with Peak() as peak, pytest.raises(LimitError) as info:
        prepare_ht_sensor(tmp_path)
    assert peak.bytes < 8 * 1024 * 1024
    message = _one_line_refusal(info, tmp_path / "HT_Sensor_dataset.dat", "max_total_steps")
    assert "the steps of the windows of all inductions come to at least 359,999,999,800" in message


def test_ht_sensor_file_size_and_rows(tmp_path):
    from pyrosequence.data.ht_sensor import read_ht_sensor

    _ht_files(tmp_path, [i / 3600 for i in range(50)])
    assert read_ht_sensor(tmp_path)[0].values.shape == (50, 10)
    with pytest.raises(LimitError, match=r"HT_Sensor_dataset.dat: the file has 51 lines \(rows of readings\), more than the limit of 20"):
        read_ht_sensor(tmp_path, Limits(max_total_steps=20))
    with pytest.raises(LimitError, match=r"HT_Sensor_dataset.dat: the file is [\d,]+ bytes, .*\(max_table_bytes\)"):
        read_ht_sensor(tmp_path, Limits(max_table_bytes=1000))
    with pytest.raises(LimitError, match=r"HT_Sensor_metadata.dat: the file is \d+ bytes, .*\(max_file_bytes\)"):
        read_ht_sensor(tmp_path, Limits(max_file_bytes=10))


def _vlq(n):
    out = [n & 0x7F]
    while n > 0x7F:
        n >>= 7
        out.append(0x80 | (n & 0x7F))
    return bytes(reversed(out))


def test_a_midi_note_released_hours_later_is_refused(tmp_path):
    pytest.importorskip("music21")
    from pyrosequence.data.midi import read_midi

    events = _vlq(0) + bytes([0x90, 60, 80]) + _vlq(0x0FFFFFFF) + bytes([0x80, 60, 0]) + _vlq(0) + b"\xff\x2f\x00"
    path = tmp_path / "long.mid"
    path.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, 960) + b"MTrk" + struct.pack(">I", len(events)) + events)
    assert path.stat().st_size < 40  # one note held 2^28 ticks: a 279,620-step roll, 98 MB
    with Peak() as peak, pytest.raises(LimitError) as info:
        read_midi(path)
    assert peak.bytes < 20 * 1024 * 1024
    assert "the last note ends at step 279,620" in _one_line_refusal(info, path, "max_steps")
    assert read_midi(path, num_steps=4).shape == (4, 88)  # the caller's own length is not limited


def test_a_bach_cache_declaring_a_huge_array_is_refused(tmp_path):
    pytest.importorskip("music21")
    from pyrosequence.data import bach

    path = bach._cache_file(tmp_path, 3)
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("frames.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False, "shape": (10**9, 88)})
        for name in ("lengths", "split"):
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, np.zeros(1, dtype=np.int64))
    with Peak() as peak, pytest.raises(LimitError) as info:
        bach.load_bach("train", tmp_path, limit=3)
    assert peak.bytes < 8 * 1024 * 1024
    assert "the arrays of the cache come to at least 88,000,000,000 bytes" in _one_line_refusal(info, path, "max_decoded_bytes")
