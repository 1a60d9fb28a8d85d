"""Raw speech (Dai et al. 4.1, 4.3, 5.1): framing, the stride and permuted variants, WAV checks,
the split of the files, and the FSDD recordings when they are present."""

import wave

import numpy as np
import pytest

from pyrosequence.data import DATASETS, load_split
from pyrosequence.data.speech import (
    FRAME_SIZE,
    chunk_steps,
    frame,
    frame_permutation,
    load_speech,
    permute_frames,
    read_wav,
    split_files,
    stride_sequence,
    unframe,
    unpermute_frames,
)


def write_wav(path, samples, rate=8000, channels=1, width=2):
    samples = np.asarray(samples)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(samples.astype(f"<i{width}").tobytes())
    return path


def _waveform(n, seed):
    return np.random.default_rng(seed).integers(-20000, 20000, size=n).astype(np.int16)


# ---------------------------------------------------------------------------- pure transforms
@pytest.mark.parametrize("n", [1000, 1037, 199, 200])
def test_framing_round_trips_exactly(n):
    w = _waveform(n, n).astype(np.float64) / 2**15
    steps = frame(w, 200)
    assert steps.shape == (n // 200, 200)
    assert np.array_equal(unframe(steps), w[: (n // 200) * 200])
    for t in range(steps.shape[0]):
        assert np.array_equal(steps[t], w[200 * t : 200 * (t + 1)])


def test_permutation_is_a_fixed_invertible_bijection():
    perm = frame_permutation(200)
    assert np.array_equal(np.sort(perm), np.arange(200))
    assert np.array_equal(perm, frame_permutation(200))  # fixed
    assert not np.array_equal(perm, np.arange(200))
    steps = frame(_waveform(2000, 1).astype(np.float64), 200)
    permuted = permute_frames(steps, perm)
    assert np.array_equal(permuted[3, 7], steps[3, perm[7]])
    assert np.array_equal(unpermute_frames(permuted, perm), steps)
    assert np.array_equal(np.sort(permuted, 1), np.sort(steps, 1))  # every step keeps its samples


def test_stride_variant_takes_one_sample_in_m():
    assert stride_sequence(np.arange(10), 3).tolist() == [[0], [3], [6], [9]]
    assert stride_sequence(np.arange(10), 1).shape == (10, 1)
    with pytest.raises(ValueError, match="stride must be at least 1"):
        stride_sequence(np.arange(10), 0)


def test_chunks_lose_nothing():
    steps = np.arange(95 * 2).reshape(95, 2)
    chunks = chunk_steps(steps, 40)
    assert [c.shape[0] for c in chunks] == [40, 40, 15]
    assert np.array_equal(np.concatenate(chunks), steps)


# ---------------------------------------------------------------------------- WAV files
def test_read_wav_scales_to_unit_range(tmp_path):
    write_wav(tmp_path / "a.wav", [-32768, 0, 16384, 32767])
    x, rate = read_wav(tmp_path / "a.wav")
    assert rate == 8000 and x.dtype == np.float32
    assert x.tolist() == [-1.0, 0.0, 0.5, 32767 / 32768]
    write_wav(tmp_path / "b.wav", [0, 128, 255], width=1)
    assert read_wav(tmp_path / "b.wav")[0].tolist() == [-1.0, 0.0, 127 / 128]


def test_bad_wav_files_are_named(tmp_path):
    write_wav(tmp_path / "stereo.wav", np.zeros(20), channels=2)
    with pytest.raises(ValueError, match=r"stereo.wav: has 2 channels; only mono"):
        read_wav(tmp_path / "stereo.wav")
    with wave.open(str(tmp_path / "deep.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(3)
        f.setframerate(8000)
        f.writeframes(bytes(30))
    with pytest.raises(ValueError, match=r"deep.wav: 24-bit samples are not supported"):
        read_wav(tmp_path / "deep.wav")
    (tmp_path / "junk.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(ValueError, match=r"junk.wav: not a readable PCM WAV file"):
        read_wav(tmp_path / "junk.wav")


def test_another_sample_rate_is_rejected_by_name(tmp_path):
    for i in range(3):
        write_wav(tmp_path / f"{i}.wav", _waveform(800, i))
    write_wav(tmp_path / "3.wav", _waveform(800, 3), rate=16000)
    with pytest.raises(ValueError, match=r"3.wav: sample rate 16000 Hz differs from the 8000 Hz of the other recordings"):
        load_speech("train", tmp_path)
    with pytest.raises(ValueError, match=r"0.wav: sample rate 8000 Hz differs from the 16000 Hz"):
        load_speech("train", tmp_path, sample_rate=16000)


# ---------------------------------------------------------------------------- splits and loading
def _fsdd_like(folder, indices=range(12), speakers=("ann", "bob"), digits=(3, 7), length=1037):
    waves = {}
    (folder / "recordings").mkdir()
    for d in digits:
        for s in speakers:
            for i in indices:
                name = f"{d}_{s}_{i}.wav"
                waves[name] = _waveform(length + 97 * i, 1000 * d + 100 * speakers.index(s) + i)
                write_wav(folder / "recordings" / name, waves[name])
    return waves


def test_fsdd_names_are_split_by_index(tmp_path):
    _fsdd_like(tmp_path)
    files = sorted((tmp_path / "recordings").glob("*.wav"))
    splits = split_files(files)
    index = {s: sorted({int(f.stem.split("_")[2]) for f in splits[s]}) for s in splits}
    assert index == {"test": [0, 1, 2, 3, 4], "valid": [5, 6, 7, 8, 9], "train": [10, 11]}
    assert sum(len(v) for v in splits.values()) == len(files)


def test_other_names_get_a_seeded_split(tmp_path):
    files = [tmp_path / f"utt{i:02d}.wav" for i in range(20)]
    a, b = split_files(files), split_files(files)
    assert a == b
    assert [len(a[s]) for s in ("train", "valid", "test")] == [16, 2, 2]
    assert sorted(sum(a.values(), [])) == sorted(files)
    assert split_files(files, seed=1) != a


def test_loading_frames_chunks_and_normalises(tmp_path):
    waves = _fsdd_like(tmp_path, length=1037)
    train_names = sorted(n for n in waves if int(n[:-4].split("_")[2]) >= 10)
    scale = np.concatenate([waves[n] / 2**15 for n in train_names]).std()
    data = load_split("speech", "train", str(tmp_path))
    assert data.x_dim == FRAME_SIZE
    expected = []
    for n in train_names:  # chunks of 40 steps: these files have 5..6 steps, so one chunk each
        expected.append(frame(waves[n] / 2**15 / scale, 200))
    assert data.lengths.tolist() == [e.shape[0] for e in expected]
    for i, e in enumerate(expected):
        np.testing.assert_allclose(data.x[i, : e.shape[0]].numpy(), e, rtol=1e-5, atol=1e-6)
    # the waveform comes back from the frames, up to the dropped remainder
    w = waves[train_names[0]] / 2**15 / scale
    np.testing.assert_allclose(unframe(data.x[0, : data.lengths[0]].numpy()), w[: 200 * int(data.lengths[0])], rtol=1e-5, atol=1e-6)
    chunked = load_speech("train", tmp_path, frame_size=50, chunk=7)
    assert int(chunked.lengths.max()) == 7
    assert chunked.total_steps == sum(len(waves[n]) // 50 for n in train_names)
    test = load_speech("test", tmp_path, frame_size=50, chunk=7)  # evaluation: whole files
    assert test.lengths.tolist() == [len(waves[n]) // 50 for n in sorted(waves) if int(n[:-4].split("_")[2]) < 5]


def test_variants(tmp_path):
    waves = _fsdd_like(tmp_path, indices=range(10, 13), length=2000)
    plain = load_speech("train", tmp_path, chunk=None, normalize=False)
    p = frame_permutation(200)
    raw = load_speech("train", tmp_path, chunk=None, permute=True, normalize=False)
    assert np.array_equal(raw.x.numpy(), plain.x.numpy()[..., p])
    assert np.array_equal(unpermute_frames(raw.x.numpy(), p), plain.x.numpy())
    perm = load_split("speech-perm", "train", str(tmp_path))
    normal = load_split("speech", "train", str(tmp_path))
    assert perm.x_dim == 200 and np.array_equal(perm.x.numpy(), normal.x.numpy()[..., p])
    s = load_speech("train", tmp_path, stride=50, chunk=None, normalize=False)
    first = sorted(waves)[0]
    assert s.x_dim == 1 and int(s.lengths[0]) == -(-len(waves[first]) // 50)
    np.testing.assert_array_equal(s.x[0, : s.lengths[0], 0].numpy(), (waves[first][::50] / 2**15).astype(np.float32))
    assert load_split("speech-stride200", "train", str(tmp_path)).x_dim == 1
    with pytest.raises(ValueError, match="the stride variant has 1-D steps"):
        load_speech("train", tmp_path, stride=50, permute=True)


def test_missing_folder_or_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no .wav files under"):
        load_split("speech", "train", str(tmp_path))


def test_registry_entries():
    for name in ("speech", "speech-perm", "speech-stride50", "speech-stride200"):
        assert DATASETS[name].likelihood == "gaussian"


# ---------------------------------------------------------------------------- FSDD
def test_fsdd_recordings(shared_data):
    root = shared_data / "fsdd"
    files = sorted((root / "recordings").glob("*.wav"))
    assert len(files) == 3000
    counts = {}
    for split in ("train", "valid", "test"):
        data = load_split("speech", split, str(root))
        assert data.x_dim == 200
        counts[split] = data
    assert len(counts["test"]) == 300 and len(counts["valid"]) == 300  # whole files
    assert int(counts["train"].lengths.max()) == 40
    steps = {}
    for f in files:
        with wave.open(str(f)) as w:
            assert w.getframerate() == 8000 and w.getnchannels() == 1
            index = int(f.stem.split("_")[2])
            split = "test" if index < 5 else "valid" if index < 10 else "train"
            steps[split] = steps.get(split, 0) + w.getnframes() // 200
    for split in ("train", "valid", "test"):
        assert counts[split].total_steps == steps[split]
    # training samples have unit standard deviation after the normalisation
    x = counts["train"].x[counts["train"].x.abs().sum(-1) > 0]
    assert abs(float(x.std()) - 1.0) < 0.05
